"""PushT (``gym-pusht`` 0.1.8) as a benchmark suite for ``driver.py``, with a planning expert of our own.

Runs INSIDE the suite's own virtual environment (gym-pusht 0.1.8, pymunk < 7, shapely, gymnasium, pygame,
opencv, numpy, msgpack, websockets) as a plain script next to ``client.py`` / ``driver.py``; it never imports
``robot_learning`` or torch. The physics, the start states per seed, the goal, the coverage and the success
flag are gym-pusht's own (``gym_pusht.envs.pusht.PushTEnv``, what ``gym.make("gym_pusht/PushT-v0")`` builds,
with its 300-step limit kept here).

Units: pixels ("px") of gym-pusht's 512 x 512 arena (y grows downwards in the rendered image), angles in rad.

Observation (LeRobot's PushT keypoint state, gym-pusht's ``obs_type="environment_state_agent_pos"``; the Diffusion
Policy paper's low-dim PushT gave the same information as 9 keypoints of the T + the pusher's position):
``agent_pos`` = the pusher's (a 15 px circle) centre x, y; ``block_keypoints`` = the 8 corners of the T's two
rectangles (gym-pusht's ``get_keypoints`` order: bar 0-3, stem 4-7), x then y each, 16 values (the pose
without the angle's 2 pi wrap of the 5-d ``obs_type="state"``). With ``image_size``: ``image`` =
gym-pusht's own observation render (``obs_type="pixels"``) at image_size x image_size, uint8 RGB. The image
setting of the papers reads ``agent_pos`` + ``image`` only; ``block_keypoints`` is privileged state there.

Action: ``agent_target`` = the pusher's target position x, y in px within [0, 512] (the env's PD controller,
k_p 100, k_v 20, pulls the pusher to it over 10 physics steps of 10 ms): 10 Hz, at most 300 steps.

Step info: ``coverage`` = the area of the T inside the goal T / the goal's area; ``success`` = gym-pusht's
``is_success`` (coverage > 0.95), which also ends the episode. ``episode_metrics``: success, ``max_coverage``
(the Diffusion Policy paper's score), ``final_coverage``, ``steps``.

The seed is gym-pusht's ``reset(seed=...)`` seed: it decides the pusher's and the T's start; every ``reset()``
of an ENV plays its seed's start again.

The expert (gym-pusht ships none): a planner over pushes, tried in a copy of the env's own pymunk physics (a
space built as the env builds its own, set to the env's current bodies; stepped with the same targets it
reproduces the env to ~1e-13 px whenever nothing is in contact at planning time, which holds after every push's
back-off; when a start leaves the T touching a wall or the pusher, the copy lacks the env's cached contacts and
drifts by up to ~0.5 px, and the rest of the plan is checked again from the env's state). The pusher cannot
lift, so every push is reached along a path around the T.

1. A push library, built once per process (~0.5 s): from points all around the T's outline (every 5 px), in
   five directions about the inward normal, the pusher (from just clear of the T) moves straight through the T
   at the push speed in a wall-less copy of the physics; the T's pose is recorded every 2 px of pusher travel,
   in the T's start frame. Contact is frictionless and the floor drag total (pymunk damping 0), so the T moves
   only while pushed and a push's outcome depends on the pusher's path only: a library push maps onto any
   current pose by a rigid transform.
2. Every library push is scored from the T's current pose: the RMS distance between the T's area points at
   the predicted pose and at the goal, at the best depth of each push line, plus its time (approach and push)
   at 2 px per second; the best 40 get a second-push lookahead (charged a second push's time).
3. The best ten (by lookahead and by direct outcome, in turn) are executed in the physics copy from the env's
   exact state, as the env will run them: a collision-free path around the T (a visibility graph over points
   off its corners, 4 px clear of the pusher) to a lead-in point behind the contact, the push straight along
   its line, a one-step hold, a 12 px back-off. Targets move along the path with an acceleration-limited speed
   profile (180 px/s around the T, slower at corners, 80 px/s pushing), each 0.2 s ahead of the pusher's
   schedule (the PD's lag). Pushes that do not move the T are dropped. When none reaches success and the T is
   near the goal, a local random search over contact point, direction and depth around the best three adds
   more tries. The chosen push: the one that succeeds soonest (the env ends the episode at coverage > 0.95),
   favouring pushes whose coverage would peak higher; else the lowest cost after it (or after the best next
   push) plus time.

Each push starts where the previous targets ended, so the action stream is continuous: straight pushes at
constant speed joined by smooth moves around the T, 2-6 pushes an episode. ``expert_action`` returns the queued
targets one by one and plans again when the queue is empty or the env has left the plan.
"""

from __future__ import annotations

import math
import os
import warnings

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")          # pygame draws on surfaces only
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import numpy as np  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pymunk  # noqa: E402
    from gym_pusht.envs.pusht import PushTEnv, pymunk_to_shapely  # noqa: E402

