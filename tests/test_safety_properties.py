"""Property tests: no command that leaves the safety filter violates a limit (>= 10,000 random
actions with NaN, inf and huge values), and the watchdog holds within its configured periods."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robot_learning.core import Action, FakeClock, FeatureKind, FeatureSet, FeatureSpec
from robot_learning.core.frame import Observation
from robot_learning.core.stamped import Stamped
from robot_learning.hardware.emulated_arm import EmulatedArm
from robot_learning.runtime.control import ControlRuntime, RuntimeConfig
from robot_learning.core.limits import FeatureLimits, SafetyConfig, workspace_box
from robot_learning.runtime.safety import SafetyFilter

ACTIONS_PER_EXAMPLE = 50
EXAMPLES = 250
TOL = {"float64": 1e-9, "float32": 1e-5}
checked = {"actions": 0, "accepted": 0, "rejected": 0}

SPECIAL = [math.nan, math.inf, -math.inf, 1e300, -1e300, 1e9, -1e9, 5e-324]
element = st.one_of(st.floats(-4, 4), st.floats(-4, 4), st.floats(-50, 50), st.sampled_from(SPECIAL),
                    st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def scenario(draw):
    n = draw(st.integers(1, 6))
    dtype = draw(st.sampled_from(["float64", "float32"]))
    rate_hz = draw(st.sampled_from([10.0, 30.0, 100.0, 500.0]))
    lo = np.array(draw(st.lists(st.floats(-3, 0), min_size=n, max_size=n)))
    width = np.array(draw(st.lists(st.floats(0.1, 5), min_size=n, max_size=n)))
    vel = draw(st.floats(0.05, 5))
    step = draw(st.floats(0.01, 1))
    actions = draw(st.lists(st.lists(element, min_size=n, max_size=n), min_size=ACTIONS_PER_EXAMPLE,
                            max_size=ACTIONS_PER_EXAMPLE))
    # measured positions: mostly inside the limits, sometimes outside (robot pushed / drifted)
    meas = draw(st.lists(st.lists(st.floats(-5, 5), min_size=n, max_size=n), min_size=ACTIONS_PER_EXAMPLE,
                         max_size=ACTIONS_PER_EXAMPLE))
    return n, dtype, rate_hz, lo, lo + width, vel, step, actions, meas


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario())
def _filter_never_emits_a_violation(sc):
    n, dtype, rate_hz, lo, hi, vel, step, actions, meas = sc
    act_f = FeatureSet([FeatureSpec("q", (n,), dtype, FeatureKind.ACTION, "rad")])
    st_f = FeatureSet([FeatureSpec("q_meas", (n,), "float64", FeatureKind.STATE, "rad")])
    cfg = SafetyConfig((FeatureLimits("q", lower=tuple(lo), upper=tuple(hi), max_velocity_per_s=(vel,),
                                      max_step=(step,), measured_by="q_meas"),))
    period = 1.0 / rate_hz
    f = SafetyFilter(cfg, act_f, st_f, period)
    prev = None
    for raw, m in zip(actions, meas):
        checked["actions"] += 1
        m = np.asarray(m)
        x = np.asarray(raw, dtype=np.float64).astype(dtype) if np.all(np.abs(np.nan_to_num(raw)) < 1e30) \
            else np.asarray(raw, dtype=np.float64)
        res = f(Action({"q": x}), {"q_meas": m})
        if res.action is None:
            checked["rejected"] += 1
            # the filter rejects exactly the non-finite / malformed commands; the robot then holds
            assert (not np.all(np.isfinite(x))) or x.dtype != np.dtype(dtype)
            hold = np.clip(m, lo, hi).astype(dtype)
            f.note_executed(Action({"q": hold}))
            prev = hold.astype(np.float64)
            continue
        checked["accepted"] += 1
        out = res.action["q"]
        assert out.dtype == np.dtype(dtype) and out.shape == (n,)
        o = out.astype(np.float64)
        tol = TOL[dtype]
        assert np.all(np.isfinite(o))
        assert np.all(o >= lo) and np.all(o <= hi), "position limit violated"
        if prev is not None:
            p = np.clip(prev, lo, hi)
            assert np.all(np.abs(o - p) <= vel * period + tol), "velocity cap violated"
        # step cap: holds whenever the step band meets the hard (limits + velocity) band
        mc = np.clip(m, lo, hi)
        hard_lo, hard_hi = lo.copy(), hi.copy()
        if prev is not None:
            p = np.clip(prev, lo, hi)
            hard_lo, hard_hi = np.maximum(lo, p - vel * period), np.minimum(hi, p + vel * period)
        feasible = (np.maximum(hard_lo, mc - step) <= np.minimum(hard_hi, mc + step))
        assert np.all(np.abs(o - mc)[feasible] <= step + tol), "step cap violated"
        # where infeasible, the command sits at the hard band's edge nearest the robot
        nearest = np.where(mc + step < hard_lo, hard_lo, hard_hi)
        assert np.allclose(o[~feasible], nearest[~feasible], atol=tol)
        prev = o


def test_safety_filter_never_emits_a_violation_over_10000_actions():
    checked.update(actions=0, accepted=0, rejected=0)
    _filter_never_emits_a_violation()
    assert checked["actions"] >= 10_000
    assert checked["accepted"] > 1000 and checked["rejected"] > 1000  # both paths exercised


def test_workspace_box_bounds_only_position():
    act_f = FeatureSet([FeatureSpec("ee_pose", (7,), "float64", FeatureKind.ACTION, "m|quat")])
    cfg = SafetyConfig((workspace_box("ee_pose", (0.2, -0.3, 0.0), (0.7, 0.3, 0.5), size=7),))
    f = SafetyFilter(cfg, act_f, FeatureSet(), 0.02)
    out = f(Action({"ee_pose": np.array([5.0, -5.0, -1.0, 0.0, 0.0, 0.0, 1.0])}), {}).action["ee_pose"]
    np.testing.assert_allclose(out, [0.7, -0.3, 0.0, 0.0, 0.0, 0.0, 1.0])


def test_malformed_action_is_rejected_not_raised():
    act_f = FeatureSet([FeatureSpec("q", (2,), "float64", FeatureKind.ACTION, "rad")])
    f = SafetyFilter(SafetyConfig(), act_f, FeatureSet(), 0.02)
    res = f(Action({"q": np.zeros(3)}), {})
    assert res.action is None and "malformed" in res.rejected and "expected (2,)" in res.rejected


class _StoppingSource:
    """Delivers a fresh action on every tick before ``stop_at``, then nothing."""

    def __init__(self, arm, clock, stop_at):
        self.action_features = arm.action_features
        self.clock, self.stop_at, self.tick = clock, stop_at, 0

    def reset(self):
        self.tick = 0

    def next_action(self, obs: Observation):
        i, self.tick = self.tick, self.tick + 1
        if i >= self.stop_at:
            return None
        a = Action({"joint_pos_rad": np.full(6, 0.01 * i), "gripper_pos": np.zeros(1)})
        return Stamped(a, obs.t_ns, obs.t_ns)


@settings(max_examples=40, deadline=None)
@given(stop_at=st.integers(1, 60), periods=st.sampled_from([1, 2, 3, 5, 10]),
       rate_hz=st.sampled_from([10.0, 50.0, 200.0]))
def test_watchdog_holds_within_configured_periods(stop_at, periods, rate_hz):
    clock = FakeClock(1_000_000)
    ticks = []
    with EmulatedArm(clock=clock) as arm:
        src = _StoppingSource(arm, clock, stop_at)
        rt = ControlRuntime(arm, src, RuntimeConfig(rate_hz=rate_hz, watchdog_periods=periods),
                            sinks=[_ListSink(ticks)], clock=clock)
        rt.run(max_ticks=stop_at + periods + 5)
    watchdog = [t for t in ticks if t.held and t.reason and t.reason.startswith("watchdog")]
    assert not any(t.held for t in ticks[:stop_at]), "held while actions were fresh"
    assert watchdog, "never held after the source stopped"
    first = watchdog[0].index
    assert first - stop_at <= periods - 1  # the first missing action was due at tick stop_at
    assert first - (stop_at - 1) == periods  # exactly N periods after the last fresh action
    assert all(t.held for t in ticks[first:])  # and stays held


def test_watchdog_trips_when_source_never_delivers():
    clock = FakeClock()
    ticks = []
    with EmulatedArm(clock=clock) as arm:
        rt = ControlRuntime(arm, _StoppingSource(arm, clock, 0), RuntimeConfig(rate_hz=50, watchdog_periods=3),
                            sinks=[_ListSink(ticks)], clock=clock)
        stats = rt.run(max_ticks=10)
    assert all(t.held for t in ticks) and stats.watchdog_trips == 1
    assert [t.reason.split(":")[0] for t in ticks[:3]] == ["waiting for the first action"] * 3


class _ListSink:
    def __init__(self, out):
        self.out = out
        self.closed = False

    def on_tick(self, tick):
        self.out.append(tick)

    def close(self):
        self.closed = True
