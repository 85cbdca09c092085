"""`robot-learning deploy` on a real (emulated) SO-101: a policy trained on the twin's data drives the arm through
the queue mode, a leader arm takes over while it is moved, and the recording marks those ticks."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time

import numpy as np
import pytest

from robot_learning.cli.main import main
from robot_learning.hardware.arms import get_arm

from robot_learning.hardware.servo_emulator import ServoEmulator
from support.servo_arms import FOLLOWER_POSE, LEADER_POSE, NAMES, RES, servos_of, sweep_and_calibrate
from support.sim_recordings import record_lift


def test_leader_arm_takes_over_a_deployed_policy_and_the_recording_marks_it(cal_dir, tmp_path):
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify

    ds = tmp_path / "so101_lift.zarr"
    record_lift(ds, seeds=(0, 1), robot="so101", cameras=(), tactile=False)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(ds), "--out", str(run), "--obs", "proprio", "--batch-size", "8",
                 "--steps", "2", "--eval-episodes", "0", "--no-progress"]) == 0
    spec_f, spec_l = get_arm("so101"), get_arm("so101-leader")
    with ServoEmulator("feetech", servos_of(spec_f)) as fol, ServoEmulator("feetech", servos_of(spec_l)) as lead:
        sweep_and_calibrate(fol, spec_f, "f", cal_dir, FOLLOWER_POSE)
        cal_l = sweep_and_calibrate(lead, spec_l, "l", cal_dir, LEADER_POSE)
        target = np.array([0.4, -0.3, 0.3, 0.2, 0.0])

        stop = threading.Event()

        def put(q):
            goals = cal_l.goal_raw(q, 0.5)
            lead.set_physical({spec_l.motor_map[n].id: (goals[n] + cal_l.homing_offsets[n]) % RES for n in NAMES})

        def operator():  # rests while the policy drives for 1.5 s, then moves the leader to the target and keeps a
            deadline = time.monotonic() + 120     # hand on it (small motion)
            while not fol.servo(1).torque_enabled:    # the deploy loop starts once the follower has torque
                assert time.monotonic() < deadline
                time.sleep(0.01)
            packets = fol.stats.packets + 24          # the policy drives >= 12 ticks (a sync read + write each)
            while fol.stats.packets < packets and time.monotonic() < deadline:
                time.sleep(0.01)
            for a in np.linspace(0, 1, 30):
                put(a * target)
                time.sleep(0.01)
            t0 = time.monotonic()
            while not stop.is_set():
                put(target + 0.03 * np.sin(2 * np.pi * (time.monotonic() - t0)))
                time.sleep(0.01)

        th = threading.Thread(target=operator, daemon=True)
        th.start()
        rec = tmp_path / "deploy.zarr"
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(["deploy", "--policy", str(run), "--robot", "so101", "--robot-port", fol.port, "--robot-id", "f",
                       "--teleop", "so101-leader", "--teleop-port", lead.port, "--teleop-id", "l", "--rate-hz", "10",
                       "--duration-s", "3.5", "--record", str(rec), "--json"])
        stop.set()
        th.join()
    assert rc == 0
    s = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert s["mode"] == "queue" and s["takeovers"] == 1 and 5 <= s["intervention_ticks"] < s["ticks"]
    np.testing.assert_allclose(s["final_joint_pos_rad"], target, atol=0.06)   # the human's pose at the end
    store = EpisodeStore.open(rec)
    assert verify(store) == [] and len(store.episodes) == 1
    mask = store.ticks(store.episodes[0])["intervention"]
    assert not mask[:10].any() and mask[-5:].all()          # the policy first, then the human to the end
    assert store.episodes[0].intervention_ticks == int(mask.sum()) == s["intervention_ticks"]


def test_gamepad_takes_over_a_deployed_policy_through_the_cartesian_stage(cal_dir, tmp_path):
    """An end-effector device takes over a joint-space policy: while the left bumper is held, the stick's tool deltas
    go through the twin's Cartesian controller from the pose the policy left; the recording holds joint actions and
    marks those ticks."""
    import pygame

    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify
    from robot_learning.hardware.servo_arm import _Kinematics

    from support.virtual_pad import VirtualPad

    ds = tmp_path / "so101_lift.zarr"
    record_lift(ds, seeds=(0, 1), robot="so101", cameras=(), tactile=False)
    run = tmp_path / "run"
    assert main(["train", "--dataset", str(ds), "--out", str(run), "--obs", "proprio", "--batch-size", "8",
                 "--steps", "2", "--eval-episodes", "0", "--no-progress"]) == 0
    spec = get_arm("so101")
    pad = VirtualPad()
    stop = threading.Event()
    try:
        with ServoEmulator("feetech", servos_of(spec)) as fol:
            sweep_and_calibrate(fol, spec, "f", cal_dir, FOLLOWER_POSE)

            def operator():   # the policy drives ~1.5 s, then the bumper is held with the left stick up
                deadline = time.monotonic() + 120
                while not fol.servo(1).torque_enabled:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                packets = fol.stats.packets + 24      # >= 12 ticks (a sync read + write each), counted on the arm
                while fol.stats.packets < packets and time.monotonic() < deadline:
                    if stop.wait(0.01):
                        return
                pad.axis(1, -1.0)
                pad.button(9, 1)

            th = threading.Thread(target=operator, daemon=True)
            th.start()
            rec = tmp_path / "deploy.zarr"
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                rc = main(["deploy", "--policy", str(run), "--robot", "so101", "--robot-port", fol.port,
                           "--robot-id", "f", "--teleop", "gamepad", "--rate-hz", "10", "--duration-s", "3.5",
                           "--record", str(rec), "--json"])
            stop.set()
            th.join()
    finally:
        pad.detach()
        pygame.quit()
    assert rc == 0
    s = json.loads(buf.getvalue().strip().splitlines()[-1])
    assert s["takeovers"] == 1 and 5 <= s["intervention_ticks"] < s["ticks"]
    store = EpisodeStore.open(rec)
    assert verify(store) == []
    ep = store.episodes[0]
    ticks = store.ticks(ep)
    mask = ticks["intervention"]
    assert not mask[:10].any() and mask[-5:].all()
    q = np.asarray(ticks["action.joint_pos_rad"])             # the executed joint commands
    kin = _Kinematics("so101")
    first = int(np.argmax(mask))
    x0, x1 = kin.pose(q[first])[0], kin.pose(q[-1])[0]
    # the tool went away from the base, sideways by at most 2 cm or a fifth of the way forward (a loaded host runs
    # more takeover ticks in the same seconds, so the tool goes further: 13 cm forward, 2.1 cm sideways seen)
    forward, sideways = x1[0] - x0[0], abs(x1[1] - x0[1])
    assert forward > 0.03 and sideways < max(0.02, 0.2 * forward), (x0, x1)
