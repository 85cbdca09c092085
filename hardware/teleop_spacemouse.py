"""SpaceMouse (3Dconnexion) teleop through pyspacemouse, easyhid and hidapi: the cap drives the end
effector in six degrees of freedom, the two side buttons drive the gripper, takeover and episode
events.

Default mapping (for the two-button models: SpaceMouse Compact, Wireless, SpaceNavigator; on
larger models, name the buttons in ``SpaceMouseConfig``):

    push / pull the cap      move the tool (deflection x max_speed_m_s is a velocity)
    tilt / twist the cap     turn the tool (deflection x max_turn_rad_s; 0 turns rotation off)
    left button, click       close / open the gripper (toggles on release)
    left button, hold 1 s    finish this episode and start the next       (episode event NEXT)
    left button, dbl-click   discard this episode and record it again     (RERECORD)
    both buttons, hold 1 s   finish this episode and stop                 (STOP)
    right button, held       take over from a policy while held (intervention)

A double-click toggles the gripper twice, so it ends where it was; that episode is discarded
anyway. A long press or a chord never toggles the gripper, so a kept episode has no stray
toggle. A press held past ``long_press_s`` that fires nothing does nothing. The times are in the
config.

Frame: pyspacemouse's right-handed Z-up convention (x right, y away from the operator, z up),
remapped by ``SpaceMouseConfig.axes`` into the robot base frame. The default suits an operator
behind the robot base who looks along its +x: push the cap away for +x, left for +y, lift it for
+z, twist it counter-clockwise (seen from above) for +yaw. An operator facing the robot across
the table uses ``axes=("-y", "x", "z", "-pitch", "roll", "yaw")``.

The driver has two parts. A reader thread reads raw HID reports (bytes) from an easyhid device,
or from any object with the same ``read(size, timeout)`` / ``close()`` interface and
``vendor_id`` / ``product_id`` attributes (a recorded stream in tests). It stamps each report on
the teleop's clock. ``HidReportParser`` then turns the reports into axes and buttons with
pyspacemouse's own code: the per-product spec from its devices.toml, its axis convention and
remap helpers, and the report processing in ``SpaceMouseDevice.read``. The motion between two
``get_action`` calls is the velocity integrated piecewise over the report stamps. It covers at
most ``max_dt_s``, so a stalled caller never gets a leap. A device that disappears mid-run
turns into ``DeviceFaultError`` from ``get_action``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np

from robot_learning.core.ee_features import DELTA
from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware.teleop import EpisodeEvent, Teleop

AXES = ("x", "y", "z", "roll", "pitch", "yaw")  # pyspacemouse's names; out: robot x, y, z, rot x, y, z
READ_SIZE_BYTES = 64                              # the largest HID report a SpaceMouse sends
_HINT = "(is libhidapi installed / udev permission?)"
_TOGGLE_GRIPPER = "toggle-gripper"


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


@dataclass(frozen=True)
class SpaceMouseConfig:
    """How the SpaceMouse is found and what it commands (see the module docstring).

    ``device``: a pyspacemouse product name ("SpaceMouseCompact", "SpaceMouseWireless", ...), a
    hidraw path ("/dev/hidraw3"), or None for the first SpaceMouse found.
    ``axes``: for robot x, y, z, rotation about x, y, z, the pyspacemouse axis (Z-up convention)
    that drives it, with "-" for the opposite sign. Together they must be a permutation of
    x, y, z, roll, pitch, yaw.
    ``deadzone``: the fraction of full deflection, per axis, that gives no motion. Past it the
    motion ramps from 0 to full speed. The linear and angular speeds are capped as vectors, so a
    diagonal push never moves faster than ``max_speed_m_s``.
    ``full_deflection_counts``: raw HID counts at full deflection (None: pyspacemouse's value
    for the model, 350).
    ``button_gripper`` / ``button_takeover``: pyspacemouse button names, or None for none.
    ``long_press_s`` / ``double_click_s``: the gesture times. ``max_dt_s``: the most time one
    ``get_action`` integrates. ``read_timeout_ms``: how long one HID read may block.
    """

    device: str | None = None
    max_speed_m_s: float = 0.15
    max_turn_rad_s: float = 1.0
    deadzone: float = 0.1
    axes: tuple[str, ...] = ("y", "-x", "z", "pitch", "-roll", "yaw")
    full_deflection_counts: float | None = None
    button_gripper: str | None = "LEFT"
    button_takeover: str | None = "RIGHT"
    long_press_s: float = 1.0
    double_click_s: float = 0.4
    max_dt_s: float = 0.2
    read_timeout_ms: int = 50

    def __post_init__(self) -> None:
        for what, v in (("max_speed_m_s", self.max_speed_m_s), ("max_turn_rad_s", self.max_turn_rad_s),
                        ("double_click_s", self.double_click_s)):
            if not (np.isfinite(v) and v >= 0):
                raise ConfigError.expected(f"SpaceMouse {what}", "a finite value >= 0", v)
        positive = [("long_press_s", self.long_press_s), ("max_dt_s", self.max_dt_s)]
        if self.full_deflection_counts is not None:
            positive.append(("full_deflection_counts", self.full_deflection_counts))
        for what, v in positive:
            if not (np.isfinite(v) and v > 0):
                raise ConfigError.expected(f"SpaceMouse {what}", "a finite value > 0", v)
        if not 0 <= self.deadzone < 1:
            raise ConfigError.expected("SpaceMouse deadzone", "0 <= deadzone < 1", self.deadzone)
        if not (isinstance(self.read_timeout_ms, int) and 1 <= self.read_timeout_ms <= 1000):
            raise ConfigError.expected("SpaceMouse read_timeout_ms", "an int in 1..1000", self.read_timeout_ms)
        sources = [a.removeprefix("-") for a in self.axes] if all(isinstance(a, str) for a in self.axes) else []
        if len(self.axes) != 6 or sorted(sources) != sorted(AXES):
            raise ConfigError.expected("SpaceMouse axes", f"a signed permutation of {AXES}", self.axes)

    def remap(self) -> dict[str, tuple[str, int]]:
        """The axes as pyspacemouse's ``modify_device_info(remap_axes=...)`` wants them."""
        return {out: (src.removeprefix("-"), -1 if src.startswith("-") else 1) for out, src in zip(AXES, self.axes)}


