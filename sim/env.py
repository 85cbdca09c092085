"""``SimEnv``: a task on a robot model with its sensors, stepped through the control runtime.

The env is the embedded default world of every command. Actions go through the same
``ControlRuntime.apply`` (safety filter, robot, sinks) as on hardware; physics advances on the
world's clock. ``reset(seed)`` and ``step(action)`` give the usual episode interface
(``robot_learning.sim.gym_env`` wraps it for gymnasium).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.core.robot_models import get_robot_model
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError, SimulationDivergedError
from robot_learning.hardware.sensor import StreamingSensor
from robot_learning.runtime.control import ControlRuntime, RuntimeConfig, Sink, TickRecord
from robot_learning.sim.randomize import DomainRandomization, Randomizer
from robot_learning.sim.scene import TOUCH_COLS, TOUCH_ROWS, build_scene, touch_sensor_name
from robot_learning.sim.sensors import SimCamera, SimTactile, _SimSampled
from robot_learning.sim.sim_robot import SimRobot
from robot_learning.sim.tasks.base import Task, TaskConfig
from robot_learning.sim.tasks.registry import get_task_class
from robot_learning.sim.world import PhysicsConfig, SimWorld

SCENE_CAMERAS = ("front", "top", "side")


@dataclass(frozen=True)
class SimEnvConfig:
    """task / robot: what to simulate. cameras: any of front, top, side, wrist. image_size: square
    image side in pixels. depth: add a depth image per camera. tactile: fingertip taxels.
    object_state: privileged object poses in the observation (state-based policies, experts).
    camera_fps: None renders at control ticks only; a rate streams frames on the sim clock.
    randomize: domain randomisation (None: nominal scene)."""

    task: str = "lift"
    robot: str = "panda"
    cameras: tuple[str, ...] = ()
    image_size: int = 96
    depth: bool = False
    tactile: bool = False
    object_state: bool = True
    camera_fps: float | None = None
    randomize: DomainRandomization | None = None
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)

    def __post_init__(self) -> None:
        for c in self.cameras:
            if c not in (*SCENE_CAMERAS, "wrist"):
                raise ConfigError.expected("camera", f"one of {[*SCENE_CAMERAS, 'wrist']}", repr(c))
        if not 16 <= self.image_size <= 640:
            raise ConfigError.expected("image_size", "16..640", self.image_size)


class ObjectStateSensor(_SimSampled, StreamingSensor):
    """The task's privileged object state (poses) as a sensor: a perfect pose tracker."""

    def __init__(self, world: SimWorld, task: Task):
        super().__init__("object_state", world.clock)
        self.world, self.task, self.fps, self._listener = world, task, None, None

    @property
    def features(self) -> FeatureSet:
        return self.task.privileged_features

    def _connect(self) -> None:
        pass

    def _disconnect(self) -> None:
        pass

    def _measure(self) -> Mapping[str, np.ndarray]:
        return self.task.privileged_state(self.world)


class _Handed:
    """Action source for envs: the env hands each action to ``apply``; nothing is pulled."""

    def __init__(self, features: FeatureSet):
        self.action_features = features

    def reset(self) -> None:
        pass

    def next_action(self, observation: Observation):
        return None


