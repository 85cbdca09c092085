"""ALOHA sim suite (gym-aloha 0.1.5): bimanual ViperX transfer-cube and insertion, as the ACT paper.

Runs INSIDE the suite's own venv (gym-aloha 0.1.5, mujoco < 3.9, dm-control < 1.1, numpy, msgpack,
websockets) as a plain script next to ``client.py`` / ``driver.py``; it never imports
``robot_learning`` or torch. The physics, the object poses per seed and the reward stages are
gym-aloha's own: its joint-space tasks (``gym_aloha.tasks.sim``) on its MJCF, its
``sample_box_pose`` / ``sample_insertion_pose`` per seed, its 0..4 reward stage. What this file
leaves out of ``gym_aloha.env.AlohaEnv`` is only the three 640x480 renders per step the task's
``get_observation`` makes: the "top" camera is rendered only when an image size is asked for.

Observation (ACT / LeRobot's ``agent_pos``): ``joint_pos`` = 14 joint positions, per arm the 6
arm joints in rad then the gripper as gym-aloha normalises it (finger opening, 0 = closed, 1 =
open). The env also gives joint velocities (gym-aloha's ``qvel``); they are left out to keep the
published 14-d state. With ``image_size`` the ``top`` camera as uint8 (image_size, 4/3 image_size,
3), gym-aloha's 480x640 field of view scaled.

Action: ``joint_pos_target`` = 14 position targets in the same layout and units (rad; gripper
0..1), sent to gym-aloha's position actuators at 50 Hz; 400 steps per episode (ACT's setting).
``info["stage"]`` is the env's reward (0..4), ``info["success"]`` = stage 4 (the ``max_reward``).
An episode ends when the final stage is reached (gym-aloha's ``terminated``) or after 400 steps.

Demonstrations (as the ACT paper made its scripted data): a scripted end-effector trajectory
runs in gym-aloha's end-effector (mocap) task for the same seed's object poses, its joint
trajectory is recorded (arm joints as reached, grippers as commanded) and then REPLAYED in the
joint-space task; ``ENV.expert_episode()`` returns the replay's (observation, action) pairs.
Only replays that reach the final stage are demonstrations: ``ENV.last_expert_success`` (and
``last_expert_infos``, the replay's step infos) says whether this one did.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")      # headless rendering; set before dm_control loads

import numpy as np                                            # noqa: E402
from dm_control import mujoco                                 # noqa: E402
from dm_control.rl import control                             # noqa: E402
from dm_control.suite import base                             # noqa: E402
from gym_aloha import constants as C                          # noqa: E402
from gym_aloha.tasks import sim, sim_end_effector             # noqa: E402
from gym_aloha.utils import sample_box_pose, sample_insertion_pose  # noqa: E402

CONTROL_HZ = 1.0 / C.DT                        # 50 Hz
MAX_STEPS = 400                                # ACT: episode_len 400 for both scripted sim tasks
MAX_STAGE = 4                                  # both tasks' max_reward
JOINT_NAMES = list(C.JOINTS)                   # 6 arm joints + normalised gripper, left then right
STATE_UNITS = "rad; grippers 1 (0 closed, 1 open)"
# Arm actuator ctrlrange of bimanual_viperx_*.xml (rad), per arm; the gripper is normalised 0..1.
_ARM_LOW = [-3.14158, -1.85005, -1.76278, -3.14158, -1.8675, -3.14158]
_ARM_HIGH = [3.14158, 1.25664, 1.6057, 3.14158, 2.23402, 3.14158]
ACTION_LOW = _ARM_LOW + [0.0] + _ARM_LOW + [0.0]
ACTION_HIGH = _ARM_HIGH + [1.0] + _ARM_HIGH + [1.0]

_JOINT_XML = {"transfer_cube": "bimanual_viperx_transfer_cube.xml",
              "insertion": "bimanual_viperx_insertion.xml"}
_EE_XML = {"transfer_cube": "bimanual_viperx_end_effector_transfer_cube.xml",
           "insertion": "bimanual_viperx_end_effector_insertion.xml"}
_JOINT_TASK = {"transfer_cube": sim.TransferCubeTask, "insertion": sim.InsertionTask}
_EE_TASK = {"transfer_cube": sim_end_effector.TransferCubeEndEffectorTask,
            "insertion": sim_end_effector.InsertionEndEffectorTask}


def object_poses(task: str, seed: int) -> np.ndarray:
    """gym-aloha's object pose(s) for ``seed`` (AlohaEnv.reset's BOX_POSE): cube (7,) or peg+socket (14,)."""
    if task == "transfer_cube":
        return sample_box_pose(seed)
    return np.concatenate(sample_insertion_pose(seed))


def _check_task(task: str) -> None:
    if task not in _JOINT_XML:
        raise ValueError(f"unknown ALOHA task {task!r}: expected one of {sorted(_JOINT_XML)}")


# --------------------------------------------------------------------------- quaternions (w, x, y, z)
def _quat_axis(axis: tuple[float, float, float], deg: float) -> np.ndarray:
    a = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    h = np.deg2rad(deg) / 2.0
    return np.concatenate([[np.cos(h)], np.sin(h) * a])


def _quat_mul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = p
    w2, x2, y2, z2 = q
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _slerp(p: np.ndarray, q: np.ndarray, f: float) -> np.ndarray:
    d = float(np.dot(p, q))
    if d < 0.0:
        q, d = -q, -d
    if d > 0.9995:
        r = p + f * (q - p)
        return r / np.linalg.norm(r)
    th = np.arccos(d)
    return (np.sin((1 - f) * th) * p + np.sin(f * th) * q) / np.sin(th)


# --------------------------------------------------------------------------- scripted end-effector plans
# A plan is, per arm, a list of waypoints (step, xyz of the mocap target, quat wxyz, gripper 0..1),
# linearly interpolated (slerp for the orientation). The mocap target sits ~0.135 m ahead of the
# gripper_link along the gripper's axis (the weld's relpose), i.e. between the finger tips. Mocap
# orientations are relative to the arm's rest orientation: identity points the gripper horizontally
# at the other arm. For the left arm a pitch of +a about world y points it down by a; for the right
# arm (base turned 180 deg about z) the same tilt is -a about world y.
_IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])
_START_LEFT = np.array([-0.31718881, 0.5, 0.29525084])     # gym-aloha's initial mocap positions
_START_RIGHT = np.array([0.31718881, 0.49999888, 0.29525084])
CUBE_HALF = 0.02
PICK_PITCH_DEG = 60.0        # right gripper's tilt below horizontal, picking and handing over
PICK_DZ = 0.01               # grasp point above the cube's centre
TAKE_DX = 0.015              # left grasp point beyond the cube's centre (towards -x)
PEG_HALF_Z = 0.01
SOCKET_HALF_Z = 0.02
INSERT_PITCH_DEG = 60.0      # both grippers' tilt below horizontal
GRIP_DX = 0.0                # grasp points from the peg's / socket's centre, outwards (off-centre
                             # grasps let them swing about the finger axis)
PEG_DZ = 0.01                # the peg is carried this much above the socket (it droops in the grip)
PEG_IN_DX = 0.09             # peg centre - socket centre at the end (0.10: the tip meets the pin)


def _down_left(deg: float) -> np.ndarray:
    return _quat_axis((0, 1, 0), deg)


def _down_right(deg: float) -> np.ndarray:
    return _quat_axis((0, 1, 0), -deg)


def transfer_cube_plan(cube_xyz: np.ndarray) -> tuple[list, list]:
    """Right arm picks the cube from above, lifts it to mid-air; the left arm, rolled 90 deg so its
    fingers close vertically, takes it by top and bottom; the right arm lets go and backs off."""
    cube = np.array([cube_xyz[0], cube_xyz[1], CUBE_HALF + PICK_DZ])
    pick_q = _down_right(PICK_PITCH_DEG)
    meet = np.array([0.0, 0.5, 0.25])                       # where the cube is handed over
    give_q = pick_q
    take_q = _quat_mul(_quat_axis((1, 0, 0), 90.0), _IDENTITY)
    right = [
        (0, _START_RIGHT, _IDENTITY, 0.0),
        (30, _START_RIGHT, pick_q, 0.5),                     # tilt the gripper down first
        (70, cube + [0.0, 0.0, 0.08], pick_q, 1.0),          # above the cube, open
        (90, cube + [0.0, 0.0, 0.08], pick_q, 1.0),          # let the arm settle there
        (125, cube, pick_q, 1.0),                            # down around it
        (135, cube, pick_q, 1.0),
        (155, cube, pick_q, 0.0),                            # close
        (180, cube + [0.0, 0.0, 0.08], pick_q, 0.0),         # lift
        (230, meet, give_q, 0.0),                            # carry to the meeting point
        (310, meet, give_q, 0.0),                            # hold while the left arm takes it
        (325, meet, give_q, 1.0),                            # let go
        (360, meet + [0.1, 0.0, 0.05], give_q, 1.0),         # back off
        (400, meet + [0.1, 0.0, 0.05], give_q, 1.0),
    ]
    left = [
        (0, _START_LEFT, _IDENTITY, 0.0),
        (120, _START_LEFT, take_q, 1.0),                     # roll the gripper, open
        (230, meet + [-0.12, 0.0, 0.0], take_q, 1.0),        # wait beside the meeting point
        (260, meet + [-0.12, 0.0, 0.0], take_q, 1.0),
        (285, meet + [-TAKE_DX, 0.0, 0.0], take_q, 1.0),     # slide the fingers over the cube
        (310, meet + [-TAKE_DX, 0.0, 0.0], take_q, 0.0),     # close on its top and bottom
        (360, meet + [-TAKE_DX - 0.05, 0.0, 0.0], take_q, 0.0),  # hold it, clear of the right arm
        (400, meet + [-TAKE_DX - 0.05, 0.0, 0.0], take_q, 0.0),
    ]
    return left, right


def insertion_plan(peg_xyz: np.ndarray, socket_xyz: np.ndarray) -> tuple[list, list]:
    """Left arm takes the socket, right arm the peg, each from above at its centre (GRIP_DX); both
    lift and meet in mid-air, where the peg's inner end is pushed into the socket towards the pin.
    Known limit: the grippers' pitch lags the wanted one by up to ~0.6 rad with a load (orientation
    is open loop, see _MocapServo), so socket and peg meet misaligned and most tries stop at stage 3."""
    peg = np.array([peg_xyz[0], peg_xyz[1], PEG_HALF_Z])
    sock = np.array([socket_xyz[0], socket_xyz[1], SOCKET_HALF_Z])
    peg_grip = np.array([GRIP_DX, 0.0, 0.0])                 # grasp point relative to the peg centre
    sock_grip = np.array([-GRIP_DX, 0.0, 0.0])
    pq, sq = _down_right(INSERT_PITCH_DEG), _down_left(INSERT_PITCH_DEG)
    z_meet = 0.2
    sock_meet = np.array([-0.08, 0.5, z_meet])               # socket centre at the meeting point
    peg_far = sock_meet + [0.18, 0.0, PEG_DZ]                # peg centre lined up with the socket
    peg_in = sock_meet + [PEG_IN_DX, 0.0, PEG_DZ]            # peg tip past the pin's end
    right = [
        (0, _START_RIGHT, _IDENTITY, 0.0),
        (90, peg + peg_grip + [0.0, 0.0, 0.08], pq, 1.0),
        (130, peg + peg_grip + [0.0, 0.0, -0.005], pq, 1.0),
        (160, peg + peg_grip + [0.0, 0.0, -0.005], pq, 0.0),
        (200, peg + peg_grip + [0.0, 0.0, 0.08], pq, 0.0),
        (250, peg_far + peg_grip, pq, 0.0),
        (330, peg_in + peg_grip, pq, 0.0),
        (400, peg_in + peg_grip, pq, 0.0),
    ]
    left = [
        (0, _START_LEFT, _IDENTITY, 0.0),
        (90, sock + sock_grip + [0.0, 0.0, 0.08], sq, 1.0),
        (130, sock + sock_grip + [0.0, 0.0, -0.005], sq, 1.0),
        (160, sock + sock_grip + [0.0, 0.0, -0.005], sq, 0.0),
        (200, sock + sock_grip + [0.0, 0.0, 0.08], sq, 0.0),
        (250, sock_meet + sock_grip, sq, 0.0),
        (400, sock_meet + sock_grip, sq, 0.0),
    ]
    return left, right


def _interp(plan: list, t: int) -> np.ndarray:
    """The (xyz, quat, gripper) target at step ``t`` of one arm's plan, as an 8-vector."""
    if t >= plan[-1][0]:
        _, xyz, q, g = plan[-1]
        return np.concatenate([xyz, q, [g]])
    for (t0, x0, q0, g0), (t1, x1, q1, g1) in zip(plan[:-1], plan[1:]):
        if t0 <= t < t1:
            f = (t - t0) / (t1 - t0)
            return np.concatenate([np.asarray(x0) + f * (np.asarray(x1) - np.asarray(x0)),
                                   _slerp(np.asarray(q0), np.asarray(q1), f), [g0 + f * (g1 - g0)]])
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- dm_control tasks
def _lean(task_cls: type) -> type:
    """``task_cls`` whose observation is the joint state only (no renders each step)."""

    class Lean(task_cls):
        def get_observation(self, physics):
            return {"qpos": self.get_qpos(physics), "qvel": self.get_qvel(physics)}

    Lean.__name__ = "Lean" + task_cls.__name__
    return Lean


