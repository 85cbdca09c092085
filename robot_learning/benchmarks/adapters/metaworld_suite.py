"""Meta-World v3 (``metaworld`` 3.1.1 on mujoco 3.3.0) as a benchmark suite for ``driver.py``.

Runs inside the suite's own virtual environment (never imports ``robot_learning`` or torch). One task is one
goal-observable v3 env (``<task>-v3-goal-observable``): the 39-d state (hand, gripper, two objects' poses, the
previous frame's 18 values, the goal), a 4-d action in [-1, 1] (hand displacement, gripper effort), 500 steps at
80 Hz (5 MuJoCo steps of 2.5 ms), ``info["success"]`` the suite's own success flag. The seed decides the task
variation (object and goal positions): the env is built with it and every reset plays that variation. Demos come
from the suite's own scripted experts (``metaworld.policies``). Videos (and images) render the ``corner2`` camera,
flipped upright.
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")

import warnings  # noqa: E402

import numpy as np  # noqa: E402

MT10 = ("reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close", "button-press-topdown",
        "peg-insert-side", "window-open", "window-close")
_XYZ = ("x", "y", "z")
_QUAT = ("qw", "qx", "qy", "qz")


def _feature(name: str, names: list[str], units: str, kind: str = "state") -> dict:
    return {"name": name, "shape": [len(names)], "dtype": "float32", "kind": kind, "units": units, "names": names}


# the 39-d observation, split into features by meaning: (feature, slice, units, element names)
_LAYOUT = (
    ("hand_pos", slice(0, 3), "m", [f"hand_{a}" for a in _XYZ]),
    ("gripper_open", slice(3, 4), "1", ["gripper_open"]),
    ("object_pos", slice(4, 7), "m", [f"obj_{a}" for a in _XYZ]),
    ("object_quat", slice(7, 11), "1", [f"obj_{a}" for a in _QUAT]),
    ("object2_pos", slice(11, 14), "m", [f"obj2_{a}" for a in _XYZ]),
    ("object2_quat", slice(14, 18), "1", [f"obj2_{a}" for a in _QUAT]),
    ("prev_hand_pos", slice(18, 21), "m", [f"prev_hand_{a}" for a in _XYZ]),
    ("prev_gripper_open", slice(21, 22), "1", ["prev_gripper_open"]),
    ("prev_object_pos", slice(22, 25), "m", [f"prev_obj_{a}" for a in _XYZ]),
    ("prev_object_quat", slice(25, 29), "1", [f"prev_obj_{a}" for a in _QUAT]),
    ("prev_object2_pos", slice(29, 32), "m", [f"prev_obj2_{a}" for a in _XYZ]),
    ("prev_object2_quat", slice(32, 36), "1", [f"prev_obj2_{a}" for a in _QUAT]),
    ("goal_pos", slice(36, 39), "m", [f"goal_{a}" for a in _XYZ]),
)
CAMERA = "corner2"


def _env_classes():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE
    return ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE


class MetaWorldEnv:
    """One Meta-World task variation (``seed``) behind the suite contract."""

    def __init__(self, task: str, seed: int, image_size: int | None):
        from metaworld.policies import ENV_POLICY_MAP

        cls = _env_classes()[f"{task}-v3-goal-observable"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.env = cls(seed=int(seed))
        self.expert = ENV_POLICY_MAP[f"{task}-v3"]()
        self.image_size = image_size
        self._raw: np.ndarray | None = None
        self._obs: dict | None = None
        self._renderers: dict = {}

    def _split(self, raw: np.ndarray) -> dict:
        self._raw = np.asarray(raw, dtype=np.float64)
        obs = {name: self._raw[sl].astype(np.float32) for name, sl, _, _ in _LAYOUT}
        if self.image_size:
            obs[f"{CAMERA}_rgb"] = self.render(self.image_size)
        self._obs = obs
        return obs

    def reset(self) -> dict:
        raw, _ = self.env.reset()
        return self._split(raw)

    def step(self, action: np.ndarray):
        raw, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        info = {k: (bool(v) if k in ("success", "grasp_success") else float(v)) for k, v in info.items()}
        info["success"] = bool(info.get("success", 0.0))
        return self._split(raw), float(reward), bool(terminated or truncated), info

    def expert_action(self, obs: dict) -> np.ndarray:
        raw = self._raw if obs is self._obs else np.concatenate([np.asarray(obs[n], np.float64) for n, *_ in _LAYOUT])
        with warnings.catch_warnings():   # "Constant(s) may be too high": the env clips to [-1, 1], as here
            warnings.simplefilter("ignore")
            action = self.expert.get_action(raw)
        return np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)

    def render(self, size: int) -> np.ndarray:
        import mujoco

        r = self._renderers.get(size)
        if r is None:
            self.env.model.vis.quality.offsamples = 0     # no multisampling: ~5x faster on a software renderer
            r = self._renderers[size] = mujoco.Renderer(self.env.model, size, size)
        r.update_scene(self.env.data, camera=CAMERA)
        r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
        r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return np.ascontiguousarray(r.render()[::-1])   # Meta-World's corner cameras render upside down

    def close(self) -> None:
        for r in self._renderers.values():
            try:
                r.close()
            except Exception:
                pass
        self._renderers.clear()
        try:
            self.env.close()
        except Exception:
            pass


class MetaWorldSuite:
    name = "metaworld"

    def tasks(self) -> list[str]:
        return sorted(k[:-len("-v3-goal-observable")] for k in _env_classes())

    def default_tasks(self) -> list[str]:
        return list(MT10)

    def spec(self, task: str, image_size: int | None) -> dict:
        obs = [_feature(name, names, units) for name, _, units, names in _LAYOUT]
        if image_size:
            obs.append({"name": f"{CAMERA}_rgb", "shape": [image_size, image_size, 3], "dtype": "uint8",
                        "kind": "rgb", "units": "srgb"})
        return {"observation": obs,
                "action": _feature("action", ["hand_dx", "hand_dy", "hand_dz", "gripper_effort"], "1", "action"),
                "action_low": [-1.0] * 4, "action_high": [1.0] * 4,
                "control_hz": 80.0, "max_steps": 500,
                "robot": {"kind": "benchmark", "suite": self.name, "task": task, "model": "sawyer"}}

    def make(self, task: str, seed: int, image_size: int | None) -> MetaWorldEnv:
        return MetaWorldEnv(task, seed, image_size)

    def episode_metrics(self, infos: list[dict]) -> dict:
        """Meta-World's own metric: success if the flag was set at any step (the episode ends there)."""
        return {"success": any(bool(i.get("success")) for i in infos),
                "final_obj_to_target": (float(infos[-1]["obj_to_target"])
                                        if infos and "obj_to_target" in infos[-1] else None)}


SUITE = MetaWorldSuite()
