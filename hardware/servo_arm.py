"""Servo-bus arms behind the device contracts: ``ServoArm`` (a follower, a ``Robot``) and
``LeaderArm`` (a leader arm, a ``Teleop``), for every ``ArmSpec`` in ``hardware/arms.py``.

Both convert raw servo ticks with the arm's ``ArmCalibration``; the follower's state and action
features are the sim twin's (``robot_features``), so data recorded on the real arm and on the
twin share one layout. With a twin, the state also carries the end-effector pose, from forward
kinematics over the twin's MJCF (the same model file the Cartesian controller uses).

Reads: one sync read of the present positions per tick; its capture time is the middle of the
bus transaction (the servos sample when they answer; the transaction lasts ~1-3 ms) and its
receive time the end. Joint velocity is the finite difference of consecutive reads over their
capture times. Bus errors: the bus retries a bounded number of times, in one place for every
robot (``servo_bus``); a servo that stays silent raises ``DeviceFaultError`` from
``read_state`` / ``send_action``, the runtime then holds the robot (goal := last measured
position, which the other servos keep) and stops. ``disconnect`` (also on Ctrl-C, SIGTERM,
SIGHUP and interpreter exit, see ``shutdown``) turns torque off.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from robot_learning.core.clock import NS_PER_S, Clock
from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware import shutdown
from robot_learning.hardware.arm_calibration import ArmCalibration, calibration_path
from robot_learning.hardware.arms import GRIPPER, JOINTS, ArmSpec, make_bus
from robot_learning.hardware.robot import Robot, arm_features
from robot_learning.hardware.teleop import Teleop
from robot_learning.core.limits import FeatureLimits, SafetyConfig

NAMES = JOINTS + (GRIPPER,)
_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _block_signals():
    """Defer Ctrl-C / SIGTERM / SIGHUP (main thread only): returns what ``_unblock_signals`` needs to
    restore the handlers and re-deliver the signals that arrived meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        return None
    pending: list[int] = []
    previous = {}
    for sig in _SIGNALS:
        prev = signal.getsignal(sig)
        if prev in (signal.SIG_IGN, None):
            continue
        previous[sig] = prev
        signal.signal(sig, lambda signum, frame: pending.append(signum))
    return previous, pending


def _unblock_signals(blocked) -> None:
    if blocked is None:
        return
    previous, pending = blocked
    for sig, prev in previous.items():
        signal.signal(sig, prev)
    for sig in dict.fromkeys(pending):
        signal.raise_signal(sig)


@dataclass(frozen=True)
class ServoArmConfig:
    """``port``: serial device of the arm's bus (``robot-learning find-ports``). ``arm_id``: name of its
    calibration file. ``calibration_dir``: where calibrations live (default: ``calibration_dir()``).
    ``watchdog_s``: the servos' own bus watchdog where they have one (Dynamixel X): they stop
    when the host is silent this long (None: off). ``timeout_s``: per-try timeout of a bus
    transaction, plus the reply's byte time (None: the bus default, 12 ms). ``retries``: extra tries
    per transaction (3: a silent servo is reported after ~50 ms).
    ``max_read_age_s``: a read that fails even after the retries (a burst of corrupted packets)
    hands out the previous reading, with its own older capture time, as long as it is at most this
    old; past that the arm is faulted (``DeviceFaultError``) and the runtime stops it. (A silent servo
    costs a whole read of retries, ~50 ms, so this covers corrupted answers, not a dead servo.)
    ``max_outside_range_rad``: connecting refuses an arm resting further than this outside its
    calibrated range (torque on would pull it back in one jump)."""

    port: str
    arm_id: str = "default"
    calibration_dir: Path | None = None
    watchdog_s: float | None = 0.1
    timeout_s: float | None = None
    retries: int = 3
    max_read_age_s: float = 0.05
    max_outside_range_rad: float = 0.2

    def __post_init__(self) -> None:
        if not self.port:
            raise ConfigError.expected("arm port", "a serial device path (see robot-learning find-ports)", "''")
        if self.retries < 0:
            raise ConfigError.expected("retries", ">= 0", self.retries)
        if not 0 <= self.max_read_age_s <= 1.0:
            raise ConfigError.expected("max_read_age_s", "0..1 s", self.max_read_age_s)
        if self.watchdog_s is not None and not 0.02 <= self.watchdog_s <= 5.0:
            raise ConfigError.expected("watchdog_s", "0.02..5 s or None", self.watchdog_s)


