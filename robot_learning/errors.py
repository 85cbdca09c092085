"""The project's exception hierarchy.

Every error says what was expected and what was found, so a one-line message at the CLI
boundary is enough to act on. Device errors are re-exported from ``robot_learning.hardware``.

    RobotLearningError                                (the CLI prints the message; exit 1 unless noted)
    ├── ConfigError            a configuration value is invalid (CLI exits 2 with the message)
    │   └── InsufficientDataError  the data given cannot serve the request (e.g. no failures to learn from)
    ├── SpecMismatchError      data does not match its FeatureSpec (missing key, shape, dtype)
    ├── SafetyViolation        the safety filter refused a command or a state is out of limits
    ├── SimulationDivergedError  the MuJoCo state became non-finite (an unstable action or model)
    ├── TrainingDivergedError  a training loss became non-finite
    ├── WorkerFailedError      a worker process (rollout worker, RL actor) died or failed
    ├── StorageError           writing a dataset failed (disk full, permissions, a stalled writer)
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


class InsufficientDataError(ConfigError):
    """The data given cannot serve the request (e.g. a critic's episodes hold no failures): a ConfigError,
    as the fix is other input, but one callers may catch on its own."""


class SafetyViolation(RobotLearningError):
    """A command or a measured state lies outside the configured safety limits."""


class SimulationDivergedError(RobotLearningError):
    """The simulation's state became non-finite (NaN / inf): the action drove the physics unstable, or the model
    is. Reinforcement learning counts it as a failed episode; anywhere else it ends the run."""


class TrainingDivergedError(RobotLearningError):
    """A training loss became non-finite (too high a learning rate, or broken data)."""


class WorkerFailedError(RobotLearningError):
    """A worker process of a run (a rollout worker, an RL actor) died or reported a failure."""


class StorageError(RobotLearningError):
    """Writing a dataset failed (disk full, permissions, a writer that stalled); what was committed before
    stays intact."""


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
