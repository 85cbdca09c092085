"""One clock for the whole stack: monotonic integer nanoseconds.

Every timestamp in the project (capture, receive, control ticks, dataset rows) comes from a
``Clock``. Production code uses ``MonotonicClock`` (``time.monotonic_ns``); tests inject a
``FakeClock`` whose time only moves when the test (or a sleep) moves it, so timing logic is
deterministic.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol, runtime_checkable

NS_PER_S = 1_000_000_000


def s_to_ns(seconds: float) -> int:
    return int(round(seconds * NS_PER_S))


def ns_to_s(nanoseconds: int) -> float:
    return nanoseconds / NS_PER_S


@runtime_checkable
class Clock(Protocol):
    """A monotonic nanosecond clock that can also sleep until an absolute time."""

    def now_ns(self) -> int:
        """Current time in integer nanoseconds (monotonic; arbitrary epoch)."""
        ...

    def sleep_until_ns(self, deadline_ns: int) -> None:
        """Return no earlier than ``deadline_ns`` (immediately if it has passed)."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic_ns`` and a precise absolute-deadline sleep.

    ``sleep_until_ns`` sleeps in the kernel until ``spin_s`` before the deadline, then spins on
    the clock for the rest: kernel wake-ups land 50-100 us late, the spin removes that error
    at the cost of a short busy wait. ``spin_s=0`` disables spinning.
    """

    def __init__(self, spin_s: float = 2e-4):
        if spin_s < 0:
            raise ValueError(f"spin_s: expected >= 0, found {spin_s}")
        self._spin_ns = s_to_ns(spin_s)

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def sleep_until_ns(self, deadline_ns: int) -> None:
        remaining = deadline_ns - time.monotonic_ns()
        if remaining > self._spin_ns:
            time.sleep((remaining - self._spin_ns) / NS_PER_S)
        while time.monotonic_ns() < deadline_ns:
            pass


class FakeClock:
    """A clock for tests: time moves only through ``advance``/``set`` or a sleep.

    ``sleep_until_ns`` jumps straight to the deadline. Thread-safe; threads blocked in
    ``wait_until_ns`` wake when another thread advances time past their deadline.
    """

    def __init__(self, start_ns: int = 0):
        self._t = int(start_ns)
        self._cv = threading.Condition()

    def now_ns(self) -> int:
        with self._cv:
            return self._t

    def advance(self, delta_ns: int) -> int:
        if delta_ns < 0:
            raise ValueError(f"FakeClock.advance: expected delta >= 0, found {delta_ns}")
        with self._cv:
            self._t += int(delta_ns)
            self._cv.notify_all()
            return self._t

    def advance_s(self, delta_s: float) -> int:
        return self.advance(s_to_ns(delta_s))

    def set(self, t_ns: int) -> None:
        with self._cv:
            if t_ns < self._t:
                raise ValueError(f"FakeClock.set: time is monotonic, expected >= {self._t}, found {t_ns}")
            self._t = int(t_ns)
            self._cv.notify_all()

    def sleep_until_ns(self, deadline_ns: int) -> None:
        with self._cv:
            if deadline_ns > self._t:
                self._t = int(deadline_ns)
                self._cv.notify_all()

    def wait_until_ns(self, deadline_ns: int, real_timeout_s: float = 5.0) -> bool:
        """Block (in real time) until another thread moves fake time past ``deadline_ns``."""
        with self._cv:
            return self._cv.wait_for(lambda: self._t >= deadline_ns, timeout=real_timeout_s)


_default_clock: Clock | None = None
_default_lock = threading.Lock()


def default_clock() -> Clock:
    """The process-wide real clock (created on first use, not at import)."""
    global _default_clock
    with _default_lock:
        if _default_clock is None:
            _default_clock = MonotonicClock()
        return _default_clock
