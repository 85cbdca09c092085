"""GelSight Mini and DIGIT: camera-based tactile sensors that enumerate as UVC cameras.

Each sensor owns an ``OpenCVCamera`` (``hardware/opencv_camera.py``), which does the capture and
stamps every frame with its real capture time; this module crops / resizes the frames and runs the
tactile processing (``hardware/tactile_processing.py``): reference-frame difference, contact area
and centroid, marker displacements. ``source`` can be a device index, a ``/dev/v4l/by-id`` path,
or a video file (for tests and replays); ``None`` picks the first sensor of that model that
``discover_tactile_sensors`` finds.

At ``connect()`` the camera drops ``warmup_s`` of frames (devices: exposure settling, black first
frames), then the sensor averages the next ``reference_frames`` into the no-contact reference: the
gel must not be touched then. ``reset_reference()`` takes a new one. Capture times are the
camera's (V4L2 buffer times, or a file's presentation times), never frame index / fps.

Published features (fixed shapes, so the recorder can store them), ``{name}`` = ``config.name``:

- ``{name}_image``: (H, W, 3) uint8 RGB, cropped and resized to ``output_size``;
- ``{name}_difference``: (H, W, 3) float32, image minus reference in 8-bit levels;
- ``{name}_contact_area_mm2``: (1,) float32, 0 without contact;
- ``{name}_contact_centroid_mm``: (2,) float32 (x right, y down) from the image centre, 0 without;
- ``{name}_marker_ref_px`` / ``{name}_marker_disp_px``: (max_markers, 2) float32 reference
  positions and displacements, ``{name}_marker_valid``: (max_markers,) uint8 (1: tracked this
  frame; rows past the detected marker count are 0).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

import numpy as np

from robot_learning.core.clock import Clock
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware.opencv_camera import EndOfStreamError, OpenCVCamera, OpenCVCameraConfig, ReplayEnd
from robot_learning.hardware.sensor import TactileSensor
from robot_learning.hardware.tactile_processing import (
    ContactParams,
    MarkerParams,
    TactileProcessor,
    crop_box_px,
    crop_resize,
)

SYS_VIDEO4LINUX = "/sys/class/video4linux"
DEV_V4L_BY_ID = "/dev/v4l/by-id"


@dataclass(frozen=True)
class TactileCameraConfig:
    """Common settings of the UVC tactile sensors. Lengths in px refer to the output image."""

    source: int | str | None = None
    """Device index, /dev/v4l/by-id path or video file; None: the first one discovered."""
    name: str = "tactile"
    capture_size: tuple[int, int] | None = None
    """(width, height) px requested from the camera; None: the device's default mode."""
    fps: float | None = None
    """Frame rate requested from the camera (frames / s)."""
    fourcc: str | None = None
    rotation_deg: int = 0
    """Rotation applied by the camera driver before cropping (0, 90, 180, 270)."""
    crop_box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    """(x0, y0, x1, y1) as fractions of the (rotated) frame that is kept."""
    output_size: tuple[int, int] = (320, 240)
    """(width, height) px of the published image; all processing runs at this size."""
    reference_frames: int = 10
    """No-contact frames averaged into the reference at connect."""
    warmup_s: float = 1.0
    """Devices only: seconds of frames dropped after opening (exposure settling), by the camera."""
    mm_per_px: float = 0.06
    """Gel surface length per output pixel (mm / px): calibrate per sensor for accurate mm^2."""
    publish_image: bool = True
    publish_difference: bool = False
    publish_contact: bool = True
    publish_markers: bool = True
    contact: ContactParams = field(default_factory=ContactParams)
    markers: MarkerParams = field(default_factory=MarkerParams)
    realtime: bool = True
    """Video files only: deliver frames at the file's rate (False: as fast as they decode)."""
    loop: bool = False
    """Video files only: start again at the end."""
    read_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z][a-z0-9_]*$", self.name):
            raise ConfigError.expected("tactile sensor name", "lowercase letters, digits and '_'", repr(self.name))
        crop_box_px((100, 100), self.crop_box)  # validates
        w, h = self.output_size
        if w < 8 or h < 8:
            raise ConfigError.expected(f"{self.name} output_size (width, height)", ">= 8 px each", self.output_size)
        if self.reference_frames < 1 or not self.warmup_s >= 0:
            raise ConfigError.expected(f"{self.name} reference_frames / warmup_s", ">= 1 / >= 0",
                                       (self.reference_frames, self.warmup_s))
        if not self.mm_per_px > 0:
            raise ConfigError.expected(f"{self.name} mm_per_px", "> 0", self.mm_per_px)
        if self.rotation_deg not in (0, 90, 180, 270):
            raise ConfigError.expected(f"{self.name} rotation_deg", "0, 90, 180 or 270", self.rotation_deg)
        if not (self.publish_image or self.publish_difference or self.publish_contact or self.publish_markers):
            raise ConfigError.expected(f"{self.name} outputs", "at least one of image, difference, contact, "
                                       "markers", "none")


