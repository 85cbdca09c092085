"""Configs of every subcommand: inert frozen dataclasses (no I/O), validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from robot_learning.core.device import check_device
from robot_learning.errors import ConfigError
from robot_learning.evaluation.config import FLAT, SamplingConfig
from robot_learning.rig import TELEOPS, RigConfig


@dataclass(frozen=True)
class DemoConfig:
    """Run the main job on the embedded default (MuJoCo twin): record scripted demos through the control runtime,
    train a diffusion policy, evaluate it on held-out seeds, improve it without retraining (residual RLPD
    fine-tuning, value-guided steering) on the same seeds, then the safety filter and watchdog under injected
    faults and loop timing. About 30 minutes on 2 CPU cores (estimated; the five steps before fine-tuning and
    steering joined measured 16.5); --quick is the CI-sized run."""

    quick: bool = False
    """CI-sized run (4 demos, 20 training steps, 2 evaluation episodes, shorter safety and timing runs)."""
    demos: int | None = None
    """Scripted demonstrations to record (default 100; 4 with --quick)."""
    train_minutes: float | None = None
    """Training time budget in minutes (default 15; --quick trains 20 steps)."""
    train_steps: int | None = None
    """Training step budget instead of (or with) the time budget."""
    eval_episodes: int | None = None
    """Held-out evaluation episodes (default 50; 2 with --quick)."""
    finetune_minutes: float | None = None
    """Residual RLPD time budget in minutes (default 5; --quick plays 2 episodes)."""
    steer_samples: int = 16
    """Chunks the steered policy samples and scores each time (K)."""
    rate_hz: float = 50.0
    """Control rate."""
    duration_s: float | None = None
    """Length of the safety run (sim time); default 10 s (4 s with --quick)."""
    out: Path | None = None
    """Output folder for the video, tick log, plot and summary (default: runs/demo-<time>)."""
    json: bool = False
    """Also print the summary as one JSON line."""
    seed: int = 0
    """First demo seed (also seeds training; evaluation uses 100000 + seed onwards)."""

    def __post_init__(self) -> None:
        for name in ("demos", "train_steps", "eval_episodes"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError.expected(f"--{name.replace('_', '-')}", ">= 1", v)
        if self.train_minutes is not None and not self.train_minutes > 0:
            raise ConfigError.expected("--train-minutes", "> 0", self.train_minutes)
        if self.finetune_minutes is not None and not self.finetune_minutes > 0:
            raise ConfigError.expected("--finetune-minutes", "> 0", self.finetune_minutes)
        if self.steer_samples < 1:
            raise ConfigError.expected("--steer-samples", ">= 1", self.steer_samples)
        if not (1.0 <= self.rate_hz <= 1000.0):
            raise ConfigError.expected("--rate-hz", "1..1000", self.rate_hz)
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError.expected("--duration-s", "> 0", self.duration_s)


@dataclass(frozen=True)
class DoctorConfig:
    """Check the installation: versions, rendering backend, CPU threads, optional SDKs."""

    json: bool = False
    """Print one JSON line instead of a table."""


@dataclass(frozen=True)
class SimListConfig:
    """List the registered sim tasks and robot models."""

    json: bool = False
    """Print one JSON line."""


@dataclass(frozen=True)
class _SimTaskArgs:
    task: tyro.conf.Positional[str]
    """Task name (see `robot-learning sim list`)."""
    robot: str = "panda"
    """Robot model: panda or so101."""
    seed: int = 0
    """First episode's seed; episode i uses seed + i."""
    randomize: bool = False
    """Domain randomisation (colours, lights, cameras, friction, mass)."""
    waypoint_noise_m: float = 0.0
    """Expert variant: Gaussian jitter of its waypoints (m)."""
    action_noise_rad: float = 0.0
    """Expert variant: Gaussian noise on its joint targets (rad)."""
    speed_scale: float = 1.0
    """Expert variant: < 1 moves slower."""