def _features(spec: ArmSpec) -> tuple[FeatureSet, FeatureSet]:
    """The twin's features (end-effector pose from its model), or the same without the pose."""
    return arm_features(JOINTS, end_effector=spec.twin is not None)


class _Kinematics:
    """Forward kinematics of the twin's MJCF (end-effector site pose in the base frame)."""

    def __init__(self, twin: str):
        import mujoco

        from robot_learning.core.robot_models import get_robot_model

        self._mj = mujoco
        robot = get_robot_model(twin)
        self.model = mujoco.MjModel.from_xml_path(str(robot.mjcf_path()))
        self.data = mujoco.MjData(self.model)
        m = self.model
        self._qadr = np.array([m.jnt_qposadr[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j)]
                               for j in robot.joint_names])
        self._site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, robot.ee_site)
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j) for j in robot.joint_names]
        self.joint_range = m.jnt_range[jids].copy()

    def pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self._qadr] = q
        self._mj.mj_kinematics(self.model, self.data)
        quat = np.empty(4)
        self._mj.mju_mat2Quat(quat, self.data.site_xmat[self._site])
        return self.data.site_xpos[self._site].copy(), quat


class _CalibratedBus:
    """What leader and follower share: the bus, its calibration (checked against the servos), reads."""

    def __init__(self, spec: ArmSpec, config: ServoArmConfig, name: str, clock: Clock | None, bus=None):
        self.spec, self.config = spec, config
        kw = {"retries": config.retries}
        if config.timeout_s is not None:
            kw["timeout_s"] = config.timeout_s
        self.bus = bus if bus is not None else make_bus(spec, config.port, clock=clock, **kw)
        self.calibration: ArmCalibration | None = None
        self.name = name
        self.stale_reads = 0                       # reads answered with the previous reading
        self._last: tuple[dict[str, int], int, int] | None = None

    def open(self) -> None:
        cal = ArmCalibration.load(calibration_path(self.spec.kind, self.config.arm_id, self.config.calibration_dir))
        if cal.kind != self.spec.kind:
            raise ConfigError.expected("calibration arm", self.spec.kind, cal.kind)
        self._last = None
        self.bus.connect()
        try:
            ids = {n: m.id for n, m in self.spec.motors}
            if dict(cal.motor_ids) != ids:
                raise ConfigError.expected(f"{self.name}: calibration motor ids", ids, dict(cal.motor_ids))
            for n in NAMES:
                got = self.bus.read_homing_offset(n)
                if got != cal.homing_offsets[n]:
                    raise ConfigError(
                        f"{self.name}: servo {n} (id {ids[n]}) has homing offset {got}, its calibration "
                        f"'{self.config.arm_id}' says {cal.homing_offsets[n]}: recalibrate "
                        f"(robot-learning calibrate --robot {self.spec.kind} --port {self.config.port} "
                        f"--id {self.config.arm_id})")
        except BaseException:
            self.bus.disconnect()
            raise
        self.calibration = cal

    def read(self, clock: Clock) -> tuple[dict[str, int], int, int]:
        """Raw present positions, capture time (middle of the transaction) and receive time; a failed
        read within ``max_read_age_s`` of the last good one gives that one (see ServoArmConfig)."""
        t0 = clock.now_ns()
        try:
            raw = self.bus.sync_read("present_position", NAMES)
        except DeviceFaultError:
            last = self._last
            if last is None or (clock.now_ns() - last[1]) / NS_PER_S > self.config.max_read_age_s:
                raise
            self.stale_reads += 1
            return last
        t1 = clock.now_ns()
        self._last = (raw, (t0 + t1) // 2, t1)
        return self._last


class ServoArm(Robot):
    """A follower arm on a servo bus (SO-101, Koch): joint position control, calibrated radians."""

    def __init__(self, spec: ArmSpec, config: ServoArmConfig, name: str | None = None,
                 clock: Clock | None = None, bus=None):
        if spec.role != "follower":
            raise ConfigError.expected("ServoArm spec", "a follower arm", spec.kind)
        super().__init__(name or spec.kind, clock)
        self.spec, self.config = spec, config
        self._cb = _CalibratedBus(spec, config, self.name, self.clock, bus)
        self._state_f, self._action_f = _features(spec)
        self._kin = _Kinematics(spec.twin) if spec.twin is not None else None
        self._last_raw: dict[str, int] | None = None
        self._last_q: np.ndarray | None = None
        self._last_t: int | None = None
        self._last_vel = np.zeros(len(JOINTS))
        self._gripper_cmd = 0.0
        self._watchdog_on = False
        self._last_io_ns = 0
        self.watchdog_rearms = 0

    @property
    def bus(self):
        return self._cb.bus

    @property
    def calibration(self) -> ArmCalibration | None:
        return self._cb.calibration

    @property
    def state_features(self) -> FeatureSet:
        return self._state_f

    @property
    def action_features(self) -> FeatureSet:
        return self._action_f

    def default_safety(self) -> SafetyConfig:
        """Joint box: the calibrated range (intersected with the twin's), or the twin's before calibration."""
        if self.calibration is not None:
            lo, hi = self.calibration.range_rad()
        else:
            lo, hi = np.full(len(JOINTS), -np.pi), np.full(len(JOINTS), np.pi)
        if self._kin is not None:
            lo, hi = np.maximum(lo, self._kin.joint_range[:, 0]), np.minimum(hi, self._kin.joint_range[:, 1])
        return SafetyConfig((
            FeatureLimits("joint_pos_rad", lower=tuple(lo), upper=tuple(hi),
                          max_velocity_per_s=(self.spec.max_velocity_rad_s,), max_step=(self.spec.max_step_rad,),
                          measured_by="joint_pos_rad"),
            FeatureLimits("gripper_pos", lower=(0.0,), upper=(1.0,), max_velocity_per_s=(4.0,)),
        ))

    # --- lifecycle -------------------------------------------------------------------------
    def _connect(self) -> None:
        self._cb.open()
        try:
            bus, cal = self.bus, self.calibration
            for n in NAMES:  # single-turn position control: the mode the EEPROM limits apply in
                if bus.read("operating_mode", n) != bus.POSITION_MODE:
                    bus.write_eeprom(n, {"operating_mode": bus.POSITION_MODE})
            raw = bus.sync_read("present_position", NAMES)
            self._check_in_range(raw)
            self._last_raw, self._last_q, self._last_t = raw, None, None
            bus.sync_write("goal_position", self._clip(raw))   # no jump: the goal is where the arm is
            bus.set_torque(True)
            self._watchdog_on = self.config.watchdog_s is not None and bus.set_watchdog(self.config.watchdog_s)
            self._last_io_ns = self.clock.now_ns()
            self._gripper_cmd = cal.gripper_fraction(raw[GRIPPER])
        except BaseException:
            self.bus.disconnect()
            raise
        shutdown.register(self)

    def _clip(self, raw: Mapping[str, int]) -> dict[str, int]:
        """Raw goals clipped to the calibrated ranges (the servos' EEPROM limits)."""
        out = {}
        for n, v in raw.items():
            c = self.calibration.joints[n]
            out[n] = int(np.clip(v, c.home_raw + c.range_min, c.home_raw + c.range_max))
        return out

    def _check_in_range(self, raw: Mapping[str, int]) -> None:
        for n, v in raw.items():
            c = self.calibration.joints[n]
            ticks = max(c.home_raw + c.range_min - v, v - c.home_raw - c.range_max, 0)
            if ticks * c.rad_per_tick > self.config.max_outside_range_rad:
                raise ConfigError(f"{self.name}: {n} rests {np.degrees(ticks * c.rad_per_tick):.0f} deg outside its "
                                  "calibrated range: move it inside by hand, or recalibrate")

    def _disconnect(self) -> None:
        """Watchdog off, torque off, port closed; Ctrl-C / SIGTERM / SIGHUP are deferred meanwhile so a
        second signal cannot leave torque on (the exit hook stays registered until torque is off)."""
        blocked = _block_signals()
        bus = self.bus
        try:
            if bus.is_connected:
                for step in (lambda: bus.set_watchdog(None), lambda: bus.set_torque(False)):
                    try:
                        step()
                    except Exception:  # noqa: BLE001 - the bus may be gone (unplugged): go on closing
                        pass
        finally:
            try:
                bus.disconnect()                            # also torque off, best effort
            finally:
                shutdown.unregister(self)
                _unblock_signals(blocked)

    def emergency_torque_off(self) -> None:
        """Signal / exit path (``shutdown``): torque off, close the port, never raise."""
        try:
            self.disconnect()
        except BaseException:  # noqa: BLE001 - the exit hook goes on to the next device whatever happens
            pass

    def _bus_io(self) -> None:
        """Before talking to the servos: after a silence longer than (most of) the servos' bus watchdog
        they may have stopped and locked their goals; re-arm it and hold where they stopped."""
        now = self.clock.now_ns()
        if self._watchdog_on and (now - self._last_io_ns) / NS_PER_S > 0.75 * self.config.watchdog_s:
            raw = self.bus.sync_read("present_position", NAMES)
            self.bus.set_watchdog(self.config.watchdog_s)   # clears a tripped watchdog first
            self.bus.sync_write("goal_position", raw)
            self._last_raw = raw
            self.watchdog_rearms += 1
        self._last_io_ns = now

    # --- contract --------------------------------------------------------------------------
    def _read_state(self) -> Stamped[Mapping[str, np.ndarray]]:
        self._bus_io()
        raw, t_cap, t_recv = self._cb.read(self.clock)
        cal = self.calibration
        q = cal.joint_rad(raw)
        if self._last_q is not None and t_cap > self._last_t:
            vel = (q - self._last_q) / ((t_cap - self._last_t) / NS_PER_S)
        elif self._last_q is not None and t_cap == self._last_t:
            vel = self._last_vel                          # the same (stale) reading again
        else:
            vel = np.zeros_like(q)
        self._last_raw, self._last_q, self._last_t, self._last_vel = raw, q, t_cap, vel
        values = {"joint_pos_rad": q.astype(np.float32), "joint_vel_rad_s": vel.astype(np.float32),
                  "gripper_pos": np.array([cal.gripper_fraction(raw[GRIPPER])], dtype=np.float32)}
        if self._kin is not None:
            pos, quat = self._kin.pose(q)
            values["ee_pos_m"], values["ee_quat_wxyz"] = pos.astype(np.float32), quat.astype(np.float32)
        return Stamped(values, t_capture_ns=t_cap, t_receive_ns=t_recv)

    def _executed(self, goals: Mapping[str, int]) -> Action:
        cal = self.calibration
        return Action({"joint_pos_rad": cal.joint_rad(goals).astype(np.float32),
                       "gripper_pos": np.array([cal.gripper_fraction(goals[GRIPPER])], dtype=np.float32)})

    def _send_action(self, action: Action) -> Action:
        grip = float(action["gripper_pos"][0])
        goals = self.calibration.goal_raw(np.asarray(action["joint_pos_rad"], dtype=np.float64), grip)
        self._bus_io()
        self.bus.sync_write("goal_position", goals)
        self._gripper_cmd = grip
        # What the servos were told, after quantisation to ticks and the calibrated range.
        return self._executed(goals)

    def _hold(self) -> Action:
        """Goal := the last measured position (no bus read: this is also the fault path). The gripper
        keeps its command, so a grasped object is not dropped."""
        if self._last_raw is None:
            raise DeviceFaultError(self.name, "hold() before any position was read")
        try:
            self._bus_io()
        except DeviceFaultError:
            pass  # the fault path: write the hold anyway (a sync write needs no answer)
        goals = self._clip(self._last_raw)
        goals[GRIPPER] = self.calibration.goal_raw(np.zeros(len(JOINTS)), self._gripper_cmd)[GRIPPER]
        self.bus.sync_write("goal_position", goals)
        return self._executed(goals)

    def _stop(self) -> None:
        """Hold still with torque on (an arm under gravity falls with torque off); ``disconnect``
        turns torque off."""
        self._hold()


@dataclass(frozen=True)
class LeaderConfig:
    """``takeover_rad``: moving any leader joint this far from where it rested raises the
    intervention flag (the operator took over from a policy); ``release_s``: the flag drops after
    the leader has stayed within ``still_rad`` of one pose this long."""

    takeover_rad: float = 0.08
    release_s: float = 1.0
    still_rad: float = 0.01


class LeaderArm(Teleop):
    """A leader arm (torque off, moved by hand) as a teleop device: it commands the follower's
    joint positions directly (same joints, same units)."""

    def __init__(self, spec: ArmSpec, config: ServoArmConfig, leader: LeaderConfig = LeaderConfig(),
                 action_features: FeatureSet | None = None, name: str | None = None,
                 clock: Clock | None = None, bus=None):
        if spec.role != "leader":
            raise ConfigError.expected("LeaderArm spec", "a leader arm", spec.kind)
        super().__init__(name or spec.kind, clock)
        self.spec, self.config, self.leader = spec, config, leader
        self._cb = _CalibratedBus(spec, config, self.name, self.clock, bus)
        self._features = action_features if action_features is not None else _features(spec)[1]
        self._rest: np.ndarray | None = None
        self._anchor: np.ndarray | None = None
        self._still_since = 0

    @property
    def bus(self):
        return self._cb.bus

    @property
    def action_features(self) -> FeatureSet:
        return self._features

    def _connect(self) -> None:
        self._cb.open()
        try:
            self.bus.set_torque(False)  # moved by hand
        except BaseException:
            self.bus.disconnect()
            raise
        self._rest = self._anchor = None
        self.set_intervention(False)

    def _disconnect(self) -> None:
        self.bus.disconnect()

    def _get_action(self, observation: Observation | None) -> Stamped[Action]:
        raw, t_cap, t_recv = self._cb.read(self.clock)
        cal = self._cb.calibration
        q = cal.joint_rad(raw)
        self._update_takeover(q, t_cap)
        values = {"joint_pos_rad": q, "gripper_pos": np.array([cal.gripper_fraction(raw[GRIPPER])])}
        action = Action({f.name: np.asarray(values[f.name], dtype=f.dtype) for f in self._features})
        return Stamped(action, t_capture_ns=t_cap, t_receive_ns=t_recv)

    def _update_takeover(self, q: np.ndarray, t_ns: int) -> None:
        c = self.leader
        if self._rest is None:
            self._rest = q.copy()
            return
        if not self.intervention:
            if np.max(np.abs(q - self._rest)) > c.takeover_rad:
                self.set_intervention(True)
                self._anchor, self._still_since = q.copy(), t_ns
            return
        if np.max(np.abs(q - self._anchor)) > c.still_rad:   # still moving: restart the release timer
            self._anchor, self._still_since = q.copy(), t_ns
        elif (t_ns - self._still_since) / NS_PER_S >= c.release_s:
            self.set_intervention(False)                      # hand back; the new rest pose is here
            self._rest = q.copy()
