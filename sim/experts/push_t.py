"""Expert for push_t: sampling-based MPC over pushes, planned in a small MuJoCo model of its own.

The planning model (``PushModel``) holds only the table, the T block (the task's own MJCF, with
the friction and mass of the env's block) and a kinematic pusher: the gripper's collision geoms,
closed, in the orientation the arm holds the tool. A push rolls out in it directly from any state
(no arm dynamics, IK or sensors; ~20 us per 2 ms step, ~5 ms per push), never touching the env.
A push: tool above a start point behind the T, down to a few millimetres above the table,
straight along a direction for a distance, a short back-off, up. Planning, once per push, from
the block's measured pose:

1. a push library (built once per process and robot: ~3-5 s): pushes from points all around the
   T's outline in directions around the inward normal, simulated with the T at the task's default
   target; the T's motion after every few millimetres of travel is stored in the T's frame, so a
   library push maps onto any current pose by a rigid transform;
2. all library pushes are scored from the current pose by the RMS distance between the T's points
   at the predicted pose and at the target, the best ones with a two-push lookahead;
3. the best few (one per push line) are simulated exactly from the current pose (the pusher's
   pose as the arm will hold it, the stop and back-off; also shifted sideways by a millimetre, the
   arm's tracking error), and the one with the best mean outcome is executed. Pushes that tip the
   T are rejected.

The arm follows the push's waypoints through the Cartesian controller; after each push the expert
re-plans from the new measured pose (the env ends the episode at success). A push that moves the
T far less than predicted is not tried again in that episode.

Tool orientation (relative to ``down_quat``): on a 7-DoF arm the tool points straight down and
turns (yaw) so that the narrow side of the closed fingers faces the push. A 5-DoF arm cannot hold
the tool vertical at push height far from its base: its tool tilts with the distance from the base
(vertical close in, tip outward far out; the profile is found once by IK) and, as a tilted tool's
yaw must follow the arm's azimuth, faces away from the base everywhere.
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_learning.control.cartesian import quat_mul
from robot_learning.core.frame import Action, Observation
from robot_learning.sim.experts.base import ExpertNoise, ScriptedExpert, Waypoint
from robot_learning.sim.experts.push_planner import (PushLibrary, PushModel, _cached, _compose, _rot, _wrap,
                                                     clear_start)
from robot_learning.sim.tasks.push_t import PushT


class PushTExpert(ScriptedExpert):
    """Pushes the T onto the target, one planned push at a time (see the module docstring)."""

    # lengths and speeds for the Panda, scaled by the robot's object scale
    CLEARANCE_M = 0.003          # tool's lowest point above the table while pushing
    SAFE_M = 0.012               # ... above the block's top while moving over it
    GAP_M = 0.005                # free travel before the pusher reaches the block
    BACK_M = 0.003               # back-off after a push
    PUSH_SPEED = 0.08            # m/s
    TRAVEL_SPEED = 0.3
    SPACING_M = 0.006            # library: contact points along the T's outline
    ANGLES = np.array([-0.6, -0.3, 0.0, 0.3, 0.6])   # library: directions about the inward normal, rad
    MAX_DEPTH_M = 0.12           # library: longest push past the contact point
    RECORD_M = 0.002             # library: travel resolution
    VERIFY = 8                   # candidates simulated exactly per push
    ROBUST = 3                   # the best of them also simulated shifted sideways by
    LATERAL_M = 0.001            # ... this much (unscaled: the arm's tracking error)
    LOOKAHEAD = 40               # best first pushes given a second-push lookahead

    def __init__(self, env, noise: ExpertNoise = ExpertNoise()):
        super().__init__(env, noise)
        self.task: PushT = env.task
        s = self.scale
        self.pm = PushModel(self.task, env.world.model, self.robot, self.down_quat(0.0))
        self.v_push = self.PUSH_SPEED * s
        self.top = 2 * self.task.half_height + 0.002
        r = self.task.rects
        area = 4 * r[:, 2] * r[:, 3]
        # mean squared distance of the T's points from its centroid (for the RMS-distance cost)
        self.rg2 = float(np.sum(area * (r[:, 0] ** 2 + r[:, 1] ** 2 + (r[:, 2] ** 2 + r[:, 3] ** 2) / 3)) / area.sum())
        m = env.world.model
        dd = mujoco.MjData(m)
        mujoco.mj_forward(m, dd)
        j0 = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, self.robot.joint_names[0])
        self.base_axis = dd.xanchor[j0][:2].copy()      # the first joint's axis (pan) on the table
        self.free_yaw = self.robot.n_joints >= 6
        self._tilts = np.linspace(-1.2, 1.2, 49)
        self._tip = np.array([self.pm.tip_below(t) for t in self._tilts])
        if self.free_yaw:
            self._tilt_r = self._tilt_v = np.zeros(1)
        else:
            self._tilt_r, self._tilt_v = _cached(("tilt", self.robot.name, s), self._tilt_profile)
        self.lib: PushLibrary | None = None

    # --- tool pose -------------------------------------------------------------------------
    def tilt(self, xy: np.ndarray) -> float:
        return float(np.interp(np.linalg.norm(xy - self.base_axis), self._tilt_r, self._tilt_v))

    def tip_below(self, tilt: float) -> float:
        return float(np.interp(tilt, self._tilts, self._tip))

    def tool_pose(self, xy: np.ndarray, d: np.ndarray) -> tuple[float, float, float]:
        """Tool point height, yaw and tilt for pushing at ``xy`` along ``d``."""
        if self.free_yaw:   # narrow side of the fingers forward; yaw modulo pi within +-90 deg of home
            yaw, tilt = float(np.arctan2(d[1], d[0]) % np.pi - np.pi / 2), 0.0
        else:               # a 5-DoF arm: the tool faces away from the base
            v = xy - self.base_axis
            yaw, tilt = float(np.arctan2(v[1], v[0])), self.tilt(xy)
        return self.tip_below(tilt) + self.CLEARANCE_M * self.scale, yaw, tilt

    def safe_z(self, xy: np.ndarray, d: np.ndarray) -> float:
        z, _, tilt = self.tool_pose(xy, d)
        return z + 2 * self.task.half_height + self.SAFE_M * self.scale

    def tool_quat(self, yaw: float, tilt: float) -> np.ndarray:
        """``down_quat(yaw)`` tilted by ``tilt`` about the yawed horizontal y axis (negative: the
        tool's tip away from the base)."""
        tq = np.array([np.cos(tilt / 2), 0.0, np.sin(tilt / 2), 0.0])
        return quat_mul(np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]), quat_mul(tq, self.down_quat(0.0)))

    def _tilt_profile(self) -> tuple[np.ndarray, np.ndarray]:
        """For a 5-DoF arm: the tilt at each distance from the base that IK reaches best at push
        height (smoothed)."""
        c = np.asarray(self.task.workspace.center_xy) - self.base_axis
        rc, span = float(np.linalg.norm(c)), float(max(self.task.workspace.half_xy)) + 0.1 * self.scale
        radii = np.linspace(max(rc - span, 0.05), rc + span, 9)
        tilts = np.linspace(-1.0, 0.3, 14)   # flatter than -1 puts the wrist near the table
        home = np.asarray(self.robot.home_qpos, dtype=np.float64)
        best = []
        for r in radii:
            errs = []
            for t in tilts:
                target = np.array([self.base_axis[0] + r, self.base_axis[1],
                                   self.tip_below(t) + self.CLEARANCE_M * self.scale])
                q = home.copy()
                for _ in range(40):
                    q = self.ctrl.solve(q, target, self.tool_quat(0.0, t), 0.1)
                errs.append(np.linalg.norm(self.ctrl.forward(q)[0] - target) + 0.005 * abs(t))
            best.append(tilts[int(np.argmin(errs))])
        fit = np.polyval(np.polyfit(radii, best, 2), radii)
        return radii, np.clip(fit, tilts[0], tilts[-1])

    # --- planning ----------------------------------------------------------------------------
    def cost(self, poses: np.ndarray, target: np.ndarray) -> np.ndarray:
        """RMS distance between the T's points at ``poses`` and at ``target``."""
        dx, dy = poses[..., 0] - target[0], poses[..., 1] - target[1]
        return np.sqrt(dx * dx + dy * dy + 2 * (1 - np.cos(poses[..., 2] - target[2])) * self.rg2)

    def library(self) -> PushLibrary:
        """The push library: built with the nominal block, at the task's default target (where the
        T spends the fine-positioning phase), once per process."""
        s, target = self.scale, self.task.default_target()
        key = ("lib", self.robot.name, self.task.rects.tobytes(), tuple(np.round(target, 6)), self.task.half_height,
               self.task.config.friction, self.task.mass)

        def build() -> PushLibrary:
            self.pm.sync(None)
            try:
                return PushLibrary(self.pm, self.task.rects, target, self.tool_pose, self.SPACING_M * s, self.ANGLES,
                                   self.GAP_M * s, self.MAX_DEPTH_M * s, self.RECORD_M * s, self.v_push)
            finally:
                self.pm.sync(self.env.world.model)

        return _cached(key, build)

    def plan_push(self, pose: np.ndarray, target: np.ndarray):
        """The next push from block pose ``pose``: (score, start xy, direction, travel, library
        index, predicted pose), or None."""
        lib = self.lib
        after = _compose(pose, lib.delta)
        j1 = self.cost(after, target)
        if self._failed:
            j1[np.isin(lib.ray, list(self._failed))] = np.inf
        ranked = np.argsort(j1)
        _, keep = np.unique(lib.ray[ranked], return_index=True)
        ranked = ranked[np.sort(keep)]     # the best entry of each push line, best first
        first = ranked[:self.LOOKAHEAD]
        sub = lib.delta[::3]
        j2 = np.array([self.cost(_compose(after[i], sub), target).min() for i in first])
        order = np.concatenate([first[np.argsort(np.minimum(j1[first], j2 + 1e-4))],
                                ranked[self.LOOKAHEAD:self.LOOKAHEAD * 10]])
        rot = _rot(pose[2])
        verified = []
        for i in order:
            if not np.isfinite(j1[i]) or len(verified) >= self.VERIFY:
                break
            contact, d = pose[:2] + rot @ lib.contact[i], rot @ lib.dir[i]
            start, u0 = clear_start(self.pm, pose, contact, d, self.tool_pose, self.GAP_M * self.scale, self.top)
            if start is None:
                continue
            travel = float(lib.depth[i]) + u0
            res = self._simulate(pose, start, d, travel)
            if res is not None and float(self.cost(res, pose)) > 2e-4 * self.scale:   # it moves the T
                verified.append((self._score(res, target, sub), start, d, travel, int(i), res))
        # the best few again, shifted sideways by the arm's typical tracking error: a glancing
        # push that only works on the exact line is not worth much
        best = None
        for j, start, d, travel, i, res in sorted(verified, key=lambda v: v[0])[:self.ROBUST]:
            side = np.array([-d[1], d[0]]) * self.LATERAL_M
            shifted = [self._simulate(pose, start + k * side, d, travel) for k in (1.0, -1.0)]
            if any(r is None for r in shifted):
                continue
            j = float(np.mean([j] + [self._score(r, target, sub) for r in shifted]))
            if best is None or j < best[0]:
                best = (j, start, d, travel, i, res)
        return best

    def _simulate(self, pose: np.ndarray, start: np.ndarray, d: np.ndarray, travel: float) -> np.ndarray | None:
        """The block's pose after a push as executed (stop, hold, back off), or None if it tips."""
        z, yaw, tilt = self.tool_pose(start, d)
        self.pm.set_state(pose, np.array([start[0], start[1], z]), yaw, tilt)
        tool = (lambda xy, dd: (z, yaw, tilt)) if self.free_yaw else self.tool_pose   # constant on a 7-DoF arm
        res = self.pm.push(start, d, travel, self.v_push, tool, hold_s=0.1, back_m=self.BACK_M * self.scale)
        return None if self.pm.tipped else res[-1]

    def _score(self, pose: np.ndarray, target: np.ndarray, sub: np.ndarray) -> float:
        """Cost after this push or after the best library push that could follow it."""
        return min(float(self.cost(pose, target)), float(self.cost(_compose(pose, sub), target).min()) + 1e-4)

    def _push_waypoints(self, obs: Observation) -> list[Waypoint]:
        pose = np.asarray(obs["t_block_xy_yaw"], dtype=np.float64)
        target = np.asarray(obs["target_xy_yaw"], dtype=np.float64)
        tcp = np.asarray(obs.state["ee_pos_m"], dtype=np.float64)
        if self._last is not None:   # the last push moved the T far less than predicted: drop it
            moved = float(self.cost(pose, self._last[0]))
            if moved < 0.3 * float(self.cost(self._last[1], self._last[0])):
                self._failed.add(int(self.lib.ray[self._last[2]]))
        if self.lib is None:
            self.lib = self.library()
        best = self.plan_push(pose, target)
        wps = []
        if best is None:   # nothing feasible: lift, give the dropped pushes another chance, look again
            self._last = None
            self._failed.clear()
            return [Waypoint(np.array([tcp[0], tcp[1], self.safe_z(tcp[:2], np.array([1.0, 0.0]))]),
                             self._yaw, 1.0, speed_m_s=0.15, dwell_s=0.5)]
        _, start, d, travel, index, pred = best
        self._last = (pose, pred, index)
        self.predicted = pred
        s = self.scale
        end = start + d * travel
        back = end - d * self.BACK_M * s
        z0, yaw, _ = self.tool_pose(start, d)
        z1 = self.tool_pose(end, d)[0]
        z2 = self.tool_pose(back, d)[0]
        if tcp[2] < self.safe_z(tcp[:2], d) - 0.005:
            wps.append(Waypoint(np.array([tcp[0], tcp[1], self.safe_z(tcp[:2], d)]), self._yaw, 1.0,
                                speed_m_s=0.15 * s + 0.03, tol_m=0.01))
        return wps + [
            Waypoint(np.array([start[0], start[1], self.safe_z(start, d)]), yaw, 1.0,
                     speed_m_s=self.TRAVEL_SPEED * s + 0.05, tol_m=0.003 * s),   # over the start before descending
            Waypoint(np.array([start[0], start[1], z0]), yaw, 1.0, speed_m_s=0.15 * s + 0.03, tol_m=0.0015 * s,
                     dwell_s=0.2),
            Waypoint(np.array([end[0], end[1], z1]), yaw, 1.0, speed_m_s=self.v_push, tol_m=0.0015 * s, dwell_s=0.2),
            Waypoint(np.array([back[0], back[1], z2]), yaw, 1.0, speed_m_s=0.5 * self.v_push, tol_m=0.003 * s),
            Waypoint(np.array([back[0], back[1], self.safe_z(back, d)]), yaw, 1.0, speed_m_s=0.15 * s + 0.03,
                     tol_m=0.01),
        ]

    # --- episode -----------------------------------------------------------------------------
    def plan(self, obs: Observation) -> list[Waypoint]:
        self.pm.sync(self.env.world.model)
        self.lib = None
        self._failed: set[int] = set()
        self._last = None
        self._yaw = self._current_yaw(np.asarray(obs.state["joint_pos_rad"], dtype=np.float64))
        return self._push_waypoints(obs)

    def reset(self, obs: Observation, seed: int | None = None) -> None:
        super().reset(obs, seed)
        self._wait, self._bias, self._prev_set = 0, np.zeros(3), self._set_pos.copy()

    def act(self, obs: Observation) -> Action:
        if self.done:
            self.waypoints = self._push_waypoints(obs)
            if self.noise.waypoint_noise_m > 0:
                for w in self.waypoints:
                    w.pos_m = w.pos_m + self.rng.normal(0, self.noise.waypoint_noise_m, 3)
            self._i, self._dwell_left, self._wait = 0, None, 0
        return self._track(obs)

    def _track(self, obs: Observation) -> Action:
        """As ``ScriptedExpert.act``: move the setpoint toward the current waypoint at its speed
        and solve IK for it, with integral action on the steady-state error; the tool's
        orientation as in ``tool_pose``; the gripper stays closed. A waypoint is reached when
        the setpoint is there and the tool point within its tolerance (or after 3 s)."""
        wp = self.waypoints[min(self._i, len(self.waypoints) - 1)]
        step = wp.speed_m_s * self.noise.speed_scale * self.dt
        delta = wp.pos_m - self._set_pos
        dist = float(np.linalg.norm(delta))
        self._set_pos = wp.pos_m.copy() if dist <= step else self._set_pos + delta * (step / dist)
        if self.free_yaw:
            dyaw = float(_wrap(wp.yaw_rad - self._yaw))
            self._yaw += float(np.clip(dyaw, -2.5 * self.dt, 2.5 * self.dt))
            quat = self.tool_quat(self._yaw, 0.0)
        else:
            _, self._yaw, tilt = self.tool_pose(self._set_pos[:2], np.array([1.0, 0.0]))
            dyaw, quat = 0.0, self.tool_quat(self._yaw, tilt)
        q_meas = np.asarray(obs.state["joint_pos_rad"], dtype=np.float64)
        tcp = np.asarray(obs.state["ee_pos_m"], dtype=np.float64)
        # integral action on the error against the previous tick's setpoint (which the measured
        # tool point answers to): the sag is corrected, the one-tick lag in motion does not wind up
        self._bias = self._bias + 0.3 * (self._prev_set - tcp)
        self._prev_set = self._set_pos.copy()
        norm = float(np.linalg.norm(self._bias))
        if norm > 0.015:
            self._bias *= 0.015 / norm
        q_ref = 0.5 * (self._q_cmd + q_meas)
        self._q_cmd = self.ctrl.solve(q_ref, self._set_pos + self._bias, quat, self.dt)
        if not self.done:
            self._wait += 1
            arrived = dist <= step and np.linalg.norm(tcp - wp.pos_m) < wp.tol_m and abs(dyaw) < 0.05
            if arrived or self._wait * self.dt > 3.0:
                if self._dwell_left is None:
                    pause = self.rng.uniform(0.3, 1.0) if self.rng.random() < self.noise.pause_prob else 0.0
                    self._dwell_left = wp.dwell_s + pause
                self._dwell_left -= self.dt
                if self._dwell_left <= 0:
                    self._i, self._dwell_left, self._wait = self._i + 1, None, 0
        q = self._q_cmd
        if self.noise.action_noise_rad > 0:
            q = q + self.rng.normal(0, self.noise.action_noise_rad, q.shape)
        return Action({"joint_pos_rad": q.astype(np.float32), "gripper_pos": np.array([1.0], dtype=np.float32)})
