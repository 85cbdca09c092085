"""Joint calibration of servo-bus arms across the encoder wrap (issue 6, first part).

A servo reports its shaft angle as raw ticks ``0 .. resolution-1`` (4096 for Feetech STS and
Dynamixel X), wrapping from ``resolution-1`` to 0 once per turn. A joint's range of motion may
straddle that wrap; taking ``min``/``max`` of the raw readings over a sweep then gives a range of
almost a full turn (the bug users of other stacks report). Here every reading of a sweep is
unwrapped against the previous one (consecutive readings at the sampling rate move less than
half a turn), so the range is measured in continuous ticks relative to the home pose.

``JointCalibration`` maps raw ticks to radians relative to the home pose (0 rad at home, sign
from ``direction``) for any range of motion shorter than one turn, and back. The conversion is
centred on the middle of the range, so readings anywhere in the range, and up to half a turn
minus half the range outside it, map continuously. ``servo_homing_offset`` gives the offset that,
written to the servo, puts the middle of the range at mid-scale: the servo's own raw readings
and its EEPROM position limits then never wrap inside the range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robot_learning.errors import ConfigError

DEFAULT_RESOLUTION = 4096


def wrap_centered(ticks: np.ndarray | int, resolution: int) -> np.ndarray:
    """``ticks`` mapped into ``[-resolution/2, resolution/2)``."""
    half = resolution // 2
    return (np.asarray(ticks, dtype=np.int64) + half) % resolution - half


def unwrap_ticks(raw: np.ndarray, resolution: int = DEFAULT_RESOLUTION) -> np.ndarray:
    """Continuous ticks of a sweep of raw readings (the first reading unchanged): each step is the
    shortest way round from the previous reading."""
    raw = np.asarray(raw, dtype=np.int64)
    if raw.ndim != 1 or raw.size == 0:
        raise ConfigError.expected("sweep readings", "a non-empty 1-D sequence", raw.shape)
    if np.any((raw < 0) | (raw >= resolution)):
        raise ConfigError.expected("raw readings", f"0..{resolution - 1}", f"{raw.min()}..{raw.max()}")
    steps = wrap_centered(np.diff(raw), resolution)
    return np.concatenate([[raw[0]], raw[0] + np.cumsum(steps)])


@dataclass(frozen=True)
class JointCalibration:
    """``home_raw``: raw reading at the home pose (0 rad). ``range_min``/``range_max``: the range of
    motion in ticks relative to home (continuous, ``range_max - range_min < resolution``).
    ``direction``: +1, or -1 when the servo counts the opposite way to the joint."""

    name: str
    home_raw: int
    range_min: int
    range_max: int
    direction: int = 1
    resolution: int = DEFAULT_RESOLUTION

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ConfigError.expected(f"{self.name} direction", "1 or -1", self.direction)
        if not 0 <= self.home_raw < self.resolution:
            raise ConfigError.expected(f"{self.name} home_raw", f"0..{self.resolution - 1}", self.home_raw)
        if not (self.range_min <= 0 <= self.range_max and self.range_max - self.range_min < self.resolution):
            raise ConfigError.expected(f"{self.name} range", f"min <= 0 <= max, shorter than one turn "
                                       f"({self.resolution} ticks)", (self.range_min, self.range_max))

    @property
    def rad_per_tick(self) -> float:
        return 2 * math.pi / self.resolution

    @property
    def mid_rel(self) -> int:
        """Middle of the range, ticks relative to home (rounded down)."""
        return (self.range_min + self.range_max) // 2

    def raw_to_rad(self, raw: np.ndarray | int) -> np.ndarray:
        """Joint angle (rad, 0 at home) of raw readings."""
        rel = wrap_centered(np.asarray(raw, dtype=np.int64) - self.home_raw - self.mid_rel,
                            self.resolution) + self.mid_rel
        return self.direction * rel * self.rad_per_tick

    def rad_to_raw(self, rad: np.ndarray | float) -> np.ndarray:
        """Raw goal positions of joint angles (rad), clipped to the calibrated range."""
        rel = np.asarray(rad, dtype=np.float64) * self.direction / self.rad_per_tick
        rel = np.clip(np.round(rel), self.range_min, self.range_max).astype(np.int64)
        return (self.home_raw + rel) % self.resolution

    @property
    def range_rad(self) -> tuple[float, float]:
        lo, hi = sorted((self.direction * self.range_min * self.rad_per_tick,
                         self.direction * self.range_max * self.rad_per_tick))
        return lo, hi

    def servo_homing_offset(self, max_offset: int | None = None) -> int:
        """The offset (ticks, servo convention: reported = raw - offset) that puts the middle of the
        range at mid-scale, so no reading inside the range wraps.

        Servos apply offsets up to ``max_offset`` only (Feetech 2047, Dynamixel X 1024; default
        ``resolution/2 - 1``). Within that, the offset nearest the centring one that still keeps the
        whole range off the wrap is chosen; if there is none, ``ConfigError`` says so."""
        res, half = self.resolution, self.resolution // 2
        max_offset = half - 1 if max_offset is None else int(max_offset)
        ideal = int(wrap_centered(self.home_raw + self.mid_rel - half, res))
        # Reported home r = (home_raw - offset) mod res must keep [r + range_min, r + range_max] in 0..res-1.
        offsets = np.arange(-max_offset, max_offset + 1)
        rep_home = (self.home_raw - offsets) % res
        ok = (rep_home + self.range_min >= 0) & (rep_home + self.range_max <= res - 1)
        if -max_offset <= ideal <= max_offset and ok[ideal + max_offset]:
            return ideal
        if not ok.any():
            raise ConfigError(f"{self.name}: its range of motion ({self.range_max - self.range_min} ticks) crosses the "
                              f"encoder wrap and no homing offset within +-{max_offset} ticks moves it off: remount the "
                              "servo horn a quarter turn (or the joint's zero pose) and calibrate again")
        dist = np.abs(wrap_centered(offsets[ok] - ideal, res))
        return int(offsets[ok][np.argmin(dist)])


def calibrate_joint(name: str, home_raw: int, sweep_raw: np.ndarray, direction: int = 1,
                    resolution: int = DEFAULT_RESOLUTION) -> JointCalibration:
    """Calibration from the raw reading at home and a sweep through the whole range of motion
    (read at the control rate, starting anywhere)."""
    cont = unwrap_ticks(np.concatenate([[int(home_raw)], np.asarray(sweep_raw, dtype=np.int64)]), resolution)
    rel = cont - cont[0]
    lo, hi = int(rel.min()), int(rel.max())
    if hi - lo >= resolution:
        raise ConfigError(f"{name}: the sweep covered {hi - lo} ticks, a full turn or more; a joint's range of "
                          "motion must be shorter than one turn (or the readings were too far apart)")
    return JointCalibration(name, int(home_raw), lo, hi, direction, resolution)
