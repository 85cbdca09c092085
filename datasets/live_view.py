"""A live view of a recording: a control-runtime sink that shows the newest camera frames side by
side in an OpenCV window, with a status line (episode time, held, drops). It redraws at most
``max_fps`` times a second and only from the control thread, so it never slows the loop down
much; it needs a display (X11 / Wayland through Qt)."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np

from robot_learning.core.features import FeatureKind
from robot_learning.errors import ConfigError
from robot_learning.runtime.control import TickRecord

WINDOW = "robot-learning"


class LiveView:
    def __init__(self, max_fps: float = 15.0, scale: float = 2.0, status=lambda: ""):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise ConfigError("--view needs a display: DISPLAY is not set (run without --view, or under xvfb-run)")
        self.period_s, self.scale, self.status = 1.0 / max_fps, scale, status
        self._last = 0.0
        self.frames_shown = 0

    def on_tick(self, tick: TickRecord) -> None:
        now = time.perf_counter()
        if tick.observation is None or now - self._last < self.period_s:
            return
        self._last = now
        obs = tick.observation
        imgs = [np.asarray(v) for s, v in zip(obs.features, (obs.values[s.name] for s in obs.features))
                if s.kind is FeatureKind.RGB]
        if not imgs:
            return
        h = max(i.shape[0] for i in imgs)
        mosaic = np.concatenate([np.pad(i, ((0, h - i.shape[0]), (0, 0), (0, 0))) for i in imgs], axis=1)
        mosaic = cv2.resize(mosaic, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_NEAREST)
        bgr = np.ascontiguousarray(mosaic[..., ::-1])
        text = f"{'HELD ' if tick.held else ''}{self.status()}"
        cv2.putText(bgr, text, (6, bgr.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        cv2.imshow(WINDOW, bgr)
        cv2.waitKey(1)
        self.frames_shown += 1

    def close(self) -> None:
        """The window stays open between episodes; ``destroy`` closes it."""

    def destroy(self) -> None:
        cv2.destroyAllWindows()
        cv2.waitKey(1)
