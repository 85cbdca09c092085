"""Two emulated SO-101 arms' physical poses (a follower and a leader) and the real calibration procedure run
against a servo emulator with a thread playing the operator."""

from __future__ import annotations

import threading
import time

import numpy as np

from robot_learning.hardware.arm_calibration import calibration_path, record_calibration
from robot_learning.hardware.arms import GRIPPER, JOINTS, make_bus

RES = 4096
NAMES = JOINTS + (GRIPPER,)
# Physical zero pose and range of each joint, in raw shaft ticks. shoulder_pan's range crosses 4095 -> 0 and
# wrist_roll's crosses 0 -> 4095 going down: a plain min/max would call both almost a full turn.
FOLLOWER_POSE = {"shoulder_pan": (3900, -700, 700), "shoulder_lift": (2048, -900, 900),
                 "elbow_flex": (1000, -800, 800), "wrist_flex": (2100, -800, 800),
                 "wrist_roll": (150, -1500, 1500), "gripper": (2000, 0, 1400)}
LEADER_POSE = {"shoulder_pan": (300, -700, 700), "shoulder_lift": (3000, -900, 900),
               "elbow_flex": (3950, -800, 800), "wrist_flex": (1500, -800, 800),
               "wrist_roll": (4000, -1500, 1500), "gripper": (100, -1400, 0)}


def servos_of(spec) -> dict[int, str]:
    return {m.id: m.model for _, m in spec.motors}


def sweep_and_calibrate(emu, spec, arm_id: str, cal_dir, pose=FOLLOWER_POSE, rate_hz=200.0):
    """The real calibration procedure on the servo emulator ``emu``, with a thread playing the operator: zero pose,
    then each joint to both ends of its range and back, in small steps (as a hand moves it)."""
    ids = {n: m.id for n, m in spec.motors}
    for n, (home, _, _) in pose.items():
        emu.servo(ids[n]).set_physical(home)
    done = threading.Event()

    def operator():
        time.sleep(0.05)  # the procedure reads the zero pose first
        for n, (home, lo, hi) in pose.items():
            for target in (lo, hi, 0):
                cur = emu.servo(ids[n]).present_raw
                rel = ((cur - home + RES // 2) % RES) - RES // 2
                for r in np.linspace(rel, target, 12)[1:]:
                    emu.servo(ids[n]).set_physical(int(round(home + r)) % RES)
                    time.sleep(0.006)
                time.sleep(0.03)  # rest at each end, as a hand does: the sampler sees it
        time.sleep(0.03)
        done.set()

    with make_bus(spec, emu.port) as bus:
        cal = record_calibration(bus, spec, arm_id, rate_hz=rate_hz, sweep_done=done.is_set,
                                 wait_for_zero_pose=lambda: threading.Thread(target=operator, daemon=True).start())
    cal.save(calibration_path(spec.kind, arm_id, cal_dir))
    return cal
