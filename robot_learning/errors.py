"""The project's exception hierarchy.

Every error says what was expected and what was found, so a one-line message at the CLI
boundary is enough to act on. Device errors are re-exported from ``robot_learning.hardware``.

    RobotLearningError
    ├── ConfigError            a configuration value is invalid (CLI exits 2 with the message)
    ├── SpecMismatchError      data does not match its FeatureSpec (missing key, shape, dtype)
    ├── SafetyViolation        the safety filter refused a command or a state is out of limits
    └── DeviceError
        ├── NotConnectedError      method needs connect() first
        ├── AlreadyConnectedError  connect() called twice
        ├── StaleFrameError        newest sample is older than the allowed age
        ├── DeviceTimeoutError     no sample arrived in time
        └── DeviceFaultError       the device reported or caused a fault
"""

from __future__ import annotations


class RobotLearningError(Exception):
    """Base class of every error this project raises on purpose."""


def _expected_found(what: str, expected: object, found: object) -> str:
    return f"{what}: expected {expected}, found {found}"


class ConfigError(RobotLearningError, ValueError):
    """A configuration value is invalid."""

    @classmethod
    def expected(cls, what: str, expected: object, found: object) -> ConfigError:
        return cls(_expected_found(what, expected, found))


class SpecMismatchError(RobotLearningError, ValueError):
    """Data does not match its declared FeatureSpec (missing or extra key, shape, dtype)."""

    @classmethod
    def expected(cls, what: str, expected: object, found: object) -> SpecMismatchError:
        return cls(_expected_found(what, expected, found))


class SafetyViolation(RobotLearningError):
    """A command or a measured state lies outside the configured safety limits."""


class DeviceError(RobotLearningError):
    """A device (robot, camera, tactile sensor, teleop device) failed or was misused."""

    def __init__(self, device: str, message: str):
        super().__init__(f"{device}: {message}")
        self.device = device


class NotConnectedError(DeviceError):
    def __init__(self, device: str, method: str):
        super().__init__(device, f"{method}() needs a connected device: call connect() first "
                                 "(or use it as a context manager)")


class AlreadyConnectedError(DeviceError):
    def __init__(self, device: str):
        super().__init__(device, "connect() called on a device that is already connected")


class StaleFrameError(DeviceError):
    def __init__(self, device: str, age_s: float, max_age_s: float):
        super().__init__(device, f"newest sample is stale: expected age <= {max_age_s * 1e3:.1f} ms, "
                                 f"found {age_s * 1e3:.1f} ms")
        self.age_s = age_s
        self.max_age_s = max_age_s


class DeviceTimeoutError(DeviceError):
    def __init__(self, device: str, timeout_s: float, what: str = "a new sample"):
        super().__init__(device, f"expected {what} within {timeout_s * 1e3:.1f} ms, none arrived")
        self.timeout_s = timeout_s


class DeviceFaultError(DeviceError):
    """The device reported a fault (bad status packet, overload, disconnected cable...)."""