TASK = "pusht"
CONTROL_HZ = 10.0
MAX_STEPS = 300                                 # gym-pusht's registered max_episode_steps
ARENA = 512.0
AGENT_R = 15.0                                  # the pusher's radius (gym-pusht's add_circle)
GOAL = np.array([256.0, 256.0, math.pi / 4])    # gym-pusht's goal_pose (x, y, angle of the T's frame)

# the T in its body frame (gym-pusht's add_tee, scale 30): the bar and the stem, and the outline (counter-clockwise
# in these coordinates, so the inward normal of edge i is the left normal of V[i+1] - V[i])
_RECTS = np.array([[-60.0, 60.0, 0.0, 30.0], [-15.0, 15.0, 30.0, 120.0]])   # xmin, xmax, ymin, ymax
_OUTLINE = np.array([[-60, 0], [60, 0], [60, 30], [15, 30], [15, 120], [-15, 120], [-15, 30], [-60, 30]], float)
_AREAS = (_RECTS[:, 1] - _RECTS[:, 0]) * (_RECTS[:, 3] - _RECTS[:, 2])
_MID = np.stack([(_RECTS[:, 0] + _RECTS[:, 1]) / 2, (_RECTS[:, 2] + _RECTS[:, 3]) / 2], 1)
_CENTROID = (_AREAS[:, None] * _MID).sum(0) / _AREAS.sum()
# mean squared distance of the T's area points from its centroid
_RG2 = float(np.sum(_AREAS * (np.sum((_MID - _CENTROID) ** 2, 1)
                              + ((_RECTS[:, 1] - _RECTS[:, 0]) ** 2 + (_RECTS[:, 3] - _RECTS[:, 2]) ** 2) / 12))
             / _AREAS.sum())
_WALLS = (((5, 506), (5, 5)), ((5, 5), (506, 5)), ((506, 5), (506, 506)), ((5, 506), (506, 506)))


# --------------------------------------------------------------------------- suite
def _feature(name: str, names: list[str], units: str, kind: str = "state") -> dict:
    return {"name": name, "shape": [len(names)], "dtype": "float32", "kind": kind, "units": units, "names": names}


_KP_NAMES = [f"kp{i}_{a}" for i in range(8) for a in ("x", "y")]


class PushTSuite:
    name = "pusht"

    def tasks(self) -> list[str]:
        return [TASK]

    def default_tasks(self) -> list[str]:
        return [TASK]

    def spec(self, task: str, image_size: int | None) -> dict:
        _check_task(task)
        obs = [_feature("agent_pos", ["agent_x", "agent_y"], "px"),
               _feature("block_keypoints", list(_KP_NAMES), "px")]
        if image_size:
            obs.append({"name": "image", "shape": [int(image_size), int(image_size), 3], "dtype": "uint8",
                        "kind": "rgb", "units": "srgb"})
        return {"observation": obs,
                "action": _feature("agent_target", ["target_x", "target_y"], "px", "action"),
                "action_low": [0.0, 0.0], "action_high": [ARENA, ARENA],
                "control_hz": CONTROL_HZ, "max_steps": MAX_STEPS,
                "robot": {"kind": "benchmark", "suite": self.name, "task": task, "model": "pusht_circle_pusher"}}

    def make(self, task: str, seed: int, image_size: int | None) -> PushTSuiteEnv:
        _check_task(task)
        return PushTSuiteEnv(seed, image_size)

    def episode_metrics(self, infos: list[dict]) -> dict:
        """PushT's own metric: max coverage over the episode (the Diffusion Policy paper's score) and
        success (coverage > 0.95 at some step; the episode ends there)."""
        cov = [float(i.get("coverage", 0.0)) for i in infos]
        return {"success": any(bool(i.get("success")) for i in infos),
                "max_coverage": max(cov) if cov else 0.0,
                "final_coverage": cov[-1] if cov else 0.0,
                "steps": len(infos)}


def _check_task(task: str) -> None:
    if task != TASK:
        raise ValueError(f"pusht: unknown task {task!r}; expected {TASK!r}")


class PushTSuiteEnv:
    """One gym-pusht episode start (``seed``) behind the suite contract."""

    def __init__(self, seed: int, image_size: int | None):
        self.seed = int(seed)
        self.image_size = int(image_size) if image_size else None
        size = self.image_size or 96
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.env = PushTEnv(obs_type="environment_state_agent_pos", render_mode="rgb_array",
                                observation_width=size, observation_height=size)
        self.steps = 0
        self.expert = PushTExpert(self.env, self.seed)
        self.last_info: dict | None = None

    def _obs(self) -> dict:
        e = self.env
        obs = {"agent_pos": np.array(tuple(e.agent.position), dtype=np.float32),
               "block_keypoints": PushTEnv.get_keypoints(e._block_shapes).reshape(-1).astype(np.float32)}
        if self.image_size:
            obs["image"] = np.ascontiguousarray(e._render(visualize=False), dtype=np.uint8)
        return obs

    def reset(self) -> dict:
        self.env.reset(seed=self.seed)
        self.steps = 0
        self.last_info = None
        self.expert.reset()
        return self._obs()

    def step(self, action: np.ndarray):
        a = np.asarray(action, dtype=np.float64).reshape(2)
        _, reward, terminated, _, info = self.env.step(a)
        self.steps += 1
        out = {"success": bool(info["is_success"]), "coverage": float(info["coverage"]),
               "n_contacts": int(info["n_contacts"])}
        self.last_info = out
        done = bool(terminated) or self.steps >= MAX_STEPS
        return self._obs(), float(reward), done, out

    def expert_action(self, obs: dict | None = None) -> np.ndarray:
        """The planning expert's target for this step (float32 px); it reads the env's exact state."""
        return self.expert.act()

    def render(self, size: int) -> np.ndarray:
        self.env.visualization_width = self.env.visualization_height = int(size)
        return np.ascontiguousarray(self.env.render(), dtype=np.uint8)

    def close(self) -> None:
        try:
            self.env.close()
        except Exception:
            pass


