"""SpaceMouse teleop from recorded HID report streams: the reports a SpaceMouse Compact (axes in
reports 1 + 2) or Wireless (all six axes in report 1) sends, buttons in report 3, written as a hex
JSON fixture and replayed through the real reader thread and pyspacemouse's parsing. Plus the
missing-device error through the real pyspacemouse / easyhid enumeration (no device here).

The expected motion comes from an independent model: the HID axis meanings (x right, y toward the
operator, z down, rotations right-handed about them) turned into the robot frame by hand.
"""

import json
import subprocess
import sys
import threading
import time
from collections import deque

import numpy as np
import pytest

from robot_learning.core import FakeClock
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware import EpisodeEvent
from robot_learning.hardware.teleop_spacemouse import (
    SpaceMouseConfig,
    SpaceMouseTeleop,
)

VID = 0x256F
COMPACT, WIRELESS, USB_NO_BUTTONS = 0xC635, 0xC62E, 0xC641
FULL = 350                       # raw counts at full deflection (pyspacemouse's axis_scale)
SPEED, TURN, DZ = 0.15, 1.0, 0.1  # the default config
MS = 1_000_000


# ---- recording: HID reports as the device sends them -------------------------------------------

def _i16(v: int) -> bytes:
    return int(v).to_bytes(2, "little", signed=True)


def motion_reports(product: int, hid6) -> list[bytes]:
    """Reports for HID axes (tx right, ty toward the operator, tz down, rx, ry, rz) in raw counts."""
    tx, ty, tz, rx, ry, rz = hid6
    if product == COMPACT:  # translation and rotation in two reports
        return [bytes([1]) + _i16(tx) + _i16(ty) + _i16(tz), bytes([2]) + _i16(rx) + _i16(ry) + _i16(rz)]
    return [bytes([1]) + b"".join(_i16(v) for v in hid6)]  # Wireless: one 13-byte report


def button_report(left: bool, right: bool) -> bytes:
    return bytes([3, int(left) | int(right) << 1])


def record(product: int, states, buttons, period_ms: int = 8):
    """A report stream [(t_ns, bytes)]: ``states`` [(t_ms, hid6)] held until the next entry (sent
    every ``period_ms`` while deflected, once at rest); ``buttons`` [(t_ms, left, right)]."""
    out = []
    for i, (t_ms, hid6) in enumerate(states):
        end = states[i + 1][0] if i + 1 < len(states) else t_ms + 1
        times = range(t_ms, end, period_ms) if any(hid6) else [t_ms]
        out += [(t * MS, r) for t in times for r in motion_reports(product, hid6)]
    out += [(t * MS, button_report(left, right)) for t, left, right in buttons]
    return sorted(out, key=lambda e: e[0])  # stable: a motion report before a button report at the same time


def save_and_load(tmp_path, name, stream):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps([{"t_ns": t, "hex": r.hex()} for t, r in stream]))
    return [(e["t_ns"], bytes.fromhex(e["hex"])) for e in json.loads(path.read_text())]


# ---- replay: the easyhid device interface, fed by the test -------------------------------------

class ReplayHid:
    """``read(size, timeout)`` / ``close()`` like easyhid's HIDDevice, returning pushed reports."""

    def __init__(self, product: int):
        self.vendor_id, self.product_id = VID, product
        self._cv = threading.Condition()
        self._queue: deque[bytes] = deque()
        self._unplugged = False
        self.closed = False

    def push(self, report: bytes) -> None:
        with self._cv:
            self._queue.append(report)
            self._cv.notify_all()

    def unplug(self) -> None:
        with self._cv:
            self._unplugged = True
            self._cv.notify_all()

    def read(self, size=64, timeout=None):
        with self._cv:
            self._cv.wait_for(lambda: self._queue or self._unplugged, None if timeout is None else timeout / 1e3)
            if self._unplugged:
                from easyhid import HIDException

                raise HIDException("Failed to read from HID device: -1")  # what easyhid says on unplug
            return bytearray(self._queue.popleft()[:size]) if self._queue else bytearray()

    def close(self) -> None:
        self.closed = True


class Player:
    """Delivers each recorded report at its own time on the fake clock, one at a time."""

    def __init__(self, tp: SpaceMouseTeleop, hid: ReplayHid, clock: FakeClock, stream):
        self.tp, self.hid, self.clock, self.pending = tp, hid, clock, deque(stream)

    def until(self, t_ns: int) -> None:
        while self.pending and self.pending[0][0] <= t_ns:
            t, report = self.pending.popleft()
            self.clock.set(max(t, self.clock.now_ns()))
            n = self.tp.reports_read
            self.hid.push(report)
            deadline = time.monotonic() + 2.0
            while self.tp.reports_read == n:
                assert time.monotonic() < deadline, "the reader never parsed the report"
                time.sleep(1e-5)
        self.clock.set(max(t_ns, self.clock.now_ns()))


