"""An emulated joint-position arm: a ``Robot`` with simple, honest dynamics and no hardware.

For dry runs of the control runtime (``--robot emulated``) and for tests: each joint tracks its
position target as a first-order system (time constant ``tau_s``) whose speed is limited by
``max_joint_velocity_rad_s``; time comes from the injected clock, so with a ``FakeClock`` a run is
exactly repeatable. It has no contacts and no gravity: use the MuJoCo twin (``sim:``) for
physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from robot_learning.core.clock import NS_PER_S, Clock
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.core.frame import Action
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError
from robot_learning.hardware.robot import Robot
from robot_learning.core.limits import FeatureLimits, SafetyConfig


@dataclass(frozen=True)
class EmulatedArmConfig:
    n_joints: int = 6
    joint_limit_rad: float = 2.6
    max_joint_velocity_rad_s: float = 3.0
    tau_s: float = 0.05
    #: runtime safety defaults (see ``default_safety``)
    safety_velocity_rad_s: float = 1.5
    safety_step_rad: float = 0.35

    def __post_init__(self) -> None:
        if not 1 <= self.n_joints <= 32:
            raise ConfigError.expected("n_joints", "1..32", self.n_joints)
        for name in ("joint_limit_rad", "max_joint_velocity_rad_s", "tau_s", "safety_velocity_rad_s",
                     "safety_step_rad"):
            if not getattr(self, name) > 0:
                raise ConfigError.expected(name, "> 0", getattr(self, name))


class EmulatedArm(Robot):
    """Joint-position arm with a gripper (``gripper_pos``: 0 open .. 1 closed)."""

    def __init__(self, config: EmulatedArmConfig = EmulatedArmConfig(), name: str = "emulated_arm",
                 clock: Clock | None = None):
        super().__init__(name, clock)
        self.config = config
        n = config.n_joints
        joints = tuple(f"joint_{i + 1}" for i in range(n))
        self._state_features = FeatureSet([
            FeatureSpec("joint_pos_rad", (n,), "float64", FeatureKind.STATE, "rad", joints),
            FeatureSpec("gripper_pos", (1,), "float64", FeatureKind.STATE, "1"),
        ])
        self._action_features = FeatureSet([
            FeatureSpec("joint_pos_rad", (n,), "float64", FeatureKind.ACTION, "rad", joints),
            FeatureSpec("gripper_pos", (1,), "float64", FeatureKind.ACTION, "1"),
        ])
        self._q = np.zeros(n + 1)
        self._target: np.ndarray | None = None
        self._t_ns = 0
        self.sent: int = 0

    @property
    def state_features(self) -> FeatureSet:
        return self._state_features

    @property
    def action_features(self) -> FeatureSet:
        return self._action_features

    def default_safety(self) -> SafetyConfig:
        c = self.config
        return SafetyConfig((
            FeatureLimits("joint_pos_rad", lower=(-c.joint_limit_rad,), upper=(c.joint_limit_rad,),
                          max_velocity_per_s=(c.safety_velocity_rad_s,), max_step=(c.safety_step_rad,),
                          measured_by="joint_pos_rad"),
            FeatureLimits("gripper_pos", lower=(0.0,), upper=(1.0,), max_velocity_per_s=(4.0,)),
        ))

    def _connect(self) -> None:
        self._q = np.zeros(self.config.n_joints + 1)
        self._target = self._q.copy()
        self._t_ns = self.clock.now_ns()

    def _disconnect(self) -> None:
        self._target = None

    def _advance(self) -> int:
        now = self.clock.now_ns()
        dt = max(0, now - self._t_ns) / NS_PER_S
        self._t_ns = max(now, self._t_ns)
        if self._target is not None and dt > 0:
            alpha = 1.0 - math.exp(-dt / self.config.tau_s)
            vmax = self.config.max_joint_velocity_rad_s * dt
            self._q = self._q + np.clip((self._target - self._q) * alpha, -vmax, vmax)
        return now

    def _read_state(self) -> Stamped[Mapping[str, np.ndarray]]:
        now = self._advance()
        n = self.config.n_joints
        values = {"joint_pos_rad": self._q[:n].copy(), "gripper_pos": self._q[n:].copy()}
        return Stamped(values, t_capture_ns=now, t_receive_ns=now)

    def _send_action(self, action: Action) -> Action:
        self._advance()
        self._target = np.concatenate([action["joint_pos_rad"], action["gripper_pos"]]).astype(np.float64)
        self.sent += 1
        return action

    def _hold(self) -> Action:
        self._advance()
        self._target = self._q.copy()
        n = self.config.n_joints
        return Action({"joint_pos_rad": self._q[:n].copy(), "gripper_pos": self._q[n:].copy()})

    def _stop(self) -> None:
        self._advance()
        self._target = None  # torque off: joints stay where they are (no gravity here)