@dataclass(frozen=True)
class SimCheckConfig(_SimTaskArgs):
    """Run the task's scripted expert on N seeds and report its success rate."""

    episodes: int = 20
    """Number of episodes."""
    json: bool = False
    """Print one JSON line."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError.expected("--episodes", ">= 1", self.episodes)


@dataclass(frozen=True)
class SimViewConfig(_SimTaskArgs):
    """Write a video of the scripted expert (scene camera and wrist camera side by side)."""

    out: Path = Path("sim_view.mp4")
    """Output .mp4 file."""
    episodes: int = 1
    """Episodes in the video."""
    size: int = 256
    """Image side of each camera (px)."""
    fps: float = 30.0
    """Camera rate on the sim clock (frames per second of sim time)."""
    camera: str = "front"
    """Scene camera: front, top or side."""

    def __post_init__(self) -> None:
        if self.out.suffix.lower() != ".mp4":
            raise ConfigError.expected("--out", "a path ending in .mp4", str(self.out))
        if not 32 <= self.size <= 640:
            raise ConfigError.expected("--size", "32..640", self.size)


@dataclass(frozen=True)
class RecordConfig:
    """Teleoperate (or run the scripted expert) and record demonstrations into a crash-safe zarr dataset, on the
    MuJoCo twin or on a real servo-bus arm. Real arms: each episode ends after --episode-s or at the teleop's
    next / re-record / stop event; the robot is then held for --reset-s while the operator resets the scene."""

    dataset: Path
    """Dataset folder (created, or appended to after recovering a killed recording)."""
    rig: Annotated[RigConfig, FLAT] = RigConfig(robot="sim:lift", teleop="scripted", cameras=None)
    """--robot, --teleop, --robot-port, --robot-id, --teleop-port, --teleop-id, --calibration-dir, --rate-hz,
    --cameras, --task."""
    episodes: int = 10
    """Episodes to record."""
    episode_s: float | None = None
    """Length of each episode in seconds (real arms; required with a leader arm, which has no buttons). An episode
    also ends at the teleop's next / re-record / stop event (default: only there)."""
    reset_s: float = 5.0
    """Pause between real-arm episodes, robot held, for the operator to reset the scene."""
    seed: int | None = None
    """First episode seed (sim; default: continue after the dataset's episodes)."""
    image_size: int = 96
    """Sim camera image side (px)."""
    camera_fps: float = 30.0
    """Sim camera rate (Hz)."""
    tactile: bool = True
    """Record fingertip taxels (sim)."""
    lossless: bool = False
    """PNG instead of JPEG for images."""
    keep_failures: bool = False
    """Also keep episodes whose success test failed (sim; marked success=false)."""
    view: bool = False
    """Show a live view of the cameras (needs a display)."""

    def __post_init__(self) -> None:
        self.rig.check_teleop(("scripted", *TELEOPS))
        if self.episodes < 1:
            raise ConfigError.expected("--episodes", ">= 1", self.episodes)
        if self.episode_s is not None and not self.episode_s > 0:
            raise ConfigError.expected("--episode-s", "> 0", self.episode_s)
        if not 0 <= self.reset_s <= 3600:
            raise ConfigError.expected("--reset-s", "0..3600", self.reset_s)
        if not self.rig.real:
            return
        if self.rig.teleop == "scripted":
            raise ConfigError(f"--teleop scripted runs the sim task's expert; a real {self.rig.robot} needs a human "
                              "teleop (a leader arm, keyboard, gamepad or spacemouse)")
        if self.rig.teleop.endswith("-leader") and self.episode_s is None:
            raise ConfigError(f"--teleop {self.rig.teleop} has no buttons to end an episode: give --episode-s "
                              "(each episode's length in seconds)")


@dataclass(frozen=True)
class DatasetInfoConfig:
    """Summarise a dataset: episodes, frames, streams and their rates, features."""

    dataset: tyro.conf.Positional[Path]
    json: bool = False
    """Print one JSON line."""


@dataclass(frozen=True)
class DatasetVerifyConfig:
    """Check a dataset's invariants (contiguous episodes, monotonic timestamps, no NaN, images decode)."""

    dataset: tyro.conf.Positional[Path]
    json: bool = False
    """Print one JSON line."""


