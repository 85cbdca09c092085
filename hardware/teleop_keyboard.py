"""Keyboard teleop in a plain terminal (no X server, no root): end-effector deltas.

The terminal is put in cbreak mode while connected (restored on disconnect, also after errors);
a reader thread turns key presses into motion. Each ``get_action`` returns the motion accumulated
since the previous call, as a delta command for the runtime's Cartesian stage (workspace box,
IK, joint safety filter).

    w / s   +x / -x  (away from / toward the robot base)
    a / d   +y / -y
    r / f   up / down
    q / e   turn the tool left / right
    space   close / open the gripper
    t       take over from a policy / hand back (intervention flag)
    n       finish this episode and start the next       (episode event NEXT)
    x       discard this episode and record it again     (RERECORD)
    c       finish this episode and stop                 (STOP)
"""

from __future__ import annotations

import os
import select
import sys
import threading

import numpy as np

from robot_learning.core.ee_features import DELTA
from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.errors import DeviceFaultError
from robot_learning.hardware.teleop import EpisodeEvent, Teleop

HELP = ("keys: w/s x, a/d y, r/f z, q/e turn, space gripper, t takeover, n next episode, x re-record, "
        "c stop")

_MOVES = {"w": (0, +1), "s": (0, -1), "a": (1, +1), "d": (1, -1), "r": (2, +1), "f": (2, -1)}
_TURNS = {"q": +1, "e": -1}
_EVENTS = {"n": EpisodeEvent.NEXT, "x": EpisodeEvent.RERECORD, "c": EpisodeEvent.STOP}


class KeyboardTeleop(Teleop):
    def __init__(self, step_m: float = 0.01, turn_rad: float = 0.08, fd: int | None = None, clock=None,
                 name: str = "keyboard"):
        super().__init__(name, clock)
        self.step_m, self.turn_rad = step_m, turn_rad
        self._fd = fd
        self._lock = threading.Lock()
        self._dpos = np.zeros(3)
        self._drot = np.zeros(3)
        self._gripper = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_attrs = None
        self.keys_read = 0

    @property
    def action_features(self) -> FeatureSet:
        return DELTA

    def _connect(self) -> None:
        fd = self._fd if self._fd is not None else sys.stdin.fileno()
        if not os.isatty(fd):
            raise DeviceFaultError(self.name, "keyboard teleop needs a terminal on standard input")
        import termios
        import tty

        self._fd = fd
        self._saved_attrs = termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self._stop.clear()
        self._thread = threading.Thread(target=self._read_keys, name="keyboard-teleop", daemon=True)
        self._thread.start()

    def _disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._saved_attrs is not None:
            import termios

            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved_attrs)
            self._saved_attrs = None

    def _read_keys(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.05)
            if not ready:
                continue
            data = os.read(self._fd, 64)
            if not data:
                return
            for key in data.decode(errors="ignore").lower():
                self.handle_key(key)

    def handle_key(self, key: str) -> None:
        """Apply one key press (the reader thread calls this; tests may too)."""
        self.keys_read += 1
        with self._lock:
            if key in _MOVES:
                axis, sign = _MOVES[key]
                self._dpos[axis] += sign * self.step_m
            elif key in _TURNS:
                self._drot[2] += _TURNS[key] * self.turn_rad
            elif key == " ":
                self._gripper = 1.0 - self._gripper
            elif key == "t":
                self.set_intervention(not self.intervention)
        if key in _EVENTS:
            self.post_event(_EVENTS[key])

    def _get_action(self, observation: Observation | None) -> Stamped[Action]:
        with self._lock:
            dpos, drot, grip = self._dpos, self._drot, self._gripper
            self._dpos, self._drot = np.zeros(3), np.zeros(3)
        t = self.clock.now_ns()
        action = Action({"ee_dpos_m": dpos.astype(np.float32), "ee_drot_rad": drot.astype(np.float32),
                         "gripper_pos": np.array([grip], dtype=np.float32)})
        return Stamped(action, t, t)
