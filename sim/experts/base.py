"""Scripted experts: Cartesian waypoints tracked through the Cartesian controller (mink IK).

An expert reads privileged object state from the observation (``object_state`` sensor), plans
waypoints at reset, and each tick moves a setpoint toward the current waypoint at a bounded
speed, solving IK for it. Noise options make datasets of mixed quality: jittered waypoints,
noisy joint targets, slower motions and hesitations.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from robot_learning.control.cartesian import CartesianController, quat_mul
from robot_learning.core.frame import Action, Observation
from robot_learning.errors import ConfigError


@dataclass(frozen=True)
class ExpertNoise:
    """waypoint_noise_m: Gaussian jitter of waypoint positions (std). action_noise_rad: Gaussian
    noise on joint targets (std). speed_scale: < 1 moves slower. pause_prob: chance per waypoint
    of a 0.3-1 s hesitation."""

    waypoint_noise_m: float = 0.0
    action_noise_rad: float = 0.0
    speed_scale: float = 1.0
    pause_prob: float = 0.0

    def __post_init__(self) -> None:
        if self.waypoint_noise_m < 0 or self.action_noise_rad < 0 or not 0 <= self.pause_prob <= 1:
            raise ConfigError.expected("expert noise", "non-negative stds and 0 <= pause_prob <= 1", self)
        if not 0.1 <= self.speed_scale <= 3:
            raise ConfigError.expected("speed_scale", "0.1..3", self.speed_scale)


def _straighten_down(quat_wxyz: np.ndarray) -> np.ndarray:
    """Smallest rotation that turns the tool's z axis to world -z, applied to ``quat_wxyz``."""
    import mujoco

    mat = np.empty(9)
    mujoco.mju_quat2Mat(mat, quat_wxyz)
    z = mat.reshape(3, 3)[:, 2]
    target = np.array([0.0, 0.0, -1.0])
    axis = np.cross(z, target)
    s, c = float(np.linalg.norm(axis)), float(np.dot(z, target))
    if s < 1e-9:
        return np.asarray(quat_wxyz, dtype=np.float64)
    q = np.empty(4)
    mujoco.mju_axisAngle2Quat(q, axis / s, float(np.arctan2(s, c)))
    return quat_mul(q, quat_wxyz)


@dataclass
class Waypoint:
    pos_m: np.ndarray
    yaw_rad: float
    gripper: float              # 0 open .. 1 closed
    speed_m_s: float = 0.25     # max tool speed on the way there
    dwell_s: float = 0.0        # wait after arriving (e.g. for the gripper to close)
    tol_m: float = 0.004


