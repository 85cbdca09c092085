"""End-effector pose control: mink differential IK over a robot's MJCF kinematics.

One controller for every arm of a model: the sim twin and the real arm load the same model file,
so a Cartesian command (absolute or delta) maps to the same joint targets on both. It sits
above any ``Robot``: give it the measured joint positions and a target pose, it returns joint
position targets that respect the joint limits and the joint speed limits over ``dt``.

Frames: poses are expressed in the robot's base frame (the sim mounts the base at the world
origin, so base frame = world frame there). Quaternions are (w, x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import mink
import mujoco
import numpy as np

from robot_learning.core.robot_models import RobotModel
from robot_learning.errors import ConfigError, SafetyViolation


@dataclass(frozen=True)
class CartesianConfig:
    """position_cost / orientation_cost: weights of the end-effector task (orientation 0 = free).
    posture_cost: weak pull toward the home posture (resolves redundancy). iterations: IK
    sub-steps per call. damping: Levenberg-Marquardt damping of the QP."""

    position_cost: float = 1.0
    orientation_cost: float = 0.5
    posture_cost: float = 1e-2
    iterations: int = 3
    damping: float = 1e-3
    limit_margin_rad: float = 0.02

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ConfigError.expected("iterations", ">= 1", self.iterations)


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.empty(4)
    mujoco.mju_mulQuat(out, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return out


def axis_angle_quat(axis_angle: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle, rad) -> quaternion (w, x, y, z)."""
    v = np.asarray(axis_angle, dtype=np.float64)
    angle = float(np.linalg.norm(v))
    q = np.array([1.0, 0.0, 0.0, 0.0])
    if angle > 1e-12:
        mujoco.mju_axisAngle2Quat(q, v / angle, angle)
    return q


class CartesianController:
    """Differential IK for one robot model (arm joints only; finger joints stay as given)."""

    def __init__(self, robot: RobotModel, config: CartesianConfig = CartesianConfig()):
        self.robot = robot
        self.config = config
        self.model = mujoco.MjModel.from_xml_path(str(robot.mjcf_path()))
        m = self.model
        self._qadr = np.array([m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]
                               for j in robot.joint_names])
        self.configuration = mink.Configuration(m)
        self.ee_task = mink.FrameTask(robot.ee_site, "site", position_cost=config.position_cost,
                                      orientation_cost=config.orientation_cost, lm_damping=1e-6)
        self.posture_task = mink.PostureTask(m, cost=config.posture_cost)
        home = self.configuration.q.copy()
        home[self._qadr] = robot.home_qpos
        self.posture_task.set_target(home)
        self.limits = [
            mink.ConfigurationLimit(m, gain=0.95, min_distance_from_limits=config.limit_margin_rad),
            mink.VelocityLimit(m, dict(zip(robot.joint_names, robot.max_joint_velocity_rad_s))),
        ]
        self._site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, robot.ee_site)

    def forward(self, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """End-effector (position m, quaternion wxyz) at arm joint positions ``q_arm``."""
        q = self.configuration.q.copy()
        q[self._qadr] = q_arm
        self.configuration.update(q)
        pose = self.configuration.get_transform_frame_to_world(self.robot.ee_site, "site")
        return pose.translation().copy(), pose.rotation().wxyz.copy()

    def solve(self, q_arm: np.ndarray, target_pos_m: np.ndarray, target_quat_wxyz: np.ndarray | None,
              dt_s: float) -> np.ndarray:
        """Joint targets that move the end effector toward the target within ``dt_s``.

        ``target_quat_wxyz=None`` keeps the current orientation. Joint limits and joint speed
        limits hold: the result is at most ``v_max * dt_s`` from ``q_arm`` in every joint.
        """
        if not (np.all(np.isfinite(q_arm)) and np.all(np.isfinite(target_pos_m))):
            raise SafetyViolation("CartesianController.solve: non-finite joint positions or target")
        q = self.configuration.q.copy()
        q[self._qadr] = np.clip(q_arm, self.model.jnt_range[:, 0][self._joint_ids()],
                                self.model.jnt_range[:, 1][self._joint_ids()])
        self.configuration.update(q)
        if target_quat_wxyz is None:
            target_quat_wxyz = self.configuration.get_transform_frame_to_world(
                self.robot.ee_site, "site").rotation().wxyz
        quat = np.asarray(target_quat_wxyz, dtype=np.float64)
        quat = quat / np.linalg.norm(quat)
        self.ee_task.set_target(mink.SE3.from_rotation_and_translation(mink.SO3(quat), np.asarray(target_pos_m)))
        sub_dt = dt_s / self.config.iterations
        for _ in range(self.config.iterations):
            vel = mink.solve_ik(self.configuration, [self.ee_task, self.posture_task], sub_dt, "daqp",
                                damping=self.config.damping, limits=self.limits)
            self.configuration.integrate_inplace(vel, sub_dt)
        return self.configuration.q[self._qadr].copy()

    def solve_delta(self, q_arm: np.ndarray, delta_pos_m: np.ndarray, delta_rot: np.ndarray | None,
                    dt_s: float) -> np.ndarray:
        """Delta mode: move by ``delta_pos_m`` (base frame) and rotate by the rotation vector
        ``delta_rot`` (rad, base frame) from the current pose."""
        pos, quat = self.forward(q_arm)
        target_q = quat if delta_rot is None else quat_mul(axis_angle_quat(delta_rot), quat)
        return self.solve(q_arm, pos + np.asarray(delta_pos_m), target_q, dt_s)

    def _joint_ids(self) -> np.ndarray:
        m = self.model
        return np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in self.robot.joint_names])
