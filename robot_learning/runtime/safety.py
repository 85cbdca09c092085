"""The safety filter: the one place between any action source and the motors.

Configured per robot (``Robot.default_safety()``: a ``SafetyConfig`` of ``FeatureLimits``, declared in
``robot_learning.core.limits``), applied by the control runtime on every tick, for teleop, record,
deploy and RL alike. Per action feature it enforces, in this priority:

1. **Finite values**: a command with NaN or inf anywhere is rejected whole; the runtime then
   holds the robot. The robot never sees a non-finite number.
2. **Position box** (``lower`` / ``upper``): joint limits, gripper range, or the workspace box of
   a Cartesian target (bound only the position elements; leave the rest at +-inf).
3. **Velocity cap** (``max_velocity_per_s``): ``|cmd - previous cmd| <= v * period``: the
   command stream never jumps.
4. **Step cap** (``max_step``): ``|cmd - measured| <= max_step``, the measured value read from
   the state feature ``measured_by``: the command never runs far ahead of the robot.

Caps are applied by clipping into the intersection of the bands. References (previous command,
measured value) are first clipped into the box, so the box and velocity bands always intersect.
If the step band does not meet them (the robot was pushed away from its command by more than
one step plus one velocity increment), the command goes to the point of the box-and-velocity
band nearest the robot: the higher-priority limits always hold, and the command converges
back to the robot at the velocity cap.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Sequence

import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.core.frame import Action
from robot_learning.core.limits import FeatureLimits, SafetyConfig
from robot_learning.errors import ConfigError, SpecMismatchError


def _vec(values: Sequence[float] | None, n: int, what: str) -> np.ndarray | None:
    if values is None:
        return None
    a = np.asarray(values, dtype=np.float64).reshape(-1)
    if a.size == 1:
        a = np.full(n, float(a[0]))
    if a.shape != (n,):
        raise ConfigError.expected(what, f"1 or {n} values", a.size)
    if np.any(np.isnan(a)):
        raise ConfigError.expected(what, "no NaN", a.tolist())
    return a


class _Compiled(NamedTuple):
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    lo: np.ndarray
    hi: np.ndarray
    vel_step: np.ndarray | None  # max change per tick
    step: np.ndarray | None
    measured_by: str | None


class FilterResult(NamedTuple):
    """``action`` is None when the command was rejected (the runtime then holds)."""

    action: Action | None
    rejected: str | None
    clipped_elements: int


class SafetyFilter:
    """Applies a SafetyConfig to commands for one robot at one control period."""

    def __init__(self, config: SafetyConfig, action_features: FeatureSet, state_features: FeatureSet,
                 period_s: float):
        if not period_s > 0:
            raise ConfigError.expected("safety filter period_s", "> 0", period_s)
        self.action_features = action_features
        self.period_s = float(period_s)
        self._prev: dict[str, np.ndarray] = {}
        self._rules: dict[str, _Compiled] = {}
        for lim in config.limits:
            self._rules[lim.feature] = self._compile(lim, action_features, state_features)

    def _compile(self, lim: FeatureLimits, action_features: FeatureSet, state_features: FeatureSet) -> _Compiled:
        if lim.feature not in action_features:
            raise ConfigError.expected("safety limits feature", f"one of {list(action_features.names)}",
                                       repr(lim.feature))
        spec = action_features[lim.feature]
        if spec.kind is not FeatureKind.ACTION:
            raise ConfigError.expected(f"{spec.name}.kind", "action", spec.kind.value)
        n = spec.size
        where = f"safety limits of {spec.name!r}"
        lo = _vec(lim.lower, n, f"{where}: lower")
        hi = _vec(lim.upper, n, f"{where}: upper")
        lo = np.full(n, -np.inf) if lo is None else lo
        hi = np.full(n, np.inf) if hi is None else hi
        if np.any(lo > hi):
            raise ConfigError.expected(f"{where}", "lower <= upper", f"lower {lo.tolist()} upper {hi.tolist()}")
        vel = _vec(lim.max_velocity_per_s, n, f"{where}: max_velocity_per_s")
        step = _vec(lim.max_step, n, f"{where}: max_step")
        for name, v in (("max_velocity_per_s", vel), ("max_step", step)):
            if v is not None and not np.all(v > 0):
                raise ConfigError.expected(f"{where}: {name}", "values > 0", v.tolist())
        if step is not None:
            if lim.measured_by is None:
                raise ConfigError.expected(f"{where}: measured_by", "a state feature name with max_step", None)
            if lim.measured_by not in state_features:
                raise ConfigError.expected(f"{where}: measured_by", f"one of {list(state_features.names)}",
                                           repr(lim.measured_by))
            if state_features[lim.measured_by].shape != spec.shape:
                raise ConfigError.expected(f"{where}: shape of {lim.measured_by!r}", spec.shape,
                                           state_features[lim.measured_by].shape)
        return _Compiled(spec.name, np.dtype(spec.dtype), spec.shape, lo, hi,
                         None if vel is None else vel * self.period_s, step, lim.measured_by)

    def reset(self, last_command: Action | None = None) -> None:
        """Forget (or set) the previous command that the velocity cap is relative to."""
        self._prev = {} if last_command is None else {
            k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in last_command.values.items()}

    def note_executed(self, action: Action) -> None:
        """Tell the filter what the robot actually executed (after a hold, for instance)."""
        self.reset(action)

    def __call__(self, action: Action, state: Mapping[str, np.ndarray]) -> FilterResult:
        try:
            action.check(self.action_features)
        except SpecMismatchError as e:
            return FilterResult(None, f"malformed action: {e}", 0)
        if not action.is_finite():
            bad = [k for k, v in action.values.items() if not np.all(np.isfinite(v))]
            return FilterResult(None, f"non-finite values in {bad}", 0)
        out: dict[str, np.ndarray] = {}
        clipped = 0
        for name, value in action.values.items():
            rule = self._rules.get(name)
            if rule is None:
                out[name] = value
                continue
            x = np.asarray(value, dtype=np.float64).reshape(-1)
            hard = self._hard_band(rule)
            res = self._apply(rule, x, state, hard)
            if isinstance(res, str):
                return FilterResult(None, res, 0)
            clipped += int(np.count_nonzero(res != x))
            out[name] = _round_inward(res.astype(rule.dtype), hard).reshape(rule.shape)
        executed = Action(out)
        self.reset(executed)
        return FilterResult(executed, None, clipped)

    def _hard_band(self, rule: _Compiled) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = rule.lo, rule.hi
        prev = self._prev.get(rule.name)
        if rule.vel_step is not None and prev is not None:
            p = np.clip(prev, lo, hi)
            lo, hi = np.maximum(lo, p - rule.vel_step), np.minimum(hi, p + rule.vel_step)
        return lo, hi

    def _apply(self, rule: _Compiled, x: np.ndarray, state: Mapping[str, np.ndarray],
               hard: tuple[np.ndarray, np.ndarray]) -> np.ndarray | str:
        lo, hi = hard
        if rule.step is not None:
            meas = state.get(rule.measured_by) if rule.measured_by else None
            if meas is None:
                return f"state feature {rule.measured_by!r} needed by the step cap of {rule.name!r} is missing"
            m = np.asarray(meas, dtype=np.float64).reshape(-1)
            if not np.all(np.isfinite(m)):
                return f"measured {rule.measured_by!r} is not finite"
            m = np.clip(m, rule.lo, rule.hi)
            slo, shi = m - rule.step, m + rule.step
            blo, bhi = np.maximum(lo, slo), np.minimum(hi, shi)
            empty = blo > bhi
            if np.any(empty):  # step band out of reach: nearest point of the hard band to the robot
                nearest = np.where(shi < lo, lo, hi)
                blo = np.where(empty, nearest, blo)
                bhi = np.where(empty, nearest, bhi)
            lo, hi = blo, bhi
        return np.clip(x, lo, hi)


def _round_inward(values: np.ndarray, band: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """After casting to a narrower float, nudge any element that rounded outside the band back in."""
    lo, hi = band
    v = values.copy()
    as64 = v.astype(np.float64)
    over, under = as64 > hi, as64 < lo
    if np.any(over):
        v[over] = np.nextafter(v[over], np.array(-np.inf, dtype=v.dtype))
    if np.any(under):
        v[under] = np.nextafter(v[under], np.array(np.inf, dtype=v.dtype))
    return v
