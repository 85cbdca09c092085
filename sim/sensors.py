"""Sim cameras and tactile sensors behind the ``Camera`` / ``TactileSensor`` contracts.

Both sample on the sim clock: with ``fps`` set they capture at their own rate as physics time
passes (a 30 Hz camera under a 10 Hz control loop delivers 3 frames per tick, each stamped with
its sim capture time); with ``fps=None`` they capture on demand, at the current sim time. The
sim is paused between steps, so ``async_read`` never waits: it returns a newer sample if one was
captured, else captures now.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import mujoco
import numpy as np

from robot_learning.core.clock import NS_PER_S
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware.sensor import Camera, TactileSensor
from robot_learning.sim.world import SampleListener, SimWorld


@dataclass(frozen=True)
class RenderConfig:
    """Fast software-rendering defaults: no shadows, no reflections, no MSAA."""

    shadows: bool = False
    reflections: bool = False
    msaa_samples: int = 0


class _SimSampled:
    """Mixin: sampling on the sim clock for StreamingSensor subclasses."""

    world: SimWorld
    fps: float | None
    _listener: SampleListener | None

    def connect(self) -> None:
        super().connect()
        self._listener = None
        self.start_streaming()

    def start_streaming(self) -> None:
        self._require_connected("start_streaming")
        if self.fps is None or self._listener is not None:
            return
        self._listener = SampleListener(int(round(NS_PER_S / self.fps)), self._sample_at)
        self.world.add_listener(self._listener)

    @property
    def is_streaming(self) -> bool:
        return self._listener is not None

    def _stop_thread(self) -> None:
        if self._listener is not None:
            self.world.remove_listener(self._listener)
            self._listener = None

    def _sample_at(self, t_ns: int) -> None:
        self._publish(self._measure(), t_ns)

    def _capture(self):
        return self._measure(), self.world.now_ns()

    def async_read(self, timeout_s: float = 0.2):
        self._require_connected("async_read")
        with self._cv:
            fresh = self._buf and self._buf[-1].seq > self._last_handed_seq
        if not fresh:
            self._publish(*self._capture())
        with self._cv:
            sample = self._buf[-1]
            self._last_handed_seq = sample.seq
            return sample

    def read_aligned(self, t_ns: int, max_age_s: float):
        self._require_connected("read_aligned")
        with self._cv:
            newest = self._buf[-1].t_capture_ns if self._buf else None
        if newest is None or (self.fps is None and newest < min(t_ns, self.world.now_ns())):
            self._publish(*self._capture())
        return super().read_aligned(t_ns, max_age_s)


class SimCamera(_SimSampled, Camera):
    """RGB (and optionally depth, metres) from a named MJCF camera via ``mujoco.Renderer``."""

    def __init__(self, world: SimWorld, camera: str, width: int = 96, height: int = 96, *,
                 fps: float | None = 30.0, depth: bool = False, name: str | None = None,
                 render: RenderConfig = RenderConfig()):
        super().__init__(name or camera, world.clock)
        m = world.model
        if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera) < 0:
            names = [m.camera(i).name for i in range(m.ncam)]
            raise ConfigError.expected("camera", f"one of {names}", repr(camera))
        if width > m.vis.global_.offwidth or height > m.vis.global_.offheight:
            raise ConfigError.expected(f"camera {camera} size", f"<= {m.vis.global_.offwidth}x"
                                       f"{m.vis.global_.offheight} (the model's offscreen buffer)", f"{width}x{height}")
        if fps is not None and not fps > 0:
            raise ConfigError.expected("camera fps", "> 0 or None", fps)
        self.world, self.camera, self.width, self.height = world, camera, width, height
        self.fps, self.depth, self.render_cfg = fps, depth, render
        self._listener = None
        self._renderer: mujoco.Renderer | None = None
        feats = [FeatureSpec(self.name, (height, width, 3), "uint8", FeatureKind.RGB, "srgb")]
        if depth:
            feats.append(FeatureSpec(f"{self.name}_depth", (height, width), "float32", FeatureKind.DEPTH, "m"))
        self._features = FeatureSet(feats)

    @property
    def features(self) -> FeatureSet:
        return self._features

    def _connect(self) -> None:
        m = self.world.model
        m.vis.quality.offsamples = self.render_cfg.msaa_samples
        try:
            self._renderer = mujoco.Renderer(m, self.height, self.width)
        except Exception as e:  # no GL platform: say which backend failed and what to try
            raise DeviceFaultError(self.name, f"cannot create a MuJoCo renderer with MUJOCO_GL="
                                              f"{os.environ.get('MUJOCO_GL', '(unset)')}: {e}. Headless machines need "
                                              "MUJOCO_GL=egl (or osmesa with libosmesa6)") from None
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = int(self.render_cfg.shadows)
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = int(self.render_cfg.reflections)

    def _disconnect(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def _measure(self) -> Mapping[str, np.ndarray]:
        r = self._renderer
        assert r is not None
        r.update_scene(self.world.data, self.camera)
        out = {self.name: r.render().copy()}
        if self.depth:
            r.enable_depth_rendering()
            try:
                r.update_scene(self.world.data, self.camera)
                out[f"{self.name}_depth"] = r.render().astype(np.float32)
            finally:
                r.disable_depth_rendering()
        return out


class SimTactile(_SimSampled, TactileSensor):
    """Fingertip taxels from MuJoCo's ``touch_grid`` plugin sensors.

    Each pad gives a ``(rows, cols, 3)`` float32 array in newtons: channel 0 is the normal force,
    channels 1-2 the two tangential (shear) components, binned over the pad's field of view.
    """

    def __init__(self, world: SimWorld, sensors: Mapping[str, str], rows: int, cols: int, *,
                 fps: float | None = 100.0, name: str = "tactile"):
        super().__init__(name, world.clock)
        m = world.model
        self.world, self.fps, self.rows, self.cols = world, fps, rows, cols
        self._listener = None
        self._slices: dict[str, slice] = {}
        for feature, sensor in sensors.items():
            sid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SENSOR, sensor)
            if sid < 0:
                raise ConfigError.expected("tactile sensor", "a touch_grid sensor in the model", repr(sensor))
            adr, dim = int(m.sensor_adr[sid]), int(m.sensor_dim[sid])
            if dim != 3 * rows * cols:
                raise ConfigError.expected(f"{sensor} size", f"3 x {rows} x {cols} = {3 * rows * cols}", dim)
            self._slices[feature] = slice(adr, adr + dim)
        self._features = FeatureSet(FeatureSpec(f, (rows, cols, 3), "float32", FeatureKind.TACTILE, "N")
                                    for f in self._slices)

    @property
    def features(self) -> FeatureSet:
        return self._features

    def _connect(self) -> None:
        pass

    def _disconnect(self) -> None:
        pass

    def _measure(self) -> Mapping[str, np.ndarray]:
        sd = self.world.data.sensordata
        return {f: np.ascontiguousarray(sd[s].reshape(3, self.rows, self.cols).transpose(1, 2, 0), dtype=np.float32)
                for f, s in self._slices.items()}
