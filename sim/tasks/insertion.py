"""insertion: pick up a square peg and insert it into a hole with sub-millimetre clearance.

The hole in the fixture is ``clearance_m`` (default 0.5 mm) wider than the peg in total, so a
misalignment of a quarter millimetre per side jams it: the task where contact sensing matters.
Randomised (seeded): peg position and yaw, fixture position and yaw (kept apart). Success: the
peg's bottom is at least ``insert_depth_m`` below the fixture's top face, inside the hole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import mujoco
import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.sim.tasks.base import Task, TaskConfig, body_id, free_joint_qadr, quat_yaw, set_free_pose
from robot_learning.sim.world import SimWorld


@dataclass(frozen=True)
class InsertionConfig(TaskConfig):
    episode_len_s: float = 20.0
    peg_half_m: float = 0.01          # peg cross-section half-width (Panda; scaled for smaller robots)
    peg_half_len_m: float = 0.03      # peg half-length
    clearance_m: float = 0.0005       # hole width minus peg width (total, not scaled)
    hole_depth_m: float = 0.03
    fixture_half_m: float = 0.035     # fixture outer half-width
    insert_depth_m: float = 0.015     # success depth below the fixture top
    min_separation_m: float = 0.12
    peg_mass_kg: float = 0.04


class Insertion(Task):
    name = "insertion"
    config_cls = InsertionConfig
    config: InsertionConfig

    @property
    def peg_half(self) -> float:
        return self.config.peg_half_m * self.scale

    @property
    def peg_half_len(self) -> float:
        return self.config.peg_half_len_m * self.scale

    @property
    def hole_half(self) -> float:
        return self.peg_half + self.config.clearance_m / 2

    @property
    def depth(self) -> float:
        return self.config.hole_depth_m * self.scale

    def bodies_xml(self) -> str:
        c = self.config
        p, L = self.peg_half, self.peg_half_len
        hh, F, D = self.hole_half, c.fixture_half_m * self.scale, self.depth
        wall = (F - hh) / 2  # half-thickness of each wall
        # MuJoCo takes the larger friction of two touching geoms unless one has priority: the
        # walls' priority makes peg-wall contacts use 0.3 (machined parts), while the peg keeps
        # its high friction against the fingers.
        off = hh + wall       # wall centre offset from the hole axis
        walls = "".join(
            f'<geom name="fixture_wall{i}" type="box" size="{sx} {sy} {D / 2}" pos="{x} {y} {D / 2}" '
            f'rgba="0.3 0.35 0.45 1" friction="0.3 0.005 0.0001" condim="3" priority="1"/>'
            for i, (sx, sy, x, y) in enumerate([(wall, F, off, 0), (wall, F, -off, 0),
                                                (hh, wall, 0, off), (hh, wall, 0, -off)]))
        cx, cy = self.workspace.center_xy
        return (
            f'<body name="fixture" mocap="true" pos="{cx} {cy + 0.1} 0">{walls}'
            f'<site name="hole" pos="0 0 {D}" size="0.003" rgba="1 1 0 0.5" group="3"/></body>'
            f'<body name="peg" pos="{cx} {cy - 0.1} {L}"><freejoint name="peg_joint"/>'
            f'<geom name="peg" type="box" size="{p} {p} {L}" rgba="0.9 0.55 0.1 1" mass="{c.peg_mass_kg}" '
            f'friction="1.5 0.005 0.0001" condim="4" solref="0.004 1"/></body>'
        )

    def object_geoms(self) -> tuple[str, ...]:
        return ("peg",)

    def bind(self, world: SimWorld) -> None:
        super().bind(world)
        m = world.model
        self._peg = body_id(m, "peg")
        self._qpeg, _ = free_joint_qadr(m, self._peg)
        self._mocap = int(m.body_mocapid[body_id(m, "fixture")])
        self._tcp = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, self.robot.ee_site)

    def reset(self, world: SimWorld, rng: np.random.Generator) -> None:
        a, b = self.sample_two_apart(rng, self.config.min_separation_m * self.scale)
        yaw_peg, yaw_fix = rng.uniform(-np.pi / 4, np.pi / 4, 2)
        set_free_pose(world, self._peg, np.array([a[0], a[1], self.peg_half_len]), yaw_peg)
        world.data.mocap_pos[self._mocap] = [b[0], b[1], 0.0]
        world.data.mocap_quat[self._mocap] = [np.cos(yaw_fix / 2), 0, 0, np.sin(yaw_fix / 2)]

    def peg_pose(self, world: SimWorld) -> tuple[np.ndarray, np.ndarray]:
        q = world.data.qpos[self._qpeg:self._qpeg + 7]
        return q[:3].copy(), q[3:].copy()

    def hole_pose(self, world: SimWorld) -> tuple[np.ndarray, np.ndarray]:
        """Centre of the hole's opening (top face) and the fixture's orientation."""
        pos = world.data.mocap_pos[self._mocap].copy()
        pos[2] += self.depth
        return pos, world.data.mocap_quat[self._mocap].copy()

    def _peg_bottom(self, world: SimWorld) -> np.ndarray:
        pos, quat = self.peg_pose(world)
        mat = np.empty(9)
        mujoco.mju_quat2Mat(mat, quat)
        return pos - mat.reshape(3, 3)[:, 2] * self.peg_half_len

    def insertion_depth(self, world: SimWorld) -> float:
        """How far the peg's bottom is below the hole's opening (m; negative: above it)."""
        hole, _ = self.hole_pose(world)
        bottom = self._peg_bottom(world)
        inside = np.linalg.norm(bottom[:2] - hole[:2]) < self.hole_half * 1.5
        return float(hole[2] - bottom[2]) if inside else -1.0

    def reward(self, world: SimWorld) -> float:
        if self.success(world):
            return 1.0
        peg, _ = self.peg_pose(world)
        hole, _ = self.hole_pose(world)
        tcp = world.data.site_xpos[self._tcp]
        # reach: bring the tool to the peg
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(tcp - peg))
        # align: bring the peg's bottom over the hole opening
        align = 1.0 - np.tanh(20.0 * np.linalg.norm(self._peg_bottom(world) - hole))
        # insert: fraction of the success depth reached
        insert = np.clip(self.insertion_depth(world) / (self.config.insert_depth_m * self.scale), 0.0, 1.0)
        return float(0.2 * reach + 0.4 * align + 0.4 * insert)

    def success(self, world: SimWorld) -> bool:
        return self.insertion_depth(world) >= self.config.insert_depth_m * self.scale

    def instruction(self) -> str:
        return "insert the peg into the hole"

    @property
    def privileged_features(self) -> FeatureSet:
        return FeatureSet([
            FeatureSpec("peg_pos_m", (3,), "float32", FeatureKind.STATE, "m", ("x", "y", "z")),
            FeatureSpec("peg_quat_wxyz", (4,), "float32", FeatureKind.STATE, "1", ("w", "x", "y", "z")),
            FeatureSpec("hole_pos_m", (3,), "float32", FeatureKind.STATE, "m", ("x", "y", "z")),
            FeatureSpec("hole_yaw_rad", (1,), "float32", FeatureKind.STATE, "rad"),
        ])

    def privileged_state(self, world: SimWorld) -> Mapping[str, np.ndarray]:
        peg, pq = self.peg_pose(world)
        hole, hq = self.hole_pose(world)
        return {"peg_pos_m": peg.astype(np.float32), "peg_quat_wxyz": pq.astype(np.float32),
                "hole_pos_m": hole.astype(np.float32), "hole_yaw_rad": np.array([quat_yaw(hq)], dtype=np.float32)}
