"""Gymnasium interface over ``SimEnv`` (the same robot, sensors, task, safety filter and runtime).

    from robot_learning.sim.gym_env import register_envs, make_vector_env
    register_envs()
    env = gymnasium.make("robot_learning/Lift-v0", robot="so101", cameras=("front",))
    vec = make_vector_env("lift", num_envs=8, asynchronous=True)   # one process per env

or, without calling ``register_envs``: ``gymnasium.make("robot_learning.sim.envs:robot_learning/Lift-v0")``.

Observations are a dict keyed by the flat-layout keys (``observation.state.joint_pos_rad``,
``observation.rgb.front_rgb``...; language is left out); actions are the robot's action vector
(arm joint targets in rad, then the gripper 0..1), bounded by the robot's safety limits.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from robot_learning.core.features import FeatureKind
from robot_learning.core.frame import Action, Observation, obs_key
from robot_learning.sim.env import SimEnv, SimEnvConfig
from robot_learning.sim.randomize import DomainRandomization
from robot_learning.sim.sensors import SimCamera

ENV_IDS = {"lift": "robot_learning/Lift-v0", "stack": "robot_learning/Stack-v0",
           "push_t": "robot_learning/PushT-v0", "insertion": "robot_learning/Insertion-v0"}


def _box(spec) -> spaces.Box:
    if spec.kind in (FeatureKind.RGB,):
        return spaces.Box(0, 255, spec.shape, np.uint8)
    return spaces.Box(-np.inf, np.inf, spec.shape, np.dtype(spec.dtype))


class GymSimEnv(gymnasium.Env):
    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, task: str = "lift", robot: str = "panda", cameras: tuple[str, ...] = (),
                 image_size: int = 96, depth: bool = False, tactile: bool = False, object_state: bool = True,
                 randomize: bool = False, render_mode: str | None = None, render_size: int = 256):
        self.sim = SimEnv(SimEnvConfig(task=task, robot=robot, cameras=tuple(cameras), image_size=image_size,
                                       depth=depth, tactile=tactile, object_state=object_state,
                                       randomize=DomainRandomization() if randomize else None))
        self._specs = [s for s in self.sim.observation_features if s.kind is not FeatureKind.LANGUAGE]
        self.observation_space = spaces.Dict({obs_key(s.kind, s.name): _box(s) for s in self._specs})
        lo, hi = self.sim.action_bounds()
        self.action_space = spaces.Box(lo, hi, dtype=np.float32)
        self.metadata = {**self.metadata, "render_fps": self.sim.task.config.control_rate_hz}
        self.render_mode = render_mode
        self._render_cam: SimCamera | None = None
        self._render_size = render_size

    def _to_gym(self, obs: Observation) -> dict[str, np.ndarray]:
        return {obs_key(s.kind, s.name): np.asarray(obs.values[s.name]) for s in self._specs}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(0, 2**31 - 1))
        obs = self.sim.reset(episode_seed)
        return self._to_gym(obs), {"episode_seed": episode_seed, "instruction": self.sim.task.instruction()}

    def step(self, action: np.ndarray):
        a = Action.from_vector(self.sim.action_features, np.asarray(action, dtype=np.float32))
        obs, reward, terminated, truncated, info = self.sim.step(a)
        info = {"success": info["success"], "held": info["held"]}
        return self._to_gym(obs), float(reward), bool(terminated), bool(truncated), info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        if self._render_cam is None:
            self._render_cam = SimCamera(self.sim.world, "front", self._render_size, self._render_size, fps=None,
                                         name="render")
            self._render_cam.connect()
        return self._render_cam.read().value["render"]

    def close(self):
        if self._render_cam is not None:
            self._render_cam.disconnect()
        self.sim.close()


def register_envs() -> None:
    """Register the gymnasium ids (idempotent)."""
    for task, env_id in ENV_IDS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(env_id, entry_point="robot_learning.sim.gym_env:GymSimEnv", kwargs={"task": task},
                               disable_env_checker=True)


def make_vector_env(task: str, num_envs: int, asynchronous: bool = False, **kwargs) -> gymnasium.vector.VectorEnv:
    """``num_envs`` copies of a task: in this process (sync) or one worker process each (async)."""
    fns = [lambda: GymSimEnv(task=task, **kwargs) for _ in range(num_envs)]
    if asynchronous:
        return gymnasium.vector.AsyncVectorEnv(fns, context="spawn")
    return gymnasium.vector.SyncVectorEnv(fns)
