"""Safety limits as data: what a robot declares (``Robot.default_safety()``) and the runtime's safety
filter (``robot_learning.runtime.safety``) enforces on every command.

Devices declare their limits with these types without depending on the runtime that applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from robot_learning.errors import ConfigError


@dataclass(frozen=True)
class FeatureLimits:
    """Limits on one action feature, in that feature's units (a single value applies to all elements).

    ``lower``/``upper``: absolute bounds (use +-inf for unbounded elements).
    ``max_velocity_per_s``: cap on the command's change per second.
    ``max_step``: cap on ``|cmd - measured|``; needs ``measured_by``, the state feature that
    holds the measured value with the same shape.
    """

    feature: str
    lower: tuple[float, ...] | None = None
    upper: tuple[float, ...] | None = None
    max_velocity_per_s: tuple[float, ...] | None = None
    max_step: tuple[float, ...] | None = None
    measured_by: str | None = None


@dataclass(frozen=True)
class SafetyConfig:
    """Limits per action feature. Features with no entry pass with only the finite check."""

    limits: tuple[FeatureLimits, ...] = field(default_factory=tuple)

    def replace_limits(self, new: FeatureLimits) -> SafetyConfig:
        return SafetyConfig(tuple(lim for lim in self.limits if lim.feature != new.feature) + (new,))


def workspace_box(feature: str, lower_xyz_m: Sequence[float], upper_xyz_m: Sequence[float],
                  size: int = 3, **caps: tuple[float, ...] | None) -> FeatureLimits:
    """Limits that box the first three elements (position, metres) of a Cartesian target feature."""
    if size < 3:
        raise ConfigError.expected("workspace_box size", ">= 3", size)
    pad = (float("inf"),) * (size - 3)
    lo = tuple(float(v) for v in lower_xyz_m) + tuple(-v for v in pad)
    hi = tuple(float(v) for v in upper_xyz_m) + pad
    return FeatureLimits(feature=feature, lower=lo, upper=hi, **caps)
