"""Config of ``robot-learning finetune residual`` (residual PPO over a frozen base policy in the sim twin)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from robot_learning.errors import ConfigError


@dataclass(frozen=True)
class FinetuneResidualConfig:
    """Fine-tune a trained policy with residual PPO in the MuJoCo twin (ResiP): the base stays frozen, a small
    residual MLP learns per-tick corrections from the sparse success reward over vectorised envs. Evaluates on
    held-out seeds at the start (the base alone), along the way and at the end; checkpoints every 2 minutes,
    at the end and on Ctrl-C; --resume continues a run."""

    method: tyro.conf.Positional[Literal["residual"]]
    """Fine-tuning method: residual (residual PPO over the frozen policy)."""
    checkpoint: Path
    """Base policy: a training run folder (its policy/) or a policy folder."""
    out: Path
    """Run folder: policy/ (the residual policy, with its base inside: eval, serve and deploy take it),
    checkpoint/ (resume), rl_log.csv, eval_log.csv, curves.png, summary.json."""
    env: str = "sim:insertion"
    """sim:TASK[:MODEL]: the twin task to fine-tune on (the base policy's task)."""
    num_envs: int = 16
    """Parallel envs per rollout (stepped in this process; the base samples for all of them in one batch)."""
    rollout_steps: int | None = None
    """Control steps per env per PPO iteration (default: the task's episode length)."""
    minutes: float | None = None
    """Time budget in minutes (rollouts + updates; evaluations are extra)."""
    iterations: int | None = None
    """PPO iterations (default 100 when --minutes is not given either). With --minutes, whichever ends first."""
    scale: float = 0.1
    """Residual step in normalised action units (a = a_base + scale * residual)."""
    log_std: float = -2.0
    """Fixed log-std of the residual's Gaussian (exploration). ResiP uses -1; on the lift twin that noise (0.037
    normalised units per tick) dropped a 0.46 base's training-rollout success to ~0.1 and PPO made it worse
    (0.44 -> 0.12 in 15 min); at -2 the rollouts succeed like the base (measured 0.46)."""
    hidden: tuple[int, ...] = (256, 256)
    """Residual actor MLP widths (the critic uses the same)."""
    gamma: float = 0.999
    gae_lambda: float = 0.95
    clip: float = 0.2
    target_kl: float = 0.05
    """KL early stop of each update."""
    epochs: int = 5
    minibatches: int = 4
    lr_actor: float = 3e-4
    lr_critic: float = 5e-3
    eval_episodes: int = 50
    """Held-out episodes per evaluation (0: none)."""
    eval_seed: int = 100_000
    """First evaluation seed (refused if the base was trained on it)."""
    eval_every_min: float = 10.0
    """Evaluate every N minutes of training (besides the start and the end)."""
    train_seed: int = 300_000
    """First env seed of the RL episodes (each reset takes the next one; stored so eval refuses them)."""
    seed: int = 0
    """Seeds the residual's initialisation, the noise and the base's sampler."""
    resume: bool = False
    """Continue the run in --out from its checkpoint."""
    progress: bool = True
    """Progress bar."""
    device: str = "cpu"
    """Device of the base policy's sampling (the residual and the critic stay on the CPU)."""

    def __post_init__(self) -> None:
        if not self.env.startswith("sim:"):
            raise ConfigError.expected("--env", "sim:TASK[:MODEL] (residual PPO runs in the twin)", repr(self.env))
        if self.num_envs < 1:
            raise ConfigError.expected("--num-envs", ">= 1", self.num_envs)
        if self.rollout_steps is not None and self.rollout_steps < 1:
            raise ConfigError.expected("--rollout-steps", ">= 1", self.rollout_steps)
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError.expected("--minutes", "> 0", self.minutes)
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError.expected("--iterations", ">= 1", self.iterations)
        if self.eval_episodes < 0:
            raise ConfigError.expected("--eval-episodes", ">= 0", self.eval_episodes)
        lo, hi = self.eval_seed, self.eval_seed + self.eval_episodes
        if self.eval_episodes and self.train_seed < hi and lo < self.train_seed + 10_000_000:
            raise ConfigError(f"--train-seed {self.train_seed}: the RL episodes would reuse evaluation seeds "
                              f"{lo}..{hi - 1}; pick a --train-seed above {hi - 1} (or 10M below --eval-seed)")


@dataclass(frozen=True)
class CriticTrainConfig:
    """Train an offline critic Q(observation, action chunk) on recorded episodes with success labels
    (demonstrations and policy rollouts: `robot-learning eval --record`), for value-guided steering
    (`eval --steer`). Holds out a tenth of the episodes and reports how well Q separates their successes from
    their failures (ROC AUC)."""

    method: tyro.conf.Positional[Literal["train"]]
    """train (the only action so far)."""
    dataset: tuple[Path, ...]
    """One or more datasets (same action features), every episode with a success label."""
    out: Path
    """Run folder: critic/ (config.json + critic.safetensors: what --steer takes), train_log.csv, summary.json."""
    algo: Literal["calql", "iql"] = "calql"
    """calql (conservative, calibrated by the Monte-Carlo return) or iql (expectile value regression)."""
    horizon: int = 8
    """Chunk length the critic scores (the steered policy's executed actions per chunk)."""
    gamma: float = 0.98
    """Discount per chunk."""
    features: tuple[str, ...] | None = None
    """State features the critic sees (default: every numeric state feature of the dataset)."""
    steps: int = 20_000
    """Gradient steps."""
    minutes: float | None = None
    """Time budget instead of (or with) --steps."""
    batch_size: int = 256
    lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    expectile: float = 0.7
    cql_alpha: float = 1.0
    val_fraction: float = 0.1
    """Episodes held out for the validation AUC."""
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError.expected("--steps / --batch-size", ">= 1", (self.steps, self.batch_size))
        if not 0 <= self.val_fraction < 1:
            raise ConfigError.expected("--val-fraction", "0 <= f < 1", self.val_fraction)
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError.expected("--minutes", "> 0", self.minutes)
