"""Policies: the inference interface (``base``), checkpoints (``checkpoint``), networks (``nets``)
and the diffusion policy (``diffusion``). Import submodules directly; nothing is imported here."""
