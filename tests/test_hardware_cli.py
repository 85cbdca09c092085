"""The hardware commands end to end: find-ports, find-cameras, calibrate (interactive, in a subprocess, against the
servo emulator), teleoperate of a real (emulated) SO-101 with a RealSense recording and a UVC video file recorded
into the store, and teleoperate of the sim twin with a leader arm."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from robot_learning.cli.main import main
from robot_learning.hardware.arm_calibration import ArmCalibration, calibration_path
from robot_learning.hardware.arms import get_arm

from robot_learning.hardware.servo_emulator import ServoEmulator
from support.realsense_recording import COLOR_K, CH, CW, record as record_realsense
from support.servo_arms import FOLLOWER_POSE, LEADER_POSE, NAMES, RES, servos_of, sweep_and_calibrate

EXE = [sys.executable, "-m", "robot_learning"]


def run_cli(*args) -> tuple[int, str]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(args))
    return rc, buf.getvalue()


def test_find_ports_and_cameras_json(monkeypatch, tmp_path):
    """What pyserial and the sysfs tree say, as JSON: two ports (an arm's USB adapter and a UART without USB
    descriptors, listed in device order) and a DIGIT among the V4L2 nodes; OpenCV and librealsense as found here."""
    from functools import partial

    from serial.tools import list_ports
    from serial.tools.list_ports_common import ListPortInfo

    from robot_learning.hardware import tactile
    from robot_learning.hardware.camera_discovery import find_opencv_cameras, find_realsense_cameras

    usb = ListPortInfo("/dev/ttyACM0", skip_link_detection=True)
    usb.description, usb.serial_number, usb.vid, usb.pid, usb.manufacturer = (
        "USB Single Serial", "5A7C118312", 0x1A86, 0x55D3, "QinHeng Electronics")
    monkeypatch.setattr(list_ports, "comports", lambda: [ListPortInfo("/dev/ttyS0", skip_link_detection=True), usb])
    rc, out = run_cli("find-ports", "--json")
    assert rc == 0 and json.loads(out) == {"ports": [
        {"port": "/dev/ttyACM0", "description": "USB Single Serial", "serial_number": "5A7C118312",
         "vid_pid": "1a86:55d3", "manufacturer": "QinHeng Electronics"},
        {"port": "/dev/ttyS0", "description": "n/a", "serial_number": None, "vid_pid": None, "manufacturer": None}]}

    sys_root, by_id = tmp_path / "video4linux", tmp_path / "by-id"
    for node, name, index in [("video0", "Integrated Camera", 0), ("video2", "DIGIT: DIGIT", 0),
                              ("video3", "DIGIT: DIGIT", 1)]:
        (sys_root / node).mkdir(parents=True)
        (sys_root / node / "name").write_text(name + "\n")
        (sys_root / node / "index").write_text(f"{index}\n")
    by_id.mkdir()
    os.symlink("../../video2", by_id / "usb-Facebook_DIGIT_D20001-video-index0")
    monkeypatch.setattr(tactile, "discover_tactile_sensors",
                        partial(tactile.discover_tactile_sensors, sys_root, by_id))
    rc, out = run_cli("find-cameras", "--json")
    assert rc == 0 and json.loads(out) == {
        "opencv": json.loads(json.dumps(find_opencv_cameras())),
        "realsense": json.loads(json.dumps(find_realsense_cameras())),
        "tactile": [{"model": "digit", "uvc_name": "DIGIT: DIGIT", "device": "/dev/video2", "index": 2,
                     "by_id": str(by_id / "usb-Facebook_DIGIT_D20001-video-index0"), "serial": "D20001"}]}


def test_calibrate_command_interactive(cal_dir):
    """The operator presses Enter at the zero pose, sweeps every joint, presses Enter: the file holds the ranges,
    including those across the encoder wrap."""
    spec = get_arm("so101")
    ids = spec.motor_map
    with ServoEmulator("feetech", servos_of(spec)) as emu:
        for n, (home, _, _) in FOLLOWER_POSE.items():
            emu.servo(ids[n].id).set_physical(home)
        p = subprocess.Popen([*EXE, "calibrate", "--robot", "so101", "--port", emu.port, "--id", "cli"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "ROBOT_LEARNING_CALIBRATION": str(cal_dir)})
        try:
            deadline = time.monotonic() + 60
            while emu.servo(1).homing_offset != 0 or emu.servo(1).torque_enabled:
                assert time.monotonic() < deadline, "calibrate never reset the offsets"
                time.sleep(0.05)
            time.sleep(0.3)
            err_lines: list[str] = []
            reader = threading.Thread(target=lambda: err_lines.extend(iter(p.stderr.readline, "")), daemon=True)
            reader.start()
            p.stdin.write("\n")      # zero pose
            p.stdin.flush()
            # sweep once calibrate asks for it (a loaded machine takes a while to get there)
            while not any("move every joint" in ln for ln in err_lines):
                assert time.monotonic() < deadline, "calibrate never asked for the sweep"
                time.sleep(0.05)
            time.sleep(0.3)
            for n, (home, lo, hi) in FOLLOWER_POSE.items():
                for rel in (*np.linspace(0, lo, 10), *np.linspace(lo, hi, 20), *np.linspace(hi, 0, 10)):
                    emu.servo(ids[n].id).set_physical(int(round(home + rel)) % RES)
                    time.sleep(0.01)
            time.sleep(0.1)
            p.stdin.write("\n")
            p.stdin.close()
            out = p.stdout.read()
            p.wait(timeout=60)
            reader.join(timeout=10)
            err = "".join(err_lines)
        finally:
            p.kill()
        assert p.returncode == 0, err
        path = json.loads(out.strip().splitlines()[-1])["calibration"]
        cal = ArmCalibration.load(calibration_path("so101", "cli", cal_dir))
        assert str(calibration_path("so101", "cli", cal_dir)) == path
        for n, (_, lo, hi) in FOLLOWER_POSE.items():
            assert abs(cal.joints[n].range_min - lo) <= 3 and abs(cal.joints[n].range_max - hi) <= 3, n
        assert "shoulder_pan" in err and "range" in err


def _video(path, frames=90, fps=30.0, size=(64, 48)):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        img = np.full((size[1], size[0], 3), (i * 2) % 256, np.uint8)
        w.write(img)
    w.release()
    return path


def test_teleoperate_real_arm_records_realsense_and_uvc(cal_dir, tmp_path):
    from robot_learning.datasets.store import EpisodeStore

    rs_file = tmp_path / "d435.db3"
    record_realsense(rs_file, n=45)                       # 1.5 s of colour + depth
    video = _video(tmp_path / "uvc.avi")
    spec_f, spec_l = get_arm("so101"), get_arm("so101-leader")
    with ServoEmulator("feetech", servos_of(spec_f)) as fol, ServoEmulator("feetech", servos_of(spec_l)) as lead:
        sweep_and_calibrate(fol, spec_f, "f", cal_dir, FOLLOWER_POSE)
        sweep_and_calibrate(lead, spec_l, "l", cal_dir, LEADER_POSE)
        ds = tmp_path / "ds"
        rc, out = run_cli("teleoperate", "--robot", "so101", "--robot-port", fol.port, "--robot-id", "f",
                          "--teleop", "so101-leader", "--teleop-port", lead.port, "--teleop-id", "l",
                          "--cameras", f"realsense:{rs_file}", f"opencv:{video}", "--duration-s", "1.0",
                          "--record", str(ds), "--json")
    assert rc == 0
    s = json.loads(out.strip().splitlines()[-1])
    assert 40 <= s["ticks"] <= 51 and s["episode"] == 0          # 1 s at 50 Hz (a loaded CI machine misses a few)
    store = EpisodeStore.open(ds)
    ep = store.episodes[0]
    streams = {st.name: st for st in store.schema.streams}
    assert {"robot", "rs_playback", "opencv_uvc_avi"} <= set(streams)
    rs_feats = streams["rs_playback"].features
    assert rs_feats["rs_playback_rgb"].shape == (CH, CW, 3)
    assert rs_feats["rs_playback_depth"].shape == (CH, CW)            # aligned to colour
    meta = store.schema.robot["cameras"]["rs_playback"]
    assert meta["intrinsics"]["fx"] == pytest.approx(COLOR_K["fx"], rel=1e-6) and meta["aligned"]
    assert store.schema.robot["cameras"]["opencv_uvc_avi"]["timestamp_source"] == "file_pts"
    for name in ("rs_playback", "opencv_uvc_avi"):
        t = store.stream_times(ep, name)
        assert len(t) >= 20, name
        dt = np.diff(t) / 1e9
        assert np.all(dt > 0) and abs(np.median(dt) - 1 / 30) < 0.004, name
    a, b = ep.streams["rs_playback"]
    depth = store.read("rs_playback", "rs_playback_depth", slice(a, b))
    assert np.all((depth > 0.99) & (depth < 1.5))                  # metres, as recorded


def test_teleoperate_sim_twin_with_leader_arm(cal_dir):
    """`--robot sim:so101`: the same leader arm drives the MuJoCo twin; joint names and units are shared."""
    spec_l = get_arm("so101-leader")
    with ServoEmulator("feetech", servos_of(spec_l)) as lead:
        cal = sweep_and_calibrate(lead, spec_l, "l", cal_dir, LEADER_POSE)
        target = np.array([0.3, -0.4, 0.5, 0.2, -0.3])
        goals = cal.goal_raw(target, 0.2)
        for n in NAMES:
            lead.servo(spec_l.motor_map[n].id).set_physical((goals[n] + cal.homing_offsets[n]) % RES)
        rc, out = run_cli("teleoperate", "--robot", "sim:so101", "--teleop", "so101-leader", "--teleop-port",
                          lead.port, "--teleop-id", "l", "--duration-s", "2.5", "--json")
    assert rc == 0
    s = json.loads(out.strip().splitlines()[-1])
    assert s["ticks"] >= 20 and s["holds"] < 5          # the twin runs at its task's rate (lift: 10 Hz)
    # The twin converged on the leader's pose (same joint names, signs and units), within its velocity cap.
    np.testing.assert_allclose(s["final_joint_pos_rad"], target, atol=0.03)


def test_gamepad_drives_the_real_arm_end_effector_through_the_twins_model(cal_dir):
    """End-effector teleop of a real (emulated) SO-101: the gamepad's deltas go through the Cartesian stage over
    the sim twin's MJCF, the joint filter, then the servos; the tool moves away from the base."""
    import pygame

    from robot_learning.hardware.servo_arm import _Kinematics

    from support.virtual_pad import VirtualPad

    spec = get_arm("so101")
    kin = _Kinematics("so101")
    pad = VirtualPad()
    try:
        with ServoEmulator("feetech", servos_of(spec)) as fol:
            sweep_and_calibrate(fol, spec, "f", cal_dir, FOLLOWER_POSE)   # ends in the zero pose
            x0 = kin.pose(np.zeros(5))[0]
            pad.axis(1, -1.0)                                            # left stick up: away from the base
            rc, out = run_cli("teleoperate", "--robot", "so101", "--robot-port", fol.port, "--robot-id", "f",
                              "--teleop", "gamepad", "--duration-s", "1.0", "--json")
    finally:
        pad.detach()
        pygame.quit()
    assert rc == 0
    s = json.loads(out.strip().splitlines()[-1])
    x1 = kin.pose(np.asarray(s["final_joint_pos_rad"]))[0]
    assert x1[0] - x0[0] > 0.05 and abs(x1[1] - x0[1]) < 0.01 and abs(x1[2] - x0[2]) < 0.03, (x0, x1)