def spacemouse_spec(vendor_id: int, product_id: int, config: SpaceMouseConfig = SpaceMouseConfig(),
                    name: str = "spacemouse"):
    """pyspacemouse's ``DeviceInfo`` for this USB product, in the robot frame of ``config``."""
    from pyspacemouse import AxisConvention, apply_axis_convention, get_device_specs, modify_device_info

    specs = get_device_specs()
    spec = next((s for s in specs.values() if (s.vendor_id, s.product_id) == (vendor_id, product_id)), None)
    if spec is None:
        raise DeviceFaultError(name, f"HID device {vendor_id:04x}:{product_id:04x}: expected a SpaceMouse model "
                                     f"pyspacemouse knows ({', '.join(specs)}), found an unknown product")
    z_up = apply_axis_convention(spec, AxisConvention.HID_Z_UP)
    return modify_device_info(z_up, remap_axes=config.remap(), axis_scale=config.full_deflection_counts)


class _ReportFeed:
    """Hands one report to ``SpaceMouseDevice.read`` (which reads from its HID device)."""

    report = b""

    def read(self, size: int) -> bytes:
        return self.report

    def close(self) -> None:
        pass


class HidReportParser:
    """Raw HID reports -> axes (6,) in [-1, 1] (robot frame) and button states.

    The parsing is pyspacemouse's: a ``SpaceMouseDevice`` for the spec, whose ``read()`` pulls
    the report from a feed object instead of hidapi. Short reports are zero-padded to the
    spec's length, as easyhid pads what hidapi returns.
    """

    def __init__(self, info):
        from pyspacemouse import SpaceMouseDevice

        self.info = info
        self._feed = _ReportFeed()
        self._mouse = SpaceMouseDevice(info=info, device=self._feed)
        self._size = max([info.bytes_to_read] + [b.byte + 1 for b in info.button_specs])

    def parse(self, report: bytes) -> tuple[np.ndarray, tuple[bool, ...]]:
        self._feed.report = bytes(report).ljust(self._size, b"\0")
        s = self._mouse.read()
        axes = np.clip([s.x, s.y, s.z, s.roll, s.pitch, s.yaw], -1.0, 1.0)
        return axes, tuple(bool(b) for b in s.buttons)


