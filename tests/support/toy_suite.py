"""A toy benchmark suite for the tests: a point mass on a plane reaching a goal, implementing the SUITE
contract of ``robot_learning/benchmarks/adapters/driver.py`` with numpy alone (it runs under the project's own
interpreter through the framework's ``--python`` override, with no venv to create).

State: the mass's position and the goal (m). Action: a velocity command in [-1, 1] m/s per axis. 10 Hz, 80 steps
(2.5 cm per step at full speed), success within 5 cm of the goal. The seed draws the start and the goal. The
expert drives straight at the goal.
"""

from __future__ import annotations

import numpy as np

TASKS = ("reach", "reach-far")


class ToyEnv:
    def __init__(self, task: str, seed: int, image_size: int | None):
        rng = np.random.default_rng(seed)
        self.start = rng.uniform(-0.3, 0.3, 2).astype(np.float32)
        radius = 0.3 if task == "reach" else 0.6
        self.goal = rng.uniform(-radius, radius, 2).astype(np.float32)
        self.image_size = image_size
        self.pos = self.start.copy()

    def _obs(self) -> dict:
        obs = {"pos": self.pos.copy(), "goal": self.goal.copy()}
        if self.image_size:
            obs["top_rgb"] = self.render(self.image_size)
        return obs

    def reset(self) -> dict:
        self.pos = self.start.copy()
        return self._obs()

    def step(self, action: np.ndarray):
        self.pos = (self.pos + 0.025 * np.clip(action, -1.0, 1.0)).astype(np.float32)
        dist = float(np.linalg.norm(self.pos - self.goal))
        return self._obs(), -dist, False, {"success": dist < 0.05, "distance": dist}

    def expert_action(self, obs: dict) -> np.ndarray:
        return np.clip(10.0 * (obs["goal"] - obs["pos"]), -1.0, 1.0).astype(np.float32)

    def render(self, size: int) -> np.ndarray:
        img = np.full((size, size, 3), 255, np.uint8)

        def dot(p, colour):
            c = ((np.asarray(p) + 1.0) / 2.0 * (size - 1)).astype(int).clip(0, size - 1)
            r = max(1, size // 40)
            img[max(0, c[1] - r):c[1] + r + 1, max(0, c[0] - r):c[0] + r + 1] = colour

        dot(self.goal, (0, 160, 0))
        dot(self.pos, (200, 0, 0))
        return img

    def close(self) -> None:
        pass


class ToySuite:
    name = "toy"

    def tasks(self) -> list[str]:
        return list(TASKS)

    def default_tasks(self) -> list[str]:
        return ["reach"]

    def spec(self, task: str, image_size: int | None) -> dict:
        obs = [{"name": "pos", "shape": [2], "dtype": "float32", "kind": "state", "units": "m", "names": ["x", "y"]},
               {"name": "goal", "shape": [2], "dtype": "float32", "kind": "state", "units": "m",
                "names": ["goal_x", "goal_y"]}]
        if image_size:
            obs.append({"name": "top_rgb", "shape": [image_size, image_size, 3], "dtype": "uint8", "kind": "rgb",
                        "units": "srgb"})
        return {"observation": obs,
                "action": {"name": "action", "shape": [2], "dtype": "float32", "kind": "action", "units": "m/s",
                           "names": ["vx", "vy"]},
                "action_low": [-1.0, -1.0], "action_high": [1.0, 1.0], "control_hz": 10.0, "max_steps": 80,
                "robot": {"kind": "benchmark", "suite": self.name, "task": task, "model": "point_mass"}}

    def make(self, task: str, seed: int, image_size: int | None) -> ToyEnv:
        return ToyEnv(task, seed, image_size)

    def episode_metrics(self, infos: list[dict]) -> dict:
        return {"success": any(i["success"] for i in infos),
                "min_distance": min(i["distance"] for i in infos) if infos else None}


SUITE = ToySuite()
