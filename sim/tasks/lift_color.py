"""lift_color: three cubes (red, green, blue) on the table; the instruction names the one to pick up.

The language-following task: nothing in the scene or the object state says which cube is the goal,
only the instruction ("pick up the green cube"). Randomised (seeded): the three cubes' positions (at
least ``min_separation_m`` apart, scaled for the robot) and yaws, and the goal colour. Success: the
named cube's centre ``lift_height_m`` above its resting height (lifting another one does not count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import mujoco
import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.sim.tasks.base import Task, TaskConfig, body_id, free_joint_qadr, set_free_pose
from robot_learning.sim.world import SimWorld

COLOURS = {"red": "0.85 0.15 0.12 1", "green": "0.15 0.70 0.20 1", "blue": "0.15 0.30 0.85 1"}


@dataclass(frozen=True)
class LiftColorConfig(TaskConfig):
    cube_half_m: float = 0.02        # Panda size; scaled by the robot's object_scale
    lift_height_m: float = 0.08      # success height above rest; scaled too
    cube_mass_kg: float = 0.05
    max_yaw_rad: float = np.pi / 4
    min_separation_m: float = 0.09   # between cube centres: room for the open gripper


class LiftColor(Task):
    name = "lift_color"
    config_cls = LiftColorConfig
    config: LiftColorConfig

    @property
    def half(self) -> float:
        return self.config.cube_half_m * self.scale

    def bodies_xml(self) -> str:
        h, (x, y) = self.half, self.workspace.center_xy
        return "".join(
            f'<body name="cube_{c}" pos="{x + 0.1 * k} {y} {h}"><freejoint name="cube_{c}_joint"/>'
            f'<geom name="cube_{c}" type="box" size="{h} {h} {h}" rgba="{rgba}" mass="{self.config.cube_mass_kg}" '
            f'friction="1.2 0.005 0.0001" condim="4"/></body>' for k, (c, rgba) in enumerate(COLOURS.items()))

    def object_geoms(self) -> tuple[str, ...]:
        return tuple(f"cube_{c}" for c in COLOURS)

    def bind(self, world: SimWorld) -> None:
        super().bind(world)
        self._cubes = {c: body_id(world.model, f"cube_{c}") for c in COLOURS}
        self._qadr = {c: free_joint_qadr(world.model, b)[0] for c, b in self._cubes.items()}
        self._tcp = mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_SITE, self.robot.ee_site)
        self.target = "red"

    def reset(self, world: SimWorld, rng: np.random.Generator) -> None:
        sep = self.config.min_separation_m * self.scale
        for _ in range(200):
            xy = [self.sample_xy(rng, margin=self.half) for _ in COLOURS]
            if min(np.linalg.norm(a - b) for i, a in enumerate(xy) for b in xy[i + 1:]) >= sep:
                break
        for c, p in zip(COLOURS, xy):
            yaw = rng.uniform(-self.config.max_yaw_rad, self.config.max_yaw_rad)
            set_free_pose(world, self._cubes[c], np.array([p[0], p[1], self.half]), yaw)
        self.target = list(COLOURS)[int(rng.integers(len(COLOURS)))]

    def cube_pose(self, world: SimWorld, colour: str) -> tuple[np.ndarray, np.ndarray]:
        a = self._qadr[colour]
        q = world.data.qpos[a:a + 7]
        return q[:3].copy(), q[3:].copy()

    def _lifted(self, world: SimWorld, colour: str) -> float:
        pos, _ = self.cube_pose(world, colour)
        return float(pos[2] - self.half)

    def reward(self, world: SimWorld) -> float:
        if self.success(world):
            return 1.0
        pos, _ = self.cube_pose(world, self.target)
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(world.data.site_xpos[self._tcp] - pos))
        lift = np.clip(self._lifted(world, self.target) / (self.config.lift_height_m * self.scale), 0.0, 1.0)
        return float(0.3 * reach + 0.7 * lift)

    def success(self, world: SimWorld) -> bool:
        return self._lifted(world, self.target) >= self.config.lift_height_m * self.scale

    def instruction(self) -> str:
        return f"pick up the {self.target} cube"

    def wrong_instruction(self, rng: np.random.Generator) -> str:
        others = [c for c in COLOURS if c != self.target]
        return f"pick up the {others[int(rng.integers(len(others)))]} cube"

    @property
    def privileged_features(self) -> FeatureSet:
        out = []
        for c in COLOURS:
            out += [FeatureSpec(f"cube_{c}_pos_m", (3,), "float32", FeatureKind.STATE, "m", ("x", "y", "z")),
                    FeatureSpec(f"cube_{c}_quat_wxyz", (4,), "float32", FeatureKind.STATE, "1", ("w", "x", "y", "z"))]
        return FeatureSet(out)

    def privileged_state(self, world: SimWorld) -> Mapping[str, np.ndarray]:
        out = {}
        for c in COLOURS:
            pos, quat = self.cube_pose(world, c)
            out[f"cube_{c}_pos_m"], out[f"cube_{c}_quat_wxyz"] = pos.astype(np.float32), quat.astype(np.float32)
        return out
