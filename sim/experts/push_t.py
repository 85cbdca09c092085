"""Expert for push_t: sampling-based MPC over pushes, planned in a small MuJoCo model of its own.

The planning model holds only the table, the T block (the task's own MJCF, with the friction and
mass of the env's block) and a kinematic pusher with the gripper's collision geometry (closed,
tool pointing down as the expert holds it). A push is: tool above a start point behind the T, down
to a few millimetres above the table, straight along a direction for a distance, back off a little,
up. Planning, once per push, from the block's measured pose:

1. a push library (built once per process and robot): pushes from points all around the T's
   outline in directions around the inward normal, simulated in the planning model with the T at
   the target; the T's motion at every few millimetres of travel is stored in the T's frame, so
   every library push maps onto any current pose by a rigid transform;
2. every library push is scored from the current pose (RMS distance between the T's points at
   the predicted and the target pose; a two-push lookahead over a subsampled library);
3. the best few are simulated exactly from the current pose (the pusher's yaw as the arm will
   hold it, the real stop and back-off) and the best simulated one is executed.

The arm follows the push's waypoints through the Cartesian controller; after each push the expert
re-plans from the new measured pose until the task reports success (the env ends the episode).
"""

from __future__ import annotations

import mujoco
import numpy as np

from robot_learning.control.cartesian import quat_mul
from robot_learning.core.frame import Action, Observation
from robot_learning.sim.experts.base import ScriptedExpert, Waypoint
from robot_learning.sim.tasks.push_t import PushT, t_coverage, t_polygon


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


