"""The protocol-independent half of the servo buses (Feetech STS, Dynamixel Protocol 2.0).

A ``ServoBus`` drives the motors of one serial port through the vendor SDK; ``feetech.py`` and
``dynamixel.py`` add the control tables. Values are raw integers in the servo's units, signed
registers decoded (two's complement on Dynamixel, sign-magnitude on Feetech).

**Retry policy** (one for every robot): every transaction goes through ``run_with_retries``:
``1 + retries`` tries, each failed one counted in ``BusStats`` by kind (``timeout``, ``corrupt``,
``no status packet``, ...); a sync read retries only the motors that have not answered. Then
``DeviceFaultError`` names the bus, the register, the motors (names, ids) that did not answer and
the SDK's ``getTxRxResult`` text. A status error byte (overload, overheat, access error...) is a
``servo error`` and a lost port a ``port error``: reported at once (``getRxPacketError`` text),
not retried. Between tries the bus waits until the line is quiet (<= 3 ms) and drops late bytes,
so a late or corrupted reply is never taken for the next answer (Feetech's SDK never drops them).

**Timeouts**: the SDKs wait 2 x LATENCY_TIMER (16 ms) + 2 ms plus the byte time per status
packet. Here a try waits ``timeout_s`` (default 12 ms) plus the reply's byte time (0.01 ms a byte
at 1 Mbaud): with 3 retries a servo that stops answering is reported ~50 ms after the transaction
starts. A busy host is not taken for a silent servo: the wait is in the kernel (no busy loop), a reply found
waiting after the deadline is taken, the wait follows the replies' measured latency on this host
(longer while the host delivers late, ``stats.try_timeout_s``), and a transaction that has heard
nothing at all doubles its wait at each try (``LowLatencyPort`` in ``servo_retry``). Set
USB adapters' latency to 1 ms (FTDI: ``/sys/bus/usb-serial/devices/ttyUSB0/latency_timer``;
CH340/CH343 forward within ~1-2 ms); servo return delays (2 us units, factory 250) stay far below.
"""

from __future__ import annotations

import fcntl
import threading
import time
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, TypeVar

from robot_learning.core.clock import Clock
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware.device import Device

from robot_learning.hardware.servo_retry import (DEFAULT_TIMEOUT_S, BusStats, LowLatencyPort, TryFailed,
                                                 run_with_retries)

T = TypeVar("T")
DEFAULT_RETRIES = 3
__all__ = ["BusStats", "LowLatencyPort", "ModelSpec", "Motor", "Register", "RegisterTable", "ServoBus", "TryFailed",
           "run_with_retries"]
_SETTLE_STEP_S, _SETTLE_MAX_S = 0.0005, 0.003


@dataclass(frozen=True)
class Motor:
    """One servo on a bus: its bus ``id`` (0..252) and ``model`` (e.g. ``"sts3215"``)."""

    id: int
    model: str


@dataclass(frozen=True)
class Register:
    """A control-table entry: ``address``, ``size`` (1, 2 or 4 bytes), the signed encoding
    (``sign_bit``: Feetech sign-magnitude, the bit carrying the sign; ``twos``: two's
    complement), whether it lives in EEPROM or is read-only, and its ``unit`` (documentation)."""

    address: int
    size: int
    sign_bit: int | None = None
    twos: bool = False
    eeprom: bool = False
    readonly: bool = False
    unit: str = ""

    def decode(self, raw: int) -> int:
        """Signed value of a raw unsigned register value."""
        if self.sign_bit is not None:
            magnitude = raw & ((1 << self.sign_bit) - 1)
            return -magnitude if (raw >> self.sign_bit) & 1 else magnitude
        bits = 8 * self.size
        return raw - (1 << bits) if self.twos and raw >= 1 << (bits - 1) else raw

    def encode(self, value: int, what: str = "register value") -> int:
        """Raw unsigned value of ``value``; ``ConfigError`` when it does not fit."""
        value, bits = int(value), 8 * self.size
        if self.sign_bit is not None:
            lo, hi = -((1 << self.sign_bit) - 1), (1 << self.sign_bit) - 1
        else:
            lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if self.twos else (0, (1 << bits) - 1)
        if not lo <= value <= hi:
            raise ConfigError.expected(what, f"{lo}..{hi}", value)
        if self.sign_bit is not None and value < 0:
            return (1 << self.sign_bit) | -value
        return value & ((1 << bits) - 1)


