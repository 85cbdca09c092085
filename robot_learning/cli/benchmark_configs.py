"""Configs of ``robot-learning benchmark``: inert frozen dataclasses, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Union

import tyro

from robot_learning.core.device import check_device
from robot_learning.errors import ConfigError

_SUITE_HELP = ("Benchmark suite: metaworld, pusht, aloha, robosuite, or the path of a *_suite.py adapter file "
               "(docs/benchmark_suites.md).")
_PYTHON_HELP = ("Run the suite's driver under this Python interpreter instead of the suite's cached venv (it must "
                "already hold the suite's packages, e.g. a venv you made yourself; the tests' toy suite runs under "
                "the project's own interpreter).")


def _check_positive(**values: int | None) -> None:
    for flag, v in values.items():
        if v is not None and v < 1:
            raise ConfigError.expected(f"--{flag.replace('_', '-')}", ">= 1", v)


@dataclass(frozen=True)
class BenchmarkSetupConfig:
    """Create (once) and cache the suite's own virtual environment, and list its tasks. The venv lives under
    ~/.cache/robot-learning/benchmarks/ ($ROBOT_LEARNING_BENCH_CACHE overrides); it needs the package index once."""

    suite: Annotated[str, tyro.conf.Positional, tyro.conf.arg(help=_SUITE_HELP, metavar="SUITE")]
    python: Path | None = None
    """Check this interpreter instead of creating the venv (see `benchmark run --help`)."""
    json: bool = False
    """Print one JSON line."""


@dataclass(frozen=True)
class BenchmarkDemosConfig:
    """Record a suite task's scripted demonstrations into a new dataset (one episode per successful seed, the seed
    stored with it), then verify it as `robot-learning dataset verify` does."""

    suite: Annotated[str, tyro.conf.Positional, tyro.conf.arg(help=_SUITE_HELP, metavar="SUITE")]
    task: str
    """The suite's task, e.g. reach (Meta-World)."""
    out: Path
    """The new dataset folder."""
    demos: int = 50
    """Successful demonstrations to keep."""
    seed: int = 0
    """First seed (seeds decide the task variation); failed seeds are skipped."""
    max_seeds: int | None = None
    """Seeds to try at most (default: 2 x --demos, at least --demos + 10)."""
    image_size: int | None = None
    """Also record camera images of this size (px); default: state only."""
    python: Path | None = None
    """Driver interpreter override (see `benchmark run --help`)."""

    def __post_init__(self) -> None:
        _check_positive(demos=self.demos, max_seeds=self.max_seeds, image_size=self.image_size)


@dataclass(frozen=True)
class BenchmarkEvalConfig:
    """Evaluate a trained policy on a suite task: serve it on a free loopback port, run the suite's episodes on
    held-out seeds (disjoint from the training demos), report success with a 95% interval, the suite's metric,
    episode length, latency per chunk, videos."""

    suite: Annotated[str, tyro.conf.Positional, tyro.conf.arg(help=_SUITE_HELP, metavar="SUITE")]
    task: str
    """The suite's task."""
    checkpoint: Path
    """A training run folder (its policy/) or a policy folder."""
    episodes: int = 50
    """Held-out episodes, one per seed."""
    eval_seed: int = 100_000
    """First evaluation seed; seeds the policy was trained on are refused."""
    out: Path | None = None
    """Folder for episodes.jsonl, eval.json and videos/ (default: beside the policy, eval-<suite>-<task>)."""
    videos: int = 2
    """Episodes to film."""
    video_size: int = 320
    """Video frame size (px, >= 320)."""
    image_size: int | None = None
    """Camera image size the policy reads (default: read from the policy's features)."""
    device: str = "auto"
    """auto (CUDA when present, else cpu), cpu, cuda or cuda:N."""
    python: Path | None = None
    """Driver interpreter override (see `benchmark run --help`)."""
    json: bool = False
    """Print one JSON line."""

    def __post_init__(self) -> None:
        _check_positive(episodes=self.episodes)
        if self.video_size < 320:
            raise ConfigError.expected("--video-size", ">= 320", self.video_size)
        check_device(self.device)


@dataclass(frozen=True)
class BenchmarkRunConfig:
    """One suite end to end: set up its venv, make demos per task, train a policy per task, evaluate it on held-out
    seeds, print the table (ours beside the published figure). Results: OUT/results.json, written after every task;
    run again with the same --out to continue after Ctrl-C (finished tasks are kept)."""

    suite: Annotated[str, tyro.conf.Positional, tyro.conf.arg(help=_SUITE_HELP, metavar="SUITE")]
    tasks: str | None = None
    """Comma-separated tasks (default: the suite's reported set, e.g. Meta-World MT10; 'all': every task)."""
    demos: int | None = None
    """Scripted demos per task (default: the papers' count, 50 for Meta-World; --quick 10)."""
    steps: int | None = None
    """Training steps per task (default 5000; --quick 300)."""
    episodes: int | None = None
    """Held-out evaluation episodes per task (default 50; --quick 5)."""
    seed: int = 0
    """First demo seed (and the training seed); evaluation seeds start at --eval-seed."""
    eval_seed: int | None = None
    """First evaluation seed (default --seed + 100000)."""
    policy: str = "diffusion"
    """Policy family (`robot-learning train --help` lists them)."""
    obs: str = "state"
    """What the policy sees (as `train --obs`): state, or state,rgb with --image-size."""
    image_size: int | None = None
    """Record and feed camera images of this size (px); default: state only."""
    batch_size: int = 64
    """Training windows per step."""
    threads: int | None = None
    """CPU threads for torch (default: every core)."""
    device: str = "auto"
    """auto (CUDA when present, else cpu), cpu, cuda or cuda:N."""
    videos: int = 2
    """Evaluation episodes to film per task."""
    quick: bool = False
    """A CI-sized run of the whole path: one task (the suite's quick one unless --tasks), 10 demos, 300 steps, 5
    episodes (each overridable by its flag)."""
    out: Path | None = None
    """Results folder (default runs/benchmarks/<suite>-<time>)."""
    python: Path | None = None
    """Run the suite's driver under this Python interpreter instead of the suite's cached venv (it must already
    hold the suite's packages; the tests' toy suite runs under the project's own interpreter)."""
    json: bool = False
    """Print one JSON line: {"suite", "tasks": {TASK: {"success_rate", "episodes", "ci95", ...}}, "mean_success",
    ...}."""

    def __post_init__(self) -> None:
        _check_positive(demos=self.demos, steps=self.steps, episodes=self.episodes, image_size=self.image_size,
                        batch_size=self.batch_size)
        check_device(self.device)
        from robot_learning.policies.registry import get_family

        get_family(self.policy, trainable=True)


BenchmarkCommand = Union[
    Annotated[BenchmarkSetupConfig, tyro.conf.subcommand("setup")],
    Annotated[BenchmarkDemosConfig, tyro.conf.subcommand("demos")],
    Annotated[BenchmarkEvalConfig, tyro.conf.subcommand("eval")],
    Annotated[BenchmarkRunConfig, tyro.conf.subcommand("run")],
]


@dataclass(frozen=True)
class BenchmarkConfig:
    """The field's benchmarks (Meta-World, PushT, ALOHA, robosuite) from their own packages, each in its own cached
    venv, driven through the policy server: setup, demos, eval, run (end to end, with the published figures)."""

    cmd: tyro.conf.OmitSubcommandPrefixes[BenchmarkCommand]
