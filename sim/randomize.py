"""Domain randomisation: seeded, reproducible, always relative to the nominal scene.

Object poses are the task's own randomisation; this adds object colours, table texture tint,
lighting, camera pose jitter, and object friction and mass. Every reset draws from the nominal
values stored at construction, so randomisations never accumulate.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from robot_learning.errors import ConfigError
from robot_learning.sim.tasks.base import Task
from robot_learning.sim.world import SimWorld


@dataclass(frozen=True)
class DomainRandomization:
    object_color: bool = True            # random hue for each task object
    table_tint: float = 0.15             # +- brightness of the table
    light_pos_jitter_m: float = 0.3
    light_intensity: tuple[float, float] = (0.4, 0.9)
    camera_pos_jitter_m: float = 0.02
    camera_rot_jitter_rad: float = 0.03
    friction_scale: tuple[float, float] = (0.7, 1.3)
    mass_scale: tuple[float, float] = (0.7, 1.5)

    def __post_init__(self) -> None:
        for name in ("light_intensity", "friction_scale", "mass_scale"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ConfigError.expected(name, "0 <= low <= high", (lo, hi))


class Randomizer:
    def __init__(self, world: SimWorld, task: Task, config: DomainRandomization):
        self.world, self.config = world, config
        m = world.model
        self._geoms = np.array([mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, g) for g in task.object_geoms()],
                               dtype=int)
        if np.any(self._geoms < 0):
            raise ConfigError.expected("task object geoms", "geoms in the model", task.object_geoms())
        self._bodies = np.unique(m.geom_bodyid[self._geoms]) if self._geoms.size else np.zeros(0, int)
        self._table = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "table")
        self.nominal = {
            "geom_rgba": m.geom_rgba.copy(), "geom_friction": m.geom_friction.copy(),
            "body_mass": m.body_mass.copy(), "body_inertia": m.body_inertia.copy(),
            "light_pos": m.light_pos.copy(), "light_diffuse": m.light_diffuse.copy(),
            "cam_pos": m.cam_pos.copy(), "cam_quat": m.cam_quat.copy(), "mat_rgba": m.mat_rgba.copy(),
        }

    def apply(self, rng: np.random.Generator) -> None:
        m, c, nom = self.world.model, self.config, self.nominal
        m.geom_rgba[:] = nom["geom_rgba"]
        m.geom_friction[:] = nom["geom_friction"]
        m.body_mass[:] = nom["body_mass"]
        m.body_inertia[:] = nom["body_inertia"]
        m.light_pos[:] = nom["light_pos"]
        m.light_diffuse[:] = nom["light_diffuse"]
        m.cam_pos[:] = nom["cam_pos"]
        m.cam_quat[:] = nom["cam_quat"]
        m.mat_rgba[:] = nom["mat_rgba"]
        if c.object_color:
            for g in self._geoms:
                m.geom_rgba[g, :3] = np.clip(nom["geom_rgba"][g, :3] * rng.uniform(0.6, 1.2, 3)
                                             + rng.uniform(-0.1, 0.1, 3), 0.0, 1.0)
        if self._table >= 0 and m.geom_matid[self._table] >= 0:
            mat = m.geom_matid[self._table]
            m.mat_rgba[mat, :3] = np.clip(nom["mat_rgba"][mat, :3] * (1 + rng.uniform(-c.table_tint, c.table_tint)), 0, 1)
        if m.nlight:
            m.light_pos[:] += rng.uniform(-c.light_pos_jitter_m, c.light_pos_jitter_m, m.light_pos.shape)
            m.light_diffuse[:] = rng.uniform(*c.light_intensity, (m.nlight, 1))
        if m.ncam:
            m.cam_pos[:] += rng.uniform(-c.camera_pos_jitter_m, c.camera_pos_jitter_m, m.cam_pos.shape)
            for i in range(m.ncam):
                dq = np.empty(4)
                axis = rng.normal(size=3)
                mujoco.mju_axisAngle2Quat(dq, axis / np.linalg.norm(axis),
                                          rng.uniform(-c.camera_rot_jitter_rad, c.camera_rot_jitter_rad))
                out = np.empty(4)
                mujoco.mju_mulQuat(out, nom["cam_quat"][i], dq)
                m.cam_quat[i] = out
        for g in self._geoms:
            m.geom_friction[g, 0] = nom["geom_friction"][g, 0] * rng.uniform(*c.friction_scale)
        for b in self._bodies:
            s = rng.uniform(*c.mass_scale)
            m.body_mass[b] = nom["body_mass"][b] * s
            m.body_inertia[b] = nom["body_inertia"][b] * s
