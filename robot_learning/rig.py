"""A rig: the robot, sensors and teleop device a command drives, built from specs, the same way for a
real arm and for its MuJoCo twin. The one place where robot and env specs (``sim:lift``, ``so101``)
and camera specs are parsed: the CLI, the RL actors and evaluation all go through it.

- robot ``sim:so101`` (the twin in the lift scene), ``sim:TASK[:MODEL]``, or a real arm (``so101``,
  ``koch``) on a serial port;
- teleop: a leader arm (joint commands, straight to the runtime's joint filter) or keyboard /
  gamepad / SpaceMouse (end-effector deltas through the Cartesian stage over the robot's model
  file, the twin's and the real arm's alike);
- cameras: ``opencv:SRC[@WxH[@FPS]]``, ``realsense:SERIAL``, ``gelsight:SRC``, ``digit:SRC`` (real) or the
  sim camera names.

``RigConfig`` holds those flags (with the ports, calibration names and folder, control rate and task
instruction) once for ``teleoperate``, ``record`` and ``deploy``; ``SessionConfig`` the length and recording of a
live session (``teleoperate``, ``deploy``); ``open_rig(RigConfig)`` builds the rig.

Everything that connects is disconnected again by ``Rig.close`` (also when building fails
half-way), so a missing device leaves nothing running and no torque on.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_learning.core.clock import Clock, default_clock
from robot_learning.errors import ConfigError

log = logging.getLogger(__name__)

SIM_DEFAULT_TASK = "lift"
#: end-effector workspace box (base frame, m) of a real arm without a task: in front of the base
REAL_WORKSPACE_M = {"so101": ((0.10, -0.25, 0.02), (0.40, 0.25, 0.35))}


def parse_robot(spec: str, flag: str = "--robot", default_model: str = "panda") -> tuple[str, str, str | None]:
    """("sim", task, model) or ("real", arm kind, None) from ``sim:MODEL`` (the twin in the default task),
    ``sim:TASK[:MODEL]`` (``default_model`` when MODEL is left out) or a real follower arm's kind."""
    from robot_learning.core.robot_models import ROBOTS

    if spec.startswith("sim:"):
        parts = spec.split(":")
        if len(parts) == 2 and parts[1] in ROBOTS:          # sim:so101 -> the twin in the default scene
            return "sim", SIM_DEFAULT_TASK, parts[1]
        if len(parts) in (2, 3) and parts[1]:
            return "sim", parts[1], parts[2] if len(parts) == 3 else default_model
    from robot_learning.hardware.arms import FOLLOWERS    # the servo-bus drivers: only for a real arm (or an error)

    if spec in FOLLOWERS:
        return "real", spec, None
    raise ConfigError.expected(flag, f"one of {', '.join(FOLLOWERS)}, sim:MODEL ({', '.join(ROBOTS)}) or "
                               "sim:TASK[:MODEL]", repr(spec))


def parse_sim_robot(spec: str, flag: str = "--robot", default_model: str = "panda") -> tuple[str, str]:
    """(task, model) of a sim spec (``sim:MODEL``, ``sim:TASK`` or ``sim:TASK:MODEL``); a real arm is an error."""
    parts = spec.split(":")
    if parts[0] != "sim" or len(parts) not in (2, 3) or not parts[1]:
        raise ConfigError.expected(flag, "sim:TASK or sim:TASK:MODEL", repr(spec))
    _, task, model = parse_robot(spec, flag, default_model)
    return task, model


TELEOPS = ("so101-leader", "koch-leader", "keyboard", "gamepad", "spacemouse")
"""Human teleop devices: leader arms (joint commands) and end-effector devices (``EE_TELEOPS``)."""
EE_TELEOPS = ("keyboard", "gamepad", "spacemouse")


