"""Configs of the hardware subcommands (find-ports, find-cameras, calibrate, teleoperate): inert frozen
dataclasses, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from robot_learning.errors import ConfigError
from robot_learning.evaluation.config import FLAT
from robot_learning.rig import TELEOPS, RigConfig, SessionConfig

ROBOTS_HELP = "so101, koch (a real arm on --robot-port), sim:so101 / sim:TASK[:MODEL] (the MuJoCo twin)"


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

    rig: Annotated[RigConfig, FLAT] = RigConfig(robot="sim:so101", teleop="keyboard", cameras=())
    """--robot, --teleop, --robot-port, --robot-id, --teleop-port, --teleop-id, --calibration-dir, --rate-hz,
    --cameras, --task."""
    session: Annotated[SessionConfig, FLAT] = SessionConfig()
    """--duration-s, --record."""
    json: bool = False
    """Print the summary as one JSON line."""

    def __post_init__(self) -> None:
        self.rig.check_teleop(TELEOPS)