def _seeded_ee(task_cls: type, task: str) -> type:
    """gym-aloha's end-effector task, with the object pose(s) of a given seed (its own
    ``initialize_episode`` draws them from the global numpy state)."""

    class SeededEE(_lean(task_cls)):
        poses: np.ndarray | None = None

        def initialize_episode(self, physics):
            self.initialize_robots(physics)
            if task == "transfer_cube":
                physics.named.data.qpos["red_box_joint"] = self.poses
            else:
                physics.named.data.qpos["red_peg_joint"] = self.poses[:7]
                physics.named.data.qpos["blue_socket_joint"] = self.poses[7:]
            base.Task.initialize_episode(self, physics)

    return SeededEE


def _environment(xml: str, task_obj: base.Task) -> control.Environment:
    physics = mujoco.Physics.from_xml_path(str(C.ASSETS_DIR / xml))
    return control.Environment(physics, task_obj, float("inf"), control_timestep=C.DT,
                               n_sub_steps=None, flat_observation=False)


def _quat_conj(q: np.ndarray) -> np.ndarray:
    return np.array([q[0], -q[1], -q[2], -q[3]])


class _MocapServo:
    """Closes the position loop around gym-aloha's mocap weld. The weld is soft (solimp 0.25) and
    the ViperX joints have large friction losses, so the gripper follows a mocap target slowly (a
    step settles in ~1 s) and, moving, trails it by centimetres. Each step this adds GAIN x the gap
    between the wanted mocap position and the one the gripper actually holds (the mocap position
    that would satisfy the weld now), plus a small integral near the target, to the commanded
    position; orientation stays open loop (feeding it back winds the forearm-roll / wrist-rotate
    pair up near the wrist singularity and made picks fail). The recorded joint trajectory is what
    the arms then really did, so the servo only changes which demonstrations come out."""

    GAIN = 2.0
    I_GAIN = 0.05                # per step, only within I_ZONE_M of the target (no wind-up in moves)
    I_ZONE_M = 0.02
    MAX_M = 0.05                 # largest correction

    def __init__(self, physics):
        self.p = physics
        self.bodies = [f"vx300s_{side}/gripper_link" for side in ("left", "right")]
        self.rel_pos = [np.array(physics.model.eq_data[i][3:6]) for i in range(2)]
        self.rel_quat = [np.array(physics.model.eq_data[i][6:10]) for i in range(2)]
        self.integral = [np.zeros(3), np.zeros(3)]

    def held_pose(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The mocap pose (xyz, quat) the weld would hold arm ``i``'s gripper at right now."""
        q_m = _quat_mul(np.array(self.p.named.data.xquat[self.bodies[i]]), _quat_conj(self.rel_quat[i]))
        return np.array(self.p.named.data.xpos[self.bodies[i]]) - _quat_to_matrix(q_m) @ self.rel_pos[i], q_m

    def command(self, want: np.ndarray) -> np.ndarray:
        """``want``: per arm (xyz, quat, gripper) = 16 numbers; returns the servoed command."""
        cmd = want.copy()
        for i in range(2):
            pos, quat = self.held_pose(i)
            err = want[8 * i: 8 * i + 3] - pos
            if np.linalg.norm(err) < self.I_ZONE_M:
                self.integral[i] = np.clip(self.integral[i] + self.I_GAIN * err, -self.MAX_M, self.MAX_M)
            cmd[8 * i: 8 * i + 3] += np.clip(self.GAIN * err + self.integral[i], -self.MAX_M, self.MAX_M)
        return cmd




def scripted_joint_trajectory(task: str, seed: int) -> tuple[np.ndarray, int]:
    """Run the scripted end-effector plan for ``seed`` in gym-aloha's end-effector task. Returns the
    (MAX_STEPS, 14) joint trajectory (arm joints as reached after each step, grippers as commanded,
    normalised) and the highest reward stage the scripted episode reached."""
    _check_task(task)
    poses = object_poses(task, seed)
    task_obj = _seeded_ee(_EE_TASK[task], task)()
    task_obj.poses = poses
    env = _environment(_EE_XML[task], task_obj)
    env.reset()
    if task == "transfer_cube":
        left, right = transfer_cube_plan(poses[:3])
    else:
        left, right = insertion_plan(poses[:3], poses[7:10])
    phys = env.physics
    servo = _MocapServo(phys)
    traj = np.zeros((MAX_STEPS, 14))
    best = 0
    for t in range(MAX_STEPS):
        want = np.concatenate([_interp(left, t), _interp(right, t)])
        ts = env.step(servo.command(want))
        best = max(best, int(ts.reward))
        q = ts.observation["qpos"].copy()
        q[6] = C.normalize_puppet_gripper_position(phys.data.ctrl[0])
        q[13] = C.normalize_puppet_gripper_position(phys.data.ctrl[2])
        traj[t] = q
    return traj, best


# --------------------------------------------------------------------------- the suite
def _feature(name: str, shape: list[int], dtype: str, kind: str, units: str, names=None) -> dict:
    d = {"name": name, "shape": shape, "dtype": dtype, "kind": kind, "units": units}
    if names is not None:
        d["names"] = list(names)
    return d


def _image_hw(image_size: int) -> tuple[int, int]:
    return int(image_size), int(round(image_size * 4 / 3))


class AlohaEnv:
    """One ALOHA episode source for (task, seed): gym-aloha's joint-space task, objects per seed."""

    def __init__(self, task: str, seed: int, image_size: int | None):
        _check_task(task)
        self.task, self.seed, self.image_size = task, int(seed), image_size
        self._env = _environment(_JOINT_XML[task], _lean(_JOINT_TASK[task])())
        self._t = 0
        self.last_expert_success: bool | None = None
        self.last_expert_infos: list[dict] = []
        self.last_scripted_stage: int | None = None

    def _obs(self, qpos: np.ndarray) -> dict[str, np.ndarray]:
        obs = {"joint_pos": np.asarray(qpos, dtype=np.float32)}
        if self.image_size is not None:
            h, w = _image_hw(self.image_size)
            obs["top"] = np.ascontiguousarray(self._env.physics.render(height=h, width=w, camera_id="top"))
        return obs

    def reset(self) -> dict[str, np.ndarray]:
        sim.BOX_POSE[0] = object_poses(self.task, self.seed)   # what gym_aloha's AlohaEnv.reset does
        ts = self._env.reset()
        self._t = 0
        return self._obs(ts.observation["qpos"])

    def step(self, action: np.ndarray):
        a = np.asarray(action, dtype=np.float64).reshape(-1)
        if a.shape != (14,) or not np.all(np.isfinite(a)):
            raise ValueError(f"ALOHA action: expected 14 finite joint targets, got shape {a.shape}")
        ts = self._env.step(a)
        self._t += 1
        stage = int(ts.reward)
        success = stage == MAX_STAGE
        done = success or self._t >= MAX_STEPS
        return self._obs(ts.observation["qpos"]), float(stage), done, {"success": success, "stage": stage}

    def expert_action(self, obs) -> None:
        return None                     # demos come from expert_episode (scripted EE, replayed)

    def expert_episode(self) -> list[tuple[dict, np.ndarray]]:
        """The scripted demonstration for this env's seed: the end-effector episode's joint
        trajectory replayed here for the full MAX_STEPS (without stopping at success, as ACT's
        data). Sets ``last_expert_success`` (the replay reached the final stage),
        ``last_expert_infos`` and ``last_scripted_stage`` (the end-effector episode's best stage)."""
        traj, self.last_scripted_stage = scripted_joint_trajectory(self.task, self.seed)
        obs = self.reset()
        pairs, infos = [], []
        for a in traj:
            act = a.astype(np.float32)
            pairs.append((obs, act))
            obs, _, _, info = self.step(act)
            infos.append(info)
        self.last_expert_infos = infos
        self.last_expert_success = any(i["success"] for i in infos)
        return pairs

    def render(self, size: int) -> np.ndarray:
        h, w = _image_hw(size)
        return np.ascontiguousarray(self._env.physics.render(height=h, width=w, camera_id="top"))

    def close(self) -> None:
        self._env.close() if hasattr(self._env, "close") else None


class AlohaSuite:
    name = "aloha"

    def tasks(self) -> list[str]:
        return ["transfer_cube", "insertion"]

    def default_tasks(self) -> list[str]:
        return ["transfer_cube", "insertion"]

    def spec(self, task: str, image_size: int | None) -> dict:
        _check_task(task)
        obs = [_feature("joint_pos", [14], "float32", "state", STATE_UNITS, JOINT_NAMES)]
        if image_size is not None:
            h, w = _image_hw(image_size)
            obs.append(_feature("top", [h, w, 3], "uint8", "rgb", "srgb"))
        return {"observation": obs,
                "action": _feature("joint_pos_target", [14], "float32", "action", STATE_UNITS, JOINT_NAMES),
                "action_low": list(ACTION_LOW), "action_high": list(ACTION_HIGH),
                "control_hz": CONTROL_HZ, "max_steps": MAX_STEPS,
                "robot": {"kind": "benchmark", "suite": self.name, "task": task,
                          "model": "aloha_bimanual_viperx_300s"}}

    def make(self, task: str, seed: int, image_size: int | None) -> AlohaEnv:
        return AlohaEnv(task, seed, image_size)

    def episode_metrics(self, infos: list[dict]) -> dict:
        stages = [int(i.get("stage", 0)) for i in infos]
        best = max(stages, default=0)
        return {"success": best == MAX_STAGE, "max_stage": best}


SUITE = AlohaSuite()