@dataclass(frozen=True)
class RigConfig:
    """The rig a command drives (robot, teleop device, their serial ports and calibration, cameras, control rate)
    and the task instruction: the flags ``teleoperate``, ``record`` and ``deploy`` share. Each nests it with
    ``Annotated[RigConfig, FLAT]`` (the flags keep their names) and a default instance of its own; the rules every
    rig follows are checked here, which teleop kinds a command takes by the command (``check_teleop``)."""

    robot: str = "sim:lift"
    """so101, koch (a real arm; give --robot-port), sim:MODEL (the MuJoCo twin of panda or so101 in the lift scene)
    or sim:TASK[:MODEL] (the twin in another task)."""
    teleop: str | None = None
    """so101-leader or koch-leader (a leader arm on --teleop-port: joint commands), keyboard (a plain terminal),
    gamepad (pygame/SDL) or spacemouse (hidapi) (end-effector deltas through the Cartesian controller over the
    robot's model file, the same as its sim twin's). record: also scripted (the sim task's expert). deploy: a device
    that takes over a real arm (human intervention; the recording marks those ticks): a leader arm while it is moved
    from rest, an end-effector device while its takeover control is held (gamepad: left bumper; spacemouse: right
    button; keyboard: t), moving the tool from where the policy left it."""
    robot_port: str | None = None
    """Serial port of the real (follower) arm (robot-learning find-ports)."""
    robot_id: str = "default"
    """Calibration name of the real arm."""
    teleop_port: str | None = None
    """Serial port of the leader arm."""
    teleop_id: str = "default"
    """Calibration name of the leader arm."""
    calibration_dir: Path | None = None
    """Where calibration files live (default: $ROBOT_LEARNING_CALIBRATION or ~/.config/robot-learning/calibration)."""
    rate_hz: float = 50.0
    """Control rate of a real arm (the sim twin runs at its task's rate; deploy: the rate the policy was trained
    at)."""
    cameras: tuple[str, ...] | None = None
    """Cameras to read and record (a bare --cameras: none). Real arms (default: none):
    opencv:INDEX_OR_PATH[@WxH[@FPS]], realsense:SERIAL, gelsight:INDEX_OR_PATH, digit:INDEX_OR_PATH. Sim: front, top,
    side, wrist (record's default: front and wrist)."""
    task: str | None = None
    """Instruction stored with recorded episodes (record's default: the sim task's) and given to the policy
    (deploy, language feature)."""

    def __post_init__(self) -> None:
        if not 1 <= self.rate_hz <= 1000:
            raise ConfigError.expected("--rate-hz", "1..1000", self.rate_hz)
        where, name, _ = parse_robot(self.robot)
        if where == "real" and not self.robot_port:
            from robot_learning.hardware.arms import get_arm

            twin = get_arm(name).twin
            raise ConfigError(f"--robot {self.robot} needs --robot-port (robot-learning find-ports), or use --robot "
                              + (f"sim:{twin} for its MuJoCo twin" if twin else "sim:TASK[:MODEL] for the MuJoCo twin"))
        if self.teleop in TELEOPS and self.teleop.endswith("-leader") and not self.teleop_port:
            raise ConfigError(f"--teleop {self.teleop} needs --teleop-port (robot-learning find-ports)")

    @property
    def real(self) -> bool:
        """A real arm (not the sim twin)."""
        return not self.robot.startswith("sim:")

    def check_teleop(self, kinds: tuple, expected: str | None = None) -> None:
        """Refuse a ``--teleop`` that is not one of ``kinds`` (None: no device), saying ``expected`` (default: the
        list of ``kinds``)."""
        if self.teleop not in kinds:
            raise ConfigError.expected("--teleop", expected or f"one of {', '.join(k for k in kinds if k)}",
                                       repr(self.teleop))


@dataclass(frozen=True)
class SessionConfig:
    """How long a live session on a rig runs and where it is recorded (``teleoperate``; ``deploy`` on a real arm)."""

    duration_s: float | None = None
    """Stop after this long (default: until Ctrl-C, or the teleop's stop event). deploy: real arms."""
    record: Path | None = None
    """Record the session as one episode into this dataset (created, or appended to). deploy: real arms."""

    def __post_init__(self) -> None:
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError.expected("--duration-s", "> 0", self.duration_s)


