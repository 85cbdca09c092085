"""Two emulated SO-101 arms' physical poses (a follower and a leader) and the real calibration procedure run
against a servo emulator with a thread playing the operator."""

from __future__ import annotations

import threading

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


def sweep_and_calibrate(emu, spec, arm_id: str, cal_dir, pose=FOLLOWER_POSE, rate_hz=400.0):
    """The real calibration procedure on the servo emulator ``emu``, with a thread playing the operator: zero pose,
    then each joint to both ends of its range and back, in small steps (as a hand moves it). The hand keeps pace
    with the procedure's readings (``on_sample``), not with the clock: every step is read at least once and each
    end a few times, however late a loaded host runs either thread. The thread is joined before returning."""
    ids = {n: m.id for n, m in spec.motors}
    emu.set_physical({ids[n]: home for n, (home, _, _) in pose.items()})
    done, stop, samples, threads = threading.Event(), threading.Event(), threading.Condition(), []
    count = [0]

    def on_sample(raw):
        with samples:
            count[0] += 1
            samples.notify_all()

    def read(times):  # until the procedure has read the arm `times` more times (the first may be under way)
        with samples:
            target = count[0] + times
            samples.wait_for(lambda: count[0] >= target or stop.is_set(), timeout=60)
            return not stop.is_set()

    def operator():
        if not read(2):  # the zero pose is read before the sweep starts
            return
        for n, (home, lo, hi) in pose.items():
            for target in (lo, hi, 0):
                cur = emu.servo(ids[n]).present_raw
                rel = ((cur - home + RES // 2) % RES) - RES // 2
                for r in np.linspace(rel, target, 7)[1:]:   # <= 500 ticks a step: the sweep unwraps
                    emu.servo(ids[n]).set_physical(int(round(home + r)) % RES)
                    if not read(2):
                        return
                if not read(3):  # rest at each end, as a hand does: the sampler sees it
                    return
        done.set()

    def start_operator():
        threads.append(threading.Thread(target=operator, daemon=True))
        threads[-1].start()

    try:
        with make_bus(spec, emu.port) as bus:
            cal = record_calibration(bus, spec, arm_id, rate_hz=rate_hz, sweep_done=done.is_set, on_sample=on_sample,
                                     wait_for_zero_pose=start_operator)
    finally:  # a refused calibration ends before the sweep does: stop the hand before the emulator goes
        stop.set()
        with samples:
            samples.notify_all()
        for th in threads:
            th.join()
    cal.save(calibration_path(spec.kind, arm_id, cal_dir))
    return cal