class ScriptedExpert(ABC):
    """Base: waypoint tracking. Subclasses implement ``plan(obs)``.

    Position-controlled joints sag under gravity, so the tool settles millimetres away from the
    IK target; an integral term on the tool target (gain ``INTEGRAL_GAIN`` per tick, clamped at
    ``INTEGRAL_MAX_M``) removes that steady-state error.
    """

    INTEGRAL_GAIN = 0.3
    INTEGRAL_MAX_M = 0.015

    def __init__(self, env, noise: ExpertNoise = ExpertNoise()):
        self.env = env
        self.noise = noise
        self.robot = env.robot.spec
        self.scale = env.task.scale
        self.ctrl = CartesianController(self.robot)
        self.dt = 1.0 / env.task.config.control_rate_hz
        _, home_quat = self.ctrl.forward(np.asarray(self.robot.home_qpos))
        self.home_quat = _straighten_down(home_quat)
        self.rng = np.random.default_rng(0)
        self.waypoints: list[Waypoint] = []

    # --- to implement ----------------------------------------------------------------------
    @abstractmethod
    def plan(self, obs: Observation) -> list[Waypoint]: ...

    # --- helpers ---------------------------------------------------------------------------
    def down_quat(self, yaw_rad: float) -> np.ndarray:
        """Tool pointing straight down (home orientation, tilted to vertical), rotated by
        ``yaw_rad`` about the vertical. A 5-DoF arm holds it over most of its workspace (the wrist
        flex makes the tool vertical, the wrist roll sets the yaw) but not everywhere: near the
        table far from its base the SO-101's IK misses by millimetres (about 4.5 mm at x = 0.27 m,
        11 mm at 0.30 m, at 2.5 cm height)."""
        return quat_mul(np.array([np.cos(yaw_rad / 2), 0.0, 0.0, np.sin(yaw_rad / 2)]), self.home_quat)

    def grasp_point(self, center: np.ndarray, yaw_rad: float, half_width_m: float, margin_m: float = 0.004) -> np.ndarray:
        """Where to put the tcp to grasp an object centred at ``center`` (top-down, tool yaw
        ``yaw_rad``): at the centre for symmetric grippers; beside the fixed jaw's face, with a
        margin, for one-sided grippers. The height keeps the jaw tips above the table."""
        p = np.asarray(center, dtype=np.float64).copy()
        p[2] = max(p[2], self.robot.tip_beyond_tcp_m + 0.003)
        face = self.robot.fixed_jaw_face_y_m
        if face is not None:
            rot = self.down_quat(yaw_rad)
            mat = np.empty(9)
            import mujoco
            mujoco.mju_quat2Mat(mat, rot)
            y_axis = mat.reshape(3, 3)[:, 1]
            obj_y = face + half_width_m + margin_m   # object centre on the tool y axis
            p[:2] -= (y_axis * obj_y)[:2]
        return p

    @staticmethod
    def grasp_yaw(object_yaw: float) -> float:
        """Yaw that aligns the fingers with a cube's faces, within +-45 degrees."""
        return float((object_yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4)

    # --- episode ---------------------------------------------------------------------------
    def reset(self, obs: Observation, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.waypoints = self.plan(obs)
        if self.noise.waypoint_noise_m > 0:
            for w in self.waypoints:
                w.pos_m = w.pos_m + self.rng.normal(0, self.noise.waypoint_noise_m, 3)
        self._i = 0
        self._dwell_left = None
        q = np.asarray(obs.state["joint_pos_rad"], dtype=np.float64)
        self._set_pos, _ = self.ctrl.forward(q)
        self._yaw = self._current_yaw(q)
        self._q_cmd = q.copy()
        self._bias = np.zeros(3)
        self._gripper = float(obs.state["gripper_pos"][0])

    def _current_yaw(self, q: np.ndarray) -> float:
        _, quat = self.ctrl.forward(q)
        rel = quat_mul(quat, self.home_quat * np.array([1, -1, -1, -1]))  # quat * home^-1
        return float(2 * np.arctan2(rel[3], rel[0]))

    @property
    def done(self) -> bool:
        return self._i >= len(self.waypoints)

    def act(self, obs: Observation) -> Action:
        wp = self.waypoints[min(self._i, len(self.waypoints) - 1)]
        step = wp.speed_m_s * self.noise.speed_scale * self.dt
        prev_set = self._set_pos.copy()  # what the tool was commanded toward last tick
        delta = wp.pos_m - self._set_pos
        dist = float(np.linalg.norm(delta))
        self._set_pos = wp.pos_m.copy() if dist <= step else self._set_pos + delta * (step / dist)
        dyaw = (wp.yaw_rad - self._yaw + np.pi) % (2 * np.pi) - np.pi
        self._yaw += float(np.clip(dyaw, -1.5 * self.dt, 1.5 * self.dt))
        # track the setpoint from the commanded joints (smooth), re-anchored on the measured ones
        q_meas = np.asarray(obs.state["joint_pos_rad"], dtype=np.float64)
        tcp_now = np.asarray(obs.state["ee_pos_m"], dtype=np.float64)
        # error against last tick's setpoint (where the tool should be now), not the new one:
        # otherwise the lag while moving winds the integral up and it overshoots at stops
        self._bias = self._bias + self.INTEGRAL_GAIN * (prev_set - tcp_now)
        norm = float(np.linalg.norm(self._bias))
        if norm > self.INTEGRAL_MAX_M:
            self._bias *= self.INTEGRAL_MAX_M / norm
        q_ref = 0.5 * (self._q_cmd + q_meas)
        self._q_cmd = self.ctrl.solve(q_ref, self._set_pos + self._bias, self.down_quat(self._yaw), self.dt)
        self._gripper = float(np.clip(self._gripper + np.clip(wp.gripper - self._gripper, -0.5, 0.5), 0, 1))
        if not self.done:
            tcp = np.asarray(obs.state["ee_pos_m"], dtype=np.float64)
            arrived = dist <= step and np.linalg.norm(tcp - wp.pos_m) < max(wp.tol_m, 0.02) \
                and abs(dyaw) < 0.05
            if arrived and self._dwell_left is None:
                pause = self.rng.uniform(0.3, 1.0) if self.rng.random() < self.noise.pause_prob else 0.0
                self._dwell_left = wp.dwell_s + pause
            if self._dwell_left is not None:
                self._dwell_left -= self.dt
                if self._dwell_left <= 0:
                    self._i += 1
                    self._dwell_left = None
        q = self._q_cmd
        if self.noise.action_noise_rad > 0:
            q = q + self.rng.normal(0, self.noise.action_noise_rad, q.shape)
        return Action({"joint_pos_rad": q.astype(np.float32),
                       "gripper_pos": np.array([self._gripper], dtype=np.float32)})
