"""What a task is: objects added to the scene, seeded randomisation, reward terms, a success test,
and the privileged object state that scripted experts (and state-based policies) read."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping

import mujoco
import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.robot_models import RobotModel
from robot_learning.errors import ConfigError
from robot_learning.sim.scene import WORKSPACES, Workspace
from robot_learning.sim.world import SimWorld


@dataclass(frozen=True)
class TaskConfig:
    """Settings every task has. control_rate_hz: the policy / teleop rate. episode_len_s: time limit."""

    control_rate_hz: float = 10.0
    episode_len_s: float = 12.0

    def __post_init__(self) -> None:
        if not 1 <= self.control_rate_hz <= 100:
            raise ConfigError.expected("control_rate_hz", "1..100", self.control_rate_hz)
        if not self.episode_len_s > 0:
            raise ConfigError.expected("episode_len_s", "> 0", self.episode_len_s)

    @property
    def max_steps(self) -> int:
        return int(round(self.episode_len_s * self.control_rate_hz))


class Task(ABC):
    """One manipulation task on one robot model. Subclasses set ``name``, ``robots`` and
    ``config_cls`` and implement the abstract methods; one file per task."""

    name: ClassVar[str]
    robots: ClassVar[tuple[str, ...]] = ("panda", "so101")
    config_cls: ClassVar[type[TaskConfig]] = TaskConfig

    def __init__(self, robot: RobotModel, config: TaskConfig | None = None):
        if robot.name not in self.robots:
            raise ConfigError.expected(f"robot for task {self.name!r}", f"one of {list(self.robots)}", robot.name)
        self.robot = robot
        self.config = config if config is not None else self.default_config()
        if not isinstance(self.config, self.config_cls):
            raise ConfigError.expected(f"config of task {self.name!r}", self.config_cls.__name__,
                                       type(self.config).__name__)
        self.workspace: Workspace = WORKSPACES[robot.name]
        self.scale = self.workspace.object_scale

    @classmethod
    def default_config(cls) -> TaskConfig:
        return cls.config_cls()

    # --- scene -----------------------------------------------------------------------------
    def assets_xml(self) -> str:
        return ""

    @abstractmethod
    def bodies_xml(self) -> str:
        """MJCF of the task's bodies (worldbody children), sized for ``self.robot``."""

    def bind(self, world: SimWorld) -> None:
        """Resolve names to ids after compilation."""
        self.world = world

    # --- episode ---------------------------------------------------------------------------
    @abstractmethod
    def reset(self, world: SimWorld, rng: np.random.Generator) -> None:
        """Place objects (seeded). The robot is already at home."""

    @abstractmethod
    def reward(self, world: SimWorld) -> float: ...

    @abstractmethod
    def success(self, world: SimWorld) -> bool: ...

    @abstractmethod
    def instruction(self) -> str:
        """This episode's instruction (after ``reset``)."""

    def wrong_instruction(self, rng: np.random.Generator) -> str:
        """An instruction for another goal in this episode's scene (language-following evaluations)."""
        raise ConfigError(f"task {self.name!r} has a single goal: no wrong instruction to give (use a task with "
                          f"several, such as lift_color)")

    @property
    @abstractmethod
    def privileged_features(self) -> FeatureSet:
        """Object state (kind=state) for experts and state-based policies."""

    @abstractmethod
    def privileged_state(self, world: SimWorld) -> Mapping[str, np.ndarray]: ...

    def object_geoms(self) -> tuple[str, ...]:
        """Geoms whose colour / friction / mass domain randomisation may change."""
        return ()

    # --- helpers ---------------------------------------------------------------------------
    def sample_xy(self, rng: np.random.Generator, margin: float = 0.0) -> np.ndarray:
        c, h = np.asarray(self.workspace.center_xy), np.asarray(self.workspace.half_xy)
        return c + rng.uniform(-1, 1, 2) * np.maximum(h - margin, 0.0)

    def sample_two_apart(self, rng: np.random.Generator, min_separation_m: float) -> tuple[np.ndarray, np.ndarray]:
        """Two workspace positions at least ``min_separation_m`` apart (100 tries, then the last pair)."""
        for _ in range(100):
            a, b = self.sample_xy(rng), self.sample_xy(rng)
            if np.linalg.norm(a - b) >= min_separation_m:
                break
        return a, b


def body_id(model: mujoco.MjModel, name: str) -> int:
    i = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
    if i < 0:
        raise ConfigError.expected("body", repr(name), "none in the model")
    return i


def free_joint_qadr(model: mujoco.MjModel, body: int) -> tuple[int, int]:
    j = int(model.body_jntadr[body])
    if j < 0 or model.jnt_type[j] != mujoco.mjtJoint.mjJNT_FREE:
        raise ConfigError.expected(f"joint of body {model.body(body).name}", "a free joint", "none")
    return int(model.jnt_qposadr[j]), int(model.jnt_dofadr[j])


def set_free_pose(world: SimWorld, body: int, pos: np.ndarray, yaw_rad: float) -> None:
    qa, da = free_joint_qadr(world.model, body)
    d = world.data
    d.qpos[qa:qa + 3] = pos
    d.qpos[qa + 3:qa + 7] = [np.cos(yaw_rad / 2), 0.0, 0.0, np.sin(yaw_rad / 2)]
    d.qvel[da:da + 6] = 0.0


def quat_yaw(q_wxyz: np.ndarray) -> float:
    w, x, y, z = q_wxyz
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))
