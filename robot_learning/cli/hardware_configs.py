"""Configs of the hardware subcommands (find-ports, find-cameras, calibrate, teleoperate): inert frozen
dataclasses, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from robot_learning.errors import ConfigError

ROBOTS_HELP = "so101, koch (a real arm on --robot-port), sim:so101 / sim:TASK[:MODEL] (the MuJoCo twin)"
TELEOPS = ("so101-leader", "koch-leader", "keyboard", "gamepad", "spacemouse")


@dataclass(frozen=True)
class FindPortsConfig:
    """List serial ports (servo-bus adapters of SO-101 / Koch arms). --identify asks you to unplug the arm's
    USB cable and names the port that disappeared."""

    identify: bool = False
    """Interactive: unplug the arm's cable when asked, press Enter, and the port that vanished is printed."""
    json: bool = False
    """Print one JSON line."""


@dataclass(frozen=True)
class FindCamerasConfig:
    """List cameras and tactile sensors: UVC (V4L2) devices, RealSense cameras by serial number, GelSight Mini and
    DIGIT sensors."""

    snapshot_dir: Path | None = None
    """Save one frame of every camera found here (PNG), to tell them apart."""
    json: bool = False
    """Print one JSON line."""


@dataclass(frozen=True)
class CalibrateConfig:
    """Calibrate a servo-bus arm: put it in the zero pose (the sim twin's 0 rad pose: arm straight up, every joint in
    the middle of its range, jaw closed), press Enter, move every joint through its whole range, press Enter. Writes
    homing offsets and position limits to the servos' EEPROM and saves the calibration file."""

    robot: str
    """so101, so101-leader, koch or koch-leader."""
    port: str
    """Serial port of the arm's bus (robot-learning find-ports)."""
    id: str = "default"
    """Name of this arm (several arms of one kind each get their own calibration file)."""
    calibration_dir: Path | None = None
    """Where calibration files live (default: $ROBOT_LEARNING_CALIBRATION or ~/.config/robot-learning/calibration)."""
    rate_hz: float = 50.0
    """Sweep sampling rate."""

    def __post_init__(self) -> None:
        from robot_learning.hardware.arms import ARMS

        if self.robot not in ARMS:
            raise ConfigError.expected("--robot", f"one of {', '.join(ARMS)}", repr(self.robot))
        if not 5 <= self.rate_hz <= 500:
            raise ConfigError.expected("--rate-hz", "5..500", self.rate_hz)


@dataclass(frozen=True)
class TeleoperateConfig:
    """Drive a robot with a teleop device through the control runtime (safety filter, watchdog), optionally
    recording the session as one episode. Leader arms command joints; keyboard, gamepad and SpaceMouse command the
    end effector through the Cartesian controller over the robot's model file (the same as its sim twin's)."""

    robot: str = "sim:so101"
    """so101, koch (real arms; give --robot-port) or sim:so101 / sim:TASK[:MODEL] (MuJoCo twin)."""
    teleop: str = "keyboard"
    """so101-leader or koch-leader (give --teleop-port), keyboard, gamepad or spacemouse."""
    robot_port: str | None = None
    """Serial port of the follower arm (robot-learning find-ports)."""
    robot_id: str = "default"
    """Calibration name of the follower arm."""
    teleop_port: str | None = None
    """Serial port of the leader arm."""
    teleop_id: str = "default"
    """Calibration name of the leader arm."""
    calibration_dir: Path | None = None
    """Where calibration files live (default: $ROBOT_LEARNING_CALIBRATION or ~/.config/robot-learning/calibration)."""
    rate_hz: float = 50.0
    """Control rate (real arms; the sim twin runs at its task's rate)."""
    duration_s: float | None = None
    """Stop after this long (default: until Ctrl-C, or the teleop's stop event)."""
    record: Path | None = None
    """Record the session as one episode into this dataset (created, or appended to)."""
    task: str | None = None
    """Instruction stored with the recorded episode."""
    cameras: tuple[str, ...] = ()
    """Cameras to read and record: opencv:INDEX_OR_PATH[@WxH[@FPS]], realsense:SERIAL, gelsight:INDEX_OR_PATH,
    digit:INDEX_OR_PATH (real robots); front, top, side, wrist (sim)."""
    json: bool = False
    """Print the summary as one JSON line."""

    def __post_init__(self) -> None:
        if self.teleop not in TELEOPS:
            raise ConfigError.expected("--teleop", f"one of {', '.join(TELEOPS)}", repr(self.teleop))
        if not 1 <= self.rate_hz <= 1000:
            raise ConfigError.expected("--rate-hz", "1..1000", self.rate_hz)
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError.expected("--duration-s", "> 0", self.duration_s)
        if self.teleop.endswith("-leader") and not self.teleop_port:
            raise ConfigError(f"--teleop {self.teleop} needs --teleop-port (robot-learning find-ports)")
        if not self.robot.startswith("sim:") and not self.robot_port:
            raise ConfigError(f"--robot {self.robot} needs --robot-port (robot-learning find-ports), or use "
                              f"--robot sim:{self.robot} for its MuJoCo twin")
