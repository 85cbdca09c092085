"""UVC cameras and video files through OpenCV, behind the ``Camera`` contract.

One RGB feature ``(H, W, 3) uint8`` named ``config.name``. The capture thread of
``StreamingSensor`` calls ``_capture``: ``grab()`` (the frame leaves the driver queue), the time
is taken, then ``retrieve()`` decodes it.

Capture timestamps (``timestamp_source``):

- ``"v4l2_buffer"``: live V4L2 devices. OpenCV's V4L2 backend returns the kernel buffer timestamp
  of the grabbed frame as ``CAP_PROP_POS_MSEC`` (``1000 * tv_sec + tv_usec / 1000``, 0 before the
  first frame). uvcvideo and most drivers stamp buffers on ``CLOCK_MONOTONIC`` (the project
  clock, ``time.monotonic_ns``) at the start of the frame (uvcvideo corrects it with the camera's
  PTS when the camera sends one). Each value is checked to lie in the last second before the grab
  returned; one that does not falls back to the host time below (counted in
  ``timestamp_fallbacks``).
- ``"host_after_grab"``: the host time right after ``grab()`` returned, minus one frame period
  (the frame was exposed about one period before it was delivered); used when the driver's
  timestamps are not on CLOCK_MONOTONIC, for non-V4L2 backends, or with a non-monotonic clock.
- ``"file_pts"``: video files. The time the first frame was read plus the container's
  presentation time of each frame (FFmpeg backend ``CAP_PROP_POS_MSEC``), plus the file length
  per completed loop. With ``realtime=True`` each frame is handed out at its time, so a file
  replays at its own rate; with ``realtime=False`` as fast as it decodes (times then run ahead of
  the clock).

Raw YUYV at 1080p needs ~1 Gbit/s at 30 fps, more than USB 2 carries: drivers then time out or
drop to a lower rate. ``fourcc`` therefore defaults to MJPG for live devices at >= 720p.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from robot_learning.core.clock import NS_PER_S, Clock, MonotonicClock
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.errors import ConfigError, DeviceError, DeviceFaultError, DeviceTimeoutError
from robot_learning.hardware.camera_discovery import fourcc_str, find_opencv_cameras, video_nodes
from robot_learning.hardware.sensor import Camera, Sample

__all__ = ["EndOfStreamError", "OpenCVCamera", "OpenCVCameraConfig", "ReplayEnd", "find_opencv_cameras", "video_nodes"]

_BACKENDS = ("auto", "v4l2", "ffmpeg", "any")
_V4L2_WINDOW_NS = NS_PER_S  # buffer timestamps older than this (before the grab returned) are rejected


class EndOfStreamError(DeviceTimeoutError):
    """A recording (video file, RealSense bag) has no more frames and does not loop."""

    def __init__(self, device: str, source: object, frames: int, hint: str = "set loop=True to replay it"):
        DeviceError.__init__(self, device, f"end of recording {source} after {frames} frames"
                                           + (f" ({hint})" if hint else ""))
        self.timeout_s = 0.0


class ReplayEnd:
    """Mixin for StreamingSensors that replay a recording. Once its last frame is captured
    (``_end()``), async_read hands out the newest sample not yet handed out, then it and
    read_latest / read_aligned raise EndOfStreamError (samples_after still lists the buffer)."""

    _ended = False
    _end_hint = "set loop=True to replay it"

    def _end_error(self) -> EndOfStreamError:
        return EndOfStreamError(self.name, self._replay_source, self.captured, self._end_hint)

    def _end(self) -> EndOfStreamError:
        with self._cv:
            self._ended = True
            self._failures = max(self._failures, self.max_consecutive_failures)  # wakes waiting readers
            self._cv.notify_all()
        self._stop_evt.set()  # nothing more will come: a capture thread ends
        return self._end_error()

    @property
    def ended(self) -> bool:
        """True once a non-looping recording has delivered its last frame."""
        return self._ended

    def _check_fault(self) -> None:
        if self._ended:
            if self._buf and self._buf[-1].seq > self._last_handed_seq:
                return  # hand out what is left first
            raise self._end_error()
        super()._check_fault()

    def async_read(self, timeout_s: float = 0.2) -> Sample:
        if self._ended:
            with self._cv:
                self._check_fault()
                self._last_handed_seq = self._buf[-1].seq
                return self._buf[-1]
        try:
            return super().async_read(timeout_s)
        except DeviceTimeoutError:
            if self._ended:
                raise self._end_error() from None
            raise

    def read_latest(self, max_age_s: float) -> Sample:
        if self._ended:
            raise self._end_error()
        return super().read_latest(max_age_s)

    def read_aligned(self, t_ns: int, max_age_s: float) -> Sample:
        if self._ended:
            raise self._end_error()
        return super().read_aligned(t_ns, max_age_s)


def _cv2():
    import cv2

    return cv2


def _is_device(source: int | str) -> bool:
    return isinstance(source, int) or str(source).startswith("/dev/") or str(source).isdigit()


def _check(ok: bool, what: str, expected: str, found: object) -> None:
    if not ok:
        raise ConfigError.expected(what, expected, found)


@dataclass(frozen=True)
class OpenCVCameraConfig:
    """A UVC camera or a video file.

    source: a device index (``0`` is /dev/video0), a device path (``/dev/video2`` or the stable
        ``/dev/v4l/by-id/usb-...-video-index0``), or a video file path (replay).
    name: the feature name of the frames.
    width, height: pixels requested from the device (both or neither; None keeps the driver's
        mode). Verified after opening: a device or file that gives another size is a ConfigError
        (files are never resized).
    fps: frames per second requested (verified to within 1 %).
    fourcc: the pixel format requested, e.g. "MJPG", "YUYV" (None: MJPG for devices at >= 720p,
        else the driver's default).
    rotation_deg: clockwise rotation applied to every frame (90/270 swap width and height).
    color: channel order of the stored frames: "rgb" (the contract) or "bgr" (OpenCV's order).
    backend: "auto" (V4L2 for devices on Linux, FFmpeg for files), "v4l2", "ffmpeg" or "any".
    warmup_s: seconds of frames read and dropped after connecting a device (auto exposure).
    read_timeout_s: a grab taking longer than this is a DeviceTimeoutError.
    loop: files only: start again at the end (else EndOfStreamError).
    realtime: files only: hand out frames at the file's rate (else as fast as they decode).
    """

    source: int | str
    name: str = "camera"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    fourcc: str | None = None
    rotation_deg: int = 0
    color: str = "rgb"
    backend: str = "auto"
    warmup_s: float = 1.0
    read_timeout_s: float = 1.0
    loop: bool = False
    realtime: bool = True

    def __post_init__(self) -> None:
        s, n, fps = self.source, self.name, self.fps
        _check(not isinstance(s, bool) and ((isinstance(s, int) and s >= 0) or (isinstance(s, str) and s != "")),
               "camera source", "a device index >= 0, a /dev path or a video file path", repr(s))
        FeatureSpec(n, (1, 1, 3), "uint8", FeatureKind.RGB, "srgb")  # validates the name
        _check((self.width is None) == (self.height is None), f"{n} width/height", "both or neither",
               f"width={self.width}, height={self.height}")
        for what, v in (("width", self.width), ("height", self.height)):
            _check(v is None or (isinstance(v, int) and v > 0), f"{n} {what}", "a positive integer (pixels)", repr(v))
        _check(fps is None or fps > 0, f"{n} fps", "> 0 or None", fps)
        _check(self.fourcc is None or (len(self.fourcc) == 4 and self.fourcc.isprintable()), f"{n} fourcc",
               "4 characters such as 'MJPG' or 'YUYV'", repr(self.fourcc))
        _check(self.rotation_deg in (0, 90, 180, 270), f"{n} rotation_deg", "0, 90, 180 or 270", self.rotation_deg)
        _check(self.color in ("rgb", "bgr"), f"{n} color", "'rgb' or 'bgr'", repr(self.color))
        _check(self.backend in _BACKENDS, f"{n} backend", f"one of {_BACKENDS}", repr(self.backend))
        _check(self.warmup_s >= 0, f"{n} warmup_s", ">= 0", self.warmup_s)
        min_timeout = 2.0 / fps if fps else 0.0
        _check(self.read_timeout_s > min_timeout, f"{n} read_timeout_s", f"> {min_timeout:.3f} s (two frame periods)",
               self.read_timeout_s)

    @property
    def is_device(self) -> bool:
        return _is_device(self.source)

    def device_source(self) -> int | str:
        s = self.source
        return int(s) if isinstance(s, str) and s.isdigit() else s

    def effective_fourcc(self) -> str | None:
        if self.fourcc is not None or not self.is_device:
            return self.fourcc
        return "MJPG" if self.height is not None and (self.height >= 720 or self.width >= 1280) else None

    def api_preference(self) -> int:
        cv2 = _cv2()
        b = self.backend
        if b == "auto":
            b = ("v4l2" if sys.platform.startswith("linux") else "any") if self.is_device else "ffmpeg"
        return {"v4l2": cv2.CAP_V4L2, "ffmpeg": cv2.CAP_FFMPEG, "any": cv2.CAP_ANY}[b]


class OpenCVCamera(ReplayEnd, Camera):
    """A UVC camera (V4L2) or a video file replayed in real time; see the module docstring."""

    def __init__(self, config: OpenCVCameraConfig, clock: Clock | None = None, buffer_len: int = 8):
        super().__init__(config.name, clock, buffer_len)
        self.config = config
        self._cap = None
        self._size: tuple[int, int] | None = None  # (width, height) as delivered, before rotation
        self._mode: dict = {}
        self._period_ns = 0
        self._timestamp_source = "file_pts" if not config.is_device else "host_after_grab"
        self.timestamp_fallbacks = 0
        self._origin_ns: int | None = None  # files: project time of presentation time 0
        self._loop_base_ns = 0
        self._last_pts_ns = 0
        self._pass_frames = 0
        self._ended = False
        self._grab_done_ns = 0
        self._replay_source = config.source

    # --- description -----------------------------------------------------------------------
    @property
    def features(self) -> FeatureSet:
        c = self.config
        if self._size is not None:
            w, h = self._size
        elif c.width is not None:
            w, h = c.width, c.height
        elif not c.is_device:
            info = self._probe_file()
            info["cap"].release()
            self._size = w, h = info["size"]
        else:
            raise ConfigError.expected(f"{self.name} features while disconnected",
                                       "width and height in the config (or connect first)", "none set")
        if c.rotation_deg in (90, 270):
            w, h = h, w
        return FeatureSet([FeatureSpec(self.name, (h, w, 3), "uint8", FeatureKind.RGB, "srgb")])

    @property
    def timestamp_source(self) -> str:
        """Where capture times come from: "v4l2_buffer", "host_after_grab" or "file_pts"."""
        return self._timestamp_source

    @property
    def mode(self) -> dict:
        """The mode the device or file actually delivers: width, height, fps, fourcc, backend."""
        return dict(self._mode)

    # --- lifecycle -------------------------------------------------------------------------
    def _connect(self) -> None:
        self._ended = False
        self._origin_ns, self._loop_base_ns, self._last_pts_ns, self._pass_frames = None, 0, 0, 0
        self.timestamp_fallbacks = 0
        try:
            if self.config.is_device:
                self._open_device()
            else:
                self._open_file()
        except BaseException:
            self._release()
            raise

    def _disconnect(self) -> None:
        self._release()

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def _probe_file(self) -> dict:
        """Open the file: its capture (the caller releases it), size, fps and codec."""
        cv2 = _cv2()
        path = Path(str(self.config.source))
        if not path.is_file():
            raise ConfigError.expected(f"{self.name} source", "an existing video file, or a camera (index, /dev/videoN "
                                       f"or /dev/v4l/by-id path; present: {video_nodes() or 'none'})",
                                       f"{path} (no such file)")
        cap = cv2.VideoCapture(str(path), self.config.api_preference())
        if not cap.isOpened():
            cap.release()
            raise DeviceFaultError(self.name, f"OpenCV cannot open video file {path} (not a video it decodes)")
        size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        return {"cap": cap, "size": size, "fps": float(cap.get(cv2.CAP_PROP_FPS)),
                "fourcc": fourcc_str(cap.get(cv2.CAP_PROP_FOURCC))}

    def _open_file(self) -> None:
        cv2 = _cv2()
        info = self._probe_file()
        self._cap = info["cap"]
        c, (w, h), fps = self.config, info["size"], info["fps"]
        if w <= 0 or h <= 0:
            raise DeviceFaultError(self.name, f"video file {c.source} reports no frame size")
        if c.width is not None and (c.width, c.height) != (w, h):
            raise ConfigError(f"{self.name}: asked {c.width}x{c.height}, video file {c.source} is {w}x{h} "
                              "(files play at their own size: leave width/height unset or match them)")
        if c.fps is not None and fps > 0 and abs(fps - c.fps) > 0.01 * c.fps:
            raise ConfigError(f"{self.name}: asked {c.fps:g} fps, video file {c.source} is {fps:g} fps")
        self._size, self._period_ns = (w, h), (int(round(NS_PER_S / fps)) if fps > 0 else 0)
        self._mode = {"width": w, "height": h, "fps": fps, "fourcc": info["fourcc"],
                      "backend": self._cap.getBackendName(), "frames": int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))}
        self._timestamp_source = "file_pts"

    def _open_device(self) -> None:
        cv2 = _cv2()
        c, src = self.config, self.config.device_source()
        node = f"/dev/video{src}" if isinstance(src, int) else str(src)
        if sys.platform.startswith("linux") and not os.path.exists(node):
            present = video_nodes() or "no /dev/video* devices"
            raise DeviceFaultError(self.name, f"no camera at {node}; present: {present} (robot-learning find-cameras "
                                              "lists the working ones)")
        # OpenCV's V4L2 backend waits this many seconds in select() for a frame (default 10); it
        # reads the variable once per process, at the first frame.
        os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", str(max(1, math.ceil(c.read_timeout_s))))
        self._cap = cap = cv2.VideoCapture(src, c.api_preference())
        if not cap.isOpened():
            raise DeviceFaultError(self.name, f"cannot open camera {node} with OpenCV (busy in another program, or "
                                              f"not a capture node); present: {video_nodes() or 'none'}")
        fourcc = c.effective_fourcc()
        if fourcc is not None:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
        if c.width is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
        if c.fps is not None:
            cap.set(cv2.CAP_PROP_FPS, c.fps)
        got = {"width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
               "fps": float(cap.get(cv2.CAP_PROP_FPS)), "fourcc": fourcc_str(cap.get(cv2.CAP_PROP_FOURCC)),
               "backend": cap.getBackendName()}
        bad = ((c.width is not None and (got["width"], got["height"]) != (c.width, c.height))
               or (c.fps is not None and abs(got["fps"] - c.fps) > 0.01 * c.fps)
               or (fourcc is not None and got["fourcc"] != fourcc))
        if bad:
            asked = (f"{c.width or '?'}x{c.height or '?'} {fourcc or 'any format'} @ "
                     f"{c.fps if c.fps is not None else 'any'} fps")
            raise ConfigError(f"{self.name}: asked {asked}, camera {node} gives {got['width']}x{got['height']} "
                              f"{got['fourcc'] or '?'} @ {got['fps']:g} fps (list its modes with "
                              f"v4l2-ctl --list-formats-ext -d {node})")
        self._mode, self._size = got, (got["width"], got["height"])
        self._period_ns = int(round(NS_PER_S / got["fps"])) if got["fps"] > 0 else 0
        self._timestamp_source = "host_after_grab"
        use_buffer = cap.getBackendName() == "V4L2" and isinstance(self.clock, MonotonicClock)
        # the first frame also checks the size and, on V4L2, whether buffer times are monotonic
        self._capture()
        if use_buffer and self._buffer_time_ns(self._grab_done_ns) is not None:
            self._timestamp_source = "v4l2_buffer"
        deadline = self.clock.now_ns() + int(c.warmup_s * NS_PER_S)
        while self.clock.now_ns() < deadline:
            self._capture()
        self.timestamp_fallbacks = 0

    # --- capture ---------------------------------------------------------------------------
    def _buffer_time_ns(self, grab_done_ns: int) -> int | None:
        cap = self._cap
        t = int(round(cap.get(_cv2().CAP_PROP_POS_MSEC) * 1e6))
        return t if grab_done_ns - _V4L2_WINDOW_NS <= t <= grab_done_ns + 1_000_000 else None

    def _capture(self) -> tuple[Mapping[str, np.ndarray], int]:
        cap = self._cap
        if cap is None:
            raise DeviceFaultError(self.name, "capture after the camera was released")
        if not self.config.is_device:
            return self._capture_file(cap)
        timeout_s = self.config.read_timeout_s
        t0 = time.monotonic_ns()
        ok = cap.grab()
        t1 = self.clock.now_ns()
        self._grab_done_ns = t1
        if time.monotonic_ns() - t0 > timeout_s * NS_PER_S:
            raise DeviceTimeoutError(self.name, timeout_s, "a frame from the camera")
        if not ok:
            raise DeviceFaultError(self.name, f"no frame from {self.config.source} (unplugged, or the stream stopped)")
        t_cap = None
        if self._timestamp_source == "v4l2_buffer":
            t_cap = self._buffer_time_ns(t1)
            if t_cap is None:
                self.timestamp_fallbacks += 1
        if t_cap is None:
            t_cap = t1 - self._period_ns
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            raise DeviceFaultError(self.name, f"frame from {self.config.source} could not be decoded")
        return {self.name: self._convert(frame)}, t_cap

    def _capture_file(self, cap) -> tuple[Mapping[str, np.ndarray], int]:
        c = self.config
        if self._ended:
            raise self._end_error()
        ok = cap.grab()
        if not ok:
            if self._pass_frames == 0:
                raise DeviceFaultError(self.name, f"video file {c.source} has no decodable frames")
            if not c.loop:
                raise self._end()
            self._loop_base_ns += self._last_pts_ns + self._period_ns
            self._pass_frames = 0
            cap.release()
            self._cap = cap = _cv2().VideoCapture(str(c.source), c.api_preference())
            if not cap.grab():
                raise DeviceFaultError(self.name, f"video file {c.source} could not be reopened to loop")
        pts_ns = int(round(cap.get(_cv2().CAP_PROP_POS_MSEC) * 1e6))
        if self._origin_ns is None:
            self._origin_ns = self.clock.now_ns() - pts_ns
        self._last_pts_ns, self._pass_frames = pts_ns, self._pass_frames + 1
        t_cap = self._origin_ns + self._loop_base_ns + pts_ns
        if c.realtime:
            self.clock.sleep_until_ns(t_cap)
        ok, frame = cap.retrieve()
        if not ok or frame is None:
            raise DeviceFaultError(self.name, f"frame of video file {c.source} could not be decoded")
        return {self.name: self._convert(frame)}, t_cap

    def _convert(self, frame: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        w, h = self._size
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
            raise DeviceFaultError(self.name, f"frame is {frame.shape} {frame.dtype}, expected ({h}, {w}, 3) uint8")
        if self.config.color == "rgb":
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        rot = self.config.rotation_deg
        if rot:
            code = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}[rot]
            frame = cv2.rotate(frame, code)
        return np.ascontiguousarray(frame)
