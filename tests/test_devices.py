import numpy as np
import pytest

from robot_learning.core import Action, FakeClock
from robot_learning.errors import (AlreadyConnectedError, DeviceFaultError, DeviceTimeoutError, NotConnectedError,
                                   SpecMismatchError, StaleFrameError)
from robot_learning.hardware import EpisodeEvent
from robot_learning.hardware.emulated_arm import EmulatedArm

from support.emulated_devices import PatternCamera, ScriptedTeleop


def test_robot_specs_readable_while_disconnected_and_methods_need_connect():
    arm = EmulatedArm()
    assert arm.state_features.names == ("joint_pos_rad", "gripper_pos")
    assert arm.action_features["joint_pos_rad"].names[0] == "joint_1"
    for call in (arm.read_state, arm.hold, arm.stop, lambda: arm.send_action(None)):
        with pytest.raises(NotConnectedError, match="connect"):
            call()
    with arm:
        assert arm.is_connected
        with pytest.raises(AlreadyConnectedError):
            arm.connect()
    assert not arm.is_connected
    arm.disconnect()  # idempotent


def test_send_action_returns_executed_and_robot_tracks_it():
    clock = FakeClock()
    with EmulatedArm(clock=clock) as arm:
        target = Action({"joint_pos_rad": np.full(6, 0.3), "gripper_pos": np.array([1.0])})
        executed = arm.send_action(target)
        assert executed == target
        clock.advance_s(1.0)
        state = arm.read_state()
        np.testing.assert_allclose(state.value["joint_pos_rad"], 0.3, atol=1e-6)
        assert state.t_capture_ns == clock.now_ns()
        held = arm.hold()
        np.testing.assert_allclose(held["joint_pos_rad"], state.value["joint_pos_rad"])
        with pytest.raises(SpecMismatchError, match="expected"):
            arm.send_action(Action({"joint_pos_rad": np.zeros(3), "gripper_pos": np.zeros(1)}))


def test_camera_async_read_latest_and_stale():
    with PatternCamera(fps=200) as cam:
        a = cam.async_read(timeout_s=1.0)
        b = cam.async_read(timeout_s=1.0)
        assert b.seq > a.seq and b.t_capture_ns >= a.t_capture_ns
        assert b.value["front"].shape == (8, 10, 3)
        assert cam.read_latest(max_age_s=0.5).seq >= b.seq
        cam.paused.set()
        import time
        time.sleep(0.1)
        with pytest.raises(StaleFrameError, match=r"expected age <= 20.0 ms, found"):
            cam.read_latest(max_age_s=0.02)
        try:  # hand out the last frame captured before the pause, if not yet handed out
            cam.async_read(timeout_s=0.0)
        except DeviceTimeoutError:
            pass
        with pytest.raises(DeviceTimeoutError, match="within 50.0 ms"):
            cam.async_read(timeout_s=0.05)
        cam.paused.clear()
    assert not cam.is_streaming


def test_camera_read_aligned_picks_newest_before_tick():
    clock = FakeClock(0)
    with PatternCamera(clock=clock) as cam:
        for t in (100, 200, 300):
            cam.push(t)
        assert cam.read_aligned(250, max_age_s=1e-6).t_capture_ns == 200
        assert cam.read_aligned(50, max_age_s=1e-6).t_capture_ns == 100  # none before: the oldest
        with pytest.raises(StaleFrameError):
            cam.read_aligned(10_000_000, max_age_s=0.001)


def test_camera_capture_failures_become_device_fault():
    with PatternCamera(fail=True, fps=1000) as cam:
        with pytest.raises(DeviceFaultError, match="cable unplugged"):
            cam.async_read(timeout_s=2.0)


def test_teleop_events_are_delivered_once_and_intervention_flag():
    clock = FakeClock()
    arm = EmulatedArm(clock=clock)
    with ScriptedTeleop(arm, clock) as tele:
        tele.post_event(EpisodeEvent.NEXT)
        tele.post_event("stop")
        assert tele.poll_events() == [EpisodeEvent.NEXT, EpisodeEvent.STOP]
        assert tele.poll_events() == []
        assert not tele.intervention
        tele.set_intervention(True)
        assert tele.intervention
        assert tele.get_action().value["gripper_pos"][0] == 1.0
