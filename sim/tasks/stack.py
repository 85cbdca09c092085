"""stack: put the red cube on top of the green cube.

Randomised (seeded): both cube positions (kept apart) and yaws. Success: the red cube rests on
the green one (horizontal offset < half a cube, height within 6 mm of one cube size) and the
gripper has let go (open past half-way).
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
class StackConfig(TaskConfig):
    episode_len_s: float = 16.0
    cube_half_m: float = 0.02
    min_separation_m: float = 0.09   # between cube centres at reset (scaled)
    cube_mass_kg: float = 0.05
    max_yaw_rad: float = np.pi / 4


class Stack(Task):
    name = "stack"
    config_cls = StackConfig
    config: StackConfig

    @property
    def half(self) -> float:
        return self.config.cube_half_m * self.scale

    def bodies_xml(self) -> str:
        h, m = self.half, self.config.cube_mass_kg
        cx, cy = self.workspace.center_xy
        cube = ('<body name="{n}" pos="{x} {y} {h}"><freejoint name="{n}_joint"/>'
                '<geom name="{n}" type="box" size="{h} {h} {h}" rgba="{rgba}" mass="{m}" '
                'friction="1.2 0.005 0.0001" condim="4"/></body>')
        return (cube.format(n="cube_top", x=cx, y=cy - 0.05, h=h, m=m, rgba="0.85 0.15 0.12 1")
                + cube.format(n="cube_base", x=cx, y=cy + 0.05, h=h, m=m, rgba="0.15 0.65 0.2 1"))

    def object_geoms(self) -> tuple[str, ...]:
        return ("cube_top", "cube_base")

    def bind(self, world: SimWorld) -> None:
        super().bind(world)
        self._top = body_id(world.model, "cube_top")
        self._base = body_id(world.model, "cube_base")
        self._qtop, _ = free_joint_qadr(world.model, self._top)
        self._qbase, _ = free_joint_qadr(world.model, self._base)
        self._tcp = mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_SITE, self.robot.ee_site)
        self._grip_q = world.model.jnt_qposadr[
            mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_JOINT, self.robot.gripper_joints[0])]

    def reset(self, world: SimWorld, rng: np.random.Generator) -> None:
        a, b = self.sample_two_apart(rng, self.config.min_separation_m * self.scale)
        yaw = rng.uniform(-self.config.max_yaw_rad, self.config.max_yaw_rad, 2)
        set_free_pose(world, self._top, np.array([a[0], a[1], self.half]), yaw[0])
        set_free_pose(world, self._base, np.array([b[0], b[1], self.half]), yaw[1])

    def poses(self, world: SimWorld):
        q = world.data.qpos
        return (q[self._qtop:self._qtop + 3].copy(), q[self._qtop + 3:self._qtop + 7].copy(),
                q[self._qbase:self._qbase + 3].copy(), q[self._qbase + 3:self._qbase + 7].copy())

    def _released(self, world: SimWorld) -> bool:
        g = self.robot
        frac = (world.data.qpos[self._grip_q] - g.gripper_joint_open) / (g.gripper_joint_closed - g.gripper_joint_open)
        return bool(frac < 0.5)

    def _on_top(self, world: SimWorld) -> bool:
        top, _, base, _ = self.poses(world)
        dz = top[2] - base[2]
        return bool(np.linalg.norm(top[:2] - base[:2]) < self.half and abs(dz - 2 * self.half) < 0.006)

    def reward(self, world: SimWorld) -> float:
        top, _, base, _ = self.poses(world)
        tcp = world.data.site_xpos[self._tcp]
        # reach the red cube, then bring it above the green one
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(tcp - top))
        target = base + np.array([0.0, 0.0, 2 * self.half])
        place = 1.0 - np.tanh(10.0 * np.linalg.norm(top - target))
        if self.success(world):
            return 1.0
        # stacked but still held: almost there
        return float(0.2 * reach + 0.6 * place + (0.1 if self._on_top(world) else 0.0))

    def success(self, world: SimWorld) -> bool:
        return self._on_top(world) and self._released(world)

    def instruction(self) -> str:
        return "put the red cube on the green cube"

    @property
    def privileged_features(self) -> FeatureSet:
        f = []
        for n in ("cube_top", "cube_base"):
            f += [FeatureSpec(f"{n}_pos_m", (3,), "float32", FeatureKind.STATE, "m", ("x", "y", "z")),
                  FeatureSpec(f"{n}_quat_wxyz", (4,), "float32", FeatureKind.STATE, "1", ("w", "x", "y", "z"))]
        return FeatureSet(f)

    def privileged_state(self, world: SimWorld) -> Mapping[str, np.ndarray]:
        tp, tq, bp, bq = self.poses(world)
        return {"cube_top_pos_m": tp.astype(np.float32), "cube_top_quat_wxyz": tq.astype(np.float32),
                "cube_base_pos_m": bp.astype(np.float32), "cube_base_quat_wxyz": bq.astype(np.float32)}
