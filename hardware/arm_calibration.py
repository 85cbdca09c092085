"""Calibration of a servo-bus arm: the procedure, the conversions it enables, and its file.

Procedure (``robot-learning calibrate``): torque off; reset the servos' homing offsets and
position limits so raw readings are the physical shaft angles; the operator puts the arm in the
zero pose (see ``hardware/arms.py``: the sim twin's 0 rad pose, jaw closed) and then moves every
joint through its whole range. Each joint's range is measured on the unwrapped sweep
(``calibrate_joint``), so a range that straddles the encoder wrap (4095 -> 0) is measured
correctly. The homing offset that puts the middle of each range at mid-scale is written to the
servo's EEPROM, then the position limits (the range, in the servo's own shifted ticks, never
wrapping); the servo itself refuses goals outside them.

The file (JSON, one per arm: ``<calibration dir>/<kind>/<arm id>.json``) stores, per motor, its
id, the homing offset written and the ``JointCalibration`` in the servo's shifted ticks. On
connect the driver reads the offsets back from the servos and refuses a file that does not
match them (a recalibrated or swapped servo).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from robot_learning.core.clock import Clock, default_clock, s_to_ns
from robot_learning.errors import ConfigError
from robot_learning.hardware.arms import GRIPPER, JOINTS, ArmSpec
from robot_learning.hardware.calibration import JointCalibration, calibrate_joint

FORMAT_VERSION = 1


def calibration_dir() -> Path:
    """``$ROBOT_LEARNING_CALIBRATION`` or ``$XDG_CONFIG_HOME/robot-learning/calibration`` (~/.config)."""
    env = os.environ.get("ROBOT_LEARNING_CALIBRATION")
    if env:
        return Path(env)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "robot-learning" / "calibration"


def calibration_path(kind: str, arm_id: str, directory: Path | None = None) -> Path:
    if not arm_id or "/" in arm_id or arm_id.startswith("."):
        raise ConfigError.expected("arm id", "a plain name (letters, digits, - or _)", repr(arm_id))
    return (directory or calibration_dir()) / kind / f"{arm_id}.json"


@dataclass(frozen=True)
class ArmCalibration:
    """Per-motor calibration of one arm, in the servos' reported (offset) ticks."""

    kind: str
    arm_id: str
    joints: Mapping[str, JointCalibration]
    homing_offsets: Mapping[str, int]
    motor_ids: Mapping[str, int]

    def __post_init__(self) -> None:
        want = set(JOINTS + (GRIPPER,))
        for what, m in (("joints", self.joints), ("homing_offsets", self.homing_offsets), ("motor_ids", self.motor_ids)):
            if set(m) != want:
                raise ConfigError.expected(f"calibration {what}", sorted(want), sorted(m))
        g = self.joints[GRIPPER]
        if g.range_max - g.range_min <= 0:
            raise ConfigError(f"calibration of {self.kind} '{self.arm_id}': the gripper did not move during the sweep")

    # --- conversions -----------------------------------------------------------------------
    def joint_rad(self, raw: Mapping[str, int]) -> np.ndarray:
        """Arm joint angles (rad, ``JOINTS`` order) of raw present positions."""
        return np.array([float(self.joints[j].raw_to_rad(raw[j])) for j in JOINTS])

    @property
    def _gripper_open_rel(self) -> int:
        g = self.joints[GRIPPER]  # the zero pose has the jaw closed: open is the far end of the range
        return g.range_max if abs(g.range_max) >= abs(g.range_min) else g.range_min

    def gripper_fraction(self, raw: int) -> float:
        """0 = open .. 1 = closed (the zero pose)."""
        g = self.joints[GRIPPER]
        rel = float(g.raw_to_rad(raw)) / g.rad_per_tick * g.direction
        return float(np.clip(1.0 - rel / self._gripper_open_rel, 0.0, 1.0))

    def goal_raw(self, joint_rad: np.ndarray, gripper_pos: float) -> dict[str, int]:
        """Raw goal positions (clipped to the calibrated ranges) of joint angles and a gripper fraction."""
        goals = {j: int(self.joints[j].rad_to_raw(float(q))) for j, q in zip(JOINTS, joint_rad)}
        g = self.joints[GRIPPER]
        rel = (1.0 - float(np.clip(gripper_pos, 0.0, 1.0))) * self._gripper_open_rel
        goals[GRIPPER] = int(g.rad_to_raw(rel * g.direction * g.rad_per_tick))
        return goals

    def range_rad(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = zip(*(self.joints[j].range_rad for j in JOINTS))
        return np.array(lo), np.array(hi)

    # --- file ------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"format": FORMAT_VERSION, "kind": self.kind, "arm_id": self.arm_id, "motors": {
            n: {"id": self.motor_ids[n], "homing_offset": self.homing_offsets[n], "home_raw": c.home_raw,
                "range_min": c.range_min, "range_max": c.range_max, "direction": c.direction,
                "resolution": c.resolution} for n, c in self.joints.items()}}

    @classmethod
    def from_json(cls, d: Mapping, source: str = "calibration") -> ArmCalibration:
        try:
            if d.get("format") != FORMAT_VERSION:
                raise ConfigError.expected(f"{source} format", FORMAT_VERSION, d.get("format"))
            motors = d["motors"]
            joints = {n: JointCalibration(n, int(m["home_raw"]), int(m["range_min"]), int(m["range_max"]),
                                          int(m["direction"]), int(m["resolution"])) for n, m in motors.items()}
            return cls(str(d["kind"]), str(d["arm_id"]), joints,
                       {n: int(m["homing_offset"]) for n, m in motors.items()},
                       {n: int(m["id"]) for n, m in motors.items()})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"{source}: not a valid arm calibration ({type(e).__name__}: {e})") from None

    def save(self, path: Path) -> Path:
        """Write atomically (a crash never leaves half a file)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(self.to_json(), indent=1))
            os.replace(tmp, path)
        except OSError as e:
            raise ConfigError(f"cannot write the calibration {path}: {e.strerror or e}") from None
        return path


    @classmethod
    def load(cls, path: Path) -> ArmCalibration:
        if not path.is_file():
            kind = path.parent.name
            raise ConfigError(f"no calibration at {path}: run `robot-learning calibrate --robot {kind} "
                              f"--port PORT --id {path.stem}` first")
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: unreadable calibration ({e})") from None
        return cls.from_json(d, str(path))


def check_writable(path: Path) -> None:
    """ConfigError unless a calibration file can be written at ``path`` (checked before EEPROM writes)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.with_suffix(".json.probe")
        probe.write_text("{}")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the calibration {path}: {e.strerror or e}") from None