@dataclass(frozen=True)
class GelSightMiniConfig(TactileCameraConfig):
    """GelSight Mini: the vendor tools cut 15% of each border (the housing and the gel's edge)
    and work on 320 x 240 px, which then span roughly 0.06 mm / px of gel (calibrate). About 25
    frames / s. Its tracking gels carry a grid of dark markers. The capture mode is the device's
    default unless ``capture_size`` is set."""

    name: str = "gelsight"
    fps: float | None = 25.0
    crop_box: tuple[float, float, float, float] = (0.15, 0.15, 0.85, 0.85)
    output_size: tuple[int, int] = (320, 240)
    mm_per_px: float = 0.06


@dataclass(frozen=True)
class DigitConfig(TactileCameraConfig):
    """DIGIT: streams QVGA 320 x 240 at 60 or 30 frames / s, or VGA 640 x 480 at 30 or 15. The
    standard gel has no markers, so marker tracking is off by default. The vendor's tools show the
    image portrait (rotated 90 degrees counter-clockwise): ``rotation_deg=270`` with
    ``output_size=(240, 320)`` gives that view. The LED brightness is a UVC control the camera
    driver does not set; the sensor keeps its power-on setting."""

    name: str = "digit"
    capture_size: tuple[int, int] | None = (320, 240)
    fps: float | None = 60.0
    output_size: tuple[int, int] = (320, 240)
    mm_per_px: float = 0.06
    publish_markers: bool = False


# --- discovery -------------------------------------------------------------------------------
#: UVC product names (as in /sys/class/video4linux/*/name) -> model
UVC_NAMES = {"GelSight Mini": "gelsight_mini", "DIGIT": "digit"}


def _serial_from_by_id(link_name: str, uvc_name: str) -> str | None:
    """``usb-<vendor>_<product>_<serial>-video-index0`` -> serial (None if there is none)."""
    stem = re.sub(r"-video-index\d+$", "", link_name)
    stem = re.sub(r"^usb-", "", stem)
    key = uvc_name.replace(" ", "_")
    i = stem.find(key)
    if i < 0:
        return None
    rest = stem[i + len(key):].strip("_")
    return rest or None


def discover_tactile_sensors(sys_root: str | os.PathLike = SYS_VIDEO4LINUX,
                             by_id_root: str | os.PathLike = DEV_V4L_BY_ID) -> list[dict]:
    """GelSight Mini and DIGIT sensors attached (Linux V4L2): one dict per sensor with ``model``
    (``gelsight_mini`` / ``digit``), ``uvc_name``, ``device`` (/dev/videoN), ``index`` (N),
    ``by_id`` (stable path or None) and ``serial`` (from the by-id path, or None). Only capture
    nodes (V4L2 ``index`` 0) are listed; returns [] where there is no V4L2."""
    sys_root, by_id_root = Path(sys_root), Path(by_id_root)
    by_id: dict[str, Path] = {}
    try:
        for link in sorted(by_id_root.iterdir()):
            by_id.setdefault(os.path.basename(os.path.realpath(link)), link)
    except OSError:
        pass
    found = []
    try:
        nodes = sorted(sys_root.iterdir(), key=lambda p: (len(p.name), p.name))
    except OSError:
        return []
    for node in nodes:
        try:
            uvc_name = (node / "name").read_text().strip()
        except OSError:
            continue
        key = next((n for n in UVC_NAMES if re.search(rf"\b{re.escape(n)}\b", uvc_name)), None)
        m = re.search(r"(\d+)$", node.name)
        if key is None or m is None:
            continue
        try:
            if int((node / "index").read_text().strip()) != 0:
                continue  # metadata node of the same camera
        except (OSError, ValueError):
            pass
        link = by_id.get(node.name)
        found.append({"model": UVC_NAMES[key], "uvc_name": uvc_name, "device": f"/dev/{node.name}",
                      "index": int(m.group(1)), "by_id": str(link) if link else None,
                      "serial": _serial_from_by_id(link.name, key) if link else None})
    return found


