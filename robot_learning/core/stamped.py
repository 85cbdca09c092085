"""Stamped samples: a value with its capture and receive times on the project's clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from robot_learning.core.clock import NS_PER_S

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Stamped(Generic[T]):
    """A sample and when it happened.

    ``t_capture_ns``: when the physical quantity was measured (exposure mid-point, encoder
    read, sim time), on the project clock; hardware timestamps are converted to it by the
    driver. ``t_receive_ns``: when the host had the sample in memory. ``seq``: a per-stream
    counter, so consumers can tell a repeated sample from a new one.
    """

    value: T
    t_capture_ns: int
    t_receive_ns: int
    seq: int = 0

    def __post_init__(self) -> None:
        if self.t_receive_ns < self.t_capture_ns:
            raise ValueError(
                f"Stamped: expected t_receive_ns >= t_capture_ns, found receive {self.t_receive_ns} "
                f"< capture {self.t_capture_ns}"
            )

    def age_ns(self, now_ns: int) -> int:
        """Time since capture."""
        return now_ns - self.t_capture_ns

    def age_s(self, now_ns: int) -> float:
        return self.age_ns(now_ns) / NS_PER_S

    @property
    def latency_ns(self) -> int:
        """Capture-to-host latency."""
        return self.t_receive_ns - self.t_capture_ns
