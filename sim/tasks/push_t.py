"""push_t: push a T-shaped block onto a target pose drawn on the table (the PushT benchmark).

The T (a bar and a stem in one free body) lies flat on the table; the robot pushes it with its
closed gripper. The target is a flat, visual-only T on the table, fixed at the workspace centre
with a fixed yaw by default (as in the standard benchmark); ``randomize_target`` draws it too.
Randomised (seeded): the block's position in the workspace and its yaw (any), redrawn until it
covers less than ``max_reset_coverage`` of the target. Metric (the standard PushT one): coverage =
area(T at its pose intersected with T at the target) / area(T), computed exactly in the table
plane by clipping the T's rectangles; reward = clip(coverage / success_coverage, 0, 1); success:
coverage > ``success_coverage``.

Frames: the block's body frame sits at the T's centroid (area centre) at half its height; its
local +y points from the stem to the bar; yaw is the direction of that axis on the table (see
``t_planar_yaw``: a T that has flipped over counts by its footprint).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.errors import ConfigError
from robot_learning.sim.tasks.base import Task, TaskConfig, body_id, free_joint_qadr, set_free_pose
from robot_learning.sim.world import SimWorld


@dataclass(frozen=True)
class PushTConfig(TaskConfig):
    # The expert needs ~10 s on average and at most ~19 s (2-8 pushes of 1.5-2.5 s; 100 seeds on
    # each robot); 60 s leaves room for its noisy and slower variants (~19 s mean with waypoint and
    # action noise) and for learned policies.
    episode_len_s: float = 60.0
    bar_m: tuple[float, float] = (0.10, 0.025)     # top bar (length, width): Panda size, scaled
    stem_m: tuple[float, float] = (0.025, 0.075)   # stem (width, length) below the bar, scaled
    height_m: float = 0.025                        # block thickness, scaled
    mass_kg: float = 0.1                           # Panda size; scaled with the volume (scale^3)
    # The block's friction is used for all its contacts (geom priority): table and gripper.
    friction: float = 0.5
    target_offset_m: tuple[float, float] = (0.0, 0.0)   # target position from the workspace centre, scaled
    target_yaw_rad: float = np.pi / 4
    randomize_target: bool = False                 # draw the target's position and yaw too
    max_reset_coverage: float = 0.5                # initial poses overlap the target less than this
    success_coverage: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (min(self.bar_m) > 0 and min(self.stem_m) > 0 and self.height_m > 0 and self.mass_kg > 0):
            raise ConfigError.expected("push_t sizes and mass", "> 0", (self.bar_m, self.stem_m, self.height_m))
        if self.stem_m[0] > self.bar_m[0]:
            raise ConfigError.expected("push_t stem width", f"<= bar length {self.bar_m[0]}", self.stem_m[0])
        if not 0 < self.success_coverage <= 1 or not 0 < self.max_reset_coverage <= 1:
            raise ConfigError.expected("push_t coverages", "in (0, 1]",
                                       (self.success_coverage, self.max_reset_coverage))


# --- T geometry and the coverage metric (plain functions: experts and tests use them too) --------

def t_rects(bar_m: Sequence[float], stem_m: Sequence[float]) -> np.ndarray:
    """The T's two rectangles in its body frame (origin at the centroid, +y toward the bar):
    rows (centre x, centre y, half x, half y), bar first."""
    bl, bw = bar_m
    sw, sl = stem_m
    a_bar, a_stem = bl * bw, sw * sl
    y_bar, y_stem = sl + bw / 2, sl / 2          # from the stem's bottom edge
    yc = (a_bar * y_bar + a_stem * y_stem) / (a_bar + a_stem)
    return np.array([[0.0, y_bar - yc, bl / 2, bw / 2], [0.0, y_stem - yc, sw / 2, sl / 2]])


def t_polygon(rects: np.ndarray) -> np.ndarray:
    """The T's outline (8 vertices, counter-clockwise) in its body frame."""
    (_, yb, bx, by), (_, ys, sx, sy) = rects
    return np.array([[-bx, yb + by], [-bx, yb - by], [-sx, yb - by], [-sx, ys - sy],
                     [sx, ys - sy], [sx, yb - by], [bx, yb - by], [bx, yb + by]])


def t_planar_yaw(quat_wxyz: Sequence[float]) -> float:
    """The T's yaw in the table plane, from its stem-to-bar (local +y) axis projected on the table.
    A flat T that has flipped over lies exactly like an upright T at this yaw (the T is a prism,
    mirror-symmetric about its local y axis), so the footprint, the metric and the contact
    geometry all follow from (x, y, this yaw). For an upright T it equals the usual yaw."""
    w, x, y, z = (float(v) for v in quat_wxyz)
    return float(np.arctan2(2 * (w * z - x * y), 1 - 2 * (x * x + z * z)))