# --- the sensors -----------------------------------------------------------------------------
def tactile_features(config: TactileCameraConfig) -> FeatureSet:
    """What a sensor with ``config`` publishes (see the module docstring)."""
    n, (w, h) = config.markers.max_markers, config.output_size
    specs = []
    if config.publish_image:
        specs.append(FeatureSpec(f"{config.name}_image", (h, w, 3), "uint8", FeatureKind.TACTILE, "srgb"))
    if config.publish_difference:
        specs.append(FeatureSpec(f"{config.name}_difference", (h, w, 3), "float32", FeatureKind.TACTILE,
                                 "levels_8bit"))
    if config.publish_contact:
        specs += [FeatureSpec(f"{config.name}_contact_area_mm2", (1,), "float32", FeatureKind.TACTILE, "mm2"),
                  FeatureSpec(f"{config.name}_contact_centroid_mm", (2,), "float32", FeatureKind.TACTILE, "mm",
                              names=("x", "y"))]
    if config.publish_markers:
        specs += [FeatureSpec(f"{config.name}_marker_ref_px", (n, 2), "float32", FeatureKind.TACTILE, "px"),
                  FeatureSpec(f"{config.name}_marker_disp_px", (n, 2), "float32", FeatureKind.TACTILE, "px"),
                  FeatureSpec(f"{config.name}_marker_valid", (n,), "uint8", FeatureKind.TACTILE, "1")]
    return FeatureSet(specs)


