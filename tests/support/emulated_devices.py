"""Test-side devices built on the real contracts (the production base classes do the work)."""

from __future__ import annotations

import threading
import time

import numpy as np

from robot_learning.core import Action, FeatureKind, FeatureSet, FeatureSpec, Stamped
from robot_learning.hardware import Camera, Teleop
from robot_learning.hardware.emulated_arm import EmulatedArm


class RecordingArm(EmulatedArm):
    """EmulatedArm that keeps every command it received (to check what reached the 'motors')."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.received: list[Action] = []
        self.fail_on_send_at: int | None = None

    def _send_action(self, action):
        if self.fail_on_send_at is not None and len(self.received) == self.fail_on_send_at:
            from robot_learning.errors import DeviceFaultError
            raise DeviceFaultError(self.name, "injected bus fault")
        self.received.append(action)
        return super()._send_action(action)

    def _hold(self):
        a = super()._hold()
        self.received.append(a)
        return a


class PatternCamera(Camera):
    """A camera whose frames are synthetic patterns; frames come from ``_capture`` at ``fps`` (real
    time, capture thread) or are pushed by the test with ``push(t_capture_ns)``."""

    def __init__(self, name="front", clock=None, fps=100.0, shape=(8, 10), fail=False):
        super().__init__(name, clock)
        self.fps, self.shape, self.fail = fps, shape, fail
        self._features = FeatureSet([FeatureSpec(name, (*shape, 3), "uint8", FeatureKind.RGB, "srgb")])
        self._n = 0
        self.paused = threading.Event()

    @property
    def features(self):
        return self._features

    def _connect(self):
        self._n = 0

    def _disconnect(self):
        pass

    def _frame(self):
        self._n += 1
        return {self.name: np.full((*self.shape, 3), self._n % 256, dtype=np.uint8)}

    def _capture(self):
        time.sleep(1.0 / self.fps)
        while self.paused.is_set():
            time.sleep(0.005)
        if self.fail:
            raise OSError("cable unplugged")
        return self._frame(), self.clock.now_ns()

    def push(self, t_capture_ns: int):
        return self._publish(self._frame(), t_capture_ns)


class ScriptedTeleop(Teleop):
    def __init__(self, arm, clock):
        super().__init__("scripted", clock)
        self._features = arm.action_features

    @property
    def action_features(self):
        return self._features

    def _connect(self):
        pass

    def _disconnect(self):
        pass

    def _get_action(self, observation):
        t = self.clock.now_ns()
        a = Action({"joint_pos_rad": np.zeros(6), "gripper_pos": np.ones(1)})
        return Stamped(a, t, t)