#: register name -> Register
RegisterTable = Mapping[str, Register]


@dataclass(frozen=True)
class ModelSpec:
    """A servo model: the number in its model-number register, ticks per turn, its table."""

    number: int
    resolution: int
    table: RegisterTable


def _fmt(names_ids: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{n} (id {i})" for n, i in names_ids)


class ServoBus(Device):
    """The motors of one serial port (a ``Device``: connect / disconnect / context manager).
    Subclasses give the SDK, the models, the EEPROM lock and the watchdog. ``timeout_s``: the
    status timeout of one try (s, plus the reply's byte time); ``retries``: tries after the
    first. Thread-safe: one lock around every transaction."""

    protocol = "servo"
    DEFAULT_BAUDRATE = 1_000_000
    MODELS: Mapping[str, ModelSpec] = {}
    #: the servo's EEPROM write-protect register (written 0 before, 1 after), if it has one
    EEPROM_LOCK: str | None = None
    #: +1 where the servo stores ``present = actual - offset`` (the project's way), -1 where it adds
    HOMING_SIGN = 1
    byteorder = "little"

    def __init__(self, port: str, motors: Mapping[str, Motor], *, baudrate: int | None = None,
                 retries: int = DEFAULT_RETRIES, name: str | None = None, clock: Clock | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        super().__init__(name or f"{self.protocol}:{port}", clock)
        self.port, self.motors = port, dict(motors)
        self.baudrate = self.DEFAULT_BAUDRATE if baudrate is None else int(baudrate)
        if retries < 0:
            raise ConfigError.expected(f"{self.name} retries", ">= 0", retries)
        if not 0 < timeout_s <= 1:
            raise ConfigError.expected(f"{self.name} timeout_s", "0 < timeout_s <= 1 s", timeout_s)
        self.retries, self.timeout_s = int(retries), float(timeout_s)
        self.stats = BusStats(try_timeout_s=self.timeout_s)
        self._lock = threading.RLock()
        self._port_handler: Any = None
        self._ph: Any = None
        self._names_by_id: dict[int, str] = {}
        for mname, m in self.motors.items():
            if not 0 <= m.id <= 252:
                raise ConfigError.expected(f"{self.name} motor {mname} id", "0..252", m.id)
            if m.id in self._names_by_id:
                raise ConfigError(f"{self.name}: motors {self._names_by_id[m.id]} and {mname} share id {m.id}")
            if m.model not in self.MODELS:
                raise ConfigError.expected(f"{self.name} motor {mname} model", f"one of {sorted(self.MODELS)}",
                                           m.model)
            self._names_by_id[m.id] = mname
        if not self.motors:
            raise ConfigError.expected(f"{self.name} motors", "at least one", "none")

    @abstractmethod
    def _sdk(self) -> Any:
        """The SDK module (``scservo_sdk`` / ``dynamixel_sdk``), imported on first use."""

    @abstractmethod
    def _packet_handler(self) -> Any: ...

    def _before_try(self) -> None:
        """Runs under the bus lock before every try (Feetech: the SDK's global byte order)."""

    # ----------------------------------------------------------------- lifecycle
    def _connect(self) -> None:
        sdk = self._sdk()
        handler = type("Port", (LowLatencyPort, sdk.PortHandler), {"rx_timeout_ms": self.timeout_s * 1e3})(self.port)
        if handler.getCFlagBaud(self.baudrate) <= 0:
            raise ConfigError.expected(f"{self.name} baudrate", "a rate the SDK supports", self.baudrate)
        try:
            handler.setBaudRate(self.baudrate)
            fcntl.flock(handler.ser.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handler.closePort()
            raise DeviceFaultError(self.name, f"port {self.port} is busy (another program has it open)") from None
        except OSError as exc:  # serial.SerialException is an OSError
            if handler.is_open:
                handler.closePort()
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DeviceFaultError(self.name, f"cannot open port {self.port}: {reason}") from None
        self._port_handler, self._ph = handler, self._packet_handler()
        try:
            self._check_motors()
        except BaseException:
            self._close()
            raise

    def _check_motors(self) -> None:
        """Ping every motor (the reply holds the model number); one error listing every motor
        that is silent, reports an alarm or is of the wrong model."""
        missing, problems = [], []
        for mname, m in self.motors.items():
            try:
                number = self._transact("ping", "", [m.id], lambda m=m: self._try_ping(m.id), connected=False)
            except DeviceFaultError as exc:
                if exc.failure.kind == "servo error":
                    problems.append(f"{mname} (id {m.id}) reported: {exc.failure.text}")
                else:
                    missing.append((mname, m.id, exc.failure.text))
                continue
            expected = self.MODELS[m.model].number
            if number != expected:
                found = [k for k, spec in self.MODELS.items() if spec.number == number]
                problems.append(f"{mname} (id {m.id}) expected model {m.model} (model number {expected}), found "
                                f"model number {number}" + (f" ({found[0]})" if found else ""))
        if missing:
            problems.insert(0, f"motors not answering on {self.port}: {_fmt([(n, i) for n, i, _ in missing])} "
                               f"({missing[0][2]})")
        if problems:
            raise DeviceFaultError(self.name, "; ".join(problems))

    def _disconnect(self) -> None:
        try:
            self.set_torque(False)
        except Exception:  # noqa: BLE001 - best effort: the port may be gone already
            pass
        self._close()

    def _close(self) -> None:
        with self._lock:
            handler, self._port_handler = self._port_handler, None
            try:
                if handler is not None:
                    handler.closePort()
            except Exception:  # noqa: BLE001
                pass

    # ----------------------------------------------------------------- transactions
    def _motor(self, name: str) -> Motor:
        if name not in self.motors:
            raise ConfigError.expected(f"{self.name} motor", f"one of {sorted(self.motors)}", name)
        return self.motors[name]

    def _names(self, names: Sequence[str] | None) -> list[str]:
        return list(self.motors) if names is None else [n for n in names if self._motor(n) is not None]

    def _register(self, register: str, names: Sequence[str]) -> Register:
        regs = set()
        for n in names:
            table = self.MODELS[self._motor(n).model].table
            if register not in table:
                raise ConfigError.expected(f"{self.name} register of {n} ({self._motor(n).model})",
                                           f"one of {sorted(table)}", register)
            regs.add(table[register])
        if len(regs) != 1:
            raise ConfigError(f"{self.name}: register {register} differs between the models of {list(names)}")
        return regs.pop()

    def _settle(self) -> None:
        """Between tries: wait (<= 3 ms) until no more bytes arrive, drop them (``clearPort``: a
        reply that comes after its try timed out lengthens the tries, see ``LowLatencyPort``), free
        the port."""
        handler = self._port_handler
        try:
            waited, last = 0.0, handler.ser.in_waiting
            while waited < _SETTLE_MAX_S:
                time.sleep(_SETTLE_STEP_S)
                waited, now = waited + _SETTLE_STEP_S, handler.ser.in_waiting
                if now == last:
                    break
                last = now
            handler.clearPort()
        except Exception:  # noqa: BLE001 - the next try reports a lost port
            pass
        handler.is_using = False

    def _transact(self, op: str, register: str, ids: Sequence[int], attempt: Callable[[], T],
                  connected: bool = True) -> T:
        """One transaction through ``run_with_retries``, under the bus lock."""
        if connected:
            self._require_connected(op)
        if self._port_handler is None:
            raise DeviceFaultError(self.name, f"{op} {register}: port {self.port} is closed")

        def guarded() -> T:
            try:
                self._port_handler.is_using = False
                self._before_try()
                result = attempt()
                self._port_handler.reply_complete()
                return result
            except OSError as exc:  # serial.SerialException: the port vanished under pyserial
                raise TryFailed("port error", f"port {self.port} failed: {exc}", ids, retry=False) from None

        def describe(f: TryFailed, tries: int) -> str:
            what, who = f"{op} {register}".strip(), _fmt([(self._names_by_id.get(i, "?"), i) for i in f.ids])
            if f.kind == "servo error":
                return f"{what}: {who} reported: {f.text}"
            unread = f" (not read: {_fmt([(self._names_by_id[i], i) for i in f.unread])})" if f.unread else ""
            return f"{what}: no valid answer from {who} after {tries} tries: {f.text}{unread}"

        with self._lock:
            self._port_handler.begin_transaction()
            try:
                return run_with_retries(guarded, stats=self.stats, retries=self.retries, device=self.name,
                                        describe=describe, between=self._settle, clock=self.clock)
            except DeviceFaultError:
                self._settle()  # the other motors' replies may still be on their way
                raise
            finally:
                handler = self._port_handler
                if handler is not None:
                    self.stats.try_timeout_s = handler.try_timeout_ms / 1e3
                    self.stats.late_replies = handler.late_replies

    def _check(self, result: int, error: int, ids: Sequence[int]) -> None:
        """``TryFailed`` for an SDK result other than success, or a status error byte."""
        sdk = self._sdk()
        if result != sdk.COMM_SUCCESS:
            kind = {sdk.COMM_RX_TIMEOUT: "timeout", sdk.COMM_RX_CORRUPT: "corrupt", sdk.COMM_TX_FAIL: "tx fail",
                    sdk.COMM_RX_FAIL: "no status packet", sdk.COMM_PORT_BUSY: "port busy"}.get(result, "sdk error")
            retry = result not in (sdk.COMM_TX_ERROR, sdk.COMM_NOT_AVAILABLE)
            raise TryFailed(kind, self._ph.getTxRxResult(result) or f"SDK result {result}", ids, retry)
        if error:
            text = self._ph.getRxPacketError(error) or f"status error byte 0x{error:02x}"
            raise TryFailed("servo error", text, ids, retry=False)

    def _bytes(self, raw: int, size: int) -> list[int]:
        return list(int(raw).to_bytes(size, self.byteorder))

    def _int(self, data: Sequence[int], size: int) -> int:
        return int.from_bytes(bytes(data[:size]), self.byteorder)

    def _try_ping(self, motor_id: int) -> int:
        number, result, error = self._ph.ping(self._port_handler, motor_id)
        self._check(result, error, [motor_id])
        return number

    def _try_read(self, reg: Register, motor_id: int) -> int:
        data, result, error = self._ph.readTxRx(self._port_handler, motor_id, reg.address, reg.size)
        self._check(result, error, [motor_id])
        return self._int(data, reg.size)

    def _try_write(self, reg: Register, motor_id: int, raw: int) -> None:
        result, error = self._ph.writeTxRx(self._port_handler, motor_id, reg.address, reg.size,
                                           self._bytes(raw, reg.size))
        self._check(result, error, [motor_id])

    def _try_sync_read(self, reg: Register, pending: dict[int, int | None]) -> dict[int, int]:
        """Sync read of the motors still ``None`` in ``pending``, filled as replies arrive (it
        outlives the try: a retry asks only the motors that have not answered)."""
        sdk, port, ph = self._sdk(), self._port_handler, self._ph
        ids = [i for i, v in pending.items() if v is None]
        group = sdk.GroupSyncRead(port, ph, reg.address, reg.size)
        for i in ids:
            group.addParam(i)
        self._check(group.txPacket(), 0, ids)
        failure, failed = None, []
        for i in ids:  # GroupSyncRead.rxPacket drops error bytes and stops at the first bad reply
            data, result, error = ph.readRx(port, i, reg.size)
            if result == sdk.COMM_SUCCESS and not error:
                pending[i] = self._int(data, reg.size)
                continue
            try:
                self._check(result, error, [i])
            except TryFailed as f:
                if not f.retry:
                    raise
                failure, failed = failure or f, failed + [i]
                if result != sdk.COMM_RX_CORRUPT:  # the wait is used up: the rest are unread
                    break
        if failure is not None:
            unread = [i for i, v in pending.items() if v is None and i not in failed]
            raise TryFailed(failure.kind, failure.text, failed, unread=unread)
        return {i: v for i, v in pending.items() if v is not None}

    def _try_sync_write(self, reg: Register, raws: Mapping[int, int]) -> None:
        group = self._sdk().GroupSyncWrite(self._port_handler, self._ph, reg.address, reg.size)
        for i, raw in raws.items():
            group.addParam(i, self._bytes(raw, reg.size))
        self._check(group.txPacket(), 0, list(raws))

    # ----------------------------------------------------------------- public API
    def resolution(self, name: str) -> int:
        """Ticks per turn of the motor ``name``."""
        return self.MODELS[self._motor(name).model].resolution

    def sync_read(self, register: str, names: Sequence[str] | None = None) -> dict[str, int]:
        """``register`` of ``names`` (default: every motor) in one sync-read transaction."""
        names = self._names(names)
        if not names:
            return {}
        reg = self._register(register, names)
        pending: dict[int, int | None] = {self.motors[n].id: None for n in names}
        raws = self._transact("sync_read", register, list(pending), lambda: self._try_sync_read(reg, pending))
        return {n: reg.decode(raws[self.motors[n].id]) for n in names}

    def sync_write(self, register: str, values: Mapping[str, int]) -> None:
        """``register`` of several motors in one broadcast packet (no status replies)."""
        if not values:
            return
        reg = self._register(register, list(values))
        raws = {self.motors[n].id: reg.encode(v, f"{self.name} {register} of {n}") for n, v in values.items()}
        self._transact("sync_write", register, list(raws), lambda: self._try_sync_write(reg, raws))

    def read(self, register: str, name: str) -> int:
        reg, mid = self._register(register, [name]), self._motor(name).id
        return reg.decode(self._transact("read", register, [mid], lambda: self._try_read(reg, mid)))

    def write(self, register: str, name: str, value: int) -> None:
        """One register of one motor; the status reply is checked."""
        reg, mid = self._register(register, [name]), self._motor(name).id
        raw = reg.encode(value, f"{self.name} {register} of {name}")
        self._transact("write", register, [mid], lambda: self._try_write(reg, mid, raw))

    def set_torque(self, enabled: bool, names: Sequence[str] | None = None) -> None:
        """Torque on/off, one acknowledged write per motor: all are tried, then the first
        failure (if any) is raised."""
        first: DeviceFaultError | None = None
        for n in self._names(names):
            try:
                self.write("torque_enable", n, int(bool(enabled)))
            except DeviceFaultError as exc:
                first = first or exc
        if first is not None:
            raise first

    def ping(self, name: str) -> bool:
        """Whether the motor answers a ping (with the bus's retries); never raises for silence."""
        m = self._motor(name)
        try:
            self._transact("ping", "", [m.id], lambda: self._try_ping(m.id))
            return True
        except DeviceFaultError:
            return False

    def write_eeprom(self, name: str, values: Mapping[str, int]) -> None:
        """EEPROM registers of one motor: torque off, unlock (``EEPROM_LOCK``), write, lock again
        (also when a write failed). Leaves torque off."""
        for register, value in values.items():  # validate everything before touching the servo
            self._register(register, [name]).encode(value, f"{self.name} {register} of {name}")
        with self._lock:
            self.write("torque_enable", name, 0)
            if self.EEPROM_LOCK:
                self.write(self.EEPROM_LOCK, name, 0)
            done = False
            try:
                for register, value in values.items():
                    self.write(register, name, value)
                done = True
            finally:
                if self.EEPROM_LOCK:
                    try:
                        self.write(self.EEPROM_LOCK, name, 1)
                    except DeviceFaultError:
                        if done:
                            raise  # nothing else failed: report this one

    def _check_ticks(self, name: str, what: str, value: int, lo: int, hi: int) -> int:
        if not lo <= int(value) <= hi:
            raise ConfigError.expected(f"{self.name} {what} of {name}", f"{lo}..{hi} ticks", value)
        return int(value)

    #: the largest homing offset (ticks, either sign) the servos apply
    MAX_HOMING_OFFSET = 2047
    #: ``operating_mode`` value of single-turn position control (the mode EEPROM limits apply in)
    POSITION_MODE = 0

    def write_homing_offset(self, name: str, offset_ticks: int) -> None:
        """EEPROM homing offset in the project convention ``reported = raw - offset_ticks``
        (``calibration.servo_homing_offset``); leaves torque off (the goal's frame changes)."""
        m = self.MAX_HOMING_OFFSET
        offset = self._check_ticks(name, "homing offset", offset_ticks, -m, m)
        self.write_eeprom(name, {"homing_offset": self.HOMING_SIGN * offset})

    def read_homing_offset(self, name: str) -> int:
        """The homing offset in the project convention (``write_homing_offset``'s argument)."""
        return self.HOMING_SIGN * self.read("homing_offset", name)

    def write_position_limits(self, name: str, min_ticks: int, max_ticks: int) -> None:
        """EEPROM position limits in reported ticks (after the homing offset); leaves torque off."""
        res = self.resolution(name)
        lo = self._check_ticks(name, "min position limit", min_ticks, 0, res - 2)
        hi = self._check_ticks(name, "max position limit", max_ticks, lo + 1, res - 1)
        self.write_eeprom(name, {"min_position_limit": lo, "max_position_limit": hi})

    @abstractmethod
    def set_watchdog(self, timeout_s: float | None) -> bool:
        """Arm (``timeout_s``) or disarm (``None``) the servos' own bus watchdog on every motor;
        False where the servo has none."""