class ButtonGestures:
    """Left / right button states over time -> gripper toggles and episode events (no I/O).

    ``update`` takes each new button state with its time and ``tick`` takes the passing time
    (a long press fires while the button is still held). Both return what fired, in order.
    """

    def __init__(self, long_press_s: float = 1.0, double_click_s: float = 0.4):
        self.long_ns, self.double_ns = int(long_press_s * 1e9), int(double_click_s * 1e9)
        self.left = self.right = False
        self._down_ns = 0              # when the left button went down
        self._both_ns: int | None = None  # since when both are down
        self._used = False             # this left press already fired an event
        self._second = False           # this left press started within double_click_s of a click
        self._click_ns: int | None = None  # release time of the previous click

    def tick(self, t_ns: int) -> list:
        if not self.left or self._used:
            return []
        if self._both_ns is not None and t_ns - self._both_ns >= self.long_ns:
            self._used = True
            return [EpisodeEvent.STOP]
        if not self.right and t_ns - self._down_ns >= self.long_ns:
            self._used = True
            return [EpisodeEvent.NEXT]
        return []

    def update(self, t_ns: int, left: bool, right: bool) -> list:
        out = self.tick(t_ns)
        if left and not self.left:
            self._down_ns, self._used = t_ns, False
            self._second = self._click_ns is not None and t_ns - self._click_ns <= self.double_ns
        elif self.left and not left:
            if self._used or t_ns - self._down_ns >= self.long_ns:
                self._click_ns = None           # a long press or a chord: no toggle
            elif self._second:
                out += [_TOGGLE_GRIPPER, EpisodeEvent.RERECORD]
                self._click_ns = None
            else:
                out.append(_TOGGLE_GRIPPER)
                self._click_ns = t_ns
        if left and right:
            self._both_ns = t_ns if self._both_ns is None else self._both_ns
        else:
            self._both_ns = None
        self.left, self.right = left, right
        return out


def open_spacemouse(config: SpaceMouseConfig = SpaceMouseConfig(), name: str = "spacemouse"):
    """Find the SpaceMouse with pyspacemouse's device table and open it with easyhid (hidapi).

    Returns the open easyhid device. Raises ``DeviceFaultError`` when none is found or it cannot
    be opened, and ``ConfigError`` for an unknown product name.
    """
    try:
        import pyspacemouse
        from easyhid import Enumeration, HIDException
    except (ImportError, OSError) as e:  # easyhid loads libhidapi-hidraw when it is imported
        raise DeviceFaultError(name, f"no SpaceMouse found: expected a 3Dconnexion HID device, but pyspacemouse / "
                                     f"hidapi could not be loaded ({_one_line(e)}) {_HINT}") from e
    want = config.device
    specs = pyspacemouse.get_device_specs()
    if want is not None and not want.startswith("/") and want not in specs:
        raise ConfigError.expected("SpaceMouse device", f"a hidraw path or one of {', '.join(specs)}", want)
    if want is not None and want.startswith("/"):
        want = os.path.realpath(want)
    try:
        by_path = pyspacemouse.get_connected_devices_by_path()  # {hidapi path: product name}
        n_hid = len(pyspacemouse.get_all_hid_devices())
    except RuntimeError as e:
        raise DeviceFaultError(name, f"no SpaceMouse found: expected a 3Dconnexion HID device, hidapi failed "
                                     f"({_one_line(e)}) {_HINT}") from e
    found = [(p, n) for p, n in by_path.items() if want in (None, n, os.path.realpath(p))]
    if not found:
        what = "" if want is None else f" matching {want!r}"
        seen = f"found {', '.join(f'{n} at {p}' for p, n in by_path.items())}" if by_path else \
            f"found none among {n_hid} HID devices"
        raise DeviceFaultError(name, f"no SpaceMouse found: expected a 3Dconnexion HID device{what}, {seen} {_HINT}")
    hids = [d for p, _ in found for d in Enumeration().find(path=p)]
    multi_axis = [d for d in hids if (d.usage_page, d.usage) == (1, 8)]  # Generic Desktop / Multi-axis
    dev = (multi_axis or hids or [None])[0]
    if dev is None:
        raise DeviceFaultError(name, f"no SpaceMouse found: expected {found[0][1]} at {found[0][0]}, it vanished "
                                     f"while opening {_HINT}")
    try:
        dev.open()
    except HIDException as e:
        raise DeviceFaultError(name, f"found {by_path[dev.path]} at {dev.path} but could not open it: expected "
                                     f"read/write access ({_one_line(e)}) (udev permission? another program such "
                                     f"as spacenavd holding it?)") from e
    return dev


