"""Intel RealSense depth cameras (live, or a .bag/.db3 recording) through the real
``pyrealsense2`` pipeline, behind the ``Camera`` contract.

Each sample holds one frameset: ``{name}_rgb`` ``(H, W, 3) uint8`` and ``{name}_depth``
``(H, W) float32`` in metres (0 where the camera measured nothing; the raw z16 value times
``depth_scale_m``). With ``align_depth_to_color`` (the default) depth is reprojected onto the
colour image by ``rs.align``, so both share the colour size and ``intrinsics``. Colour and depth
always come from the same frameset; framesets missing one of them are skipped
(``incomplete_framesets``), and so are framesets whose colour and depth were captured more than
half a frame period (of the slower stream) apart (``mismatched_framesets``: a non-real-time replay's
syncer can pair frames from different moments when the reader falls behind).

Capture times: the colour frame's ``get_timestamp()`` (ms), converted to the project clock
(``time.monotonic_ns``) according to its ``timestamp_domain``:

- ``global_time`` (enabled on every sensor that has ``rs.option.global_time_enabled``):
  librealsense maps the camera's hardware clock onto the host wall clock (``time.time``, ms);
  the driver adds ``monotonic_ns - time_ns``, measured per frame between two monotonic reads
  (error < 1 us; follows NTP steps of the wall clock). Same for ``system_time``.
- ``hardware_clock`` (no global time): device ms plus the smallest (receive - device) offset
  seen so far, so the latency floor maps to zero.
- recordings (``playback_file``): the recorded times keep their spacing; the first frame is
  placed at the time it was received (``timestamp_offset_ns`` is then fixed), so a real-time
  replay looks like a live camera. ``realtime=False`` replays as fast as frames are read.
- a clock that is not the real monotonic clock (tests with FakeClock): the receive time on it.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from robot_learning.core.clock import NS_PER_S, Clock, MonotonicClock
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.errors import ConfigError, DeviceFaultError, DeviceTimeoutError
from robot_learning.hardware.camera_discovery import find_realsense_cameras
from robot_learning.hardware.opencv_camera import ReplayEnd
from robot_learning.hardware.sensor import Camera

__all__ = ["CameraIntrinsics", "RealSenseCamera", "RealSenseConfig", "find_realsense_cameras"]

_LIVE_DEFAULT = (640, 480, 30)  # colour and depth mode when none is configured (all D400 offer it)
_FIRST_FRAME_TIMEOUT_S = 5.0


def _rs():
    import pyrealsense2 as rs

    return rs


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of one stream (pixels), with librealsense's distortion model name."""

    width: int
    height: int
    fx: float
    fy: float
    ppx: float
    ppy: float
    model: str
    coeffs: tuple[float, ...]

    @classmethod
    def from_rs(cls, intr) -> CameraIntrinsics:
        return cls(int(intr.width), int(intr.height), float(intr.fx), float(intr.fy), float(intr.ppx),
                   float(intr.ppy), intr.model.name, tuple(float(c) for c in intr.coeffs))

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.ppx], [0.0, self.fy, self.ppy], [0.0, 0.0, 1.0]])

    def to_json(self) -> dict:
        return {**asdict(self), "coeffs": list(self.coeffs)}

    @classmethod
    def from_json(cls, d: Mapping) -> CameraIntrinsics:
        return cls(**{**d, "coeffs": tuple(float(c) for c in d["coeffs"])})


def _need(ok: bool, what: str, expected: str, found: object) -> None:
    if not ok:
        raise ConfigError.expected(what, expected, found)


