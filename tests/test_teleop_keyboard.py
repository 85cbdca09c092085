"""Keyboard teleop through a real pseudo-terminal: unit behaviour, and `record --teleop keyboard`
driven by keys typed into the terminal (move, re-record, next, stop)."""

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robot_learning.core import FakeClock
from robot_learning.datasets.store import EpisodeStore
from robot_learning.datasets.verify import verify
from robot_learning.errors import DeviceFaultError
from robot_learning.hardware import EpisodeEvent
from robot_learning.hardware.teleop_keyboard import KeyboardTeleop

EXE = str(Path(sys.executable).with_name("robot-learning"))


def test_keys_become_deltas_events_and_takeover():
    master, slave = pty.openpty()
    try:
        with KeyboardTeleop(step_m=0.01, fd=slave, clock=FakeClock()) as kb:
            os.write(master, b"wwdrq tn")
            deadline = time.time() + 30
            while kb.keys_read < 8 and time.time() < deadline:
                time.sleep(0.01)
            a = kb.get_action().value
            np.testing.assert_allclose(a["ee_dpos_m"], [0.02, -0.01, 0.01], atol=1e-7)
            assert a["ee_drot_rad"][2] == pytest.approx(0.08, abs=1e-6) and a["gripper_pos"][0] == 1.0
            assert kb.intervention and kb.poll_events() == [EpisodeEvent.NEXT]
            b = kb.get_action().value  # motion is consumed once
            assert not b["ee_dpos_m"].any() and b["gripper_pos"][0] == 1.0
    finally:
        os.close(master)
        os.close(slave)


def test_needs_a_terminal():
    r, w = os.pipe()
    try:
        with pytest.raises(DeviceFaultError, match="terminal"):
            KeyboardTeleop(fd=r).connect()
    finally:
        os.close(r)
        os.close(w)


def test_record_with_keyboard_in_a_terminal(tmp_path):
    """The keys are typed when the recorder is ready for them (it says so: the dataset appears once the keyboard
    is connected; a status line ends each episode), not after a fixed start-up time: a busy host only makes it
    slower."""
    import threading

    d = tmp_path / "kb.zarr"
    master, slave = pty.openpty()
    env = {**os.environ, "MUJOCO_GL": "egl"}
    proc = subprocess.Popen([EXE, "record", "--dataset", str(d), "--robot", "sim:lift", "--teleop", "keyboard",
                             "--episodes", "3", "--image-size", "32", "--cameras", "front", "--no-tactile"],
                            stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    os.close(slave)
    err_chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: err_chunks.extend(iter(lambda: proc.stderr.read1(4096), b"")),
                              daemon=True)
    reader.start()

    def wait_until(ready, what, timeout_s=120.0):
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert proc.poll() is None, f"record exited while waiting for {what}: {b''.join(err_chunks)[-2000:]!r}"
            assert time.monotonic() < deadline, f"no {what} after {timeout_s:.0f} s"
            time.sleep(0.05)

    def said(text):
        return lambda: text.encode() in b"".join(err_chunks)

    def type_keys(keys, pause=0.15):
        for k in keys:
            os.write(master, k.encode())
            time.sleep(pause)

    try:
        wait_until(d.exists, "dataset (the keyboard is connected before the dataset is created)")
        time.sleep(0.5)              # the first episode starts (reset, runtime)
        type_keys("dddd")            # episode 1: move -y ...
        type_keys("x")               # ... then discard it and record it again
        wait_until(said("discarded: re-record"), "end of the discarded take")
        type_keys("rrrr")            # episode 1 again: move up
        time.sleep(1.0)              # ~10 ticks record the motion
        type_keys("n")               # keep it, next
        wait_until(said("seed 0  kept"), "end of episode 1")
        type_keys("ss")              # episode 2: move toward the base
        time.sleep(1.0)
        type_keys("c")               # keep it and stop
        proc.wait(timeout=120)
        reader.join(timeout=10)
        out, err = proc.stdout.read(), b"".join(err_chunks)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["episodes"] == 2  # the re-recorded take was discarded; stopped after two
    store = EpisodeStore.open(d)
    assert verify(store) == []
    assert [e.seed for e in store.episodes] == [0, 1]  # the re-recorded episode kept its seed
    first = store.read("robot", "ee_pos_m", slice(*store.episodes[0].streams["robot"]))
    second = store.read("robot", "ee_pos_m", slice(*store.episodes[1].streams["robot"]))
    assert first[-1, 2] - first[0, 2] > 0.02       # "rrrr": the tool went up
    assert second[-1, 0] - second[0, 0] < -0.01    # "ss": toward the base