def parse_camera(spec: str, clock: Clock):
    """A real camera or tactile sensor from ``KIND:SOURCE[@WxH[@FPS]]``."""
    kind, _, rest = spec.partition(":")
    if not rest:
        raise ConfigError.expected("--cameras entry", "opencv:SRC[@WxH[@FPS]], realsense:SERIAL, gelsight:SRC or "
                                   "digit:SRC", repr(spec))
    src, *mode = rest.split("@")
    source: int | str = int(src) if src.isdigit() else src
    width = height = fps = None
    try:
        if mode:
            width, height = (int(v) for v in mode[0].lower().split("x"))
        if len(mode) > 1:
            fps = float(mode[1])
    except ValueError:
        raise ConfigError.expected("camera mode", "WxH[@FPS], e.g. 640x480@30", repr("@".join(mode))) from None
    name = re.sub(r"[^A-Za-z0-9_]+", "_", f"{kind}_{Path(src).name if '/' in src else src}").strip("_")
    if kind == "opencv":
        from robot_learning.hardware.opencv_camera import OpenCVCamera, OpenCVCameraConfig

        return OpenCVCamera(OpenCVCameraConfig(source=source, name=name, width=width, height=height, fps=fps),
                            clock=clock)
    if kind == "realsense":
        from robot_learning.hardware.realsense import RealSenseCamera, RealSenseConfig

        kw = {k: v for k, v in (("width", width), ("height", height), ("fps", fps)) if v is not None}
        if src.endswith((".bag", ".db3")):   # a recording, played back through the real pipeline
            return RealSenseCamera(RealSenseConfig(playback_file=Path(src), name="rs_playback", **kw), clock=clock)
        return RealSenseCamera(RealSenseConfig(serial=src, name=name, **kw), clock=clock)
    if kind in ("gelsight", "digit"):
        from robot_learning.hardware import tactile

        cfg_cls, cls = ((tactile.GelSightMiniConfig, tactile.GelSightMini) if kind == "gelsight"
                        else (tactile.DigitConfig, tactile.Digit))
        kw = {"capture_size": (width, height)} if width is not None else {}
        if fps is not None:
            kw["fps"] = fps
        return cls(cfg_cls(source=source, name=name, **kw), clock=clock)
    raise ConfigError.expected("camera kind", "opencv, realsense, gelsight or digit", repr(kind))


@dataclass
class Rig:
    robot: object
    clock: Clock
    rate_hz: float
    sensors: list = field(default_factory=list)
    teleop: object | None = None
    stage: object | None = None
    env: object | None = None
    model: str | None = None                 # robot model (twin) name, for the Cartesian stage
    info: dict = field(default_factory=dict)  # stored as the dataset's robot metadata

    def runtime(self, source, sinks=(), task: str | None = None):
        from robot_learning.runtime.control import ControlRuntime, RuntimeConfig

        if self.env is not None:
            return self.env.make_runtime(source, sinks=tuple(sinks), cartesian=self.stage, instruction=task)
        return ControlRuntime(self.robot, source, RuntimeConfig(rate_hz=self.rate_hz, task=task),
                              sensors=self.sensors, sinks=sinks, clock=self.clock, cartesian=self.stage)

    def close(self) -> None:
        errors = []
        for dev in [self.teleop, *([] if self.env is not None else self.sensors),
                    None if self.env is not None else self.robot]:
            if dev is None:
                continue
            try:
                dev.disconnect()
            except Exception as e:  # noqa: BLE001 - close everything, report the first failure
                errors.append(e)
        if self.env is not None:
            self.env.close()
        if errors:
            raise errors[0]


def open_rig(cfg: RigConfig, quiet: bool = False) -> Rig:
    """Build and connect everything ``cfg`` names (see the module docstring); ``quiet``: no teleop controls shown."""
    where, name, model = parse_robot(cfg.robot)
    cameras, rate_hz = tuple(cfg.cameras or ()), cfg.rate_hz
    if where == "sim":
        from robot_learning.sim.env import SimEnv, SimEnvConfig
        from robot_learning.sim.world import PhysicsConfig

        env = SimEnv(SimEnvConfig(task=name, robot=model, cameras=tuple(cameras), tactile=False,
                                  physics=PhysicsConfig(realtime=True)))  # a person needs real time
        rig = Rig(env.robot, env.world.clock, env.task.config.control_rate_hz, list(env.sensors), env=env,
                  model=model, info={"name": model, "kind": "sim", "task": name})
    else:
        from robot_learning.hardware.arms import get_arm
        from robot_learning.hardware.servo_arm import ServoArm, ServoArmConfig

        spec = get_arm(name)
        # The servos' own bus watchdog: three control periods, at least 0.1 s (Dynamixel X; 2.54 s at most).
        watchdog_s = min(2.5, max(0.1, 3.0 / rate_hz))
        arm = ServoArm(spec, ServoArmConfig(cfg.robot_port, cfg.robot_id, cfg.calibration_dir, watchdog_s=watchdog_s))
        rig = Rig(arm, default_clock(), rate_hz, model=spec.twin, info={"name": name, "kind": "real"})
        arm.connect()
        rig.info["calibration"] = arm.calibration.to_json()
    try:
        for cam in cameras if where == "real" else ():
            sensor = parse_camera(cam, rig.clock)
            sensor.connect()
            rig.sensors.append(sensor)
            sensor.start_streaming()                   # the runtime aligns to what the capture thread buffers
            sensor.async_read(timeout_s=5.0)           # first frame in (a camera's warm-up) before the loop starts
            meta = getattr(sensor, "metadata", None)   # intrinsics, depth scale, timestamp source...
            if not isinstance(meta, dict):
                meta = {k: getattr(sensor, k) for k in ("mode", "timestamp_source") if hasattr(sensor, k)}
            rig.info.setdefault("cameras", {})[sensor.name] = {"spec": cam, **meta}
        if cfg.teleop is not None:
            _attach_teleop(rig, cfg.teleop, cfg.teleop_port, cfg.teleop_id, cfg.calibration_dir, quiet)
    except BaseException:
        rig.close()
        raise
    return rig


