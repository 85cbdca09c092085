"""Streaming sensors (cameras, tactile sensors): a capture thread, a stamped ring buffer, and the
four ways to read it.

- ``read(timeout_s)``: the next new sample (captured directly when no capture thread runs).
- ``async_read(timeout_s)``: a sample newer than the last one handed out, from the capture
  thread (started on first use); raises ``DeviceTimeoutError`` when none arrives in time.
- ``read_latest(max_age_s)``: the newest sample without waiting; raises ``StaleFrameError`` when
  it is older than ``max_age_s``.
- ``read_aligned(t_ns, max_age_s)``: the sample captured closest before ``t_ns`` (the control
  runtime aligns every stream to its tick this way); raises ``StaleFrameError`` when it is
  further than ``max_age_s`` from ``t_ns``.

Drivers implement ``_capture()`` (block until the device delivers a sample, return the values
and the capture time on the project clock) or push samples from an SDK callback with
``_publish``.
"""

from __future__ import annotations

import collections
import threading
from abc import abstractmethod
from typing import Mapping

import numpy as np

from robot_learning.core.clock import NS_PER_S, Clock
from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.core.stamped import Stamped
from robot_learning.errors import DeviceFaultError, DeviceTimeoutError, StaleFrameError
from robot_learning.hardware.device import Device

Sample = Stamped[Mapping[str, np.ndarray]]


class StreamingSensor(Device):
    """Base of Camera and TactileSensor."""

    #: capture failures in a row after which reads raise DeviceFaultError
    max_consecutive_failures = 5

    def __init__(self, name: str, clock: Clock | None = None, buffer_len: int = 8):
        super().__init__(name, clock)
        self._buf: collections.deque[Sample] = collections.deque(maxlen=buffer_len)
        self._cv = threading.Condition()
        self._seq = 0
        self._last_handed_seq = 0
        self._thread: threading.Thread | None = None
        self._stop_evt = threading.Event()
        self._failures = 0
        self._last_error: BaseException | None = None
        self.captured = 0

    @property
    @abstractmethod
    def features(self) -> FeatureSet:
        """What each sample holds, readable while disconnected."""

    @abstractmethod
    def _capture(self) -> tuple[Mapping[str, np.ndarray], int]:
        """Block until the device delivers a sample; return (values, t_capture_ns)."""

    # --- lifecycle -------------------------------------------------------------------------
    def disconnect(self) -> None:
        self._stop_thread()
        super().disconnect()

    def start_streaming(self) -> None:
        """Start the background capture thread (idempotent)."""
        self._require_connected("start_streaming")
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_evt.clear()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.name}", daemon=True)
        self._thread.start()

    @property
    def is_streaming(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _stop_thread(self) -> None:
        self._stop_evt.set()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=2.0)
        self._thread = None

    def _run(self) -> None:
        while not self._stop_evt.is_set():
            try:
                values, t_cap = self._capture()
            except Exception as e:  # recorded, surfaced to readers after repeated failures
                with self._cv:
                    self._failures += 1
                    self._last_error = e
                    self._cv.notify_all()
                if self._stop_evt.wait(0.01):
                    return
                continue
            self._publish(values, t_cap)

    def _publish(self, values: Mapping[str, np.ndarray], t_capture_ns: int) -> Sample:
        """Store a sample. Its arrays become read-only: consumers (observations, the recorder)
        then share them without copying, and nobody can alter a published sample."""
        for v in values.values():
            if isinstance(v, np.ndarray):
                v.setflags(write=False)
        t_recv = max(self.clock.now_ns(), t_capture_ns)
        with self._cv:
            self._seq += 1
            sample = Stamped(values, t_capture_ns=t_capture_ns, t_receive_ns=t_recv, seq=self._seq)
            self._buf.append(sample)
            self.captured += 1
            self._failures = 0
            self._cv.notify_all()
        return sample

    def _check_fault(self) -> None:
        if self._failures >= self.max_consecutive_failures:
            raise DeviceFaultError(self.name, f"{self._failures} capture failures in a row; "
                                              f"last: {self._last_error!r}")

    # --- reads -----------------------------------------------------------------------------
    def read(self, timeout_s: float = 1.0) -> Sample:
        self._require_connected("read")
        if self.is_streaming:
            return self.async_read(timeout_s)
        values, t_cap = self._capture()
        sample = self._publish(values, t_cap)
        self._last_handed_seq = sample.seq
        return sample

    def async_read(self, timeout_s: float = 0.2) -> Sample:
        self._require_connected("async_read")
        self.start_streaming()
        with self._cv:
            ok = self._cv.wait_for(
                lambda: (self._buf and self._buf[-1].seq > self._last_handed_seq)
                or self._failures >= self.max_consecutive_failures,
                timeout=timeout_s)
            self._check_fault()
            if not ok:
                raise DeviceTimeoutError(self.name, timeout_s)
            sample = self._buf[-1]
            self._last_handed_seq = sample.seq
            return sample

    def read_latest(self, max_age_s: float) -> Sample:
        self._require_connected("read_latest")
        now = self.clock.now_ns()
        with self._cv:
            self._check_fault()
            if not self._buf:
                raise StaleFrameError(self.name, float("inf"), max_age_s)
            sample = self._buf[-1]
        age = sample.age_ns(now) / NS_PER_S
        if age > max_age_s:
            raise StaleFrameError(self.name, age, max_age_s)
        return sample

    def samples_after(self, seq: int) -> list[Sample]:
        """Buffered samples newer than ``seq`` (oldest first): every frame of a stream, for
        consumers that poll less often than the sensor samples (up to the buffer length)."""
        with self._cv:
            return [s for s in self._buf if s.seq > seq]

    def read_aligned(self, t_ns: int, max_age_s: float) -> Sample:
        self._require_connected("read_aligned")
        with self._cv:
            self._check_fault()
            if not self._buf:
                raise StaleFrameError(self.name, float("inf"), max_age_s)
            before = [s for s in self._buf if s.t_capture_ns <= t_ns]
            sample = before[-1] if before else self._buf[0]
        dist = abs(t_ns - sample.t_capture_ns) / NS_PER_S
        if dist > max_age_s:
            raise StaleFrameError(self.name, dist, max_age_s)
        return sample


class Camera(StreamingSensor):
    """A camera: samples hold its rgb (and, for depth cameras, depth) features."""

    @property
    def rgb_features(self) -> FeatureSet:
        return self.features.of_kind(FeatureKind.RGB)

    @property
    def depth_features(self) -> FeatureSet:
        return self.features.of_kind(FeatureKind.DEPTH)


class TactileSensor(StreamingSensor):
    """A tactile sensor: samples hold taxel arrays and/or tactile images (kind ``tactile``)."""
