"""Configs of every subcommand: inert frozen dataclasses (no I/O), validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robot_learning.errors import ConfigError


@dataclass(frozen=True)
class DemoConfig:
    """Run the main job on the embedded default and print what it measured (today: the control
    runtime, safety filter and watchdog on the emulated arm; sim, recording and training come next)."""

    quick: bool = False
    """CI-sized run (a few seconds)."""
    rate_hz: float = 50.0
    """Control rate."""
    duration_s: float | None = None
    """Run length; default 10 s (3 s with --quick)."""
    out: Path | None = None
    """Output folder for the tick log, plot and summary (default: runs/demo-<time>)."""
    json: bool = False
    """Also print the summary as one JSON line."""
    seed: int = 0
    """Seed of the scripted trajectory's phases."""

    def __post_init__(self) -> None:
        if not (1.0 <= self.rate_hz <= 1000.0):
            raise ConfigError.expected("--rate-hz", "1..1000", self.rate_hz)
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError.expected("--duration-s", "> 0", self.duration_s)


@dataclass(frozen=True)
class DoctorConfig:
    """Check the installation: versions, rendering backend, CPU threads, optional SDKs."""

    json: bool = False
    """Print one JSON line instead of a table."""
