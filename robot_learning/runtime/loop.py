"""Fixed-rate scheduling with absolute deadlines, overrun accounting, and the action watchdog."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robot_learning.core.clock import NS_PER_S, Clock
from robot_learning.errors import ConfigError


@dataclass
class LoopStats:
    """What the loop measured. ``period_error_ns``: wake time minus deadline, per tick."""

    ticks: int = 0
    overruns: int = 0          # ticks whose work ran past the next deadline
    missed_ticks: int = 0      # deadlines skipped because of overruns
    period_error_ns: list[int] = field(default_factory=list)

    def error_percentiles_ms(self) -> dict[str, float]:
        if not self.period_error_ns:
            return {"p50": 0.0, "p99": 0.0, "max": 0.0}
        e = np.abs(np.asarray(self.period_error_ns, dtype=np.float64)) / 1e6
        return {"p50": float(np.percentile(e, 50)), "p99": float(np.percentile(e, 99)), "max": float(e.max())}


class RateLoop:
    """Ticks at ``start + k * period`` (absolute deadlines: errors never accumulate into drift).

    Usage::

        loop = RateLoop(clock, rate_hz=50)
        while ...:
            deadline_ns = loop.wait()     # sleeps until the next deadline, returns it
            do_work()

    When work overruns past later deadlines, those deadlines are skipped (counted in
    ``missed_ticks``) and the loop stays on its original grid.
    """

    def __init__(self, clock: Clock, rate_hz: float, keep_errors: int = 1_000_000):
        if not rate_hz > 0:
            raise ConfigError.expected("rate_hz", "> 0", rate_hz)
        self.clock = clock
        self.rate_hz = float(rate_hz)
        self.period_ns = int(round(NS_PER_S / rate_hz))
        self.stats = LoopStats()
        self._keep = keep_errors
        self._start_ns: int | None = None
        self._k = 0

    @property
    def start_ns(self) -> int | None:
        return self._start_ns

    def deadline_ns(self, k: int) -> int:
        assert self._start_ns is not None
        return self._start_ns + k * self.period_ns

    def wait(self) -> int:
        """Sleep until the next deadline and return it. The first call returns at once."""
        now = self.clock.now_ns()
        if self._start_ns is None:
            self._start_ns = now
            self._k = 0
        else:
            self._k += 1
            deadline = self.deadline_ns(self._k)
            if now > deadline:
                # Work of the previous tick ran past this deadline: skip to the next one ahead.
                self.stats.overruns += 1
                k_next = (now - self._start_ns) // self.period_ns + 1
                self.stats.missed_ticks += int(k_next - self._k)
                self._k = int(k_next)
            self.clock.sleep_until_ns(self.deadline_ns(self._k))
        deadline = self.deadline_ns(self._k)
        woke = self.clock.now_ns()
        self.stats.ticks += 1
        if len(self.stats.period_error_ns) < self._keep:
            self.stats.period_error_ns.append(woke - deadline)
        return deadline


class Watchdog:
    """Holds the robot when the newest fresh action is ``timeout_periods`` periods old or older.

    ``feed(t_ns)`` with the capture time of each fresh action; ``expired(now)`` is True once
    ``now - last_feed >= timeout_periods * period``. If the source delivers its last action at
    tick k-1, the robot holds at tick k-1+N: at most N periods after the first missing action.
    A run feeds it at its start, so a source that never produces anything trips it too.
    """

    def __init__(self, period_ns: int, timeout_periods: float):
        if not timeout_periods > 0:
            raise ConfigError.expected("watchdog timeout_periods", "> 0", timeout_periods)
        self.timeout_ns = int(round(period_ns * timeout_periods))
        self._last_ns: int | None = None
        self.trips = 0
        self._tripped = False

    def feed(self, t_ns: int) -> None:
        if self._last_ns is None or t_ns > self._last_ns:
            self._last_ns = t_ns
        self._tripped = False

    def is_fresh(self, t_capture_ns: int, now_ns: int) -> bool:
        """Whether an action captured at ``t_capture_ns`` is young enough to execute."""
        return now_ns - t_capture_ns < self.timeout_ns

    def expired(self, now_ns: int) -> bool:
        if self._last_ns is None:
            self._last_ns = now_ns
        late = now_ns - self._last_ns >= self.timeout_ns
        if late and not self._tripped:
            self.trips += 1
            self._tripped = True
        return late