def record_calibration(bus, spec: ArmSpec, arm_id: str, *, wait_for_zero_pose: Callable[[], None],
                       sweep_done: Callable[[], bool], rate_hz: float = 50.0, clock: Clock | None = None,
                       on_sample: Callable[[Mapping[str, int]], None] | None = None,
                       max_duration_s: float = 600.0, min_range_ticks: int = 100,
                       check_writable: Callable[[], None] | None = None) -> ArmCalibration:
    """Run the calibration procedure on a connected bus (see the module docstring) and write the
    homing offsets and position limits to the servos. ``wait_for_zero_pose()`` returns when the
    arm is in the zero pose; the sweep is read at ``rate_hz`` until ``sweep_done()`` is true. Every
    joint must move at least ``min_range_ticks``; ``check_writable()`` (e.g. a test write of the file)
    runs after the ranges are known and before anything is written to the servos."""
    clock = clock or default_clock()
    names = [n for n, _ in spec.motors]
    bus.set_torque(False)
    for n in names:
        res = bus.resolution(n)
        bus.write_homing_offset(n, 0)
        bus.write_position_limits(n, 0, res - 1)
    wait_for_zero_pose()
    home = bus.sync_read("present_position", names)
    sweeps: dict[str, list[int]] = {n: [] for n in names}
    period_ns = s_to_ns(1.0 / rate_hz)
    deadline = clock.now_ns()
    end = deadline + s_to_ns(max_duration_s)
    while not sweep_done():
        raw = bus.sync_read("present_position", names)
        for n in names:
            sweeps[n].append(raw[n])
        if on_sample is not None:
            on_sample(raw)
        deadline += period_ns
        if deadline > end:
            raise ConfigError(f"calibration sweep still running after {max_duration_s:.0f} s")
        clock.sleep_until_ns(deadline)
    if not sweeps[names[0]]:
        raise ConfigError("calibration: the sweep recorded no readings")
    joints, offsets = {}, {}
    for (n, motor), direction in zip(spec.motors, spec.directions):
        res = bus.resolution(n)
        phys = calibrate_joint(n, home[n], np.asarray(sweeps[n]), direction, res)
        if phys.range_max - phys.range_min < min_range_ticks:
            raise ConfigError(f"calibration: {n} moved only {phys.range_max - phys.range_min} ticks during the sweep; "
                              "move every joint through its whole range (the servos keep no calibration: calibrate again)")
        offset = phys.servo_homing_offset(bus.MAX_HOMING_OFFSET)
        joints[n] = JointCalibration(n, (phys.home_raw - offset) % res, phys.range_min, phys.range_max, direction, res)
        offsets[n] = offset
    cal = ArmCalibration(spec.kind, arm_id, joints, offsets, {n: m.id for n, m in spec.motors})
    if check_writable is not None:
        check_writable()  # before the EEPROM writes: a calibration must not end unsaved
    for n in names:
        c = joints[n]
        bus.write_homing_offset(n, offsets[n])
        bus.write_position_limits(n, max(0, c.home_raw + c.range_min), min(c.resolution - 1, c.home_raw + c.range_max))
    return cal