@dataclass(frozen=True)
class RealSenseConfig:
    """A RealSense camera, or a recording of one.

    serial: the camera to open (``find_realsense_cameras()`` lists them); None: the only one.
        Ignored for playback.
    name: prefix of the features ``{name}_rgb`` and ``{name}_depth``.
    width, height, fps: colour mode (None: 640x480 @ 30 live, the recorded mode for playback).
    depth_width, depth_height, depth_fps: depth mode (None: as colour live, recorded in playback).
    enable_depth: False gives colour only.
    align_depth_to_color: reproject depth onto the colour image (rs.align).
    depth_units_m: the depth unit to set on the camera (e.g. 0.0001 for 0.1 mm steps, range
        6.5 m); None keeps the camera's (1 mm on D400). The unit in use is ``depth_scale_m``.
    playback_file: a .bag or .db3 recording to replay instead of a camera.
    realtime: playback at the recorded rate (False: as fast as read).
    warmup_s: live only: seconds of framesets dropped after starting (auto exposure).
    read_timeout_s: no frameset within this is a DeviceTimeoutError.
    """

    serial: str | None = None
    name: str = "realsense"
    width: int | None = None
    height: int | None = None
    fps: int | None = None
    depth_width: int | None = None
    depth_height: int | None = None
    depth_fps: int | None = None
    enable_depth: bool = True
    align_depth_to_color: bool = True
    depth_units_m: float | None = None
    playback_file: Path | None = None
    realtime: bool = True
    warmup_s: float = 1.0
    read_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        n = self.name
        FeatureSpec(f"{n}_rgb", (1, 1, 3), "uint8", FeatureKind.RGB, "srgb")  # validates the prefix
        for a, b in (("width", "height"), ("depth_width", "depth_height")):
            va, vb = getattr(self, a), getattr(self, b)
            _need((va is None) == (vb is None) and all(v is None or (isinstance(v, int) and v > 0) for v in (va, vb)),
                  f"{n} {a}/{b}", "both positive integers (pixels) or both None", f"{va}, {vb}")
        for what in ("fps", "depth_fps"):
            _need(getattr(self, what) is None or getattr(self, what) > 0, f"{n} {what}", "> 0 or None",
                  getattr(self, what))
        _need(self.depth_units_m is None or 0 < self.depth_units_m < 0.01, f"{n} depth_units_m", "0 < units < 0.01 m",
              self.depth_units_m)
        if self.playback_file is not None:
            object.__setattr__(self, "playback_file", Path(self.playback_file))
            _need(self.playback_file.suffix in (".bag", ".db3"), f"{n} playback_file", "a .bag or .db3 recording",
                  str(self.playback_file))
        _need(self.read_timeout_s > 0 and self.warmup_s >= 0, f"{n} read_timeout_s / warmup_s", "> 0 / >= 0",
              f"{self.read_timeout_s} / {self.warmup_s}")

    def _default_fps(self) -> int:
        return 0 if self.playback_file is not None else _LIVE_DEFAULT[2]  # 0: any (as recorded)

    def color_mode(self) -> tuple[int, int, int] | None:
        """(width, height, fps) asked of the colour stream; None: as recorded; fps 0: any."""
        fps = int(self.fps or self._default_fps())
        if self.width is not None:
            return self.width, self.height, fps
        return None if self.playback_file is not None else (*_LIVE_DEFAULT[:2], fps)

    def depth_mode(self) -> tuple[int, int, int] | None:
        fps = int(self.depth_fps or self.fps or self._default_fps())
        if self.depth_width is not None:
            return self.depth_width, self.depth_height, fps
        c = self.color_mode()
        return None if self.playback_file is not None else (c[0], c[1], fps)


def _fmt(mode: tuple[int, int, int] | None) -> str:
    return "as recorded" if mode is None else f"{mode[0]}x{mode[1]} @ {mode[2] or 'any'} fps"


def _wall_to_monotonic_ns() -> int:
    """monotonic_ns - time_ns now, from one wall-clock read between two monotonic reads."""
    m0 = time.monotonic_ns()
    w = time.time_ns()
    m1 = time.monotonic_ns()
    return (m0 + m1) // 2 - w


