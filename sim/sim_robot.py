"""``SimRobot``: a MuJoCo arm behind the ``Robot`` contract.

Joint-position control through the model's position actuators, the gripper through its actuator
(``gripper_pos`` 0 = open .. 1 = closed). The robot does not step physics itself: the world's
clock does (the control runtime sleeps on it, or an env steps it).
"""

from __future__ import annotations

from typing import Mapping

import mujoco
import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action
from robot_learning.core.limits import FeatureLimits, SafetyConfig
from robot_learning.core.robot_models import RobotModel
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError
from robot_learning.hardware.robot import Robot, arm_features
from robot_learning.sim.world import SimWorld


def _id(model: mujoco.MjModel, obj: mujoco.mjtObj, name: str) -> int:
    i = mujoco.mj_name2id(model, obj, name)
    if i < 0:
        raise ConfigError.expected(f"{obj.name.lower().removeprefix('mjobj_')} in the model", repr(name), "none")
    return i


def robot_features(robot: RobotModel) -> tuple[FeatureSet, FeatureSet]:
    """State and action features of a robot model (the real driver of the same model uses these)."""
    return arm_features(robot.joint_names)


class SimRobot(Robot):
    def __init__(self, world: SimWorld, robot: RobotModel, name: str | None = None,
                 joint_margin_rad: float = 0.02, max_step_rad: float = 0.5):
        super().__init__(name or f"sim_{robot.name}", world.clock)
        self.world = world
        self.spec = robot
        self._state_f, self._action_f = robot_features(robot)
        m = world.model
        self._qadr = np.array([m.jnt_qposadr[_id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in robot.joint_names])
        self._dadr = np.array([m.jnt_dofadr[_id(m, mujoco.mjtObj.mjOBJ_JOINT, j)] for j in robot.joint_names])
        self._act = np.array([_id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a) for a in robot.arm_actuators])
        self._grip_act = _id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, robot.gripper_actuator)
        self._grip_qadr = m.jnt_qposadr[_id(m, mujoco.mjtObj.mjOBJ_JOINT, robot.gripper_joints[0])]
        self._site = _id(m, mujoco.mjtObj.mjOBJ_SITE, robot.ee_site)
        jids = [_id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in robot.joint_names]
        self.joint_range = m.jnt_range[jids].copy()
        self._joint_margin = joint_margin_rad
        self._max_step = max_step_rad
        self._gripper_cmd = 0.0

    @property
    def state_features(self) -> FeatureSet:
        return self._state_f

    @property
    def action_features(self) -> FeatureSet:
        return self._action_f

    def default_safety(self) -> SafetyConfig:
        lo = self.joint_range[:, 0] + self._joint_margin
        hi = self.joint_range[:, 1] - self._joint_margin
        return SafetyConfig((
            FeatureLimits("joint_pos_rad", lower=tuple(lo), upper=tuple(hi),
                          max_velocity_per_s=self.spec.max_joint_velocity_rad_s,
                          max_step=(self._max_step,), measured_by="joint_pos_rad"),
            FeatureLimits("gripper_pos", lower=(0.0,), upper=(1.0,)),
        ))

    # --- lifecycle -------------------------------------------------------------------------
    def _connect(self) -> None:
        pass

    def _disconnect(self) -> None:
        pass

    # --- helpers used by tasks / envs ------------------------------------------------------
    def set_joint_positions(self, q: np.ndarray, gripper_pos: float = 0.0) -> None:
        """Teleport the arm (episode reset) and aim the actuators there."""
        d = self.world.data
        d.qpos[self._qadr] = q
        d.qvel[self._dadr] = 0.0
        g = self.spec
        d.qpos[self._grip_qadr] = g.gripper_joint_open + gripper_pos * (g.gripper_joint_closed - g.gripper_joint_open)
        self._apply(np.asarray(q, dtype=np.float64), gripper_pos)
        self.world.forward()

    def gripper_fraction(self) -> float:
        g = self.spec
        q = float(self.world.data.qpos[self._grip_qadr])
        return float(np.clip((q - g.gripper_joint_open) / (g.gripper_joint_closed - g.gripper_joint_open), 0.0, 1.0))

    def ee_pose(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.world.data
        quat = np.empty(4)
        mujoco.mju_mat2Quat(quat, d.site_xmat[self._site])
        return d.site_xpos[self._site].copy(), quat

    def _apply(self, q: np.ndarray, grip: float) -> tuple[np.ndarray, float]:
        m, d, g = self.world.model, self.world.data, self.spec
        lo, hi = m.actuator_ctrlrange[self._act, 0], m.actuator_ctrlrange[self._act, 1]
        limited = m.actuator_ctrllimited[self._act].astype(bool)
        q = np.where(limited, np.clip(q, lo, hi), q)
        grip = float(np.clip(grip, 0.0, 1.0))
        d.ctrl[self._act] = q
        d.ctrl[self._grip_act] = g.gripper_ctrl_open + grip * (g.gripper_ctrl_closed - g.gripper_ctrl_open)
        self._gripper_cmd = grip
        return q, grip

    # --- contract --------------------------------------------------------------------------
    def _read_state(self) -> Stamped[Mapping[str, np.ndarray]]:
        d = self.world.data
        pos, quat = self.ee_pose()
        values = {
            "joint_pos_rad": d.qpos[self._qadr].astype(np.float32),
            "joint_vel_rad_s": d.qvel[self._dadr].astype(np.float32),
            "gripper_pos": np.array([self.gripper_fraction()], dtype=np.float32),
            "ee_pos_m": pos.astype(np.float32),
            "ee_quat_wxyz": quat.astype(np.float32),
        }
        t = self.world.now_ns()
        return Stamped(values, t_capture_ns=t, t_receive_ns=t)

    def _send_action(self, action: Action) -> Action:
        q, grip = self._apply(np.asarray(action["joint_pos_rad"], dtype=np.float64), float(action["gripper_pos"][0]))
        return Action({"joint_pos_rad": q.astype(np.float32), "gripper_pos": np.array([grip], dtype=np.float32)})

    def _hold(self) -> Action:
        # Hold the arm where it is; keep the gripper command (do not drop a grasped object).
        q = self.world.data.qpos[self._qadr].astype(np.float64)
        q, grip = self._apply(q, self._gripper_cmd)
        return Action({"joint_pos_rad": q.astype(np.float32), "gripper_pos": np.array([grip], dtype=np.float32)})

    def _stop(self) -> None:
        # A simulated arm has no brakes to engage: stopping is holding still.
        self._hold()
