"""End-effector commands in the control runtime: workspace box, then IK, then the joint filter.

An action source may command the end effector instead of the joints, with one of two feature
sets (``robot_learning.core.ee_features``):

- absolute: ``ee_pos_m`` (3,), ``ee_quat_wxyz`` (4,), ``gripper_pos`` (1,);
- delta: ``ee_dpos_m`` (3,), ``ee_drot_rad`` (3,, rotation vector), ``gripper_pos`` (1,), added
  to the current target (SpaceMouse and keyboard teleop).

The stage rejects non-finite commands, clips the target position into the workspace box (safety
lives in the runtime, not in the source), and solves IK with the Cartesian controller over the
robot's own MJCF. The joint command then goes through the runtime's joint safety filter like
any other, so the same checks hold whichever way the robot is commanded.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from robot_learning.control.cartesian import CartesianController, axis_angle_quat, quat_mul
from robot_learning.core.ee_features import ABSOLUTE, DELTA
from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.core.limits import SafetyConfig, workspace_box
from robot_learning.errors import ConfigError
from robot_learning.runtime.safety import SafetyFilter


class CartesianStage:
    """Turns end-effector commands into joint commands (see module docstring)."""

    def __init__(self, controller: CartesianController, source_features: FeatureSet, period_s: float,
                 workspace_lower_m: Sequence[float], workspace_upper_m: Sequence[float]):
        if source_features not in (ABSOLUTE, DELTA):
            raise ConfigError.expected("end-effector action features", f"{ABSOLUTE!r} or {DELTA!r}",
                                       repr(source_features))
        self.controller = controller
        self.delta = source_features == DELTA
        self.period_s = period_s
        self.lower = np.asarray(workspace_lower_m, dtype=np.float64)
        self.upper = np.asarray(workspace_upper_m, dtype=np.float64)
        self._box = SafetyFilter(SafetyConfig((workspace_box("ee_pos_m", self.lower, self.upper),)),
                                 FeatureSet([ABSOLUTE["ee_pos_m"]]), FeatureSet(), period_s)
        self._target: tuple[np.ndarray, np.ndarray] | None = None

    def reset(self) -> None:
        self._target = None

    def to_joints(self, action: Action, obs: Observation) -> tuple[Action | None, str | None]:
        """Joint command for ``action``, or (None, reason) when it must be rejected."""
        if not action.is_finite():
            return None, "non-finite end-effector command"
        q = np.asarray(obs.state["joint_pos_rad"], dtype=np.float64)
        if self.delta:
            if self._target is None:
                self._target = self.controller.forward(q)
            pos, quat = self._target
            pos = pos + np.asarray(action["ee_dpos_m"], dtype=np.float64)
            quat = quat_mul(axis_angle_quat(np.asarray(action["ee_drot_rad"], dtype=np.float64)), quat)
        else:
            pos = np.asarray(action["ee_pos_m"], dtype=np.float64)
            quat = np.asarray(action["ee_quat_wxyz"], dtype=np.float64)
            norm = float(np.linalg.norm(quat))
            if not 0.5 < norm < 2.0:
                return None, f"end-effector quaternion norm {norm:.3f}: expected ~1"
            quat = quat / norm
        boxed = self._box(Action({"ee_pos_m": pos.astype(np.float32)}), {})
        pos = boxed.action["ee_pos_m"].astype(np.float64)
        self._target = (pos, quat)  # a delta never accumulates outside the box
        q_cmd = self.controller.solve(q, pos, quat, self.period_s)
        return Action({"joint_pos_rad": q_cmd.astype(np.float32),
                       "gripper_pos": np.asarray(action["gripper_pos"], dtype=np.float32)}), None
