"""Expert for insertion: grasp the peg from above, carry it over the hole, then servo the peg's
measured bottom (privileged pose, tilt included) onto the hole axis with integral action while
waiting at the entry; descend only once aligned within a fraction of the clearance, and stop
correcting once the peg is inside (the hole then guides it)."""

from __future__ import annotations

import mujoco
import numpy as np

from robot_learning.core.frame import Action, Observation
from robot_learning.sim.experts.base import ScriptedExpert, Waypoint
from robot_learning.sim.tasks.base import quat_yaw


def _wrap90(a: float) -> float:
    return float((a + np.pi / 4) % (np.pi / 2) - np.pi / 4)


class InsertionExpert(ScriptedExpert):
    ABOVE, ENTRY, DOWN, RELEASE = 4, 5, 6, 7   # waypoint indices of the servoed phases
    ALIGN_TOL_M = 0.00015
    GAIN = 0.6

    def plan(self, obs: Observation) -> list[Waypoint]:
        s, L = self.scale, self.env.task.peg_half_len
        peg = np.asarray(obs["peg_pos_m"], dtype=np.float64)
        yaw = self.grasp_yaw(quat_yaw(np.asarray(obs["peg_quat_wxyz"])))
        grasp = self.grasp_point(peg + [0, 0, 0.45 * L], yaw, self.env.task.peg_half)
        self._carry_z = float(obs["hole_pos_m"][2]) + 2 * L + 0.05 * s
        self._xy = None
        slow = 0.05 * s + 0.01
        return [
            Waypoint(grasp + [0, 0, 0.06 * s + L], yaw, 0.0, speed_m_s=0.3 * s + 0.05),
            Waypoint(grasp, yaw, 0.0, speed_m_s=0.1 * s + 0.02, tol_m=0.003),
            Waypoint(grasp, yaw, 1.0, dwell_s=0.6),
            Waypoint(np.array([peg[0], peg[1], self._carry_z]), yaw, 1.0, speed_m_s=0.15 * s + 0.03),
            Waypoint(np.zeros(3), yaw, 1.0, speed_m_s=0.2 * s + 0.03, tol_m=0.002),   # ABOVE
            Waypoint(np.zeros(3), yaw, 1.0, speed_m_s=slow, tol_m=0.001, dwell_s=0.3),  # ENTRY
            Waypoint(np.zeros(3), yaw, 1.0, speed_m_s=0.02 * s + 0.005, dwell_s=0.3),  # DOWN
            Waypoint(np.zeros(3), yaw, 0.0, dwell_s=0.5),                              # RELEASE
        ]

    def _peg_bottom(self, obs: Observation) -> np.ndarray:
        mat = np.empty(9)
        mujoco.mju_quat2Mat(mat, np.asarray(obs["peg_quat_wxyz"], dtype=np.float64))
        return np.asarray(obs["peg_pos_m"], dtype=np.float64) - mat.reshape(3, 3)[:, 2] * self.env.task.peg_half_len

    def act(self, obs: Observation) -> Action:
        if self.ABOVE <= self._i < len(self.waypoints):
            self._servo(obs)
        return super().act(obs)

    def _servo(self, obs: Observation) -> None:
        task = self.env.task
        hole = np.asarray(obs["hole_pos_m"], dtype=np.float64)
        tcp = np.asarray(obs["ee_pos_m"], dtype=np.float64)
        bottom = self._peg_bottom(obs)
        below = tcp[2] - bottom[2]  # tool height above the peg's bottom
        err_xy = hole[:2] - bottom[:2]
        yaw_err = _wrap90(float(obs["hole_yaw_rad"][0]) - quat_yaw(np.asarray(obs["peg_quat_wxyz"])))
        if self._xy is None:  # feed-forward from the grasp offset measured now
            self._xy = tcp[:2] + err_xy
            self._yaw_cmd = self._current_yaw(np.asarray(obs.state["joint_pos_rad"], dtype=np.float64)) + yaw_err
        entry = self.waypoints[self.ENTRY].pos_m
        at_entry = self._i == self.ENTRY and np.linalg.norm(self._set_pos - entry) < 1e-6 \
            and abs(tcp[2] - entry[2]) < 0.002
        if at_entry:  # integral action on the tool target until the peg's bottom is on the axis
            self._xy = self._xy + self.GAIN * err_xy
            self._yaw_cmd += 0.5 * yaw_err
            if np.linalg.norm(err_xy) > self.ALIGN_TOL_M or abs(yaw_err) > 0.01:
                self._dwell_left = None  # not aligned yet: keep waiting at the entry
        z = {self.ABOVE: self._carry_z, self.ENTRY: hole[2] + 0.003 + below,
             self.DOWN: hole[2] - 0.6 * task.depth + below, self.RELEASE: hole[2] - 0.6 * task.depth + below}
        for k in (self.ABOVE, self.ENTRY, self.DOWN, self.RELEASE):
            if k >= self._i:  # past phases keep their targets; inside the hole xy stays frozen
                self.waypoints[k].pos_m = np.array([self._xy[0], self._xy[1], z[k]])
                self.waypoints[k].yaw_rad = self._yaw_cmd
