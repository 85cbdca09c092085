"""Device contracts (Robot, Camera, TactileSensor, Teleop), their errors, and device drivers.

Importing this package imports no SDK: each driver module imports its SDK when used.
"""

from robot_learning.errors import (
    AlreadyConnectedError,
    DeviceError,
    DeviceFaultError,
    DeviceTimeoutError,
    NotConnectedError,
    SafetyViolation,
    StaleFrameError,
)
from robot_learning.hardware.device import Device
from robot_learning.hardware.robot import Robot
from robot_learning.hardware.sensor import Camera, StreamingSensor, TactileSensor
from robot_learning.hardware.teleop import EpisodeEvent, Teleop

__all__ = [
    "AlreadyConnectedError", "Camera", "Device", "DeviceError", "DeviceFaultError", "DeviceTimeoutError",
    "EpisodeEvent", "NotConnectedError", "Robot", "SafetyViolation", "StaleFrameError", "StreamingSensor",
    "TactileSensor", "Teleop",
]
