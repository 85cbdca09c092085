"""Reinforcement learning on top of trained policies: residual PPO, offline critics (see docs/architecture.md)."""
