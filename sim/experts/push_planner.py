"""Planning model for the push_t expert: a small MuJoCo model (table, T block, kinematic pusher)
where pushes roll out directly, and the push library built from it. See ``push_t.py`` for the method."""

from __future__ import annotations

from typing import Callable

import mujoco
import numpy as np

from robot_learning.sim.tasks.push_t import PushT, t_planar_yaw, t_polygon

ToolPose = Callable[[np.ndarray, np.ndarray], tuple[float, float, float]]   # (xy, dir) -> z, yaw, tilt


def _wrap(a):
    return (np.asarray(a) + np.pi) % (2 * np.pi) - np.pi


def _compose(p: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Pose(s) p (x, y, yaw) composed with relative pose(s) d given in p's frame."""
    c, s = np.cos(p[..., 2]), np.sin(p[..., 2])
    return np.stack([p[..., 0] + c * d[..., 0] - s * d[..., 1], p[..., 1] + s * d[..., 0] + c * d[..., 1],
                     _wrap(p[..., 2] + d[..., 2])], axis=-1)


def _relative(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """q expressed in p's frame (p^-1 q)."""
    c, s = np.cos(p[..., 2]), np.sin(p[..., 2])
    dx, dy = q[..., 0] - p[..., 0], q[..., 1] - p[..., 1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy, _wrap(q[..., 2] - p[..., 2])], axis=-1)


def _rot(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])


