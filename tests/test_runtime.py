import threading
import time

import numpy as np
import pytest

from robot_learning.core import Action, FakeClock, Stamped
from robot_learning.errors import ConfigError, DeviceFaultError, SpecMismatchError
from robot_learning.runtime.control import ControlRuntime, RuntimeConfig
from robot_learning.runtime.loop import RateLoop
from robot_learning.runtime.sources import AsyncSource, FunctionSource, TeleopSource

from support.emulated_devices import PatternCamera, RecordingArm, ScriptedTeleop

PERIOD_NS = 20_000_000  # 50 Hz


class ListSink:
    def __init__(self):
        self.ticks, self.closed = [], False

    def on_tick(self, tick):
        self.ticks.append(tick)

    def close(self):
        self.closed = True


def _action(q, g=0.0):
    return Action({"joint_pos_rad": np.full(6, float(q)), "gripper_pos": np.array([g])})


def _runtime(clock, fn, arm=None, **kw):
    arm = arm or RecordingArm(clock=clock)
    arm.connect()
    sink = ListSink()
    rt = ControlRuntime(arm, FunctionSource(fn, arm.action_features, clock), RuntimeConfig(rate_hz=50, **kw),
                        sinks=[sink], clock=clock)
    return arm, rt, sink


def test_deadlines_are_absolute_and_sinks_get_every_tick():
    clock = FakeClock(123)
    arm, rt, sink = _runtime(clock, lambda obs: _action(0.1))
    stats = rt.run(max_ticks=100)
    ts = [t.t_ns for t in sink.ticks]
    assert len(ts) == 100 and stats.loop.ticks == 100 and stats.loop.overruns == 0
    assert set(np.diff(ts)) == {PERIOD_NS} and ts[0] == 123
    assert sink.closed


def test_overrun_is_counted_and_loop_stays_on_its_grid():
    clock = FakeClock(0)
    calls = {"n": 0}

    def slow_on_tick_10(obs):
        calls["n"] += 1
        if calls["n"] == 10:
            clock.advance(int(2.5 * PERIOD_NS))  # this tick's work takes 2.5 periods
        return _action(0.0)

    arm, rt, sink = _runtime(clock, slow_on_tick_10)
    stats = rt.run(max_ticks=20)
    assert stats.loop.overruns == 1 and stats.loop.missed_ticks == 2
    assert all(t.t_ns % PERIOD_NS == 0 for t in sink.ticks)  # no drift: every tick on the grid


def test_sinks_and_robot_receive_the_executed_filtered_action_never_nan():
    clock = FakeClock(0)
    seq = iter([_action(0.0)] * 3 + [_action(np.nan)] * 2 + [_action(9.0)] * 5 + [_action(0.0)] * 5)
    arm, rt, sink = _runtime(clock, lambda obs: next(seq))
    rt.run(max_ticks=15)
    for tick in sink.ticks:
        sent = tick.executed
        assert sent.is_finite()
        assert np.all(np.abs(sent["joint_pos_rad"]) <= arm.config.joint_limit_rad)
    nan_ticks = [t for t in sink.ticks if t.requested is not None and not t.requested.is_finite()]
    assert len(nan_ticks) == 2 and all(t.held and t.reason.startswith("rejected: non-finite") for t in nan_ticks)
    jump = sink.ticks[5]
    assert jump.requested["joint_pos_rad"][0] == 9.0 and jump.clipped_elements > 0
    # what the sink saw is exactly what the robot got
    assert all(a.is_finite() for a in arm.received)
    # (the robot's last command is the hold that ends every run)
    assert [t.executed for t in sink.ticks] == arm.received[-len(sink.ticks) - 1:-1]
    # the velocity cap holds across the jump: 1.5 rad/s at 50 Hz
    exe = np.stack([t.executed["joint_pos_rad"] for t in sink.ticks[5:10]])
    assert np.all(np.abs(np.diff(exe, axis=0)) <= 1.5 / 50 + 1e-12)