# --------------------------------------------------------------------------- geometry
def _rot(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def _to_local(pose: np.ndarray, p: np.ndarray) -> np.ndarray:
    """World points ``p`` (..., 2) in the T's frame at ``pose``."""
    c, s = math.cos(pose[2]), math.sin(pose[2])
    dx, dy = p[..., 0] - pose[0], p[..., 1] - pose[1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy], -1)


def _to_world(pose: np.ndarray, p: np.ndarray) -> np.ndarray:
    c, s = math.cos(pose[2]), math.sin(pose[2])
    return np.stack([pose[0] + c * p[..., 0] - s * p[..., 1], pose[1] + s * p[..., 0] + c * p[..., 1]], -1)


def _dist_t(pl: np.ndarray) -> np.ndarray:
    """Distance from points in the T's frame (..., 2) to the T (0 inside)."""
    x, y = pl[..., 0], pl[..., 1]
    d = None
    for x0, x1, y0, y1 in _RECTS:
        dx = np.maximum(np.maximum(x0 - x, x - x1), 0.0)
        dy = np.maximum(np.maximum(y0 - y, y - y1), 0.0)
        r = np.hypot(dx, dy)
        d = r if d is None else np.minimum(d, r)
    return d


def _compose(pose: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Poses (..., 3) of a T at ``pose`` moved by ``delta`` (given in its own frame)."""
    c, s = np.cos(pose[..., 2]), np.sin(pose[..., 2])
    if np.ndim(pose) > 1:
        c, s = c[..., None], s[..., None]
        px, py, pt = pose[..., 0:1], pose[..., 1:2], pose[..., 2:3]
    else:
        px, py, pt = pose[0], pose[1], pose[2]
    dx, dy, dt = delta[..., 0], delta[..., 1], delta[..., 2]
    return np.stack([px + c * dx - s * dy, py + s * dx + c * dy, pt + dt], -1)


def _cost(poses: np.ndarray, goal: np.ndarray = GOAL) -> np.ndarray:
    """RMS distance (px) between the T's area points at ``poses`` (..., 3) and at ``goal``."""
    c, s = np.cos(poses[..., 2]), np.sin(poses[..., 2])
    cx = poses[..., 0] + c * _CENTROID[0] - s * _CENTROID[1]
    cy = poses[..., 1] + s * _CENTROID[0] + c * _CENTROID[1]
    gc, gs = math.cos(goal[2]), math.sin(goal[2])
    gx = goal[0] + gc * _CENTROID[0] - gs * _CENTROID[1]
    gy = goal[1] + gs * _CENTROID[0] + gc * _CENTROID[1]
    return np.sqrt((cx - gx) ** 2 + (cy - gy) ** 2 + 2.0 * (1.0 - np.cos(poses[..., 2] - goal[2])) * _RG2)


# --------------------------------------------------------------------------- physics copy
class _Sim:
    """A pymunk space built as gym-pusht's ``_setup`` builds its own (walls, pusher, T; no contact counter),
    set to the env's state and stepped with the env's PD control, so it reproduces the env."""

    def __init__(self, walls: bool = True):
        sp = pymunk.Space()
        sp.gravity = 0, 0
        sp.damping = 0.0
        if walls:
            sp.add(*[PushTEnv.add_segment(sp, a, b, 2) for a, b in _WALLS])
        self.space = sp
        self.agent = PushTEnv.add_circle(sp, (256, 400), AGENT_R)
        self.block, self.shapes = PushTEnv.add_tee(sp, (256, 300), 0)
        self._goal_geom = None

    def set_state(self, st: tuple) -> None:
        (ax, ay, avx, avy, bx, by, ba, bvx, bvy, bw) = st
        self.agent.position = ax, ay
        self.agent.velocity = avx, avy
        self.block.angle = ba          # the angle first: it turns the body about its centre of gravity
        self.block.position = bx, by
        self.block.velocity = bvx, bvy
        self.block.angular_velocity = bw

    def pose(self) -> np.ndarray:
        p = self.block.position
        return np.array([p[0], p[1], self.block.angle])

    def coverage(self) -> float:
        """gym-pusht's ``_get_coverage`` on this space."""
        if self._goal_geom is None:
            self._goal_geom = pymunk_to_shapely(PushTEnv.get_goal_pose_body(GOAL), self.shapes)
        g = self._goal_geom
        return g.intersection(pymunk_to_shapely(self.block, self.shapes)).area / g.area

    def run(self, targets: np.ndarray, stop_on_success: bool = True):
        """Step the env's control loop through ``targets`` (n, 2). Returns (pose after each step (n, 3),
        state before each step (n, 5: agent xy, block pose), index of the success step or None, the highest
        coverage seen; near the goal only, else 0)."""
        ag, sp, bl = self.agent, self.space, self.block
        n = len(targets)
        poses = np.empty((n, 3))
        before = np.empty((n, 5))
        win, peak = None, 0.0
        for k in range(n):
            tx, ty = float(targets[k, 0]), float(targets[k, 1])
            p = ag.position
            q = bl.position
            before[k] = (p[0], p[1], q[0], q[1], bl.angle)
            for _ in range(10):
                px, py = ag.position
                vx, vy = ag.velocity
                ag.velocity = (vx + (100 * (tx - px) + 20 * (0 - vx)) * 0.01,
                               vy + (100 * (ty - py) + 20 * (0 - vy)) * 0.01)
                sp.step(0.01)
            q = bl.position
            poses[k] = (q[0], q[1], bl.angle)
            if _near_goal(q[0], q[1], bl.angle):
                cov = self.coverage()
                peak = max(peak, cov)
                if win is None and cov > 0.95:
                    win = k
                    if stop_on_success:
                        return poses[:k + 1], before[:k + 1], win, peak
        return poses, before, win, peak


_GOAL_C = (GOAL[0] + math.cos(GOAL[2]) * _CENTROID[0] - math.sin(GOAL[2]) * _CENTROID[1],
           GOAL[1] + math.sin(GOAL[2]) * _CENTROID[0] + math.cos(GOAL[2]) * _CENTROID[1])


def _near_goal(x: float, y: float, a: float, within: float = 8.0) -> bool:
    """``_cost`` of one pose below ``within`` px (no coverage above 0.95 is farther)."""
    c, s = math.cos(a), math.sin(a)
    dx = x + c * _CENTROID[0] - s * _CENTROID[1] - _GOAL_C[0]
    dy = y + s * _CENTROID[0] + c * _CENTROID[1] - _GOAL_C[1]
    return dx * dx + dy * dy + 2.0 * (1.0 - math.cos(a - GOAL[2])) * _RG2 < within * within


def _env_state(env: PushTEnv) -> tuple:
    a, b = env.agent, env.block
    return (a.position[0], a.position[1], a.velocity[0], a.velocity[1], b.position[0], b.position[1], b.angle,
            b.velocity[0], b.velocity[1], b.angular_velocity)


# --------------------------------------------------------------------------- push library
class _Library:
    """Pushes from points around the T's outline (see the module docstring, step 1)."""

    SPACING = 5.0                                       # px between contact points along the outline
    ANGLES = np.array([-0.6, -0.3, 0.0, 0.3, 0.6])      # rad about the inward normal
    V_PUSH = 80.0                                       # px/s
    MAX_DEPTH = 160.0                                   # px of pusher travel after the T starts to move
    RECORD = 2.0                                        # px between recorded poses

    def __init__(self):
        contact, normal, along, edge, angle, direction, start = [], [], [], [], [], [], []
        for i in range(len(_OUTLINE)):
            a, b = _OUTLINE[i], _OUTLINE[(i + 1) % len(_OUTLINE)]
            length = float(np.linalg.norm(b - a))
            t_dir = (b - a) / length
            n_in = np.array([-t_dir[1], t_dir[0]])
            m = max(1, int(round(length / self.SPACING)))
            for k in range(m):
                c = a + (k + 0.5) / m * (b - a)
                for al in self.ANGLES:
                    d = _rot(al) @ n_in
                    s = _clear_start(c, d)
                    if s is None:
                        continue
                    contact.append(c), normal.append(n_in), along.append(t_dir), edge.append(i)
                    angle.append(al), direction.append(d), start.append(s)
        self.contact, self.normal, self.along = np.array(contact), np.array(normal), np.array(along)
        self.edge, self.angle = np.array(edge), np.array(angle)
        self.dir, self.start = np.array(direction), np.array(start)
        sim = _Sim(walls=False)
        ag, bl, sp = sim.agent, sim.block, sim.space
        dt, step_px = 0.01, self.V_PUSH * 0.01
        every = max(1, int(round(self.RECORD / step_px)))
        lines, depth, delta = [], [], []
        keep = []
        for j in range(len(self.start)):
            ag.position = 1e4, 1e4
            ag.velocity = 0, 0
            sp.step(dt)                    # drop the last push's contact
            bl.angle = 0.0
            bl.position = 0.0, 0.0
            bl.velocity = 0.0, 0.0
            bl.angular_velocity = 0.0
            s, d = self.start[j], self.dir[j]
            ag.position = float(s[0]), float(s[1])
            vel = (float(d[0] * self.V_PUSH), float(d[1] * self.V_PUSH))
            touched, still, n0 = None, 0, len(depth)
            last = (0.0, 0.0, 0.0)
            for i in range(1, 100000):
                ag.velocity = vel
                sp.step(dt)
                q = bl.position
                cur = (q[0], q[1], bl.angle)
                u = i * step_px
                moved = abs(cur[0] - last[0]) + abs(cur[1] - last[1]) + 40 * abs(cur[2] - last[2]) > 1e-6
                last = cur
                if touched is None:
                    if not moved:
                        if u > 250:
                            break
                        continue
                    touched = i
                still = 0 if moved else still + 1
                if (i - touched) % every == 0:
                    lines.append(len(keep)), depth.append(u), delta.append(cur)
                if (i - touched) * step_px > self.MAX_DEPTH or still * step_px > 20 or abs(cur[2]) > 2.5:
                    break
            if len(depth) > n0:            # else the push misses the T
                keep.append(j)
        keep = np.array(keep)
        for name in ("contact", "normal", "along", "edge", "angle", "dir", "start"):
            setattr(self, name, getattr(self, name)[keep])
        self.line = np.array(lines)
        self.depth = np.array(depth)
        self.delta = np.array(delta)
        self.first = np.searchsorted(self.line, np.arange(len(keep)))
        self.last = np.searchsorted(self.line, np.arange(len(keep)), side="right")
        self.sub = self.delta[::5]                      # for lookahead


def _clear_start(c: np.ndarray, d: np.ndarray, clear: float = AGENT_R + 1.0) -> np.ndarray | None:
    """The first point behind contact point ``c`` (T frame) against push direction ``d`` where the pusher is
    ``clear`` of the T."""
    ks = np.arange(0.0, 150.0, 0.5)
    pts = c[None] - ks[:, None] * d[None]
    ok = np.nonzero(_dist_t(pts) >= clear)[0]
    return pts[ok[0]] if len(ok) else None


_LIB: _Library | None = None


def _library() -> _Library:
    global _LIB
    if _LIB is None:
        _LIB = _Library()
    return _LIB


# --------------------------------------------------------------------------- paths around the T
_MARGIN = 4.0
_CLEAR = AGENT_R + _MARGIN       # clearance of paths between graph nodes


def _graph_nodes() -> np.ndarray:
    """Path nodes in the T's frame: mitre points off every corner of the outline."""
    n = len(_OUTLINE)
    nodes = []
    off = _CLEAR + 2.0
    for i in range(n):
        p, a, b = _OUTLINE[i], _OUTLINE[i - 1], _OUTLINE[(i + 1) % n]
        t1, t2 = (p - a) / np.linalg.norm(p - a), (b - p) / np.linalg.norm(b - p)
        n1, n2 = np.array([t1[1], -t1[0]]), np.array([t2[1], -t2[0]])     # outward normals
        cross = t1[0] * t2[1] - t1[1] * t2[0]
        if cross > 0:      # convex corner: the mitre point and the two edge-offset points
            nodes += [p + off * (n1 + n2), p + off * n1 + 0.5 * off * t1, p + off * n2 - 0.5 * off * t2]
        else:              # concave corner: the point clear of both edges
            nodes.append(p + off * (n1 + n2))
    nodes = np.array(nodes)
    return nodes[_dist_t(nodes) >= _CLEAR]


def _seg_clear(a: np.ndarray, b: np.ndarray, clear: float) -> bool:
    """Whether the segment a-b (T frame) stays ``clear`` of the T."""
    return bool(_segs_clear(a[None], b[None], clear)[0])


def _segs_clear(a: np.ndarray, b: np.ndarray, clear: float) -> np.ndarray:
    """Whether each segment a[i]-b[i] (T frame, (m, 2)) stays ``clear`` of the T (checked every <= 2 px)."""
    n = max(2, int(np.linalg.norm(b - a, axis=1).max() / 2.0) + 2)
    t = np.linspace(0.0, 1.0, n)[None, :, None]
    pts = a[:, None] + t * (b - a)[:, None]
    return np.all(_dist_t(pts) >= clear, axis=1)


class _Graph:
    def __init__(self):
        self.nodes = _graph_nodes()
        m = len(self.nodes)
        self.w = np.full((m, m), np.inf)
        for i in range(m):
            for j in range(i + 1, m):
                if _seg_clear(self.nodes[i], self.nodes[j], _CLEAR - 0.5):
                    self.w[i, j] = self.w[j, i] = float(np.linalg.norm(self.nodes[i] - self.nodes[j]))


_GRAPH: _Graph | None = None


def _escape(pl: np.ndarray, clear: float) -> np.ndarray:
    """The nearest point at least ``clear`` from the T, from ``pl`` (T frame)."""
    if float(_dist_t(pl)) >= clear:
        return pl
    ang = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    dirs = np.stack([np.cos(ang), np.sin(ang)], 1)
    for r in np.arange(1.0, 200.0, 1.0):
        pts = pl[None] + r * dirs
        ok = np.nonzero(_dist_t(pts) >= clear)[0]
        if len(ok):
            return pts[ok[0]]
    return pl


def _path(pose: np.ndarray, p0: np.ndarray, goal: np.ndarray) -> list[np.ndarray] | None:
    """A short path (world points) from ``p0`` to ``goal`` keeping the pusher clear of the T at ``pose``,
    through the arena; None if there is none."""
    global _GRAPH
    if _GRAPH is None:
        _GRAPH = _Graph()
    g = _GRAPH
    a, b = _to_local(pose, p0), _to_local(pose, goal)
    near = AGENT_R + 1.0
    pre = []
    if float(_dist_t(a)) < near:
        e = _escape(a, _CLEAR + 1.0)
        pre = [e]
        a = e
    if float(_dist_t(b)) < near - 0.5:
        return None
    if _seg_clear(a, b, near):
        return [p0] + [_to_world(pose, x) for x in pre] + [goal]
    nodes_w = _to_world(pose, g.nodes)
    inside = np.all((nodes_w >= 2.0) & (nodes_w <= ARENA - 2.0), axis=1)
    m = len(g.nodes)
    # Dijkstra over the nodes from the start (da: start -> node), then the best node -> goal (db)
    da = np.where(inside & _segs_clear(np.repeat(a[None], m, 0), g.nodes, near),
                  np.linalg.norm(g.nodes - a, axis=1), np.inf)
    db = np.where(inside & _segs_clear(g.nodes, np.repeat(b[None], m, 0), near),
                  np.linalg.norm(g.nodes - b, axis=1), np.inf)
    if not np.isfinite(da).any() or not np.isfinite(db).any():
        return None
    w = np.where(inside[:, None] & inside[None, :], g.w, np.inf)
    dist = da.copy()
    prev = np.full(m, -1)
    done = np.zeros(m, bool)
    for _ in range(m):
        cand = np.where(done, np.inf, dist)
        i = int(np.argmin(cand))
        if not np.isfinite(cand[i]):
            break
        done[i] = True
        nd = dist[i] + w[i]
        better = nd < dist
        dist[better] = nd[better]
        prev[better] = i
    total = dist + db
    j = int(np.argmin(total))
    if not np.isfinite(total[j]):
        return None
    seq = []
    while j >= 0:
        seq.append(j)
        j = int(prev[j])
    seq.reverse()
    return [p0] + [_to_world(pose, x) for x in pre] + [_to_world(pose, g.nodes[i]) for i in seq] + [goal]


# --------------------------------------------------------------------------- timing
def _profile(points: list[np.ndarray], caps: list[float], v_end: float, a_max: float):
    """Arc length and time along a polyline with per-segment speed caps, slower at corners, from rest to
    ``v_end`` (0 to stop), acceleration-limited. Returns (points (n, 2), cumulative length (n,), time (n,))."""
    pts = [np.asarray(points[0], float)]
    cap_pts = [0.0]
    for i in range(1, len(points)):
        a, b = np.asarray(points[i - 1], float), np.asarray(points[i], float)
        L = float(np.linalg.norm(b - a))
        if L < 1e-9:
            continue
        n = max(1, int(math.ceil(L / 3.0)))
        for k in range(1, n + 1):
            pts.append(a + (b - a) * k / n)
            cap_pts.append(caps[i - 1])
    pts = np.array(pts)
    if len(pts) < 2:
        return pts, np.zeros(1), np.zeros(1)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    cap = np.array(cap_pts, float)
    cap[0] = cap[1]
    # corners: the turn between consecutive dense segments
    dirs = np.diff(pts, axis=0) / np.maximum(seg[:, None], 1e-9)
    turn = np.zeros(len(pts))
    turn[1:-1] = np.arccos(np.clip(np.sum(dirs[:-1] * dirs[1:], 1), -1.0, 1.0))
    cap = np.minimum(cap, np.where(turn > 1e-3, np.maximum(40.0, cap * (1.0 - turn / np.pi) ** 2), np.inf))
    v = cap.copy()
    v[0] = 0.0
    for i in range(1, len(v)):
        v[i] = min(v[i], math.sqrt(v[i - 1] ** 2 + 2 * a_max * seg[i - 1]))
    v[-1] = min(v[-1], v_end)
    for i in range(len(v) - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2 * a_max * seg[i]))
    vm = np.maximum(0.5 * (v[1:] + v[:-1]), 1.0)
    t = np.concatenate([[0.0], np.cumsum(seg / vm)])
    return pts, s, t