# ---- the independent model ---------------------------------------------------------------------

def robot_velocity(hid6) -> np.ndarray:
    """HID axes -> robot-frame velocity (operator behind the base, looking along +x)."""
    tx, ty, tz, rx, ry, rz = np.asarray(hid6, dtype=float) / FULL
    a = np.clip([-ty, -tx, -tz, -ry, -rx, -rz], -1, 1)  # away=+x, left=+y, up=+z; rotations likewise
    ramp = np.sign(a) * np.clip((np.abs(a) - DZ) / (1 - DZ), 0, 1)
    lin, ang = ramp[:3] * SPEED, ramp[3:] * TURN
    lin *= min(1.0, SPEED / max(np.linalg.norm(lin), 1e-12))
    ang *= min(1.0, TURN / max(np.linalg.norm(ang), 1e-12))
    return np.concatenate([lin, ang])


def expected_motion(states, t0_ms: float, t1_ms: float) -> np.ndarray:
    """Integral of the robot velocity over [t0, t1] for piecewise-constant ``states``."""
    total = np.zeros(6)
    for i, (t_ms, hid6) in enumerate(states):
        end = states[i + 1][0] if i + 1 < len(states) else np.inf
        a, b = max(t_ms, t0_ms), min(end, t1_ms)
        if b > a:
            total += robot_velocity(hid6) * (b - a) / 1e3
    return total


# ---- tests -------------------------------------------------------------------------------------

AWAY, RIGHT, DOWN = (0, -FULL, 0, 0, 0, 0), (FULL, 0, 0, 0, 0, 0), (0, 0, FULL, 0, 0, 0)
COMPACT_STATES = [
    (0, (0, 0, 0, 0, 0, 0)),
    (100, (20, -FULL, 0, 0, 0, 0)),        # push away (the x noise is inside the dead zone)
    (600, (0, 0, 0, 0, 0, 0)),             # let go
    (700, (-175, 0, -175, 0, 0, 0)),       # half left and half up
    (1000, (FULL, -FULL, -FULL, 0, 0, 0)),  # diagonal push: capped at max_speed_m_s
    (1300, (0, 0, 0, 0, 0, -FULL)),        # twist counter-clockwise seen from above: +yaw
    (1600, (0, 0, 30, 25, -30, 0)),        # sensor noise inside the dead zone
    (2600, (0, 0, 250, 0, 0, 0)),          # push down while taking over
    (2900, (0, 0, 0, 0, 0, 0)),
]
COMPACT_BUTTONS = [
    (2000, True, False), (2150, False, False),                        # click: gripper closes
    (2500, False, True), (3000, False, False),                        # right held: takeover
    (3200, True, False), (4500, False, False),                        # hold 1 s: NEXT at 4.2 s
    (5000, True, False), (5100, False, False), (5250, True, False), (5350, False, False),  # double-click
    (6000, False, True), (6200, True, True), (7400, False, True), (7500, False, False),   # chord: STOP at 7.2 s
    (8000, True, False), (8100, False, False),                        # click: gripper opens
    (8300, True, False), (8900, True, True), (9500, False, True), (9600, False, False),  # fires nothing
]


def test_compact_stream_motion_gripper_takeover_and_events(tmp_path):
    stream = save_and_load(tmp_path, "compact", record(COMPACT, COMPACT_STATES, COMPACT_BUTTONS))
    clock, hid = FakeClock(), ReplayHid(COMPACT)
    with SpaceMouseTeleop(clock=clock, hid_device=hid) as tp:
        assert tp.product == "SpaceMouseCompact"
        play = Player(tp, hid, clock, stream)
        tp.get_action()  # starts the time base at t = 0
        ticks_ms = np.arange(50, 9701, 50)
        total, events, took_over, grip = np.zeros(6), [], [], []
        for t_ms in ticks_ms:
            play.until(int(t_ms) * MS)
            a = tp.get_action().value
            got = np.concatenate([a["ee_dpos_m"], a["ee_drot_rad"]])
            np.testing.assert_allclose(got, expected_motion(COMPACT_STATES, t_ms - 50, t_ms), atol=1e-6,
                                       err_msg=f"tick at {t_ms} ms")
            total += got
            events += [(int(t_ms), e) for e in tp.poll_events()]
            took_over.append(tp.intervention)
            grip.append(float(a["gripper_pos"][0]))
        assert tp.reports_read == len(stream)
    assert hid.closed
    np.testing.assert_allclose(total, expected_motion(COMPACT_STATES, 0, 9700), atol=1e-5)

    def at(t_ms):
        return int(np.searchsorted(ticks_ms, t_ms))

    # direction and magnitude = speed x dt, by hand: away at full speed for 50 ms is 7.5 mm of +x
    np.testing.assert_allclose(expected_motion(COMPACT_STATES, 150, 200), [0.0075, 0, 0, 0, 0, 0], atol=1e-9)
    diag = expected_motion(COMPACT_STATES, 1100, 1150)[:3]
    assert np.linalg.norm(diag) == pytest.approx(SPEED * 0.05) and np.all(np.sign(diag) == [1, -1, 1])
    np.testing.assert_allclose(expected_motion(COMPACT_STATES, 1400, 1450)[5], TURN * 0.05)
    assert not expected_motion(COMPACT_STATES, 1650, 2550).any()  # dead zone
    assert events == [(4200, EpisodeEvent.NEXT), (5350, EpisodeEvent.RERECORD), (7200, EpisodeEvent.STOP)]
    held = [2500 <= t < 3000 or 6000 <= t < 7500 or 8900 <= t < 9600 for t in ticks_ms]
    assert took_over == held
    assert grip[at(2100)] == 0.0 and grip[at(2150)] == 1.0  # toggles on release of the click
    assert grip[at(4500)] == 1.0                             # the long press did not toggle
    assert grip[at(5100)] == 0.0 and grip[at(5350)] == 1.0  # double-click: toggled twice, back where it was
    assert grip[at(7500)] == 1.0 and grip[at(8100)] == 0.0  # the chord did not toggle; a click still does
    assert grip[-1] == 0.0  # a 1.2 s press that turned into a short chord: nothing at all