def _corners(rect, x: float, y: float, c: float, s: float) -> list[tuple[float, float]]:
    cx, cy, hx, hy = rect
    out = []
    for lx, ly in ((-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)):   # counter-clockwise
        px, py = cx + lx, cy + ly
        out.append((x + c * px - s * py, y + s * px + c * py))
    return out


def _clip_area(subject: list[tuple[float, float]], clip: list[tuple[float, float]]) -> float:
    """Area of convex polygon ``subject`` inside convex counter-clockwise polygon ``clip``
    (Sutherland-Hodgman)."""
    poly = subject
    n = len(clip)
    for i in range(n):
        ax, ay = clip[i]
        bx, by = clip[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        out = []
        m = len(poly)
        if m == 0:
            return 0.0
        for j in range(m):
            px, py = poly[j]
            qx, qy = poly[(j + 1) % m]
            dp = ex * (py - ay) - ey * (px - ax)     # > 0: inside (left of the edge)
            dq = ex * (qy - ay) - ey * (qx - ax)
            if dp >= 0:
                out.append((px, py))
            if (dp >= 0) != (dq >= 0):
                t = dp / (dp - dq)
                out.append((px + t * (qx - px), py + t * (qy - py)))
        poly = out
    area = 0.0
    m = len(poly)
    for j in range(m):
        px, py = poly[j]
        qx, qy = poly[(j + 1) % m]
        area += px * qy - qx * py
    return max(0.5 * area, 0.0)


def t_coverage(pose_xy_yaw: Sequence[float], target_xy_yaw: Sequence[float], rects: np.ndarray) -> float:
    """Exact area(T at ``pose`` intersected with T at ``target``) / area(T), poses (x, y, yaw).

    The T's rectangles do not overlap, so the intersection is the sum over the four
    rectangle pairs, each the intersection of two convex quadrilaterals."""
    x, y, a = (float(v) for v in pose_xy_yaw)
    tx, ty, ta = (float(v) for v in target_xy_yaw)
    mine = [_corners(r, x, y, np.cos(a), np.sin(a)) for r in rects]
    goal = [_corners(r, tx, ty, np.cos(ta), np.sin(ta)) for r in rects]
    inter = sum(_clip_area(p, q) for p in mine for q in goal)
    total = float(np.sum(4 * rects[:, 2] * rects[:, 3]))
    return float(np.clip(inter / total, 0.0, 1.0))


class PushT(Task):
    name = "push_t"
    config_cls = PushTConfig
    config: PushTConfig

    @property
    def rects(self) -> np.ndarray:
        """The T's rectangles for this robot (scaled); see ``t_rects``."""
        c, s = self.config, self.scale
        return t_rects((c.bar_m[0] * s, c.bar_m[1] * s), (c.stem_m[0] * s, c.stem_m[1] * s))

    @property
    def half_height(self) -> float:
        return self.config.height_m * self.scale / 2

    @property
    def mass(self) -> float:
        return self.config.mass_kg * self.scale ** 3

    def block_xml(self, pos: Sequence[float] = (0.0, 0.0), yaw: float = 0.0) -> str:
        """The T block's body (free joint); the expert's planning model reuses it."""
        r, h, c = self.rects, self.half_height, self.config
        area = 4 * r[:, 2] * r[:, 3]
        geoms = "".join(
            f'<geom name="{n}" type="box" pos="{ri[0]} {ri[1]} 0" size="{ri[2]} {ri[3]} {h}" '
            f'mass="{self.mass * a / area.sum()}" rgba="0.47 0.53 0.60 1" friction="{c.friction} 0.005 0.0001" '
            f'priority="2" condim="3"/>'
            for n, ri, a in zip(("t_bar", "t_stem"), r, area))
        return (f'<body name="t_block" pos="{pos[0]} {pos[1]} {h}" euler="0 0 {yaw}">'
                f'<freejoint name="t_block_joint"/>{geoms}</body>')

    def default_target(self) -> np.ndarray:
        c = self.config
        cx, cy = self.workspace.center_xy
        return np.array([cx + c.target_offset_m[0] * self.scale, cy + c.target_offset_m[1] * self.scale,
                         c.target_yaw_rad])

    def bodies_xml(self) -> str:
        r = self.rects
        tx, ty, ta = self.default_target()
        # the target: a flat, visual-only T just above the table (a mocap body: movable per episode)
        target = "".join(
            f'<geom name="{n}" type="box" pos="{ri[0]} {ri[1]} 0" size="{ri[2]} {ri[3]} 0.0005" '
            f'contype="0" conaffinity="0" rgba="0.35 0.85 0.4 0.45"/>'
            for n, ri in zip(("target_bar", "target_stem"), r))
        return (f'<body name="t_target" mocap="true" pos="{tx} {ty} 0.0006" euler="0 0 {ta}">{target}</body>'
                + self.block_xml(self.workspace.center_xy))

    def object_geoms(self) -> tuple[str, ...]:
        return ("t_bar", "t_stem")

    def bind(self, world: SimWorld) -> None:
        super().bind(world)
        self._block = body_id(world.model, "t_block")
        self._qadr, _ = free_joint_qadr(world.model, self._block)
        self._mocap = int(world.model.body_mocapid[body_id(world.model, "t_target")])
        self._target = self.default_target()

    # --- episode ---------------------------------------------------------------------------
    def reset(self, world: SimWorld, rng: np.random.Generator) -> None:
        c = self.config
        if c.randomize_target:
            xy = self.sample_xy(rng, margin=0.03 * self.scale)
            self._target = np.array([xy[0], xy[1], rng.uniform(-np.pi, np.pi)])
        else:
            self._target = self.default_target()
        d = world.data
        tx, ty, ta = self._target
        d.mocap_pos[self._mocap] = [tx, ty, 0.0006]
        d.mocap_quat[self._mocap] = [np.cos(ta / 2), 0.0, 0.0, np.sin(ta / 2)]
        for _ in range(1000):
            xy = self.sample_xy(rng)
            yaw = rng.uniform(-np.pi, np.pi)
            if t_coverage((xy[0], xy[1], yaw), self._target, self.rects) < c.max_reset_coverage:
                break
        set_free_pose(world, self._block, np.array([xy[0], xy[1], self.half_height]), yaw)

    @property
    def target_xy_yaw(self) -> np.ndarray:
        return self._target.copy()

    def block_pose(self, world: SimWorld) -> tuple[np.ndarray, np.ndarray]:
        q = world.data.qpos[self._qadr:self._qadr + 7]
        return q[:3].copy(), q[3:].copy()

    def block_xy_yaw(self, world: SimWorld) -> np.ndarray:
        pos, quat = self.block_pose(world)
        return np.array([pos[0], pos[1], t_planar_yaw(quat)])

    def coverage(self, world: SimWorld) -> float:
        # reward and success both need it every step: memoised on the exact block pose and target
        pose = self.block_xy_yaw(world)
        key = (tuple(np.asarray(pose).tolist()), tuple(np.asarray(self._target).tolist()))
        if getattr(self, "_cov_key", None) != key:
            self._cov_key, self._cov = key, t_coverage(pose, self._target, self.rects)
        return self._cov

    def reward(self, world: SimWorld) -> float:
        # the standard PushT reward: coverage of the target, full marks from success_coverage up
        return float(np.clip(self.coverage(world) / self.config.success_coverage, 0.0, 1.0))

    def success(self, world: SimWorld) -> bool:
        return bool(self.coverage(world) > self.config.success_coverage)

    def instruction(self) -> str:
        return "push the T block onto the target"

    @property
    def privileged_features(self) -> FeatureSet:
        return FeatureSet([
            FeatureSpec("t_block_pos_m", (3,), "float32", FeatureKind.STATE, "m", ("x", "y", "z")),
            FeatureSpec("t_block_quat_wxyz", (4,), "float32", FeatureKind.STATE, "1", ("w", "x", "y", "z")),
            # the block's and the target's pose in the table plane: x, y (m) and yaw (rad)
            FeatureSpec("t_block_xy_yaw", (3,), "float32", FeatureKind.STATE, "m,m,rad", ("x", "y", "yaw")),
            FeatureSpec("target_xy_yaw", (3,), "float32", FeatureKind.STATE, "m,m,rad", ("x", "y", "yaw")),
        ])

    def privileged_state(self, world: SimWorld) -> Mapping[str, np.ndarray]:
        pos, quat = self.block_pose(world)
        return {"t_block_pos_m": pos.astype(np.float32), "t_block_quat_wxyz": quat.astype(np.float32),
                "t_block_xy_yaw": np.array([pos[0], pos[1], t_planar_yaw(quat)], dtype=np.float32),
                "target_xy_yaw": self._target.astype(np.float32)}
