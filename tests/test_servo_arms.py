"""SO-101 and Koch arms end to end against the servo emulator on a pseudo-terminal, through the real SDKs:
calibration across the encoder wrap, leader -> follower teleoperation through the control runtime and the
recorder, corrupted packets, a servo that disappears, torque off on exit and on SIGTERM."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from robot_learning.cli.main import main
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware.arm_calibration import ArmCalibration, calibration_path
from robot_learning.hardware.arms import get_arm, make_bus
from robot_learning.hardware.servo_arm import LeaderArm, ServoArm, ServoArmConfig
from robot_learning.runtime.control import ControlRuntime, RuntimeConfig
from robot_learning.runtime.sources import TeleopSource

from robot_learning.hardware.servo_emulator import ServoEmulator
from support.host_load import wakeup_probe
from support.servo_arms import FOLLOWER_POSE, LEADER_POSE, NAMES, RES, servos_of, sweep_and_calibrate


@pytest.fixture
def cal_dir(tmp_path, monkeypatch):
    d = tmp_path / "calibration"
    monkeypatch.setenv("ROBOT_LEARNING_CALIBRATION", str(d))
    return d


# Koch: Dynamixel X servos apply homing offsets up to +-1024 only, so a range crossing the wrap must leave room
# for an offset that moves it off (wrist_roll's 3000-tick range above cannot: see the next test).
KOCH_POSE = {**FOLLOWER_POSE, "wrist_roll": (150, -1000, 1000)}


@pytest.mark.parametrize("kind, protocol, pose", [("so101", "feetech", FOLLOWER_POSE),
                                                  ("koch", "dynamixel", KOCH_POSE)])
def test_calibration_across_the_encoder_wrap(kind, protocol, pose, cal_dir):
    spec = get_arm(kind)
    with ServoEmulator(protocol, servos_of(spec)) as emu:
        cal = sweep_and_calibrate(emu, spec, "a", cal_dir, pose)
        for n, (home, lo, hi) in pose.items():
            c = cal.joints[n]
            assert abs(c.range_min - lo) <= 2 and abs(c.range_max - hi) <= 2, (n, c)
            assert abs(cal.homing_offsets[n]) <= (2047 if protocol == "feetech" else 1024)
        reloaded = ArmCalibration.load(calibration_path(spec.kind, "a", cal_dir))
        assert reloaded == cal
        # The servos now report every position of the range without wrapping (Feetech: its middle at
        # mid-scale), and the EEPROM limits are the range.
        with make_bus(spec, emu.port) as bus:
            for n, (home, lo, hi) in pose.items():
                sid = spec.motor_map[n].id
                mid = (home + (lo + hi) // 2) % RES
                emu.servo(sid).set_physical(mid)
                if protocol == "feetech":
                    assert abs(bus.read("present_position", n) - RES // 2) <= 2, n
                for rel in (lo, hi):
                    emu.servo(sid).set_physical((home + rel) % RES)
                    rep = bus.read("present_position", n)
                    assert 0 <= rep <= RES - 1
                    assert abs(float(cal.joints[n].raw_to_rad(rep)) - rel * 2 * math.pi / RES) < 3e-3
                c = cal.joints[n]
                assert bus.read("min_position_limit", n) == c.home_raw + c.range_min
                assert bus.read("max_position_limit", n) == c.home_raw + c.range_max


def test_dynamixel_range_that_no_offset_can_unwrap_is_refused(cal_dir):
    spec = get_arm("koch")
    with ServoEmulator("dynamixel", servos_of(spec)) as emu:
        with pytest.raises(ConfigError, match=r"wrist_roll: its range of motion \(\d+ ticks\) crosses the encoder wrap"):
            sweep_and_calibrate(emu, spec, "a", cal_dir, FOLLOWER_POSE)
        assert not calibration_path("koch", "a", cal_dir).exists()
        assert all(emu.servo(i).homing_offset == 0 for i in range(1, 7))   # nothing half-written


def test_joint_that_did_not_move_is_refused_before_any_eeprom_write(cal_dir):
    spec = get_arm("so101")
    pose = {**FOLLOWER_POSE, "elbow_flex": (1000, 0, 0)}
    with ServoEmulator("feetech", servos_of(spec)) as emu:
        with pytest.raises(ConfigError, match="elbow_flex moved only 0 ticks"):
            sweep_and_calibrate(emu, spec, "a", cal_dir, pose)
        assert all(emu.servo(i).homing_offset == 0 for i in range(1, 7))


def test_leader_drives_follower_for_10s_recorded(cal_dir, tmp_path):
    """`robot-learning teleoperate --robot so101 --teleop so101-leader` for 10 s at 50 Hz with 5% of the status
    packets corrupted on both buses: the loop keeps its rate, counts the errors, the follower tracks the leader
    (in radians, through two different calibrations), and the episode lands in the store with real timestamps."""
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify

    spec_f, spec_l = get_arm("so101"), get_arm("so101-leader")
    with ServoEmulator("feetech", servos_of(spec_f), seed=1) as fol, \
            ServoEmulator("feetech", servos_of(spec_l), seed=2) as lead:
        cal_f = sweep_and_calibrate(fol, spec_f, "f1", cal_dir, FOLLOWER_POSE)
        cal_l = sweep_and_calibrate(lead, spec_l, "l1", cal_dir, LEADER_POSE)
        fol.corrupt_rate = lead.corrupt_rate = 0.05
        stop = threading.Event()
        ids = spec_l.motor_map

        def leader_rad(t):  # the operator's hand: smooth motion well inside every range, still for the last 1.5 s
            t = min(t, 8.5)
            q = 0.35 * np.sin(2 * np.pi * t / np.array([4.0, 5.0, 6.0, 4.5, 3.0])) * (t / 8.5 if t < 1 else 1)
            return q, 0.5 + 0.4 * math.sin(t)

        def operator():
            t0 = time.monotonic()
            while not stop.is_set():
                q, g = leader_rad(time.monotonic() - t0)
                goals = cal_l.goal_raw(q, g)  # reported ticks -> physical shaft (the leader's homing offsets)
                lead.set_physical({ids[n].id: (goals[n] + cal_l.homing_offsets[n]) % RES for n in NAMES})
                time.sleep(0.01)

        th = threading.Thread(target=operator, daemon=True)
        th.start()
        ds = tmp_path / "teleop_ds"
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), wakeup_probe() as late:
            rc = main(["teleoperate", "--robot", "so101", "--robot-port", fol.port, "--robot-id", "f1",
                       "--teleop", "so101-leader", "--teleop-port", lead.port, "--teleop-id", "l1",
                       "--rate-hz", "50", "--duration-s", "10", "--record", str(ds), "--task", "wave", "--json"])
        late_s = float(np.median(late))
        stop.set()
        th.join()
        assert rc == 0
        out_lines = buf.getvalue().strip().splitlines()
        s = json.loads(out_lines[-1])
        print("\nteleoperate summary:", json.dumps({k: s[k] for k in ("ticks", "missed_ticks", "period_error_ms", "bus",
                                                                     "teleop_bus", "tracking_err_rad_p95")}),
              f"host wake-up lateness p50 {1e3 * late_s:.2f} ms")
        # Rate kept: the loop stays on its grid of 500 deadlines in 10 s (a deadline is met or counted missed, the
        # count can jump past the end by the last overrun), and a met one is met on time: within 2 ms plus how late
        # this host wakes a sleeping thread right now (measured alongside). A quiet host meets ~all deadlines (>= 495
        # measured); with every core busy replies come tens of ms late and a tick that waits for one overruns
        # (65-85 % met measured): at least half of them.
        assert 500 <= s["ticks"] + s["missed_ticks"] <= 510 and s["ticks"] >= 250, s
        assert s["period_error_ms"]["p50"] < 2.0 + 1e3 * late_s, s
        # Every corrupted reply absorbed by the retries on both buses, however loaded the host: no failed read.
        buses = json.dumps({k: s[k] for k in ("bus", "teleop_bus")})
        assert s["bus"]["errors"] > 0 and s["bus"]["failures"] == 0 and s["teleop_bus"]["failures"] == 0, buses
        assert s["tracking_err_rad_p95"] < 0.08, s
        # Follower ends where the leader is (both still), in radians through their own calibrations.
        fol_reported = {n: fol.servo(spec_f.motor_map[n].id).present for n in NAMES}
        np.testing.assert_allclose(cal_f.joint_rad(fol_reported), leader_rad(10.0)[0], atol=0.01)
        store = EpisodeStore.open(ds)
        assert len(store.episodes) == 1 and verify(store) == []
        ep = store.episodes[0]
        assert ep.task == "wave"
        t = store.stream_times(ep, "robot")
        assert len(t) == s["ticks"] - 1 or len(t) == s["ticks"]     # every observed tick recorded
        dt = np.diff(t) / 1e9  # a period apart, or a few where deadlines were missed
        periods = np.maximum(1, np.round(dt / 0.02))
        assert np.all(dt > 0) and abs(np.median(dt / periods) - 0.02) < 0.002 + late_s
        assert abs(np.sum(periods) - (s["ticks"] + s["missed_ticks"])) <= 0.02 * 500
        assert np.std(dt) > 1e-6  # measured capture times, not index / fps
        ticks = store.ticks(ep)
        assert ticks["t_ns"].shape[0] == len(t)
        # The recorded state is the follower's, in the sim twin's units (end-effector pose from its model).
        names = store.schema.stream("robot").features.names
        assert {"joint_pos_rad", "joint_vel_rad_s", "gripper_pos", "ee_pos_m", "ee_quat_wxyz"} <= set(names)


def _connected_pair(cal_dir, fol, lead):
    spec_f, spec_l = get_arm("so101"), get_arm("so101-leader")
    sweep_and_calibrate(fol, spec_f, "f", cal_dir, FOLLOWER_POSE)
    sweep_and_calibrate(lead, spec_l, "l", cal_dir, LEADER_POSE)
    arm = ServoArm(spec_f, ServoArmConfig(fol.port, "f"))
    leader = LeaderArm(spec_l, ServoArmConfig(lead.port, "l", watchdog_s=None), action_features=arm.action_features)
    return arm, leader


def test_servo_that_stops_answering_stops_the_arm_within_100ms(cal_dir):
    spec_f, spec_l = get_arm("so101"), get_arm("so101-leader")
    with ServoEmulator("feetech", servos_of(spec_f)) as fol, ServoEmulator("feetech", servos_of(spec_l)) as lead:
        arm, leader = _connected_pair(cal_dir, fol, lead)
        with arm, leader:
            rt = ControlRuntime(arm, TeleopSource(leader), RuntimeConfig(rate_hz=50))
            t_gone = {}

            def vanish(tick):
                if tick.index == 50:
                    fol.disappear(spec_f.motor_map["elbow_flex"].id)
                    t_gone["t"] = time.monotonic()
                return False

            with pytest.raises(DeviceFaultError, match="elbow_flex") as err:
                rt.run(max_ticks=500, should_stop=vanish)
            t_err = time.monotonic()
            # The promise: the next tick's read, 1 + retries tries of the bus's wait (12 ms on a quiet host, longer
            # where this host has delivered replies late: stats.try_timeout_s) with <= 3 ms of settling between
            # them, then the hold. 100 ms on a quiet host; plus the wake-up lateness this run measured.
            bus, late_s = arm.bus, np.percentile(np.abs(rt.stats.loop.period_error_ns), 99) / 1e9
            budget = 0.02 + (1 + bus.retries) * (bus.stats.try_timeout_s + 0.003) + 0.02 + 5 * late_s
            print(f"\nfault detected after {1e3 * (t_err - t_gone['t']):.0f} ms (budget {1e3 * budget:.0f} ms, "
                  f"try wait {1e3 * bus.stats.try_timeout_s:.0f} ms, wake-up lateness p99 {1e3 * late_s:.1f} ms)")
            assert t_err - t_gone["t"] < budget, f"fault detected after {1e3 * (t_err - t_gone['t']):.0f} ms"
            assert "id 3" in str(err.value)
            # The safe stop: the other servos hold where they were (goal == present), torque still on.
            for n in ("shoulder_pan", "wrist_flex"):
                sv = fol.servo(spec_f.motor_map[n].id)
                assert sv.torque_enabled and abs(sv.goal - sv.present) <= 2 * 4000 * 0.02
        # Disconnect turned torque off on every servo that still answers.
        assert not any(fol.servo(spec_f.motor_map[n].id).torque_enabled for n in NAMES if n != "elbow_flex")


def test_missing_calibration_and_mismatched_offsets_are_clear_errors(cal_dir):
    spec = get_arm("so101")
    with ServoEmulator("feetech", servos_of(spec)) as emu:
        with pytest.raises(ConfigError, match="robot-learning calibrate --robot so101"):
            ServoArm(spec, ServoArmConfig(emu.port, "nope")).connect()
        sweep_and_calibrate(emu, spec, "x", cal_dir)
        with make_bus(spec, emu.port) as bus:
            bus.write_homing_offset("wrist_roll", 123)   # someone recalibrated with another tool
        with pytest.raises(ConfigError, match="wrist_roll.*homing offset 123"):
            ServoArm(spec, ServoArmConfig(emu.port, "x")).connect()
        assert not any(emu.servo(i).torque_enabled for i in range(1, 7))
        with make_bus(spec, emu.port) as bus:   # the failed connects released the port (it is locked while open)
            assert bus.ping("gripper")


def test_sigterm_turns_torque_off(cal_dir, tmp_path):
    """A process driving the arm is killed with SIGTERM: the servos end with torque off."""
    spec = get_arm("so101")
    with ServoEmulator("feetech", servos_of(spec)) as emu:
        sweep_and_calibrate(emu, spec, "s", cal_dir)
        script = textwrap.dedent(f"""
            import sys, time
            from robot_learning.hardware.arms import get_arm
            from robot_learning.hardware.servo_arm import ServoArm, ServoArmConfig
            with ServoArm(get_arm("so101"), ServoArmConfig({emu.port!r}, "s")) as arm:
                print("connected", flush=True)
                while True:
                    arm.read_state(); time.sleep(0.01)
        """)
        p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "ROBOT_LEARNING_CALIBRATION": str(cal_dir)})
        try:
            line = p.stdout.readline().strip()
            assert line == "connected", p.stderr.read() if p.poll() is not None else line
            assert all(emu.servo(i).torque_enabled for i in range(1, 7))
            p.send_signal(signal.SIGTERM)
            assert p.wait(timeout=10) == 128 + signal.SIGTERM
        finally:
            p.kill()
        assert not any(emu.servo(i).torque_enabled for i in range(1, 7))


def test_koch_pair_tracks_and_its_bus_watchdog_is_rearmed_after_a_pause(cal_dir):
    """Koch (Dynamixel) follower + leader through the runtime; a host pause longer than the servos' own bus
    watchdog stops them (their watchdog trips), and the arm re-arms it and follows again."""
    spec_f, spec_l = get_arm("koch"), get_arm("koch-leader")
    with ServoEmulator("dynamixel", servos_of(spec_f)) as fol, ServoEmulator("dynamixel", servos_of(spec_l)) as lead:
        cal_f = sweep_and_calibrate(fol, spec_f, "f", cal_dir, KOCH_POSE)
        cal_l = sweep_and_calibrate(lead, spec_l, "l", cal_dir, {**LEADER_POSE, "wrist_roll": (4000, -1000, 1000)})
        arm = ServoArm(spec_f, ServoArmConfig(fol.port, "f", watchdog_s=0.1))
        leader = LeaderArm(spec_l, ServoArmConfig(lead.port, "l", watchdog_s=None), action_features=arm.action_features)

        def put_leader(q, g=0.5):
            goals = cal_l.goal_raw(np.asarray(q), g)
            lead.set_physical({spec_l.motor_map[n].id: (goals[n] + cal_l.homing_offsets[n]) % RES for n in NAMES})

        def follower_rad():
            return cal_f.joint_rad({n: fol.servo(spec_f.motor_map[n].id).present for n in NAMES})

        with arm, leader:
            assert fol.servo(1).registers[98] == 5            # 100 ms in 20 ms units
            rt = ControlRuntime(arm, TeleopSource(leader), RuntimeConfig(rate_hz=50))
            put_leader([0.3, -0.2, 0.25, 0.1, -0.3])
            rt.run(duration_s=1.5)
            np.testing.assert_allclose(follower_rad(), [0.3, -0.2, 0.25, 0.1, -0.3], atol=0.01)
            time.sleep(0.3)                                     # the host goes quiet: the servos' watchdog trips
            assert fol.servo(1).registers[98] == 0xFF
            put_leader([-0.2, 0.2, -0.1, 0.0, 0.2])
            rt.run(duration_s=1.5)
            assert arm.watchdog_rearms >= 1
            np.testing.assert_allclose(follower_rad(), [-0.2, 0.2, -0.1, 0.0, 0.2], atol=0.01)


def test_sigterm_during_teleoperate_keeps_the_episode_and_turns_torque_off(cal_dir, tmp_path):
    from robot_learning.datasets.store import EpisodeStore

    spec_f, spec_l = get_arm("so101"), get_arm("so101-leader")
    with ServoEmulator("feetech", servos_of(spec_f)) as fol, ServoEmulator("feetech", servos_of(spec_l)) as lead:
        sweep_and_calibrate(fol, spec_f, "f", cal_dir, FOLLOWER_POSE)
        sweep_and_calibrate(lead, spec_l, "l", cal_dir, LEADER_POSE)
        ds = tmp_path / "ds"
        p = subprocess.Popen([sys.executable, "-m", "robot_learning", "teleoperate", "--robot", "so101",
                              "--robot-port", fol.port, "--robot-id", "f", "--teleop", "so101-leader",
                              "--teleop-port", lead.port, "--teleop-id", "l", "--record", str(ds), "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "ROBOT_LEARNING_CALIBRATION": str(cal_dir)})
        try:
            deadline = time.monotonic() + 60
            while not fol.servo(1).torque_enabled:
                assert time.monotonic() < deadline and p.poll() is None, p.stderr.read() if p.poll() else "timeout"
                time.sleep(0.05)
            # ~75 ticks recorded (a sync read and a sync write each), counted on the follower, not on the clock
            packets, deadline = fol.stats.packets + 150, time.monotonic() + 60
            while fol.stats.packets < packets and time.monotonic() < deadline and p.poll() is None:
                time.sleep(0.05)
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
        assert p.returncode == 128 + signal.SIGTERM, err
        assert not any(fol.servo(i).torque_enabled for i in range(1, 7))
    store = EpisodeStore.open(ds)
    assert len(store.episodes) == 1 and "signal" in store.episodes[0].operator_notes
    assert len(store.stream_times(store.episodes[0], "robot")) > 40