class PushModel:
    """The planning model: table + T block + pusher. The pusher (slides x, y, z, then yaw about the
    vertical, then tilt about its horizontal y axis, all through the tool point) is prescribed
    every step: heavy, its velocity set so that contact friction sees its true motion."""

    PUSHER_MASS = 50.0

    def __init__(self, task: PushT, env_model: mujoco.MjModel, robot, ref_quat: np.ndarray,
                 timestep: float = 0.002):
        # the collision geoms of the tool's body and its parent's (the hand or gripper, the link
        # before it) with the gripper closed, relative to the tool frame, placed with the tool frame
        # at ``ref_quat`` (yaw = tilt = 0; the expert's tool-down orientation)
        m = env_model
        d = mujoco.MjData(m)
        for jn, q in zip(robot.joint_names, robot.home_qpos):
            d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, jn)]] = q
        for jn in robot.gripper_joints:
            d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, jn)]] = robot.gripper_joint_closed
        mujoco.mj_forward(m, d)
        site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, robot.ee_site)
        root, tcp = int(m.body_parentid[m.site_bodyid[site]]), d.site_xpos[site].copy()
        ref = np.empty(9)
        mujoco.mju_quat2Mat(ref, np.asarray(ref_quat, dtype=np.float64))
        to_ref = ref.reshape(3, 3) @ d.site_xmat[site].reshape(3, 3).T   # tool frame at home -> at ref

        def f(v) -> str:
            return " ".join(f"{x:.8g}" for x in np.atleast_1d(v))

        geoms = []
        for g in range(m.ngeom):
            b = int(m.geom_bodyid[g])
            while b > 0 and b != root:
                b = int(m.body_parentid[b])
            if b != root or not (m.geom_contype[g] or m.geom_conaffinity[g]):
                continue
            rot = d.geom_xmat[g].reshape(3, 3)
            kind, size, pos = mujoco.mjtGeom(m.geom_type[g]).name[7:].lower(), m.geom_size[g], d.geom_xpos[g]
            if kind not in ("plane", "sphere", "capsule", "ellipsoid", "cylinder", "box"):   # a mesh: its box
                kind, size, pos = "box", m.geom_aabb[g][3:], pos + rot @ m.geom_aabb[g][:3]
            q = np.empty(4)
            mujoco.mju_mat2Quat(q, (to_ref @ rot).ravel())
            geoms.append(
                f'<geom type="{kind}" size="{f(size)}" '
                f'pos="{f(to_ref @ (pos - tcp))}" quat="{f(q)}" friction="{f(m.geom_friction[g])}" '
                f'priority="{m.geom_priority[g]}" condim="{m.geom_condim[g]}" contype="2" conaffinity="2" '
                f'solref="{f(m.geom_solref[g])}" solimp="{f(m.geom_solimp[g])}" mass="0"/>')
        table = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "table")
        xml = f"""
<mujoco>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <worldbody>
    <geom name="table" type="plane" size="2 2 0.02" friction="{f(m.geom_friction[table])}"/>
    {task.block_xml()}
    <body name="pusher" gravcomp="1">
      <inertial pos="0 0 0" mass="{self.PUSHER_MASS}" diaginertia="1 1 1"/>
      <joint name="px" type="slide" axis="1 0 0"/><joint name="py" type="slide" axis="0 1 0"/>
      <joint name="pz" type="slide" axis="0 0 1"/><joint name="pyaw" type="hinge" axis="0 0 1"/>
      <body name="tool" gravcomp="1">
        <inertial pos="0 0 0" mass="{self.PUSHER_MASS}" diaginertia="1 1 1"/>
        <joint name="ptilt" type="hinge" axis="0 1 0"/>
        {"".join(geoms)}
      </body>
    </body>
  </worldbody>
</mujoco>"""
        self.model = mm = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(mm)
        self.block_geoms = [mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_GEOM, n) for n in task.object_geoms()]
        self.block_body = mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_BODY, "t_block")
        for g in self.block_geoms:   # the block touches the table (bit 1) and the pusher (bit 2)
            mm.geom_contype[g] = mm.geom_conaffinity[g] = 3
        if hasattr(mm, "body_contype"):   # the broadphase's per-body masks
            mm.body_contype[self.block_body] = mm.body_conaffinity[self.block_body] = 3
        tool = mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_BODY, "tool")
        self.pusher_bodies = (mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_BODY, "pusher"), tool)
        self.pusher_geoms = [g for g in range(mm.ngeom) if mm.geom_bodyid[g] == tool]
        self._bq = mm.jnt_qposadr[mm.body_jntadr[self.block_body]]
        self._pq = mm.jnt_qposadr[mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_JOINT, "px")]
        self._pv = mm.jnt_dofadr[mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_JOINT, "px")]
        self.half_height = task.half_height
        self._env_geoms = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in task.object_geoms()]
        self._env_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "t_block")
        self._nominal = (mm.geom_friction[self.block_geoms].copy(), float(mm.body_mass[self.block_body]),
                         mm.body_inertia[self.block_body].copy())

    def sync(self, env_model: mujoco.MjModel | None) -> None:
        """Take the block's friction and mass from the env (domain randomisation changes them), or
        with None the nominal ones (the task's)."""
        mm, b = self.model, self.block_body
        if env_model is None:
            mm.geom_friction[self.block_geoms], mm.body_mass[b], mm.body_inertia[b] = self._nominal
            return
        for g, ge in zip(self.block_geoms, self._env_geoms):
            mm.geom_friction[g] = env_model.geom_friction[ge]
        mm.body_mass[b] = env_model.body_mass[self._env_body]
        mm.body_inertia[b] = env_model.body_inertia[self._env_body]

    def _vertices(self, g: int) -> np.ndarray:
        aabb = self.model.geom_aabb[g]
        corners = aabb[:3] + aabb[3:] * np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)])
        return self.data.geom_xpos[g] + corners @ self.data.geom_xmat[g].reshape(3, 3).T

    def tip_below(self, tilt: float) -> float:
        """How far the pusher's lowest point is below the tool point."""
        self.set_state(np.zeros(3), np.array([0.0, 0.0, 1.0]), 0.0, tilt)
        mujoco.mj_kinematics(self.model, self.data)
        return 1.0 - min(self._vertices(g)[:, 2].min() for g in self.pusher_geoms)

    def footprint(self, z: float, yaw: float, tilt: float, top: float) -> np.ndarray:
        """Horizontal vertices, relative to the tool point at height ``z``, of the pusher's parts
        reaching below height ``top``."""
        self.set_state(np.zeros(3), np.array([0.0, 0.0, z]), yaw, tilt)
        mujoco.mj_kinematics(self.model, self.data)
        pts = [v for v in (self._vertices(g) for g in self.pusher_geoms) if v[:, 2].min() < top]
        return np.concatenate(pts)[:, :2]

    def set_state(self, block: np.ndarray, tool: np.ndarray, yaw: float, tilt: float) -> None:
        d = self.data
        d.qvel[:] = 0.0
        d.qpos[self._bq:self._bq + 3] = [block[0], block[1], self.half_height]
        d.qpos[self._bq + 3:self._bq + 7] = [np.cos(block[2] / 2), 0.0, 0.0, np.sin(block[2] / 2)]
        d.qpos[self._pq:self._pq + 5] = [tool[0], tool[1], tool[2], yaw, tilt]
        d.time = 0.0

    def block_pose(self) -> np.ndarray:
        q = self.data.qpos[self._bq:self._bq + 7]
        return np.array([q[0], q[1], t_planar_yaw(q[3:])])

    def touching(self) -> bool:
        """Whether the pusher (in the state set) touches or overlaps the block."""
        mujoco.mj_forward(self.model, self.data)
        d, body = self.data, self.model.geom_bodyid
        return any((body[c.geom1] in self.pusher_bodies or body[c.geom2] in self.pusher_bodies) and c.dist < 5e-4
                   for c in d.contact[:d.ncon])

    def push(self, start: np.ndarray, direction: np.ndarray, travel: float, speed: float, tool: ToolPose,
             record_every: float | None = None, hold_s: float = 0.0, back_m: float = 0.0) -> np.ndarray:
        """Move the tool point from ``start`` (xy; the state already set) along ``direction`` for
        ``travel`` m at ``speed``, its height and orientation given by ``tool``; then hold still
        and back off. Returns the block poses every ``record_every`` m of travel (or the final one)."""
        m, d = self.model, self.data
        dt = m.opt.timestep
        pq, pv = self._pq, self._pv
        out = []
        n = int(np.ceil(travel / (speed * dt)))
        every = max(1, int(round(record_every / (speed * dt)))) if record_every else 0

        def drive(xy: np.ndarray, v: float) -> None:
            z, yaw, tilt = tool(xy, direction)
            d.qpos[pq:pq + 5] = [xy[0], xy[1], z, yaw, tilt]
            d.qvel[pv:pv + 5] = [direction[0] * v, direction[1] * v, 0.0, 0.0, 0.0]
            mujoco.mj_step(m, d)

        self.tipped = False
        for k in range(1, n + 1):
            drive(start + direction * min(k * speed * dt, travel), speed)
            if every and k % every == 0:
                if self._tipped():
                    return np.array(out)
                out.append(self.block_pose())
        end = start + direction * travel
        for _ in range(int(round(hold_s / dt))):
            drive(end, 0.0)
        if back_m > 0:
            nb = int(np.ceil(back_m / (0.5 * speed * dt)))
            for k in range(1, nb + 1):
                drive(end - direction * back_m * k / nb, -0.5 * speed)
        if not every:
            self._tipped()
            out.append(self.block_pose())
        return np.array(out)

    def _tipped(self) -> bool:
        """Whether the block has tilted (or is tilting) off the table: the push is not one to make."""
        w, x, y, _ = self.data.qpos[self._bq + 3:self._bq + 7]
        self.tipped = self.tipped or 2 * (x * x + y * y) > 1 - np.cos(0.05)
        return self.tipped


