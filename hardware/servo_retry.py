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


def _wait_readable(fd: int, timeout_s: float) -> None:
    """Sleep in the kernel until ``fd`` has input or ``timeout_s`` has passed."""
    select.select([fd], [], [], timeout_s)


@dataclass
class BusStats:
    """Counters of one bus. ``errors``: failed tries of any kind (``errors_by_kind``);
    ``retries``: tries after a failed one; ``failures``: transactions that failed after all
    their tries. Durations (s) are of whole transactions, retries included. ``try_timeout_s``:
    the status wait of a try now (the bus's ``timeout_s``, longer on a host that delivered
    replies after their try gave up: ``late_replies``, see ``LowLatencyPort``)."""

    transactions: int = 0
    retries: int = 0
    errors: int = 0
    failures: int = 0
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    last_error: str | None = None
    last_duration_s: float = 0.0
    max_duration_s: float = 0.0
    total_duration_s: float = 0.0
    try_timeout_s: float = DEFAULT_TIMEOUT_S
    late_replies: int = 0

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
    status timeout of ``try_timeout_ms`` plus the byte time (not 2 x 16 ms + 2 ms), and a
    ``clearPort`` that drops stale input (Feetech's SDK flushes the output instead).

    **A busy host is not a silent servo.** The SDKs poll the port in a busy loop and call it a
    timeout the first time they find the deadline passed, without looking again. On a loaded host
    that gave up on replies that were there (the thread had been preempted, or another thread held
    the GIL, while they arrived; the busy loop itself took the CPU from the rest of the process),
    and on replies that the kernel had not handed over yet: serial drivers and ptys pass received
    bytes on in a kernel worker that waits for a CPU like any thread, tens of ms with every core
    busy. Here:

    * a try waits for its reply in the kernel (``select``): no busy loop; the thread wakes as the
      bytes land;
    * the deadline ends a try only if, looked at after the deadline, no byte is waiting: the time
      the thread was not running does not count against the servo (bytes found late are taken,
      at most ``LATE_BYTES_MAX`` a try, so a babbling line cannot hold the bus);
    * the wait of a try comes from the measured reply latency of this port: ``FACTOR`` x the
      largest recent latency (a maximum that fades by ``DECAY`` a reply), never below
      ``rx_timeout_ms`` (the bus's ``timeout_s``) nor above ``MAX_TIMEOUT_MS``. A reply found
      after its try gave up (input waiting when it is dropped, within ``LATE_WATCH``
      transmissions of a timeout: ``late_replies``) counts as one at least as late as the wait.
      ``try_timeout_ms``: the wait now;
    * a transaction (``begin_transaction``) that has got no byte at all yet, not even another
      motor's reply, cannot tell a silent bus from a host that has not delivered yet: each of its
      tries that ends so doubles the next one's wait (at most ``MAX_TIMEOUT_MS``). Once a byte
      has come the line is alive, and a servo that stays silent while others answer is reported
      after ``1 + retries`` plain waits.

    On a quiet host replies take well under a millisecond and the wait stays ``rx_timeout_ms``: a
    servo that stops answering in a sync read with others is reported ~50 ms into the
    transaction (12 ms x 4 tries); a lone motor, or a bus where nothing answers, ~190 ms (12 + 24
    + 48 + 96 ms). On a loaded host both grow with what it delivers."""

    rx_timeout_ms: float = DEFAULT_TIMEOUT_S * 1e3
    #: bytes a try still reads after its deadline (the replies of a 6-motor sync read are ~50)
    LATE_BYTES_MAX = 1024
    #: the wait of a try: FACTOR x the largest recent reply latency, within [rx_timeout_ms, MAX_TIMEOUT_MS]
    FACTOR = 2.0
    MAX_TIMEOUT_MS = 250.0
    #: how the largest recent latency fades, a reply at a time (half-life ~700 replies)
    DECAY = 0.999
    #: transmissions after a timeout during which input found waiting counts as a late reply
    LATE_WATCH = 3
    late_replies: int = 0
    _deadline_ns: int = 0
    _late_bytes: int = 0
    _late_watch: int = 0
    _rx_start_ns: int = 0
    _rx_bytes: int = 0
    _txn_bytes: int = 0
    _quiet_tries: int = 0
    _recent_ms: float = 0.0
    _wait_ms: float = 0.0

    @property
    def try_timeout_ms(self) -> float:
        floor = self.rx_timeout_ms
        return min(max(floor, self.FACTOR * self._recent_ms), max(floor, self.MAX_TIMEOUT_MS))

    def _observe(self, latency_ms: float) -> None:
        self._recent_ms = max(latency_ms, self._recent_ms * self.DECAY)

    def begin_transaction(self) -> None:
        """A new transaction (its first try): the waits start from ``try_timeout_ms`` again."""
        self._quiet_tries = self._txn_bytes = 0

    def reply_complete(self) -> None:
        """The bus's try got all of its reply: its latency (from the end of the transmission)
        feeds the wait."""
        if self._rx_start_ns:
            self._observe((time.monotonic_ns() - self._rx_start_ns) / 1e6)
            self._rx_start_ns = 0

    def getCurrentTime(self) -> float:  # noqa: N802 - SDK name; ms
        return time.monotonic_ns() / 1e6

    def setPacketTimeout(self, packet_length: int) -> None:  # noqa: N802
        wait = self.try_timeout_ms
        if self._quiet_tries and not self._txn_bytes:
            wait = max(wait, min(wait * 2 ** self._quiet_tries, self.MAX_TIMEOUT_MS))
        self._wait_ms = wait
        self.setPacketTimeoutMillis(self.tx_time_per_byte * packet_length + wait)

    def setPacketTimeoutMillis(self, msec: float) -> None:  # noqa: N802
        now = time.monotonic_ns()
        self.packet_start_time = now / 1e6
        self.packet_timeout = msec
        self._rx_start_ns, self._deadline_ns, self._late_bytes, self._rx_bytes = now, now + int(msec * 1e6), 0, 0

    def isPacketTimeout(self) -> bool:  # noqa: N802
        """The deadline has passed and, looked at now, no byte is waiting."""
        if time.monotonic_ns() <= self._deadline_ns:
            return False
        if self._late_bytes < self.LATE_BYTES_MAX and self.ser.in_waiting > 0:
            return False  # the reply arrived while this thread was not looking: take it
        self.packet_timeout = 0
        self._late_watch = self.LATE_WATCH
        if self._rx_bytes == 0:
            self._quiet_tries += 1
        return True

    def readPort(self, length: int) -> bytes:  # noqa: N802
        """What is waiting (up to ``length`` bytes); when nothing is, wait in the kernel until a
        byte arrives or the try's deadline passes (``isPacketTimeout`` then decides)."""
        data = self.ser.read(length)
        if not data and length > 0:
            left_ns = self._deadline_ns - time.monotonic_ns()
            if left_ns > 0:
                _wait_readable(self.ser.fileno(), left_ns / 1e9)
                data = self.ser.read(length)
        if data:
            self._rx_bytes += len(data)
            self._txn_bytes += len(data)
            if time.monotonic_ns() > self._deadline_ns:
                self._late_bytes += len(data)
        return data

    def clearPort(self) -> None:  # noqa: N802
        """Drop the input (before every transmission, and between tries); input found waiting
        shortly after a timeout is a reply later than the wait (see the class)."""
        waiting = self.ser.in_waiting
        self.ser.reset_input_buffer()
        self._rx_start_ns = 0
        if self._late_watch > 0:
            self._late_watch -= 1
            if waiting:
                self.late_replies += 1
                self._observe(max(self._wait_ms, self.try_timeout_ms))  # later than the try waited