class SpaceMouseTeleop(Teleop):
    """6-DoF delta teleop from a SpaceMouse (see the module docstring).

    ``hid_device``: an already open easyhid device, or any object with its ``read(size,
    timeout)``, ``close()``, ``vendor_id`` and ``product_id`` (a recorded stream). It is closed
    on disconnect (or when connect fails), and ``config.device`` is then not used. None: find and open the SpaceMouse
    on connect. ``reports_read`` counts the parsed reports.
    """

    def __init__(self, config: SpaceMouseConfig = SpaceMouseConfig(), clock=None, name: str = "spacemouse",
                 hid_device=None):
        super().__init__(name, clock)
        self.config = config
        self._given = hid_device
        self._dev = None
        self._parser: HidReportParser | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fault: str | None = None
        self.reports_read = 0
        self.product = ""

    @property
    def action_features(self) -> FeatureSet:
        return DELTA

    def _connect(self) -> None:
        cfg = self.config
        dev = self._given if self._given is not None else open_spacemouse(cfg, self.name)
        try:
            info = spacemouse_spec(dev.vendor_id, dev.product_id, cfg, self.name)
            self._parser = HidReportParser(info)
            self._b_grip = self._button_index(info, "button_gripper", cfg.button_gripper)
            self._b_take = self._button_index(info, "button_takeover", cfg.button_takeover)
        except BaseException:
            dev.close()
            raise
        self._dev, self.product = dev, info.name
        self._gestures = ButtonGestures(cfg.long_press_s, cfg.double_click_s)
        self._vel = np.zeros(6)
        self._segments: list[tuple[int, np.ndarray]] = [(self.clock.now_ns(), self._vel)]
        self._t_ns: int | None = None
        self._gripper, self._seq, self._fault, self.reports_read = 0.0, 0, None, 0
        self.set_intervention(False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._read_loop, name=f"{self.name}-hid", daemon=True)
        self._thread.start()

    @staticmethod
    def _button_index(info, field: str, button: str | None) -> int | None:
        if button is None:
            return None
        if button not in info.button_names:
            raise ConfigError.expected(f"SpaceMouse {field} on {info.name}",
                                       f"one of {list(info.button_names)} or None", repr(button))
        return info.button_names.index(button)

    def _disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0 + 4 * self.config.read_timeout_ms / 1e3)
        if self._dev is not None and not (self._thread is not None and self._thread.is_alive()):
            self._dev.close()  # never while the reader may still be inside read()
        self._dev, self._thread = None, None
        self.set_intervention(False)

    def _read_loop(self) -> None:
        dev, timeout_ms = self._dev, self.config.read_timeout_ms
        while not self._stop.is_set():
            try:
                report = dev.read(READ_SIZE_BYTES, timeout=timeout_ms)
            except Exception as e:  # easyhid raises HIDException when the device is gone
                self._set_fault(f"{self.product} stopped responding: expected HID reports, reading failed "
                                f"({_one_line(e)}); was it unplugged?")
                return
            try:
                if report:
                    self._apply(report)
                else:
                    with self._lock:
                        self._handle(self._gestures.tick(self.clock.now_ns()))
            except Exception as e:
                self._set_fault(f"{self.product}: expected a HID report pyspacemouse can parse, found "
                                f"{bytes(report)[:16].hex()} ({_one_line(e)})")
                return

    def _set_fault(self, message: str) -> None:
        with self._lock:
            self._fault = message
            self._vel = np.zeros(6)
            self.set_intervention(False)  # nobody holds the takeover button of a device that is gone

    def _velocity(self, axes: np.ndarray) -> np.ndarray:
        """Axes in [-1, 1] -> (linear m/s, angular rad/s), dead zone, each part capped as a vector."""
        cfg = self.config
        ramp = np.sign(axes) * np.clip((np.abs(axes) - cfg.deadzone) / (1.0 - cfg.deadzone), 0.0, 1.0)
        v = np.concatenate([ramp[:3] * cfg.max_speed_m_s, ramp[3:] * cfg.max_turn_rad_s])
        for part, cap in ((v[:3], cfg.max_speed_m_s), (v[3:], cfg.max_turn_rad_s)):
            n = float(np.linalg.norm(part))
            if n > cap > 0:
                part *= cap / n
        return v

    def _apply(self, report: bytes) -> None:
        axes, buttons = self._parser.parse(report)
        vel = self._velocity(axes)

        def held(i: int | None) -> bool:
            return i is not None and i < len(buttons) and buttons[i]

        with self._lock:
            t = self.clock.now_ns()
            self._vel = vel
            segs = self._segments
            if segs[-1][0] >= t:
                segs[-1] = (segs[-1][0], vel)
            else:
                segs.append((t, vel))
            horizon = t - int(self.config.max_dt_s * 1e9)
            while len(segs) > 1 and segs[1][0] <= horizon:  # older than any window get_action can ask for
                segs.pop(0)
            self._handle(self._gestures.update(t, held(self._b_grip), held(self._b_take)))
            if self._b_take is not None:
                self.set_intervention(held(self._b_take))
            self.reports_read += 1

    def _handle(self, fired: list) -> None:
        for f in fired:
            if f == _TOGGLE_GRIPPER:
                self._gripper = 1.0 - self._gripper
            else:
                self.post_event(f)

    def _take_motion(self, now: int) -> np.ndarray:
        """Velocity integrated over [previous call, now], at most the last max_dt_s of it."""
        motion = np.zeros(6)
        if self._t_ns is not None:
            start = max(self._t_ns, now - int(self.config.max_dt_s * 1e9))
            segs = self._segments
            for i, (t0, v) in enumerate(segs):
                t1 = segs[i + 1][0] if i + 1 < len(segs) else now
                a, b = max(t0, start), min(t1, now)
                if b > a:
                    motion += v * ((b - a) / 1e9)
        self._segments = [(now, self._vel)]
        self._t_ns = now
        return motion

    def _get_action(self, observation: Observation | None) -> Stamped[Action]:
        with self._lock:
            if self._fault is None and not self._thread.is_alive():
                self._fault = f"{self.product}: the HID reader thread stopped: expected it to run while connected"
            if self._fault is not None:
                raise DeviceFaultError(self.name, self._fault)
            now = self.clock.now_ns()
            self._handle(self._gestures.tick(now))
            motion = self._take_motion(now)
            grip = self._gripper
            self._seq += 1
        action = Action({"ee_dpos_m": motion[:3].astype(np.float32), "ee_drot_rad": motion[3:].astype(np.float32),
                         "gripper_pos": np.array([grip], dtype=np.float32)})
        return Stamped(action, now, now, self._seq)
