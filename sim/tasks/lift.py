"""lift: pick up a cube from the table.

Randomised (seeded): cube position in the robot's workspace and yaw. Success: the cube's
centre is ``lift_height_m`` (scaled for the robot) above its resting height.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import mujoco
import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.sim.tasks.base import Task, TaskConfig, body_id, free_joint_qadr, set_free_pose
from robot_learning.sim.world import SimWorld


@dataclass(frozen=True)
class LiftConfig(TaskConfig):
    cube_half_m: float = 0.02        # Panda size; scaled by the robot's object_scale
    lift_height_m: float = 0.08      # success height above rest; scaled too
    cube_mass_kg: float = 0.05
    max_yaw_rad: float = np.pi / 4


class Lift(Task):
    name = "lift"
    config_cls = LiftConfig
    config: LiftConfig

    @property
    def half(self) -> float:
        return self.config.cube_half_m * self.scale

    def bodies_xml(self) -> str:
        h = self.half
        return (f'<body name="cube" pos="{self.workspace.center_xy[0]} {self.workspace.center_xy[1]} {h}">'
                f'<freejoint name="cube_joint"/>'
                f'<geom name="cube" type="box" size="{h} {h} {h}" rgba="0.85 0.15 0.12 1" '
                f'mass="{self.config.cube_mass_kg}" friction="1.2 0.005 0.0001" condim="4"/></body>')

    def object_geoms(self) -> tuple[str, ...]:
        return ("cube",)

    def bind(self, world: SimWorld) -> None:
        super().bind(world)
        self._cube = body_id(world.model, "cube")
        self._qadr, _ = free_joint_qadr(world.model, self._cube)
        self._tcp = mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_SITE, self.robot.ee_site)

    def reset(self, world: SimWorld, rng: np.random.Generator) -> None:
        xy = self.sample_xy(rng)
        yaw = rng.uniform(-self.config.max_yaw_rad, self.config.max_yaw_rad)
        set_free_pose(world, self._cube, np.array([xy[0], xy[1], self.half]), yaw)

    def cube_pose(self, world: SimWorld) -> tuple[np.ndarray, np.ndarray]:
        q = world.data.qpos[self._qadr:self._qadr + 7]
        return q[:3].copy(), q[3:].copy()

    def reward(self, world: SimWorld) -> float:
        pos, _ = self.cube_pose(world)
        tcp = world.data.site_xpos[self._tcp]
        # reach: 0..1 as the tool centre point nears the cube
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(tcp - pos))
        # lift: 0..1 fraction of the success height reached
        lift = np.clip((pos[2] - self.half) / (self.config.lift_height_m * self.scale), 0.0, 1.0)
        # success dominates: a lifted cube scores 1
        return 1.0 if self.success(world) else float(0.3 * reach + 0.7 * lift)

    def success(self, world: SimWorld) -> bool:
        pos, _ = self.cube_pose(world)
        return bool(pos[2] - self.half >= self.config.lift_height_m * self.scale)

    def instruction(self) -> str:
        return "pick up the red cube"

    @property
    def privileged_features(self) -> FeatureSet:
        return FeatureSet([
            FeatureSpec("cube_pos_m", (3,), "float32", FeatureKind.STATE, "m", ("x", "y", "z")),
            FeatureSpec("cube_quat_wxyz", (4,), "float32", FeatureKind.STATE, "1", ("w", "x", "y", "z")),
        ])

    def privileged_state(self, world: SimWorld) -> Mapping[str, np.ndarray]:
        pos, quat = self.cube_pose(world)
        return {"cube_pos_m": pos.astype(np.float32), "cube_quat_wxyz": quat.astype(np.float32)}
