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

from servo_emulator import ServoEmulator
from sim_recordings import record_lift
from test_servo_arms import FOLLOWER_POSE, LEADER_POSE, NAMES, RES, servos_of, sweep_and_calibrate


@pytest.fixture
def cal_dir(tmp_path, monkeypatch):
    d = tmp_path / "calibration"
    monkeypatch.setenv("ROBOT_LEARNING_CALIBRATION", str(d))
    return d


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
            for n in NAMES:
                lead.servo(spec_l.motor_map[n].id).set_physical((goals[n] + cal_l.homing_offsets[n]) % RES)

        def operator():  # rests while the policy drives for 1.5 s, then moves the leader to the target and keeps a
            deadline = time.monotonic() + 120     # hand on it (small motion)
            while not fol.servo(1).torque_enabled:    # the deploy loop starts once the follower has torque
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(1.5)
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