def test_stale_sensor_holds_and_fresh_sensor_is_aligned_by_capture_time():
    clock = FakeClock(1_000_000_000)
    cam = PatternCamera(clock=clock)
    cam.connect()
    arm = RecordingArm(clock=clock)
    arm.connect()
    sink = ListSink()

    def fn(obs):
        return _action(0.0)

    rt = ControlRuntime(arm, FunctionSource(fn, arm.action_features, clock),
                        RuntimeConfig(rate_hz=50, max_sensor_age_s=0.05), sensors=[cam], sinks=[sink], clock=clock)
    assert "front" in rt.observation_features
    t0 = clock.now_ns()
    cam.push(t0 - 5_000_000)
    cam.push(t0 + 1_000_000)  # captured after the tick: not the aligned one
    tick = rt.step(t0)
    assert not tick.held and tick.observation.t_capture_ns["front"] == t0 - 5_000_000
    stale = rt.step(t0 + 10 * PERIOD_NS)
    assert stale.held and stale.observation is None and stale.reason.startswith("stale sensor")
    assert rt.stats.stale_sensor_ticks == 1


def test_ctrl_c_holds_robot_and_closes_sinks():
    clock = FakeClock(0)
    n = {"i": 0}

    def fn(obs):
        n["i"] += 1
        if n["i"] == 5:
            raise KeyboardInterrupt
        return _action(0.05 * n["i"])

    arm, rt, sink = _runtime(clock, fn)
    stats = rt.run(max_ticks=100)
    assert stats.interrupted and sink.closed and len(sink.ticks) == 4
    held = arm.received[-1]
    np.testing.assert_allclose(held["joint_pos_rad"], arm.read_state().value["joint_pos_rad"])


def test_device_fault_propagates_after_hold_and_close():
    clock = FakeClock(0)
    arm = RecordingArm(clock=clock)
    arm.fail_on_send_at = 3
    arm, rt, sink = _runtime(clock, lambda obs: _action(0.0), arm=arm)
    with pytest.raises(DeviceFaultError, match="injected bus fault"):
        rt.run(max_ticks=10)
    assert sink.closed


def test_async_source_slow_policy_makes_watchdog_hold_real_clock():
    from robot_learning.core import MonotonicClock
    clock = MonotonicClock()
    arm = RecordingArm(clock=clock)
    arm.connect()

    workers = set()

    class SlowPolicy:
        action_features = arm.action_features

        def reset(self):
            pass

        def next_action(self, obs):
            workers.add(threading.current_thread())
            time.sleep(0.15)  # 7.5 control periods
            return Stamped(_action(0.0), clock.now_ns(), clock.now_ns())

    sink = ListSink()
    threads_before = set(threading.enumerate())
    rt = ControlRuntime(arm, AsyncSource(SlowPolicy()), RuntimeConfig(rate_hz=50, watchdog_periods=3),
                        sinks=[sink], clock=clock)
    stats = rt.run(duration_s=0.6)
    assert stats.watchdog_trips >= 1 and stats.holds > 0
    assert all(t.executed.is_finite() for t in sink.ticks)
    # One worker thread for the whole run (not one per tick or per slow call), and it is gone after the run.
    assert len(workers) == 1 and not any(w.is_alive() for w in workers)
    assert not set(threading.enumerate()) - threads_before


def test_teleop_source_and_config_errors():
    clock = FakeClock(0)
    arm = RecordingArm(clock=clock)
    with arm, ScriptedTeleop(arm, clock) as tele:
        sink = ListSink()
        rt = ControlRuntime(arm, TeleopSource(tele), RuntimeConfig(rate_hz=50, task="wave"), sinks=[sink], clock=clock)
        rt.run(max_ticks=3)
        assert sink.ticks[-1].observation.language["task"] == "wave"
        tele.set_intervention(True)
        rt.run(max_ticks=1)
        assert sink.ticks[-1].intervention
    with pytest.raises(ConfigError, match="rate_hz"):
        RuntimeConfig(rate_hz=0)
    with pytest.raises(ConfigError, match="never ends"):
        rt.run()
    with pytest.raises(ConfigError, match="rate_hz"):
        RateLoop(clock, -1)

    class WrongSource:
        from robot_learning.core import FeatureSet
        action_features = FeatureSet()

        def reset(self):
            pass

    with pytest.raises(SpecMismatchError, match="action source features"):
        ControlRuntime(arm, WrongSource(), clock=clock)