class PushLibrary:
    """Pushes from all around the T (contact point and direction in the T's frame), simulated with
    the T at ``pose``; the T's motion after every ``record_m`` of travel past the contact point."""

    def __init__(self, pm: PushModel, rects: np.ndarray, pose: np.ndarray, tool: ToolPose, spacing: float,
                 angles: np.ndarray, gap: float, max_depth: float, record_m: float, speed: float):
        poly = t_polygon(rects)
        top = 2 * pm.half_height + 0.002
        rot = _rot(pose[2])
        rays, contacts, dirs, depths, deltas = [], [], [], [], []
        ray = -1
        for i in range(len(poly)):
            a, b = poly[i], poly[(i + 1) % len(poly)]
            edge = b - a
            length = float(np.linalg.norm(edge))
            normal = np.array([edge[1], -edge[0]]) / length      # outward (the outline is counter-clockwise)
            n = max(1, int(round(length / spacing)))
            for k in range(n):
                p_loc = a + edge * (k + 0.5) / n
                for ang in angles:
                    d_loc = -_rot(ang) @ normal
                    p_w, d_w = pose[:2] + rot @ p_loc, rot @ d_loc
                    start, u0 = clear_start(pm, pose, p_w, d_w, tool, gap, top)
                    if start is None:
                        continue
                    ray += 1
                    poses = pm.push(start, d_w, u0 + max_depth, speed, tool, record_every=record_m)
                    u = record_m * np.arange(1, len(poses) + 1)
                    rel = _relative(pose, poses)
                    moved = np.abs(rel[:, :2]).sum(1) + 0.03 * np.abs(rel[:, 2]) > 2e-4
                    for j in np.flatnonzero(moved):
                        rays.append(ray)
                        contacts.append(p_loc)
                        dirs.append(d_loc)
                        depths.append(u[j] - u0)
                        deltas.append(rel[j])
        self.ray = np.array(rays)           # which push (contact point and direction) an entry belongs to
        self.contact = np.array(contacts)   # on the outline, T frame
        self.dir = np.array(dirs)           # push direction, T frame
        self.depth = np.array(depths)       # how far the pusher's leading point ends past the contact point
        self.delta = np.array(deltas)       # the T's resulting motion in its frame (x, y, yaw)

    def __len__(self) -> int:
        return len(self.depth)


def clear_start(pm: PushModel, pose: np.ndarray, contact: np.ndarray, d: np.ndarray, tool: ToolPose, gap: float,
                top: float) -> tuple[np.ndarray | None, float]:
    """Start point (xy) of a push reaching ``contact`` along ``d``: the pusher's leading point
    ``gap`` (or more, until the pusher is clear of the block) behind it. Returns (start, the
    travel before the leading point reaches the contact point)."""
    z, yaw, tilt = tool(contact, d)
    lead = float(np.max(pm.footprint(z, yaw, tilt, top) @ d))
    for extra in (gap, 2 * gap, 4 * gap):
        start = contact - d * (lead + extra)
        z, yaw, tilt = tool(start, d)
        pm.set_state(pose, np.array([start[0], start[1], z]), yaw, tilt)
        if not pm.touching():
            return start, extra
    return None, 0.0


_CACHE: dict[tuple, object] = {}


def _cached(key: tuple, build: Callable[[], object]):
    if key not in _CACHE:
        if len(_CACHE) > 16:
            _CACHE.clear()
        _CACHE[key] = build()
    return _CACHE[key]