def _sample(pts: np.ndarray, t: np.ndarray, lead_s: float, dt: float) -> np.ndarray:
    """Targets every ``dt`` along a timed path, each ``lead_s`` ahead on it; the last one is the end."""
    if len(pts) < 2 or t[-1] <= 0:
        return pts[-1:].copy()
    n = max(1, int(math.ceil(max(t[-1] - lead_s, 0.0) / dt)) + 1)
    tk = np.minimum(np.arange(n) * dt + lead_s, t[-1])
    return np.stack([np.interp(tk, t, pts[:, 0]), np.interp(tk, t, pts[:, 1])], 1)


# --------------------------------------------------------------------------- the expert
class PushTExpert:
    """Plans one push at a time in a copy of the env's physics (see the module docstring)."""

    V_TRAVEL = 180.0         # px/s around the T
    V_PUSH = _Library.V_PUSH
    V_BACK = 100.0
    A_MAX = 700.0            # px/s^2
    LEAD_PX = 16.0           # lead-in before the contact point, along the push
    BACK_PX = 12.0           # back-off after a push
    HOLD = 1                 # steps the target rests at the push's end
    LEAD_S = 0.2             # targets this far ahead on the path (the PD's lag)
    TIME_W = 2.0             # px of cost per second of execution
    LOOKAHEAD = 40
    VERIFY = 10
    REFINE_BELOW = 20.0      # px: refine near the goal
    REFINE_N = 16
    REFINE_ROUNDS = 2
    SECOND_S = 2.5           # s: a second push's time, charged to the lookahead
    PEAK_W = 200.0           # steps of a successful push worth 1.0 more peak coverage
    MIN_MOVE_PX = 0.3        # a push that moves the T less (RMS px) is no push
    REPLAN_PX = 0.05         # plan again when the env is this far from the plan (px; rad x 1)

    def __init__(self, env: PushTEnv, seed: int = 0):
        self.env = env
        self.sim = _Sim(walls=True)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.queue: list[tuple[np.ndarray, np.ndarray]] = []
        self.last_target: np.ndarray | None = None
        self.plans = 0
        self._aim = (False, np.inf)

    def reset(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.queue = []
        self.last_target = None
        self.plans = 0

    # -- acting
    def act(self) -> np.ndarray:
        env = self.env
        if self.queue:
            expect = self.queue[0][1]
            p, q = env.agent.position, env.block.position
            now = np.array([p[0], p[1], q[0], q[1], env.block.angle])
            # the copy starts without the env's cached contacts (the T in touch with a wall or the pusher at
            # the start): tiny drifts are let pass; past that the rest of the plan is run again from here
            # and kept if it still does what it was chosen for, else a new one is made
            if np.abs(now - expect).max() > self.REPLAN_PX:
                self.queue = self._recheck()
        if not self.queue:
            self.queue = self.plan()
        target, _ = self.queue.pop(0)
        self.last_target = target.astype(np.float64)
        return target

    # -- planning
    def plan(self) -> list[tuple[np.ndarray, np.ndarray]]:
        lib = _library()
        st = _env_state(self.env)
        pose = np.array([st[4], st[5], st[6]])
        p0 = self.last_target if self.last_target is not None else np.array([st[0], st[1]])
        self.plans += 1
        after = _compose(pose, lib.delta)
        j1 = _cost(after)
        cand = []
        rot = _rot(pose[2])
        for ln in range(len(lib.start)):
            a, b = lib.first[ln], lib.last[ln]
            i = a + int(np.argmin(j1[a:b]))
            s_w = pose[:2] + rot @ lib.start[ln]
            t = float(np.linalg.norm(s_w - p0)) / self.V_TRAVEL + lib.depth[i] / self.V_PUSH + 0.6
            cand.append((j1[i] + self.TIME_W * t, i, ln))
        cand.sort(key=lambda c: c[0])
        scored = []
        for jt, i, ln in cand[:self.LOOKAHEAD]:
            j2 = float(_cost(_compose(after[i], lib.sub)).min()) + self.TIME_W * self.SECOND_S
            scored.append((min(jt, j2 + (jt - j1[i])), i, ln))
        scored.sort(key=lambda c: c[0])
        # verify the best by the lookahead and the best by the direct outcome, in turn
        order, seen = [], set()
        for pair in zip(scored + cand[self.LOOKAHEAD:], cand):
            for _, i, ln in pair:
                if ln not in seen:
                    seen.add(ln)
                    order.append((i, ln))
        now = float(_cost(pose))
        results = []
        for i, ln in order:
            if len(results) >= self.VERIFY:
                break
            r = self._try(st, pose, p0, lib.contact[ln], lib.start[ln], lib.dir[ln], float(lib.depth[i]))
            if r is not None and (r["win"] is not None or r["moved"] > self.MIN_MOVE_PX):
                results.append((r, (ln, float(lib.depth[i]))))
        if results and not any(r[0]["win"] is not None for r in results):
            best_cost = min(r[0]["cost"] for r in results)
            if best_cost < self.REFINE_BELOW or now < self.REFINE_BELOW:
                results += self._refine(st, pose, p0, results)
        if not results:
            return self._fallback(st, p0)
        best = min(results, key=lambda r: r[0]["score"])[0]
        self._aim = (best["win"] is not None, best["cost"])
        return [(best["targets"][k], best["before"][k]) for k in range(len(best["before"]))]

    def _recheck(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The rest of the queued plan, run again from the env's state: kept (with its new expected states) if
        it succeeds, or (planned short of success) ends within 1 px of where it was to; else nothing."""
        targets = np.array([t for t, _ in self.queue])
        self.sim.set_state(_env_state(self.env))
        poses, before, win, _ = self.sim.run(targets.astype(np.float64), stop_on_success=True)
        wins, cost = self._aim
        if win is not None or (not wins and float(_cost(poses[-1])) <= cost + 1.0):
            return [(targets[k], before[k]) for k in range(len(before))]
        return []

    def _refine(self, st, pose, p0, results):
        lib = _library()
        out = []
        pool = sorted(results, key=lambda r: r[0]["cost"])[:3]
        for _ in range(self.REFINE_ROUNDS):
            new = []
            for r, (ln, depth) in pool:
                for _ in range(self.REFINE_N // len(pool) + 1):
                    c = lib.contact[ln] + lib.along[ln] * self.rng.normal(0, 3.0)
                    al = lib.angle[ln] + self.rng.normal(0, 0.12)
                    d = _rot(al) @ lib.normal[ln]
                    s = _clear_start(c, d)
                    if s is None:
                        continue
                    dep = max(2.0, depth + self.rng.normal(0, 5.0))
                    rr = self._try(st, pose, p0, c, s, d, dep)
                    if rr is not None and (rr["win"] is not None or rr["moved"] > self.MIN_MOVE_PX):
                        new.append((rr, (ln, dep)))
            out += new
            if any(r[0]["win"] is not None for r in new):
                break
            pool = sorted(pool + new, key=lambda r: r[0]["cost"])[:3]
        return out

    def _try(self, st, pose, p0, c_l, s_l, d_l, depth):
        """Execute a push (T-frame contact, start, direction; pusher travel past the start) in the physics
        copy from the env's state; None if it cannot be reached."""
        rot = _rot(pose[2])
        s = pose[:2] + rot @ s_l
        d = rot @ d_l
        lead = self.LEAD_PX
        q = s - d * lead
        while lead > 0 and float(_dist_t(_to_local(pose, q))) < AGENT_R + 1.0:
            lead -= 4.0
            q = s - d * max(lead, 0.0)
        e = s + d * depth
        back = e - d * self.BACK_PX
        if not (np.all(q >= 0) and np.all(q <= ARENA) and np.all(e >= -5) and np.all(e <= ARENA + 5)):
            return None
        path = _path(pose, p0, q)
        if path is None:
            return None
        pts = path + [s, e]
        caps = [self.V_TRAVEL] * (len(path) - 1) + [self.V_PUSH, self.V_PUSH]
        P, _, T = _profile(pts, caps, 0.0, self.A_MAX)
        t1 = _sample(P, T, self.LEAD_S, 0.1)
        P2, _, T2 = _profile([e, back], [self.V_BACK], 0.0, self.A_MAX)
        t2 = _sample(P2, T2, self.LEAD_S, 0.1)
        targets = np.concatenate([t1, np.repeat(t1[-1:], self.HOLD, 0), t2[1:]], 0)
        targets = np.clip(targets, 0.0, ARENA).astype(np.float32)
        self.sim.set_state(st)
        # run on past a success (the env stops there): how well the push aims shows in its peak coverage
        poses, before, win, peak = self.sim.run(targets.astype(np.float64), stop_on_success=False)
        end = poses[-1]
        cost = float(_cost(end))
        if win is not None:
            score = -1e4 + win - self.PEAK_W * (peak - 0.95)
            targets, before, end = targets[:win + 1], before[:win + 1], poses[win]
            cost = float(_cost(end))
        else:
            lib = _library()
            j = min(cost, float(_cost(_compose(end, lib.sub)).min()) + self.TIME_W * self.SECOND_S)
            score = j + self.TIME_W * len(targets) * 0.1
        return {"targets": targets, "before": before, "pose": end, "win": win, "score": score, "cost": cost,
                "moved": float(_cost(end, pose))}

    def _fallback(self, st, p0):
        """Nothing reachable: step away from the T and look again."""
        pose = np.array([st[4], st[5], st[6]])
        a = _to_local(pose, p0)
        e = _to_world(pose, _escape(a, _CLEAR + 10.0))
        e = np.clip(e, 0.0, ARENA)
        P, _, T = _profile([p0, e], [self.V_BACK], 0.0, self.A_MAX)
        targets = np.clip(_sample(P, T, self.LEAD_S, 0.1), 0, ARENA).astype(np.float32)
        if len(targets) < 2:
            targets = np.repeat(targets[:1], 2, 0)
        self.sim.set_state(st)
        _, before, _, _ = self.sim.run(targets.astype(np.float64), stop_on_success=False)
        self._aim = (False, np.inf)
        return [(targets[k], before[k]) for k in range(len(targets))]


SUITE = PushTSuite()