def test_wireless_stream_axes_signs_over_range_and_stall(tmp_path):
    half = 175
    # (HID axes, the robot axis it must drive and the sign), written out by hand
    cases = [((0, -half, 0, 0, 0, 0), 0, +1),   # push away -> +x
             ((half, 0, 0, 0, 0, 0), 1, -1),    # push right -> -y
             ((0, 0, -half, 0, 0, 0), 2, +1),   # lift -> +z
             ((0, half, 0, 0, 0, 0), 0, -1),    # pull toward the operator -> -x
             ((0, 0, 0, 0, -half, 0), 3, +1),   # roll about the away axis (HID -Ry) -> +rx
             ((0, 0, 0, half, 0, 0), 4, -1),    # tilt about the right axis (HID +Rx) -> -ry
             ((0, 0, 0, 0, 0, half), 5, -1)]    # twist clockwise seen from above -> -yaw
    states = []
    for i, (hid6, _, _) in enumerate(cases):
        states += [(200 * i, hid6), (200 * i + 100, (0,) * 6)]
    states += [(1400, (0, 0, 0, 0, 0, 500)),    # past full deflection: clipped to full speed
               (1500, (0,) * 6)]
    # a 5 s stall of the caller while the device keeps reporting: only the last max_dt_s counts
    states += [(1600, (-FULL, 0, 0, 0, 0, 0))] + [(t, (0, -FULL, 0, 0, 0, 0)) for t in range(6400, 6700, 40)]
    stream = save_and_load(tmp_path, "wireless", record(WIRELESS, states, []))
    assert len(stream[1][1]) == 13  # all six axes in one report
    clock, hid = FakeClock(), ReplayHid(WIRELESS)
    with SpaceMouseTeleop(clock=clock, hid_device=hid) as tp:
        play = Player(tp, hid, clock, stream)
        tp.get_action()
        step = (half / FULL - DZ) / (1 - DZ) * 0.05  # ramped half deflection over a 50 ms tick
        for i, (_, axis, sign) in enumerate(cases):
            play.until((200 * i + 50) * MS)
            tp.get_action()
            play.until((200 * i + 100) * MS)
            a = tp.get_action().value
            got = np.concatenate([a["ee_dpos_m"], a["ee_drot_rad"]])
            want = np.zeros(6)
            want[axis] = sign * step * (SPEED if axis < 3 else TURN)
            np.testing.assert_allclose(got, want, atol=1e-7, err_msg=f"case {i}")
            play.until((200 * i + 200) * MS)
            assert not tp.get_action().value["ee_dpos_m"].any()
        play.until(1450 * MS)
        assert tp.get_action().value["ee_drot_rad"][2] == pytest.approx(-TURN * 0.05)  # the gap since 1.4 s
        play.until(1600 * MS)
        tp.get_action()
        play.until(6600 * MS)
        a = tp.get_action().value  # 5 s since the last call: the last 0.2 s only, no leap
        np.testing.assert_allclose(a["ee_dpos_m"], [SPEED * 0.2, 0, 0], atol=1e-7)
        assert not a["ee_drot_rad"].any()
        play.until(6700 * MS)
        tp.get_action()
        assert not play.pending
        clock.advance_s(5.0)  # and a stall with no report at all (held still): capped the same way
        np.testing.assert_allclose(tp.get_action().value["ee_dpos_m"], [SPEED * 0.2, 0, 0], atol=1e-7)