class PushModel:
    """The planning model: table + T block + pusher (slide x, y, z and yaw joints, prescribed)."""

    PUSHER_MASS = 50.0

    def __init__(self, task: PushT, env_model: mujoco.MjModel, robot, home_qpos, timestep: float = 0.002):
        # the gripper's collision geoms at home with the gripper closed, relative to the tool point
        m = env_model
        d = mujoco.MjData(m)
        for jn, q in zip(robot.joint_names, home_qpos):
            d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, jn)]] = q
        for jn in robot.gripper_joints:
            d.qpos[m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, jn)]] = robot.gripper_joint_closed
        mujoco.mj_forward(m, d)
        site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, robot.ee_site)
        root, tcp = int(m.site_bodyid[site]), d.site_xpos[site].copy()
        geoms = []
        for g in range(m.ngeom):
            b = int(m.geom_bodyid[g])
            while b > 0 and b != root:
                b = int(m.body_parentid[b])
            if b != root or not (m.geom_contype[g] or m.geom_conaffinity[g]):
                continue
            q = np.empty(4)
            mujoco.mju_mat2Quat(q, d.geom_xmat[g])
            size = " ".join(f"{v:.6g}" for v in m.geom_size[g])
            pos = " ".join(f"{v:.6g}" for v in d.geom_xpos[g] - tcp)
            geoms.append(
                f'<geom type="{mujoco.mjtGeom(m.geom_type[g]).name[7:].lower()}" size="{size}" pos="{pos}" '
                f'quat="{" ".join(f"{v:.8g}" for v in q)}" friction="{" ".join(f"{v:.6g}" for v in m.geom_friction[g])}" '
                f'priority="{m.geom_priority[g]}" condim="{m.geom_condim[g]}" contype="2" conaffinity="2" '
                f'solref="{m.geom_solref[g][0]:.6g} {m.geom_solref[g][1]:.6g}" '
                f'solimp="{" ".join(f"{v:.6g}" for v in m.geom_solimp[g])}" mass="0"/>')
        table = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "table")
        tf = " ".join(f"{v:.6g}" for v in m.geom_friction[table])
        xml = f"""
<mujoco>
  <option timestep="{timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <worldbody>
    <geom name="table" type="plane" size="2 2 0.02" friction="{tf}"/>
    {task.block_xml()}
    <body name="pusher" gravcomp="1">
      <inertial pos="0 0 0" mass="{self.PUSHER_MASS}" diaginertia="1 1 1"/>
      <joint name="px" type="slide" axis="1 0 0"/><joint name="py" type="slide" axis="0 1 0"/>
      <joint name="pz" type="slide" axis="0 0 1"/><joint name="pyaw" type="hinge" axis="0 0 1"/>
      {"".join(geoms)}
    </body>
  </worldbody>
</mujoco>"""
        self.model = mujoco.MjModel.from_xml_string(xml)
        self.data = mujoco.MjData(self.model)
        mm = self.model
        self.block_geoms = [mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_GEOM, n) for n in task.object_geoms()]
        for g in self.block_geoms:   # the block touches the table (bit 1) and the pusher (bit 2)
            mm.geom_contype[g] = mm.geom_conaffinity[g] = 3
        b = mm.geom_bodyid[self.block_geoms[0]]
        if hasattr(mm, "body_contype"):   # per-body masks of the broadphase
            mm.body_contype[b] = mm.body_conaffinity[b] = 3
        self.pusher_body = mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_BODY, "pusher")
        self.pusher_geoms = [g for g in range(mm.ngeom) if mm.geom_bodyid[g] == self.pusher_body]
        self.block_body = mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_BODY, "t_block")
        self._bq = mm.jnt_qposadr[mm.body_jntadr[self.block_body]]
        self._bv = mm.jnt_dofadr[mm.body_jntadr[self.block_body]]
        self._pq = mm.jnt_qposadr[mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_JOINT, "px")]
        self._pv = mm.jnt_dofadr[mujoco.mj_name2id(mm, mujoco.mjtObj.mjOBJ_JOINT, "px")]
        self.half_height = task.half_height
        self._env_geoms = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in task.object_geoms()]
        self._env_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "t_block")
        # lowest point of the pusher below the tool point (at yaw 0; yaw does not change it)
        self.set_state(np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]), 0.0)
        mujoco.mj_forward(mm, self.data)
        self.tip_below_m = 1.0 - min(self._geom_vertices(g)[:, 2].min() for g in self.pusher_geoms)

    def sync(self, env_model: mujoco.MjModel) -> None:
        """Take the block's friction and mass from the env (domain randomisation changes them)."""
        mm = self.model
        for g, ge in zip(self.block_geoms, self._env_geoms):
            mm.geom_friction[g] = env_model.geom_friction[ge]
        mm.body_mass[self.block_body] = env_model.body_mass[self._env_body]
        mm.body_inertia[self.block_body] = env_model.body_inertia[self._env_body]

    def _geom_vertices(self, g: int) -> np.ndarray:
        aabb = self.model.geom_aabb[g]
        c, h = aabb[:3], aabb[3:]
        corners = c + h * np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        return self.data.geom_xpos[g] + corners @ self.data.geom_xmat[g].reshape(3, 3).T

    def footprint(self, yaw: float, z_tool: float, top: float) -> np.ndarray:
        """Horizontal vertices (relative to the tool point) of the pusher's parts below ``top``."""
        self.set_state(np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, z_tool]), yaw)
        mujoco.mj_kinematics(self.model, self.data)
        pts = [v for g in self.pusher_geoms for v in [self._geom_vertices(g)] if v[:, 2].min() < top]
        return np.concatenate(pts)[:, :2]

    def set_state(self, block: np.ndarray, tool: np.ndarray, yaw: float) -> None:
        d = self.data
        d.qpos[self._bq:self._bq + 3] = [block[0], block[1], self.half_height]
        d.qpos[self._bq + 3:self._bq + 7] = [np.cos(block[2] / 2), 0.0, 0.0, np.sin(block[2] / 2)]
        d.qvel[:] = 0.0
        d.qpos[self._pq:self._pq + 3] = tool
        d.qpos[self._pq + 3] = yaw
        d.time = 0.0

    def block_pose(self) -> np.ndarray:
        q = self.data.qpos[self._bq:self._bq + 7]
        w, x, y, z = q[3:]
        return np.array([q[0], q[1], np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))])

    def touching(self) -> bool:
        mujoco.mj_forward(self.model, self.data)
        d = self.data
        for i in range(d.ncon):
            c = d.contact[i]
            b1, b2 = self.model.geom_bodyid[c.geom1], self.model.geom_bodyid[c.geom2]
            if self.pusher_body in (b1, b2) and c.dist < 0.0005:
                return True
        return False

    def push(self, start: np.ndarray, direction: np.ndarray, travel: float, speed: float,
             record_every: float | None = None, hold_s: float = 0.0, back_m: float = 0.0) -> np.ndarray:
        """Move the tool from ``start`` (x, y, z; state already set) along ``direction`` for
        ``travel`` m at ``speed``; then hold and back off. Returns the block poses every
        ``record_every`` m of travel (or only the final one)."""
        m, d = self.model, self.data
        dt = m.opt.timestep
        pq, pv = self._pq, self._pv
        d2 = np.array([direction[0], direction[1], 0.0])
        out = []
        n = int(np.ceil(travel / (speed * dt)))
        every = max(1, int(round(record_every / (speed * dt)))) if record_every else 0
        for k in range(1, n + 1):
            u = min(k * speed * dt, travel)
            d.qpos[pq:pq + 3] = start + d2 * u
            d.qvel[pv:pv + 3] = d2 * speed
            d.qvel[pv + 3] = 0.0
            mujoco.mj_step(m, d)
            if every and k % every == 0:
                out.append(self.block_pose())
        end = start + d2 * travel
        for _ in range(int(round(hold_s / dt))):
            d.qpos[pq:pq + 3] = end
            d.qvel[pv:pv + 4] = 0.0
            mujoco.mj_step(m, d)
        if back_m > 0:
            nb = int(np.ceil(back_m / (0.5 * speed * dt)))
            for k in range(1, nb + 1):
                d.qpos[pq:pq + 3] = end - d2 * back_m * k / nb
                d.qvel[pv:pv + 3] = -d2 * 0.5 * speed
                mujoco.mj_step(m, d)
        if not every:
            out.append(self.block_pose())
        return np.array(out)
