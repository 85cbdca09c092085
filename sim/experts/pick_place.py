"""Experts for lift and stack: top-down grasps planned from the cubes' poses."""

from __future__ import annotations

import numpy as np

from robot_learning.core.frame import Observation
from robot_learning.sim.experts.base import ScriptedExpert, Waypoint
from robot_learning.sim.tasks.base import quat_yaw


class LiftExpert(ScriptedExpert):
    cube = "cube"

    def plan(self, obs: Observation) -> list[Waypoint]:
        s, h = self.scale, self.env.task.half
        p = np.asarray(obs[f"{self.cube}_pos_m"], dtype=np.float64)
        yaw = self.grasp_yaw(quat_yaw(np.asarray(obs[f"{self.cube}_quat_wxyz"])))
        grasp = self.grasp_point(np.array([p[0], p[1], 0.8 * h]), yaw, h)
        above = grasp + [0, 0, 0.08 * s + h]
        return [
            Waypoint(above, yaw, 0.0, speed_m_s=0.3 * s + 0.05),
            Waypoint(grasp, yaw, 0.0, speed_m_s=0.12 * s + 0.02, tol_m=0.003),
            Waypoint(grasp, yaw, 1.0, dwell_s=0.6),
            Waypoint(p + [0, 0, 0.16 * s + h], yaw, 1.0, speed_m_s=0.15 * s + 0.03, dwell_s=2.0),
        ]


class LiftColorExpert(LiftExpert):
    """lift_color: the lift plan for the cube the instruction names (the expert is told, as a human would be)."""

    @property
    def cube(self) -> str:
        return f"cube_{self.env.task.target}"


class StackExpert(ScriptedExpert):
    def plan(self, obs: Observation) -> list[Waypoint]:
        s, h = self.scale, self.env.task.half
        top = np.asarray(obs["cube_top_pos_m"], dtype=np.float64)
        base = np.asarray(obs["cube_base_pos_m"], dtype=np.float64)
        yaw_top = self.grasp_yaw(quat_yaw(np.asarray(obs["cube_top_quat_wxyz"])))
        yaw_base = self.grasp_yaw(quat_yaw(np.asarray(obs["cube_base_quat_wxyz"])))
        grasp = self.grasp_point(np.array([top[0], top[1], 0.8 * h]), yaw_top, h)
        carry_z = 2 * h + 0.08 * s + h
        # the cube sits where the grasp put it relative to the tool: carry that offset over
        lift = grasp[2] - top[2]
        # after closing, a one-sided gripper has pushed the cube against its fixed jaw: no margin
        place = self.grasp_point(np.array([base[0], base[1], base[2] + 2 * h + lift + 0.004]), yaw_base, h,
                                 margin_m=0.0)
        top = grasp.copy()
        return [
            Waypoint(grasp + [0, 0, 0.08 * s + h], yaw_top, 0.0, speed_m_s=0.3 * s + 0.05),
            Waypoint(grasp, yaw_top, 0.0, speed_m_s=0.12 * s + 0.02, tol_m=0.003),
            Waypoint(grasp, yaw_top, 1.0, dwell_s=0.6),
            Waypoint(np.array([top[0], top[1], carry_z]), yaw_top, 1.0, speed_m_s=0.15 * s + 0.03),
            Waypoint(np.array([place[0], place[1], carry_z]), yaw_base, 1.0, speed_m_s=0.2 * s + 0.03),
            Waypoint(place, yaw_base, 1.0, speed_m_s=0.08 * s + 0.02, tol_m=0.003, dwell_s=0.3),
            Waypoint(place, yaw_base, 0.0, dwell_s=0.6),
            Waypoint(place + [0, 0, 0.08 * s], yaw_base, 0.0, speed_m_s=0.15 * s + 0.03, dwell_s=1.0),
        ]
