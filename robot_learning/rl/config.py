"""Configs of ``robot-learning finetune residual|rlpd|actor`` and ``critic train``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from robot_learning.core.device import check_device
from robot_learning.errors import ConfigError
from robot_learning.evaluation.config import FLAT, HeldOutEvalConfig


@dataclass(frozen=True)
class RLRunConfig:
    """A fine-tuning run's folder, budget, evaluation cadence, seed and device (``finetune residual`` and ``finetune
    rlpd``; each adds its own budget in iterations or episodes)."""

    out: Path
    """Run folder: policy/ (the residual policy, with its base inside: eval, serve and deploy take it),
    checkpoint/ (resume; RLPD's holds the replay buffer), rl_log.csv, eval_log.csv, curves.png, summary.json (RLPD:
    actor*.log too)."""
    minutes: float | None = None
    """Time budget of training in minutes (evaluations are extra); with the other budget, whichever ends first."""
    eval_every_min: float = 10.0
    """Evaluate every N minutes of training (besides the start and the end)."""
    seed: int = 0
    """Seeds the residual's initialisation, the exploration noise and the base's sampler."""
    resume: bool = False
    """Continue the run in --out from its checkpoint."""
    progress: bool = True
    """Progress bar."""
    device: str = "auto"
    """Device of the base policy: auto (CUDA when present, else cpu), cpu, cuda or cuda:N (the residual and the
    critics stay on the CPU)."""

    def __post_init__(self) -> None:
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError.expected("--minutes", "> 0", self.minutes)
        check_device(self.device)


@dataclass(frozen=True)
class FinetuneResidualConfig:
    """Fine-tune a trained policy with residual PPO in the MuJoCo twin (ResiP): the base stays frozen, a small
    residual MLP learns per-tick corrections from the success reward (--reward) over vectorised envs, with a
    diffusion base sampled deterministically (--base-temperature 0). Evaluates on
    held-out seeds at the start (the base alone), along the way and at the end; checkpoints every 2 minutes,
    at the end and on Ctrl-C; --resume continues a run."""

    checkpoint: Path
    """Base policy: a training run folder (its policy/) or a policy folder."""
    run: Annotated[RLRunConfig, FLAT]
    """--out, --minutes, --eval-every-min, --seed, --resume, --progress, --device."""
    env: str = "sim:insertion"
    """sim:TASK[:MODEL]: the twin task to fine-tune on (the base policy's task)."""
    num_envs: int = 16
    """Parallel envs per rollout (the base samples for all of a process's envs in one batch)."""
    workers: int = 1
    """Processes stepping the envs, num_envs / workers each with its own copy of the base (1: this process).
    One per core: on 2 cores, 2 workers trained on 1.5x the env steps per second of one process (bench/ppo_workers.py)."""
    rollout_steps: int | None = None
    """Control steps per env per PPO iteration (default: the task's episode length)."""
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
    base_temperature: float = 0.0
    """Starting-noise temperature of a diffusion / flow base's sampler during fine-tuning and in the saved policy
    (0: the base is a deterministic function of its observations, so the residual's own noise is what PPO sees;
    1: the base as trained). Measured on the lift twin (bench/base_noise.py): at 1, 26 of 40 seeds succeeded in some of 4
    tries and failed in others; at 0, none. Bases without a sampler temperature (ACT, AR, ...) run as they are."""
    reward: Literal["sparse", "shaped"] = "sparse"
    """sparse: 1 at success (ResiP). shaped: plus potential-based shaping gamma * phi(s') - phi(s) with phi the
    task's dense progress reward (lift: 0.3 reach + 0.7 lift fraction); it leaves the optimal policy unchanged
    (Ng et al. 1999) and gives a gradient where sparse success is too rare to find."""
    gamma: float = 0.999
    gae_lambda: float = 0.95
    clip: float = 0.2
    target_kl: float = 0.05
    """KL early stop of each update."""
    epochs: int = 5
    minibatches: int = 4
    lr_actor: float = 3e-4
    lr_critic: float = 5e-3
    evaluation: Annotated[HeldOutEvalConfig, FLAT] = HeldOutEvalConfig()
    """--eval-episodes, --eval-seed."""
    train_seed: int = 300_000
    """First env seed of the RL episodes (each reset takes the next one; stored so eval refuses them)."""
    threads: int | None = None
    """Torch threads (default: half the cores; every core makes two torch processes on one machine spin against
    each other, measured 20x slower)."""

    def __post_init__(self) -> None:
        if not self.env.startswith("sim:"):
            raise ConfigError.expected("--env", "sim:TASK[:MODEL] (residual PPO runs in the twin)", repr(self.env))
        if self.num_envs < 1:
            raise ConfigError.expected("--num-envs", ">= 1", self.num_envs)
        if not 1 <= self.workers <= self.num_envs:
            raise ConfigError.expected("--workers", f"1..--num-envs ({self.num_envs})", self.workers)
        if self.rollout_steps is not None and self.rollout_steps < 1:
            raise ConfigError.expected("--rollout-steps", ">= 1", self.rollout_steps)
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError.expected("--iterations", ">= 1", self.iterations)
        if not 0.0 <= self.base_temperature <= 1.0:
            raise ConfigError.expected("--base-temperature", "0..1", self.base_temperature)
        _check_eval_and_train_seeds(self.evaluation, self.train_seed)


def set_torch_threads(threads: int | None) -> int:
    """Set torch's intra-op threads to ``threads`` (default: half the cores, at least 1); returns the number."""
    import os

    import torch

    n = max(1, int(threads) if threads is not None else (os.cpu_count() or 2) // 2)
    torch.set_num_threads(n)
    return n


def _check_eval_and_train_seeds(evaluation: HeldOutEvalConfig, train_seed: int) -> None:
    lo, hi = evaluation.eval_seed, evaluation.eval_seed + evaluation.eval_episodes
    if evaluation.eval_episodes and train_seed < hi and lo < train_seed + 10_000_000:
        raise ConfigError(f"--train-seed {train_seed}: the RL episodes would reuse evaluation seeds "
                          f"{lo}..{hi - 1}; pick a --train-seed above {hi - 1} (or 10M below --eval-seed)")


@dataclass(frozen=True)
class FinetuneRLPDConfig:
    """Fine-tune a trained policy with off-policy residual RL (SAC with RLPD's choices: a LayerNorm Q ensemble,
    batches half demonstrations half online data, several critic updates per env step). An actor process plays
    the residual policy with exploration in the twin through the control runtime and streams its episodes to this
    learner over a websocket; human interventions in its episodes join the demonstrations (HIL-SERL). Evaluates on
    held-out seeds at the start (the base alone), along the way and at the end; checkpoints every 2 minutes, at
    the end and on Ctrl-C; --resume continues."""

    checkpoint: Path
    """Base policy: a training run folder (its policy/) or a policy folder."""
    run: Annotated[RLRunConfig, FLAT]
    """--out, --minutes, --eval-every-min, --seed, --resume, --progress, --device."""
    env: str = "sim:lift"
    """sim:TASK[:MODEL]: the twin task (the base policy's task)."""
    demos: tuple[Path, ...] = ()
    """Datasets of demonstrations for half of every batch (their executed actions become residuals of the base;
    episodes without a success label count as successful)."""
    episodes: int | None = None
    """Budget in actor episodes (default 200 when --minutes is not given either); whichever ends first."""
    actors: int = 1
    """Actor processes started on this machine (0: none; run `robot-learning finetune actor --learner URL` where
    the robot is)."""
    host: str = "127.0.0.1"
    """Where the learner listens for actors (beyond loopback it needs --token)."""
    port: int = 0
    """Learner port (0: any free port; the URL is printed)."""
    token: str | None = None
    """Bearer token actors must send."""
    scale: float = 0.1
    """Residual step in normalised action units (a = a_base + scale * tanh(...))."""
    log_std: float = -2.0
    """Initial and largest log-std of the residual's Gaussian before the tanh (the entropy temperature and the
    critic can only lower it: on lift, more noise than -2 cut the base's success, see finetune residual)."""
    base_temperature: float = 0.0
    """Sampler temperature of a diffusion / flow base, in the learner, the actors and the saved policy (0:
    deterministic, as for residual PPO: the residual's noise is the only exploration; 1: the base as trained)."""
    hidden: tuple[int, ...] = (256, 256)
    """Residual actor MLP widths (the Q ensemble uses the same)."""
    gamma: float = 0.99
    """Discount per control tick."""
    ensemble: int = 4
    """Q ensemble members (RLPD uses 10 on a GPU; 4 keeps a 2-core CPU learner ahead of the actor)."""
    target_subset: int = 4
    """Members the target's minimum is taken over (RLPD: 2 of 10; with 4 members, all of them: on lift the
    residual drifted the policy down less, 0.46 -> 0.38 instead of 0.32 in 10 minutes, with Q nearer the
    success rate)."""
    utd: int = 2
    """Critic updates per env step (the update-to-data ratio)."""
    batch_size: int = 256
    demo_fraction: float = 0.5
    """Share of each batch from demonstrations and intervention ticks (0 when there are none)."""
    lr: float = 3e-4
    """Adam learning rate of the critics and the temperature."""
    lr_actor: float = 1e-4
    """Adam learning rate of the residual actor."""
    select: bool = True
    """EXPO: every tick, execute whichever of the base action and the residual's action the critic values more
    (and bootstrap the same way); the saved policy carries its critic for that. --no-select: the residual alone
    (plain RLPD; measured on lift it drifted the policy from 0.46 to 0.32 in 10 minutes)."""
    residual_penalty: float = 1.0
    """Weight of the mean squared residual in the actor's loss (keeps the policy at its base until the critic
    sees a gain; at 0.1 the residual's mean |r| reached 0.24 in 10 minutes on lift while success fell)."""
    alpha_init: float = 0.01
    """Initial entropy temperature."""
    warmup_steps: int = 500
    """Online env steps before the first update (they are then caught up at the UTD ratio)."""
    takeover_after_ticks: int | None = None
    """The actors' scripted expert takes over at this tick (a human's intervention, played in the twin; its ticks
    join the demonstrations). Default: no takeover."""
    takeover_probability: float = 0.5
    """Share of episodes the expert takes over."""
    actor_delay: int = 1000
    """Critic updates before the actor's first (the residual stays zero until the critic has learnt something)."""
    evaluation: Annotated[HeldOutEvalConfig, FLAT] = HeldOutEvalConfig()
    """--eval-episodes, --eval-seed."""
    eval_start: bool = True
    """Evaluate the base alone before training (skip it when you have that figure already)."""
    train_seed: int = 400_000
    """First env seed of the actor's episodes (stored so eval refuses them)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.base_temperature <= 1.0:
            raise ConfigError.expected("--base-temperature", "0..1", self.base_temperature)
        if not self.env.startswith("sim:"):
            raise ConfigError.expected("--env", "sim:TASK[:MODEL] (the twin)", repr(self.env))
        if self.actors < 0:
            raise ConfigError.expected("--actors", ">= 0", self.actors)
        if self.episodes is not None and self.episodes < 1:
            raise ConfigError.expected("--episodes", ">= 1", self.episodes)
        if not 0 <= self.port < 65536:
            raise ConfigError.expected("--port", "0 .. 65535", self.port)
        if self.warmup_steps < 0:
            raise ConfigError.expected("--warmup-steps", ">= 0", self.warmup_steps)
        _check_eval_and_train_seeds(self.evaluation, self.train_seed)


@dataclass(frozen=True)
class ActorConfig:
    """Run an RL actor: play a residual policy with exploration in the twin through the control runtime and send
    every episode to a learner (`finetune rlpd`), taking its newer weights from each reply."""

    learner: str
    """The learner's URL (ws://HOST:PORT, printed by `finetune rlpd`)."""
    checkpoint: Path
    """The base policy (the same one the learner fine-tunes)."""
    env: str = "sim:lift"
    """sim:TASK[:MODEL]."""
    token: str | None = None
    episodes: int | None = None
    """Stop after this many episodes (default: when the learner says stop)."""
    takeover_after_ticks: int | None = None
    """Twin only: the scripted expert takes over (as a human would, HIL-SERL) at this tick of an episode; its
    ticks are flagged as interventions (default: no takeover)."""
    takeover_probability: float = 0.5
    """Share of episodes the expert takes over."""
    seed: int = 0
    """Seeds the exploration noise."""
    threads: int = 1
    """Torch threads (the learner usually shares the machine)."""
    progress: bool = True
    device: str = "auto"
    """Device of the base policy: auto (CUDA when present, else cpu), cpu, cuda or cuda:N."""

    def __post_init__(self) -> None:
        check_device(self.device)


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
    threads: int | None = None
    """Torch threads (default: half the cores)."""

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError.expected("--steps / --batch-size", ">= 1", (self.steps, self.batch_size))
        if not 0 <= self.val_fraction < 1:
            raise ConfigError.expected("--val-fraction", "0 <= f < 1", self.val_fraction)
        if self.minutes is not None and not self.minutes > 0:
            raise ConfigError.expected("--minutes", "> 0", self.minutes)