class SimEnv:
    def __init__(self, config: SimEnvConfig = SimEnvConfig(), task_config: TaskConfig | None = None,
                 sinks: tuple[Sink, ...] = ()):
        self.config = config
        model = get_robot_model(config.robot)
        self.task: Task = get_task_class(config.task)(model, task_config)
        size = max(config.image_size, 64)
        mj_model = build_scene(model, self.task.assets_xml(), self.task.bodies_xml(),
                               max_render=(max(size, 640), max(size, 480)), tactile=config.tactile)
        self.world = SimWorld(mj_model, config.physics)
        self.task.bind(self.world)
        self.robot = SimRobot(self.world, model)
        sensors: list[StreamingSensor] = []
        for cam in config.cameras:
            mj_cam = model.wrist_camera if cam == "wrist" else cam
            if mj_cam is None:
                raise ConfigError.expected(f"wrist camera on {model.name}", "a camera", "none")
            sensors.append(SimCamera(self.world, mj_cam, config.image_size, config.image_size, fps=config.camera_fps,
                                     depth=config.depth, name=f"{cam}_rgb" if cam != "wrist" else "wrist_rgb"))
        if config.tactile:
            if not model.tactile_sites:
                raise ConfigError.expected(f"tactile sites on {model.name}", "at least one", "none")
            sensors.append(SimTactile(self.world, {f"{s}_taxels": touch_sensor_name(s) for s in model.tactile_sites},
                                      TOUCH_ROWS, TOUCH_COLS, fps=None))
        if config.object_state:
            sensors.append(ObjectStateSensor(self.world, self.task))
        self.sensors = tuple(sensors)
        self.randomizer = Randomizer(self.world, self.task, config.randomize) if config.randomize else None
        self.robot.connect()
        for s in self.sensors:
            s.connect()
        self.runtime = ControlRuntime(
            self.robot, _Handed(self.robot.action_features),
            RuntimeConfig(rate_hz=self.task.config.control_rate_hz, watchdog_periods=3,
                          max_sensor_age_s=1.0 / self.task.config.control_rate_hz, task=self.task.instruction()),
            sensors=self.sensors, sinks=sinks, clock=self.world.clock)
        self.period_ns = self.runtime.loop.period_ns
        self._t_ns = 0
        self._obs: Observation | None = None
        self.steps = 0
        self.instruction = self.task.instruction()

    # --- spaces ----------------------------------------------------------------------------
    @property
    def observation_features(self) -> FeatureSet:
        return self.runtime.observation_features

    @property
    def action_features(self) -> FeatureSet:
        return self.robot.action_features

    @property
    def max_steps(self) -> int:
        return self.task.config.max_steps

    def action_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lim = {lim.feature: lim for lim in self.robot.default_safety().limits}
        lo, hi = [], []
        for spec in self.action_features:
            lo.append(np.broadcast_to(lim[spec.name].lower, spec.shape))
            hi.append(np.broadcast_to(lim[spec.name].upper, spec.shape))
        return np.concatenate(lo).astype(np.float32), np.concatenate(hi).astype(np.float32)

    def make_runtime(self, source, sinks: tuple[Sink, ...] = (), cartesian=None,
                     instruction: str | None = None) -> ControlRuntime:
        """A control runtime for this env's robot and sensors at the task's rate, on the sim clock,
        pulling actions from ``source`` (an expert, a teleop device, a policy)."""
        rate = self.task.config.control_rate_hz
        text = instruction if instruction is not None else self.instruction
        return ControlRuntime(self.robot, source, RuntimeConfig(rate_hz=rate, max_sensor_age_s=1.0 / rate, task=text),
                              sensors=self.sensors, sinks=sinks, clock=self.world.clock, cartesian=cartesian)

    # --- episode ---------------------------------------------------------------------------
    def reset(self, seed: int | None = None, instruction: str | None = None) -> Observation:
        """A new episode (objects placed from ``seed``). ``instruction``: what the observations say instead of the
        task's own instruction (an evaluation with a wrong or empty one); the task's success test is unchanged."""
        rng = np.random.default_rng(seed)
        self.world.reset_data()
        self.robot.set_joint_positions(np.asarray(self.robot.spec.home_qpos), gripper_pos=0.0)
        self.task.reset(self.world, rng)
        if self.randomizer is not None:
            self.randomizer.apply(rng)
        self.world.forward()
        self.world.step(10)  # let contacts settle (20 ms)
        self.instruction = instruction if instruction is not None else self.task.instruction()
        self.runtime.set_task(self.instruction)
        self.runtime.begin()
        self._t_ns = self.world.now_ns()
        self.steps = 0
        self._obs = self.runtime.observe(self._t_ns)
        return self._obs

    def home_action(self) -> Action:
        return Action({"joint_pos_rad": np.asarray(self.robot.spec.home_qpos, dtype=np.float32),
                       "gripper_pos": np.zeros(1, dtype=np.float32)})

    def step(self, action: Action) -> tuple[Observation, float, bool, bool, dict]:
        """Apply ``action`` for one control period. Returns (obs, reward, terminated, truncated, info)."""
        if self._obs is None:
            raise ConfigError("SimEnv.step() before reset()")
        tick: TickRecord = self.runtime.apply(self._obs, Stamped(action, self._t_ns, self._t_ns))
        self._t_ns += self.period_ns
        self.world.step_until(self._t_ns)
        self.steps += 1
        if self.world.has_nan():
            raise SimulationDivergedError("simulation diverged (NaN in the state); the action or the model is "
                                          "unstable")
        self._obs = self.runtime.observe(self._t_ns)
        success = self.task.success(self.world)
        info = {"success": success, "executed": tick.executed, "held": tick.held, "reason": tick.reason}
        return self._obs, self.task.reward(self.world), success, self.steps >= self.max_steps, info

    @property
    def observation(self) -> Observation | None:
        return self._obs

    def close(self) -> None:
        for s in self.sensors:
            s.disconnect()
        self.robot.disconnect()
        for sink in self.runtime.sinks:
            sink.close()

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
