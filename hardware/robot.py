"""The Robot contract: what every arm (real, MuJoCo twin, emulated) implements."""

from __future__ import annotations

from abc import abstractmethod
from typing import Mapping

import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.core.frame import Action
from robot_learning.core.limits import SafetyConfig
from robot_learning.core.stamped import Stamped
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


def arm_features(joints: tuple[str, ...], end_effector: bool = True) -> tuple[FeatureSet, FeatureSet]:
    """State and action features of a joint-position arm with a gripper (the sim twins and the real
    servo arms share them): state ``joint_pos_rad``, ``joint_vel_rad_s``, ``gripper_pos`` (0 open ..
    1 closed) and, with ``end_effector``, ``ee_pos_m`` / ``ee_quat_wxyz``; action ``joint_pos_rad``,
    ``gripper_pos``."""
    n = len(joints)
    state = [
        FeatureSpec("joint_pos_rad", (n,), "float32", FeatureKind.STATE, "rad", joints),
        FeatureSpec("joint_vel_rad_s", (n,), "float32", FeatureKind.STATE, "rad/s", joints),
        FeatureSpec("gripper_pos", (1,), "float32", FeatureKind.STATE, "1"),
    ]
    if end_effector:
        state += [FeatureSpec("ee_pos_m", (3,), "float32", FeatureKind.STATE, "m", ("x", "y", "z")),
                  FeatureSpec("ee_quat_wxyz", (4,), "float32", FeatureKind.STATE, "1", ("w", "x", "y", "z"))]
    action = FeatureSet([
        FeatureSpec("joint_pos_rad", (n,), "float32", FeatureKind.ACTION, "rad", joints),
        FeatureSpec("gripper_pos", (1,), "float32", FeatureKind.ACTION, "1"),
    ])
    return FeatureSet(state), action