class UvcTactileSensor(ReplayEnd, TactileSensor):
    """Base of GelSightMini and Digit: an OpenCV camera plus tactile processing. With a video file
    source, reads after its last frame raise ``EndOfStreamError`` (as the camera's do)."""

    model = ""            # key of UVC_NAMES' values
    config_type: type[TactileCameraConfig] = TactileCameraConfig

    def __init__(self, config: TactileCameraConfig | None = None, clock: Clock | None = None, **overrides):
        config = config if config is not None else self.config_type()
        if overrides:
            config = replace(config, **overrides)
        if not isinstance(config, TactileCameraConfig):
            raise ConfigError.expected(f"{type(self).__name__} config", self.config_type.__name__,
                                       type(config).__name__)
        super().__init__(config.name, clock)
        self.config = config
        self._features = tactile_features(config)
        self._camera: OpenCVCamera | None = None
        self.processor: TactileProcessor | None = None
        self.device_info: dict | None = None
        self.last_result = None  # TactileResult of the newest frame (contact mask, full marker state)
        self._replay_source = config.source

    @property
    def features(self) -> FeatureSet:
        return self._features

    @property
    def camera(self) -> OpenCVCamera | None:
        """The OpenCVCamera underneath (None while disconnected)."""
        return self._camera

    # --- lifecycle ---------------------------------------------------------------------------
    def _resolve_source(self) -> int | str:
        if self.config.source is not None:
            return self.config.source
        found = [d for d in discover_tactile_sensors() if d["model"] == self.model]
        if not found:
            want = next(n for n, m in UVC_NAMES.items() if m == self.model)
            raise DeviceFaultError(self.name, f"no {want} found: expected a V4L2 device named {want!r} in "
                                              f"{SYS_VIDEO4LINUX}, found none (plug it in, or set source=)")
        self.device_info = found[0]
        return found[0]["by_id"] or found[0]["device"]

    def _connect(self) -> None:
        self._ended = False
        self._replay_source = source = self._resolve_source()
        self._camera = self._open_camera(source)
        try:
            fps = float(self._camera.mode.get("fps") or 0.0)
            self._period_ns = int(round(1e9 / fps)) if fps > 0 else 0
            c = self.config
            self.processor = TactileProcessor(c.mm_per_px, c.contact if c.publish_contact else None,
                                              c.markers if c.publish_markers else None)
            self._take_reference()
        except BaseException:
            self._close_camera()
            raise

    def _disconnect(self) -> None:
        self._close_camera()

    def camera_config(self, source: int | str) -> OpenCVCameraConfig:
        """The ``OpenCVCameraConfig`` this sensor opens ``source`` with. Video files play at their
        own size and rate, so capture_size and fps only go to devices."""
        c = self.config
        cfg = OpenCVCameraConfig(source=source, name=f"{c.name}_raw", fourcc=c.fourcc, rotation_deg=c.rotation_deg,
                                 warmup_s=c.warmup_s, read_timeout_s=c.read_timeout_s, realtime=c.realtime,
                                 loop=c.loop)
        if cfg.is_device:
            w, h = c.capture_size if c.capture_size is not None else (None, None)
            cfg = replace(cfg, width=w, height=h, fps=c.fps)
        return cfg

    def _open_camera(self, source: int | str) -> OpenCVCamera:
        cam = OpenCVCamera(self.camera_config(source), clock=self.clock)
        cam.connect()
        return cam

    def _close_camera(self) -> None:
        cam, self._camera = self._camera, None
        if cam is not None:
            cam.disconnect()

    def _grab(self) -> tuple[np.ndarray, int]:
        """The next frame, cropped and resized, and its capture time (ns, project clock)."""
        cam = self._camera
        if cam is None:
            raise DeviceFaultError(self.name, "capture after the camera was released")
        try:
            s = cam.read(self.config.read_timeout_s)
        except EndOfStreamError:
            raise self._end() from None  # a recording that ended: the capture thread stops too
        frame = s.value[cam.name]
        return crop_resize(frame, self.config.crop_box, self.config.output_size), s.t_capture_ns

    def _take_reference(self) -> None:
        self.processor.set_reference([self._grab()[0] for _ in range(self.config.reference_frames)])

    def reset_reference(self) -> None:
        """Take a new no-contact reference from the next frames (nothing may touch the gel)."""
        self._require_connected("reset_reference")
        streaming = self.is_streaming
        self._stop_thread()
        try:
            self._take_reference()
        finally:
            if streaming:
                self.start_streaming()

    @property
    def n_markers(self) -> int:
        """Markers found in the reference (0 before connect or with markers off)."""
        return 0 if self.processor is None else self.processor.n_markers

    def _capture(self) -> tuple[Mapping[str, np.ndarray], int]:
        img, t_ns = self._grab()
        res = self.processor.process(img)
        c, n, out = self.config, self.config.markers.max_markers, {}
        if c.publish_image:
            out[f"{c.name}_image"] = img
        if c.publish_difference:
            out[f"{c.name}_difference"] = res.difference
        if c.publish_contact:
            out[f"{c.name}_contact_area_mm2"] = np.array([res.contact.area_mm2], np.float32)
            out[f"{c.name}_contact_centroid_mm"] = res.contact.centroid_mm.astype(np.float32)
        if c.publish_markers:
            ref, disp, valid = res.markers.padded(n)
            out[f"{c.name}_marker_ref_px"], out[f"{c.name}_marker_disp_px"] = ref, disp
            out[f"{c.name}_marker_valid"] = valid
        self.last_result = res
        return out, t_ns


class GelSightMini(UvcTactileSensor):
    """GelSight Mini (UVC name 'GelSight Mini'), see ``GelSightMiniConfig``."""

    model = "gelsight_mini"
    config_type = GelSightMiniConfig


class Digit(UvcTactileSensor):
    """DIGIT (UVC name 'DIGIT', serial number in the /dev/v4l/by-id name), see ``DigitConfig``."""

    model = "digit"
    config_type = DigitConfig
