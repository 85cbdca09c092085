"""The retry policy every servo bus shares, its counters, and the SDK port tweaks it relies on.

``run_with_retries`` is the one place where a bus transaction is tried again: the Feetech and the
Dynamixel buses (and so every robot built on them) use it, with the same counting and the same
one-line error after the last try (see ``servo_bus`` for the defaults and timings).
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, TypeVar

from robot_learning.core.clock import NS_PER_S, Clock
from robot_learning.errors import DeviceFaultError

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 0.012  # per try, plus the byte time of the reply


@dataclass
class BusStats:
    """Counters of one bus. ``errors``: failed tries of any kind (``errors_by_kind``);
    ``retries``: tries after a failed one; ``failures``: transactions that failed after all
    their tries. Durations (s) are of whole transactions, retries included."""

    transactions: int = 0
    retries: int = 0
    errors: int = 0
    failures: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_duration_s: float = 0.0
    max_duration_s: float = 0.0
    total_duration_s: float = 0.0

    def record_error(self, kind: str, text: str) -> None:
        self.errors += 1
        self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1
        self.last_error = text

    @property
    def mean_duration_s(self) -> float:
        return self.total_duration_s / self.transactions if self.transactions else 0.0


class TryFailed(Exception):
    """One failed try: ``kind`` (stats key), SDK ``text``, the ``ids`` that did not answer,
    ``unread`` (sync read: not read because an earlier motor failed), whether a retry can help."""

    def __init__(self, kind: str, text: str, ids: Sequence[int] = (), retry: bool = True,
                 unread: Sequence[int] = ()):
        super().__init__(text)
        self.kind, self.text, self.ids, self.retry, self.unread = kind, text, tuple(ids), retry, tuple(unread)


def run_with_retries(attempt: Callable[[], T], *, stats: BusStats, retries: int, device: str,
                     describe: Callable[[TryFailed, int], str], between: Callable[[], None] | None = None,
                     clock: Clock | None = None) -> T:
    """THE retry policy: ``attempt`` up to ``1 + retries`` times, each ``TryFailed`` counted in
    ``stats``, ``between`` run before every retry; a failure with ``retry=False`` ends at once.
    Raises ``DeviceFaultError(device, describe(last_failure, tries))`` (its ``failure``
    attribute: that ``TryFailed``) when no try succeeded."""
    now = clock.now_ns if clock is not None else time.monotonic_ns
    t0, tries = now(), 0
    stats.transactions += 1
    try:
        while True:
            tries += 1
            try:
                return attempt()
            except TryFailed as failure:
                stats.record_error(failure.kind, failure.text)
                if not failure.retry or tries > retries:
                    stats.failures += 1
                    stats.last_error = describe(failure, tries)
                    error = DeviceFaultError(device, stats.last_error)
                    error.failure = failure
                    raise error from None
                stats.retries += 1
                if between is not None:
                    between()
    finally:
        dt = (now() - t0) / NS_PER_S
        stats.last_duration_s, stats.total_duration_s = dt, stats.total_duration_s + dt
        stats.max_duration_s = max(stats.max_duration_s, dt)


class LowLatencyPort:
    """Mixed in front of an SDK ``PortHandler``: monotonic time (the SDKs use wall time), a
    status timeout of ``rx_timeout_ms`` plus the byte time (not 2 x 16 ms + 2 ms), and a
    ``clearPort`` that drops stale input (Feetech's SDK flushes the output instead).

    **A loaded host never turns into a timeout.** The SDKs poll the port in a busy loop and call
    it a timeout the first time they find the deadline passed, without looking again: a reply
    that arrived while the host was busy elsewhere (the thread preempted, the GIL held by another
    thread) was thrown away, four tries in a row on a busy machine. Here a try waits for the
    reply in the kernel (``select``: no busy loop, the CPU goes to whoever needs it, the thread
    wakes as the bytes land), and the deadline only ends a try when, looked at after the deadline,
    no byte is waiting: the timeout counts time in which the reply could have arrived and did
    not. Bytes found late are still taken (at most ``LATE_BYTES_MAX`` of them per try, so a
    babbling line cannot hold the bus)."""

    rx_timeout_ms: float = DEFAULT_TIMEOUT_S * 1e3
    #: bytes a try still reads after its deadline (the replies of a 6-motor sync read are ~50)
    LATE_BYTES_MAX = 1024
    _deadline_ns: int = 0
    _late_bytes: int = 0

    def getCurrentTime(self) -> float:  # noqa: N802 - SDK name; ms
        return time.monotonic_ns() / 1e6

    def setPacketTimeout(self, packet_length: int) -> None:  # noqa: N802
        self.setPacketTimeoutMillis(self.tx_time_per_byte * packet_length + self.rx_timeout_ms)

    def setPacketTimeoutMillis(self, msec: float) -> None:  # noqa: N802
        self.packet_start_time = self.getCurrentTime()
        self.packet_timeout = msec
        self._deadline_ns = time.monotonic_ns() + int(msec * 1e6)
        self._late_bytes = 0

    def isPacketTimeout(self) -> bool:  # noqa: N802
        """The deadline has passed and, looked at now, no byte is waiting."""
        if time.monotonic_ns() <= self._deadline_ns:
            return False
        if self._late_bytes < self.LATE_BYTES_MAX and self.ser.in_waiting > 0:
            return False  # the reply arrived while this thread was not looking: take it
        self.packet_timeout = 0
        return True

    def readPort(self, length: int) -> bytes:  # noqa: N802
        """What is waiting (up to ``length`` bytes); when nothing is, wait in the kernel until a
        byte arrives or the try's deadline passes (``isPacketTimeout`` then decides)."""
        data = self.ser.read(length)
        if not data and length > 0:
            left_ns = self._deadline_ns - time.monotonic_ns()
            if left_ns > 0:
                select.select([self.ser.fileno()], [], [], left_ns / 1e9)
                data = self.ser.read(length)
        if data and time.monotonic_ns() > self._deadline_ns:
            self._late_bytes += len(data)
        return data

    def clearPort(self) -> None:  # noqa: N802
        self.ser.reset_input_buffer()