class RealSenseCamera(ReplayEnd, Camera):
    """See the module docstring; several cameras run side by side, one per serial.

    Set on connect (and kept after disconnect, for dataset metadata):
    intrinsics: CameraIntrinsics of the colour stream, which aligned depth shares.
    depth_intrinsics: of the raw depth stream (before alignment).
    depth_scale_m: metres per raw z16 unit (0.001 on D400 by default).
    info: name, serial, firmware, usb type (as recorded, for playback).
    timestamp_domain: librealsense's domain of the latest frame ("global_time", "hardware_clock",
        "system_time"); timestamp_offset_ns: the last conversion, project ns = device ms * 1e6 + it.
    """

    def __init__(self, config: RealSenseConfig, clock: Clock | None = None, buffer_len: int = 8):
        super().__init__(config.name, clock, buffer_len)
        self.config = config
        self._pipe = self._align = self._playback = None
        self._sizes: dict[str, tuple[int, int]] = {}
        self.intrinsics: CameraIntrinsics | None = None
        self.depth_intrinsics: CameraIntrinsics | None = None
        self.depth_scale_m: float | None = None
        self.timestamp_offset_ns: int | None = None
        self.timestamp_domain: str | None = None
        self.info: dict = {}
        self.incomplete_framesets = self.mismatched_framesets = 0
        self._pair_tolerance_ms = float("inf")
        self._replay_source = config.playback_file
        self._end_hint = ""
        self._warm_until_ns = 0

    # --- description -----------------------------------------------------------------------
    @property
    def features(self) -> FeatureSet:
        c, n = self.config, self.config.name
        sizes = self._sizes = self._sizes or self._configured_sizes()
        specs = [FeatureSpec(f"{n}_rgb", (sizes["color"][1], sizes["color"][0], 3), "uint8", FeatureKind.RGB, "srgb")]
        if c.enable_depth:
            w, h = sizes["color"] if c.align_depth_to_color else sizes["depth"]
            specs.append(FeatureSpec(f"{n}_depth", (h, w), "float32", FeatureKind.DEPTH, "m"))
        return FeatureSet(specs)

    def _configured_sizes(self) -> dict[str, tuple[int, int]]:
        c = self.config
        cm, dm = c.color_mode(), c.depth_mode()
        if cm is not None and (dm is not None or not c.enable_depth):
            return {"color": cm[:2], "depth": dm[:2] if dm else cm[:2]}
        rs = _rs()  # playback without a configured mode: read it from the recording
        dev = rs.context().load_device(str(self._checked_file()))
        names = {rs.stream.color: "color", rs.stream.depth: "depth"}
        recorded = {names.get(p.stream_type(), p.stream_name()): (p.as_video_stream_profile().width(),
                                                                   p.as_video_stream_profile().height())
                    for s in dev.query_sensors() for p in s.get_stream_profiles()}
        sizes = {"color": cm[:2] if cm else recorded.get("color"), "depth": dm[:2] if dm else recorded.get("depth")}
        if sizes["color"] is None or (c.enable_depth and sizes["depth"] is None):
            raise DeviceFaultError(self.name, f"recording {c.playback_file} has streams {sorted(recorded)}, "
                                              "expected color" + (" and depth" if c.enable_depth else ""))
        return sizes

    @property
    def metadata(self) -> dict:
        """What a dataset stores about this camera (JSON-ready)."""
        c = self.config
        return {"device": dict(self.info), "depth_scale_m": self.depth_scale_m, "aligned": c.align_depth_to_color,
                "intrinsics": self.intrinsics.to_json() if self.intrinsics else None,
                "depth_intrinsics": self.depth_intrinsics.to_json() if self.depth_intrinsics else None,
                "timestamp_domain": self.timestamp_domain,
                "playback_file": None if c.playback_file is None else str(c.playback_file)}

    # --- lifecycle -------------------------------------------------------------------------
    def _checked_file(self) -> Path:
        path = self.config.playback_file
        if not path.is_file():
            raise ConfigError.expected(f"{self.name} playback_file", "an existing .bag/.db3 recording",
                                       f"{path} (no such file)")
        return path

    def _connect(self) -> None:
        rs, c = _rs(), self.config
        self.timestamp_offset_ns = self.timestamp_domain = None
        self._ended, self.incomplete_framesets, self.mismatched_framesets = False, 0, 0
        pipe, cfg = rs.pipeline(), rs.config()
        if c.playback_file is not None:
            cfg.enable_device_from_file(str(self._checked_file()), repeat_playback=False)
        else:
            serials = [d["serial"] for d in find_realsense_cameras()]
            if not serials or (c.serial is not None and c.serial not in serials):
                want = f"serial {c.serial}" if c.serial else "a RealSense camera"
                raise DeviceFaultError(self.name, f"expected {want}, connected: {serials or 'none'}")
            if c.serial is not None:
                cfg.enable_device(c.serial)
        for stream, mode, fmt in ((rs.stream.color, c.color_mode(), rs.format.rgb8),
                                  (rs.stream.depth, c.depth_mode(), rs.format.z16))[:2 if c.enable_depth else 1]:
            if c.playback_file is None:
                cfg.enable_stream(stream, mode[0], mode[1], fmt, mode[2])
            else:
                cfg.enable_stream(stream)  # the recorded format; the mode is checked below
        try:
            resolved = cfg.resolve(rs.pipeline_wrapper(pipe))
        except RuntimeError as e:
            modes = f"colour {_fmt(c.color_mode())}" + (f", depth {_fmt(c.depth_mode())}" if c.enable_depth else "")
            raise ConfigError(f"{self.name}: asked {modes}: {c.playback_file or c.serial or 'the camera'} does not "
                              f"offer it ({e})") from None
        dev = resolved.get_device()
        if c.playback_file is not None:
            self._playback = dev.as_playback()
            self._playback.set_real_time(c.realtime)
        else:
            self._playback = None
            for sensor in dev.query_sensors():
                if sensor.supports(rs.option.global_time_enabled):
                    sensor.set_option(rs.option.global_time_enabled, 1.0)
                if c.depth_units_m is not None and sensor.supports(rs.option.depth_units):
                    sensor.set_option(rs.option.depth_units, c.depth_units_m)
        self._describe(rs, dev, resolved)
        self._align = rs.align(rs.stream.color) if c.enable_depth and c.align_depth_to_color else None
        live = c.playback_file is None
        self._warm_until_ns = self.clock.now_ns() + int(c.warmup_s * NS_PER_S) if live else 0
        with self._cv:
            self._failures, self._last_error = 0, None
        if self._push and not live:
            self._playback.set_status_changed_callback(self._on_status)
        try:
            pipe.start(*((cfg, self._on_frameset) if self._push else (cfg,)))
        except RuntimeError as e:
            what = c.playback_file or c.serial or "the camera"
            raise DeviceFaultError(self.name, f"cannot stream from {what} (used by another program?): {e}") from None
        self._pipe = pipe
        if live:  # the first frameset after the warm-up proves the camera streams
            timeout_s = c.warmup_s + _FIRST_FRAME_TIMEOUT_S
            with self._cv:
                ok = self._cv.wait_for(lambda: self._buf or self._failures >= self.max_consecutive_failures,
                                       timeout=timeout_s)
            if not ok or not self._buf:
                self._disconnect()
                if not ok:
                    raise DeviceTimeoutError(self.name, timeout_s, "a first frameset")
                self._check_fault()

    def _describe(self, rs, dev, profile) -> None:
        c = self.config
        self.info = {k: dev.get_info(v) if dev.supports(v) else None for k, v in (
            ("name", rs.camera_info.name), ("serial", rs.camera_info.serial_number),
            ("firmware", rs.camera_info.firmware_version), ("usb_type", rs.camera_info.usb_type_descriptor))}
        got = {}
        for key, stream in (("color", rs.stream.color), ("depth", rs.stream.depth))[:2 if c.enable_depth else 1]:
            v = profile.get_stream(stream).as_video_stream_profile()
            got[key] = (v.width(), v.height(), v.fps())
            if key == "color":
                self.intrinsics = CameraIntrinsics.from_rs(v.get_intrinsics())
            else:
                self.depth_intrinsics = CameraIntrinsics.from_rs(v.get_intrinsics())
        for key, asked in (("color", c.color_mode()), ("depth", c.depth_mode() if c.enable_depth else None)):
            if asked is not None and (asked[:2] != got[key][:2] or asked[2] not in (0, got[key][2])):
                raise ConfigError(f"{self.name}: asked {key} {_fmt(asked)}, got {_fmt(got[key])}")
        self._sizes = {k: v[:2] for k, v in got.items()}
        self._pair_tolerance_ms = 500.0 / max(1, min(v[2] for v in got.values()))  # half a frame
        self._sizes.setdefault("depth", self._sizes["color"])
        if c.enable_depth:
            try:
                self.depth_scale_m = float(dev.first_depth_sensor().get_depth_scale())
            except RuntimeError:
                self.depth_scale_m = None  # taken from the first depth frame

    def _disconnect(self) -> None:
        pipe, self._pipe = self._pipe, None
        self._playback = self._align = None
        if pipe is not None:
            with contextlib.suppress(RuntimeError):  # already stopped by the end of a recording
                pipe.stop()

    # --- capture ---------------------------------------------------------------------------
    @property
    def _push(self) -> bool:
        """Live cameras and real-time replays push every frameset from the pipeline's callback
        (its polling queue keeps one frameset, so a late reader would lose frames); a replay with
        realtime=False is read by polling, which paces it: read() then gets every frame in order."""
        return self.config.playback_file is None or self.config.realtime

    def start_streaming(self) -> None:
        if self._push:
            self._require_connected("start_streaming")  # the pipeline streams while connected
        else:
            super().start_streaming()

    @property
    def is_streaming(self) -> bool:
        return self._pipe is not None if self._push else super().is_streaming

    def _on_frameset(self, frame) -> None:
        try:
            t_recv = self.clock.now_ns()
            if t_recv < self._warm_until_ns:
                return
            sample = self._process(frame.as_frameset(), t_recv)
            if sample is not None:
                self._publish(*sample)
        except Exception as e:  # surfaced to readers after repeated failures
            with self._cv:
                self._failures += 1
                self._last_error = e
                self._cv.notify_all()

    def _on_status(self, status) -> None:
        if status == _rs().playback_status.stopped and self._pipe is not None:
            self._end()

    def _capture(self) -> tuple[Mapping[str, np.ndarray], int]:
        """Polling read (replays with realtime=False): the next complete frameset."""
        pipe, timeout_s = self._pipe, self.config.read_timeout_s
        if pipe is None:
            raise DeviceFaultError(self.name, "capture after the pipeline was stopped")
        if self._ended:
            raise self._end_error()
        deadline = time.monotonic() + timeout_s
        while True:
            ok, fs = pipe.try_wait_for_frames(50)
            if ok:
                sample = self._process(fs, self.clock.now_ns())
                if sample is not None:
                    return sample
            elif self._playback is not None and self._playback.current_status() == _rs().playback_status.stopped:
                raise self._end()
            elif time.monotonic() > deadline:
                raise DeviceTimeoutError(self.name, timeout_s, "a frameset")

    def async_read(self, timeout_s: float = 0.2):
        try:
            return super().async_read(timeout_s)
        except DeviceTimeoutError as e:
            serial = self.info.get("serial")
            if self.config.playback_file is None and serial not in [d["serial"] for d in find_realsense_cameras()]:
                raise DeviceFaultError(self.name, f"camera {serial} is gone (unplugged?): no frameset in "
                                                  f"{timeout_s * 1e3:.0f} ms, librealsense no longer lists it") from e
            raise

    def _process(self, fs, t_recv: int) -> tuple[Mapping[str, np.ndarray], int] | None:
        """One frameset -> (values, t_capture_ns), or None when colour or depth is missing."""
        c = self.config
        if self._align is not None:
            fs = self._align.process(fs)
        color = fs.get_color_frame()
        depth = fs.get_depth_frame() if c.enable_depth else None
        if not color or (c.enable_depth and not depth):
            self.incomplete_framesets += 1
            return None
        if depth and abs(color.get_timestamp() - depth.get_timestamp()) > self._pair_tolerance_ms:
            self.mismatched_framesets += 1
            return None
        out = {f"{self.name}_rgb": self._rgb(color)}
        if depth:
            if self.depth_scale_m is None:
                self.depth_scale_m = float(depth.get_units())
            raw = np.asanyarray(depth.get_data())
            out[f"{self.name}_depth"] = raw.astype(np.float32) * np.float32(self.depth_scale_m)
        return out, self._to_project_ns(color.get_timestamp(), color.get_frame_timestamp_domain().name, t_recv)

    def _rgb(self, frame) -> np.ndarray:
        rs = _rs()
        data = np.asanyarray(frame.get_data())
        fmt = frame.profile.format()
        if fmt == rs.format.rgb8:
            return data.copy()
        if fmt in (rs.format.bgr8, rs.format.bgra8):
            return np.ascontiguousarray(data[..., 2::-1])
        if fmt == rs.format.rgba8:
            return np.ascontiguousarray(data[..., :3])
        if fmt == rs.format.yuyv:
            import cv2

            return cv2.cvtColor(data.reshape(data.shape[0], -1, 2), cv2.COLOR_YUV2RGB_YUYV)
        raise DeviceFaultError(self.name, f"colour format {fmt.name}: expected rgb8, bgr8, rgba8, bgra8 or yuyv")

    def _to_project_ns(self, ts_ms: float, domain: str, t_recv_ns: int) -> int:
        self.timestamp_domain = domain
        if not isinstance(self.clock, MonotonicClock) and self._playback is None:
            self.timestamp_offset_ns = None
            return t_recv_ns
        ts_ns = int(round(ts_ms * 1e6))
        if self._playback is not None:
            if self.timestamp_offset_ns is None:
                self.timestamp_offset_ns = t_recv_ns - ts_ns
        elif domain in ("global_time", "system_time"):
            self.timestamp_offset_ns = _wall_to_monotonic_ns()
        else:  # hardware_clock: the smallest receive - device offset seen
            cand = t_recv_ns - ts_ns
            if self.timestamp_offset_ns is None or cand < self.timestamp_offset_ns:
                self.timestamp_offset_ns = cand
        return ts_ns + self.timestamp_offset_ns