def test_device_unplugged_mid_run_is_a_fault_not_a_hang():
    clock, hid = FakeClock(), ReplayHid(COMPACT)
    tp = SpaceMouseTeleop(clock=clock, hid_device=hid)
    with tp:
        play = Player(tp, hid, clock, record(COMPACT, [(0, AWAY)], [(0, False, True)]))
        tp.get_action()
        play.until(50 * MS)
        assert tp.get_action().value["ee_dpos_m"][0] > 0 and tp.intervention
        hid.unplug()
        t0 = time.monotonic()
        with pytest.raises(DeviceFaultError, match="SpaceMouseCompact stopped responding.*unplugged"):
            while time.monotonic() - t0 < 2.0:
                tp.get_action()
                time.sleep(0.005)
        assert not tp.intervention
        with pytest.raises(DeviceFaultError):  # and it stays failed
            tp.get_action()
    assert hid.closed and not tp.is_connected


def test_missing_device_through_pyspacemouse_and_hidapi():
    import pyspacemouse

    if pyspacemouse.get_connected_devices_by_path():
        pytest.skip("a SpaceMouse is plugged in")
    with pytest.raises(DeviceFaultError, match=r"no SpaceMouse found: expected a 3Dconnexion HID device.*"
                                               r"\(is libhidapi installed / udev permission\?\)") as err:
        SpaceMouseTeleop().connect()
    assert "\n" not in str(err.value)
    with pytest.raises(DeviceFaultError, match="matching '/dev/hidraw97'"):
        SpaceMouseTeleop(SpaceMouseConfig(device="/dev/hidraw97")).connect()
    with pytest.raises(ConfigError, match="SpaceMouse device: expected a hidraw path or one of .*SpaceMouseCompact"):
        SpaceMouseTeleop(SpaceMouseConfig(device="SpaceMouseCompakt")).connect()


def test_hidapi_missing_is_the_same_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "easyhid", None)  # as if libhidapi could not be loaded
    with pytest.raises(DeviceFaultError, match=r"no SpaceMouse found.*could not be loaded.*udev permission\?\)$"):
        SpaceMouseTeleop().connect()


def test_unknown_product_and_buttonless_model():
    with pytest.raises(DeviceFaultError, match="1234:5678: expected a SpaceMouse model"):
        hid = ReplayHid(0)
        hid.vendor_id, hid.product_id = 0x1234, 0x5678
        SpaceMouseTeleop(hid_device=hid).connect()
    hid = ReplayHid(USB_NO_BUTTONS)
    with pytest.raises(ConfigError, match="button_gripper on SpaceMouseUSB: expected one of"):
        SpaceMouseTeleop(hid_device=hid).connect()
    assert hid.closed
    clock, hid = FakeClock(), ReplayHid(USB_NO_BUTTONS)
    cfg = SpaceMouseConfig(button_gripper=None, button_takeover=None)
    with SpaceMouseTeleop(cfg, clock=clock, hid_device=hid) as tp:
        play = Player(tp, hid, clock, record(COMPACT, [(0, AWAY)], []))  # same reports as a Compact
        tp.get_action()
        play.until(100 * MS)
        np.testing.assert_allclose(tp.get_action().value["ee_dpos_m"], [SPEED * 0.1, 0, 0], atol=1e-7)


def test_axes_remap_for_an_operator_facing_the_robot():
    cfg = SpaceMouseConfig(axes=("-y", "x", "z", "-pitch", "roll", "yaw"))
    clock, hid = FakeClock(), ReplayHid(COMPACT)
    with SpaceMouseTeleop(cfg, clock=clock, hid_device=hid) as tp:
        play = Player(tp, hid, clock, record(COMPACT, [(0, (FULL, -FULL, 0, 0, 0, 0))], []))
        tp.get_action()
        play.until(100 * MS)
        d = tp.get_action().value["ee_dpos_m"]
    s = SPEED * 0.1 / np.sqrt(2)
    np.testing.assert_allclose(d, [-s, s, 0], atol=1e-7)  # pushed away and right: toward the base, +y


@pytest.mark.parametrize("kwargs", [{"deadzone": 1.0}, {"max_speed_m_s": -1.0}, {"axes": ("x", "x", "z")},
                                    {"axes": ("y", "-x", "z", "pitch", "-roll", "roll")}, {"max_dt_s": 0.0},
                                    {"read_timeout_ms": 0}, {"full_deflection_counts": 0.0}])
def test_config_errors(kwargs):
    with pytest.raises(ConfigError, match="SpaceMouse"):
        SpaceMouseConfig(**kwargs)


def test_nothing_at_import():
    code = ("import sys, robot_learning.hardware, robot_learning.hardware.teleop_spacemouse; "
            "print(sorted(m for m in ('pyspacemouse', 'easyhid', 'pygame', 'hid') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