@dataclass(frozen=True)
class DatasetReplayConfig:
    """Re-execute an episode's executed actions on the sim robot and report the tracking error."""

    dataset: tyro.conf.Positional[Path]
    episode: int = 0
    """Episode index (-1: every episode)."""
    json: bool = False
    """Print one JSON line."""


@dataclass(frozen=True)
class DatasetViewConfig:
    """Write an episode as an mp4 (its cameras side by side) or a rerun .rrd recording."""

    dataset: tyro.conf.Positional[Path]
    episode: int = 0
    """Episode index."""
    out: Path = Path("episode.mp4")
    """Output file: .mp4 (cameras side by side) or .rrd (every stream on a capture-time timeline; needs rerun-sdk)."""

    def __post_init__(self) -> None:
        if self.out.suffix.lower() not in (".mp4", ".rrd"):
            raise ConfigError.expected("--out", "a path ending in .mp4 or .rrd", str(self.out))


@dataclass(frozen=True)
class DatasetSplitConfig:
    """Split a dataset in two: the first --fraction of its episodes, and the rest."""

    dataset: tyro.conf.Positional[Path]
    out_a: Path
    """Dataset for the first part (e.g. train)."""
    out_b: Path
    """Dataset for the rest (e.g. validation)."""
    fraction: float = 0.9
    """Share of episodes in out_a."""
    seed: int | None = None
    """Shuffle episodes with this seed before splitting (default: keep order)."""

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ConfigError.expected("--fraction", "0 < fraction < 1", self.fraction)


@dataclass(frozen=True)
class DatasetMergeConfig:
    """Merge datasets with the same schema into a new one."""

    datasets: tyro.conf.Positional[tuple[Path, ...]]
    out: Path
    """New dataset."""


@dataclass(frozen=True)
class DatasetDeleteConfig:
    """Delete episodes (the dataset is rewritten; the original is replaced only when the copy is complete)."""

    dataset: tyro.conf.Positional[Path]
    index: tuple[int, ...]
    """Episode indices to delete."""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluate a trained policy in the MuJoCo twin on held-out seeds: success rate with a 95% interval, episode
    length, inference latency per chunk, rollout videos."""

    checkpoint: Path
    """A training run folder (its policy/) or a policy folder."""
    env: str | None = None
    """sim:TASK or sim:TASK:MODEL (default: the sim task and robot the training data came from)."""
    episodes: int = 50
    """Episodes, one per seed from --seed."""
    seed: int = 100_000
    """First seed; seeds the dataset was recorded with are refused."""
    sampling: Annotated[SamplingConfig, FLAT] = SamplingConfig()
    """--sampler, --sampling-steps, --sampling-temperature."""
    videos: int = 4
    """Rollout videos to write (the first episodes)."""
    out: Path | None = None
    """Folder for videos and eval.json (default: eval-<time> beside the policy folder, i.e. in the run folder)."""
    json: bool = False
    """Print the result as one JSON line (nothing else on stdout)."""
    device: str = "auto"
    """auto (CUDA when present, else cpu), cpu, cuda or cuda:N."""
    steer: Path | None = None
    """Value-guided steering (V-GPS): a critic folder from `robot-learning critic train`; the policy samples
    --samples chunks each time and runs the one the critic scores highest (the policy's weights are untouched)."""
    samples: int = 16
    """Steering: candidate chunks per inference (K)."""
    beta: float = 0.0
    """Steering: pick by softmax(Q / beta); 0 = argmax."""
    record: Path | None = None
    """Record every episode (failures too, with success labels) into this dataset: rollouts for an offline critic."""
    instruction: Literal["right", "wrong", "empty"] = "right"
    """The instruction the policy is given: right (the task's), wrong (another goal of the same scene, e.g. another
    colour in lift_color) or empty; success is always measured on the task's own goal (language following)."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError.expected("--episodes", ">= 1", self.episodes)
        if self.samples < 1:
            raise ConfigError.expected("--samples", ">= 1", self.samples)
        if self.beta < 0:
            raise ConfigError.expected("--beta", ">= 0", self.beta)
        if self.videos < 0:
            raise ConfigError.expected("--videos", ">= 0", self.videos)
        check_device(self.device)