def _attach_teleop(rig: Rig, kind: str, port, arm_id, calibration_dir, quiet: bool) -> None:
    if kind.endswith("-leader"):
        from robot_learning.hardware.arms import get_arm
        from robot_learning.hardware.servo_arm import LeaderArm, ServoArmConfig

        rig.teleop = LeaderArm(get_arm(kind), ServoArmConfig(port, arm_id, calibration_dir, watchdog_s=None),
                               action_features=rig.robot.action_features, clock=rig.clock)
        rig.teleop.connect()
        return
    if rig.model is None:
        raise ConfigError(f"--teleop {kind} commands the end effector and needs a robot model for the Cartesian "
                          f"controller; {rig.info.get('name')} has none: use a leader arm")
    scale = rig.env.task.workspace.object_scale if rig.env is not None else 1.0
    rig.teleop = make_ee_teleop(kind, rig.clock, step_m=0.01 * scale, quiet=quiet)
    rig.teleop.connect()
    rig.stage = cartesian_stage(rig.model, rig.rate_hz, rig.env)


def make_ee_teleop(kind: str, clock: Clock, step_m: float = 0.01, quiet: bool = False):
    """An end-effector teleop device (keyboard, gamepad, spacemouse); logs its controls unless quiet."""
    if kind == "keyboard":
        from robot_learning.hardware.teleop_keyboard import HELP, KeyboardTeleop

        dev, help_text = KeyboardTeleop(step_m=step_m, clock=clock), HELP
    elif kind == "gamepad":
        from robot_learning.hardware.teleop_gamepad import GamepadTeleop

        dev = GamepadTeleop(clock=clock)
        help_text = "gamepad: left stick x/y, right stick z/turn, A gripper, B next, X re-record, Y stop, LB take over"
    elif kind == "spacemouse":
        from robot_learning.hardware.teleop_spacemouse import SpaceMouseTeleop

        dev = SpaceMouseTeleop(clock=clock)
        help_text = ("spacemouse: push/tilt/twist the cap to move/turn, left click gripper, hold left 1 s next, "
                     "left double-click re-record, hold both 1 s stop, hold right take over")
    else:
        raise ConfigError.expected("end-effector teleop", "keyboard, gamepad or spacemouse", repr(kind))
    if not quiet:
        log.info("%s", help_text)
    return dev


def cartesian_stage(model_name: str, rate_hz: float, env=None):
    """The Cartesian stage over the robot model's file, boxed to the sim task's workspace (``env``) or to the
    real arm's default workspace."""
    from robot_learning.control.cartesian import CartesianController
    from robot_learning.runtime.cartesian_stage import DELTA, CartesianStage
    from robot_learning.core.robot_models import get_robot_model

    model = get_robot_model(model_name)
    if env is not None:
        ws = env.task.workspace
        c, h = np.asarray(ws.center_xy), np.asarray(ws.half_xy) + 0.05
        lo = [c[0] - h[0], c[1] - h[1], model.tip_beyond_tcp_m + 0.002]
        hi = [c[0] + h[0], c[1] + h[1], 0.35 * ws.object_scale + 0.1]
    elif model_name in REAL_WORKSPACE_M:
        lo, hi = REAL_WORKSPACE_M[model_name]
    else:
        raise ConfigError(f"no default workspace box for a real {model_name}")
    return CartesianStage(CartesianController(model), DELTA, 1.0 / rate_hz, lo, hi)
