"""The Robot contract: what every arm (real, MuJoCo twin, emulated) implements."""

from __future__ import annotations

from abc import abstractmethod
from typing import Mapping

import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action
from robot_learning.core.stamped import Stamped
from robot_learning.runtime.safety import SafetyConfig

from robot_learning.hardware.device import Device


class Robot(Device):
    """An arm (with its gripper) behind one interface.

    - ``state_features`` / ``action_features``: specs, readable while disconnected.
    - ``read_state()``: measured state, stamped with its capture time.
    - ``send_action(a)``: command the robot; returns the action actually executed (what the
      driver really sent, e.g. after unit conversion and quantisation). Safety limits are not
      applied here: they live in the control runtime, configured by ``default_safety()``.
    - ``hold()``: keep the current pose (stop following commands); returns the executed hold.
    - ``stop()``: bring the robot to a safe stop (brakes / torque off where that is safe).
    """

    @property
    @abstractmethod
    def state_features(self) -> FeatureSet: ...

    @property
    @abstractmethod
    def action_features(self) -> FeatureSet: ...

    @abstractmethod
    def default_safety(self) -> SafetyConfig:
        """The robot's limits (joint range, velocity, step, workspace) for the runtime's filter."""

    def read_state(self) -> Stamped[Mapping[str, np.ndarray]]:
        self._require_connected("read_state")
        return self._read_state()

    def send_action(self, action: Action) -> Action:
        self._require_connected("send_action")
        action.check(self.action_features)
        return self._send_action(action)

    def hold(self) -> Action:
        self._require_connected("hold")
        return self._hold()

    def stop(self) -> None:
        self._require_connected("stop")
        self._stop()

    @abstractmethod
    def _read_state(self) -> Stamped[Mapping[str, np.ndarray]]: ...

    @abstractmethod
    def _send_action(self, action: Action) -> Action: ...

    @abstractmethod
    def _hold(self) -> Action: ...

    @abstractmethod
    def _stop(self) -> None: ...
