"""A stateful servo emulator on a pseudo-terminal: Feetech STS and Dynamixel Protocol 2.0, byte-exact.

``ServoEmulator(protocol, {id: model})`` opens a pty (both ends raw); ``port`` is the slave's path
for the bus under test (or ``robot-learning`` on the command line). The servos live in **their own
process** (started by ``start()``, a context manager), as real servos do: the host's threads, its
GIL and its busy loops never delay an answer, and a loaded host is loaded only the way a real one
is. The process reads instruction packets from the master (ping, read, write, reg write / action,
sync read, sync write; Dynamixel also bulk read) and writes status packets. The ``ServoEmulator``
object is a handle: ``servo(id)``, the fault knobs and the counters are requests to that process
over a socket (a few tens of microseconds each).

Three files, this one the entry (it re-exports the other two's public names):

* ``servo_packets.py``: the wire format, byte-exact (checksum, CRC-16, byte stuffing, parsing),
  instruction codes and model numbers;
* ``servo_peer.py``: the servo process: register files, physics, EEPROM / access rules, bus
  watchdog, status return levels, fault knobs (its docstring says what the servos do);
* this file: the handle (``ServoEmulator``, ``EmulatedServo``) and ``SharedFakeClock``.

Standard library only (the servo process runs ``servo_peer.py`` by name from this folder, under
the caller's interpreter, which need not have the project installed: ``bench/servo_bus.py`` loads
this file by path to drive LeRobot's stack with it; so loaded, it loads its two siblings by path).
"""

from __future__ import annotations

import importlib.util
import mmap
import os
import select
import socket
import struct
import sys
import threading
import time
import tty
from typing import Any, Literal, Mapping

_HERE = os.path.dirname(os.path.abspath(__file__))

if __package__:  # robot_learning.hardware.servo_emulator
    from robot_learning.hardware.servo_packets import (
        ACTION, BROADCAST, BULK_READ, DXL_ACCESS_ERROR, DXL_ALERT, DXL_DATA_RANGE_ERROR, DXL_INSTRUCTION_ERROR,
        DYNAMIXEL_MODELS, FEETECH_MODELS, PING, READ, REG_WRITE, SYNC_READ, SYNC_WRITE, WRITE, dxl_crc16,
        dxl_packet, dxl_stuff, dxl_unstuff, feetech_checksum, feetech_packet, parse_dynamixel, parse_feetech)
    from robot_learning.hardware.servo_peer import MARK_ID, EmulatorStats, _frames, _send
else:  # standalone (loaded by path, e.g. under LeRobot's interpreter): the siblings by path too, in order
    for _name in ("servo_packets", "servo_peer"):  # servo_peer imports servo_packets by name
        _spec = importlib.util.spec_from_file_location(_name, os.path.join(_HERE, f"{_name}.py"))
        assert _spec is not None and _spec.loader is not None
        sys.modules[_name] = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(sys.modules[_name])
    from servo_packets import (  # type: ignore[no-redef]
        ACTION, BROADCAST, BULK_READ, DXL_ACCESS_ERROR, DXL_ALERT, DXL_DATA_RANGE_ERROR, DXL_INSTRUCTION_ERROR,
        DYNAMIXEL_MODELS, FEETECH_MODELS, PING, READ, REG_WRITE, SYNC_READ, SYNC_WRITE, WRITE, dxl_crc16,
        dxl_packet, dxl_stuff, dxl_unstuff, feetech_checksum, feetech_packet, parse_dynamixel, parse_feetech)
    from servo_peer import MARK_ID, EmulatorStats, _frames, _send  # type: ignore[no-redef]

__all__ = [
    "ACTION", "BROADCAST", "BULK_READ", "DXL_ACCESS_ERROR", "DXL_ALERT", "DXL_DATA_RANGE_ERROR",
    "DXL_INSTRUCTION_ERROR", "DYNAMIXEL_MODELS", "FEETECH_MODELS", "MARK_ID", "PING", "READ", "REG_WRITE",
    "SYNC_READ", "SYNC_WRITE", "WRITE", "EmulatedServo", "EmulatorStats", "ServoEmulator", "SharedFakeClock",
    "dxl_crc16", "dxl_packet", "dxl_stuff", "dxl_unstuff", "feetech_checksum", "feetech_packet",
    "parse_dynamixel", "parse_feetech",
]


# ---------------------------------------------------------------------------- the handle
class SharedFakeClock:
    """``robot_learning.core.clock.FakeClock`` that the servo process reads too (its time lives in
    shared memory): time moves only through ``advance`` / ``set`` or a sleep. Thread-safe."""

    def __init__(self, start_ns: int = 0):
        import tempfile

        self._file = tempfile.TemporaryFile()
        self._file.write(bytes(8))
        self._file.flush()
        self._mm = mmap.mmap(self._file.fileno(), 8)
        self._cv = threading.Condition()
        self._t = 0
        with self._cv:
            self._store(int(start_ns))

    def fileno(self) -> int:
        return self._file.fileno()

    def _store(self, t: int) -> None:
        """Under ``_cv``."""
        self._t = t
        struct.pack_into("<q", self._mm, 0, t)
        self._cv.notify_all()

    def now_ns(self) -> int:
        with self._cv:
            return self._t

    def advance(self, delta_ns: int) -> int:
        if delta_ns < 0:
            raise ValueError(f"SharedFakeClock.advance: expected delta >= 0, found {delta_ns}")
        with self._cv:
            self._store(self._t + int(delta_ns))
            return self._t

    def advance_s(self, delta_s: float) -> int:
        return self.advance(int(round(delta_s * 1e9)))

    def set(self, t_ns: int) -> None:
        with self._cv:
            if t_ns < self._t:
                raise ValueError(f"SharedFakeClock.set: time is monotonic, expected >= {self._t}, found {t_ns}")
            self._store(int(t_ns))

    def sleep_until_ns(self, deadline_ns: int) -> None:
        with self._cv:
            if deadline_ns > self._t:
                self._store(int(deadline_ns))

    def wait_until_ns(self, deadline_ns: int, real_timeout_s: float = 5.0) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._t >= deadline_ns, timeout=real_timeout_s)


class EmulatedServo:
    """A handle on one emulated servo: each attribute is a request to the servo process."""

    def __init__(self, emu: ServoEmulator, servo_id: int, model: str):
        self._emu, self.id, self.model = emu, servo_id, model
        self.feetech = emu.protocol == "feetech"

    def _get(self, name: str) -> Any:
        return self._emu._call("get", self.id, name)

    @property
    def registers(self) -> bytes:
        """A copy of the whole control table (EEPROM + RAM, 256 bytes)."""
        return self._get("registers")

    @property
    def homing_offset(self) -> int:
        return self._get("homing_offset")

    @property
    def torque_enabled(self) -> bool:
        return self._get("torque_enabled")

    @property
    def goal(self) -> int:
        """Goal position register (reported ticks, before the limits)."""
        return self._get("goal")

    @property
    def present_raw(self) -> int:
        """The physical shaft angle 0..4095 (before the homing offset)."""
        return self._get("present_raw")

    @property
    def present(self) -> int:
        """The position the servo reports (ticks, after the homing offset)."""
        return self._get("present")

    def set_physical(self, raw: float) -> None:
        """Move the shaft by hand to ``raw`` (physical ticks)."""
        self._emu.set_physical({self.id: raw})

    move_to = set_physical

    @property
    def alarm(self) -> int:
        return self._get("alarm")

    @alarm.setter
    def alarm(self, bits: int) -> None:
        """Status error bits (Feetech: 1 voltage, 2 angle, 4 overheat, 8 current, 32 overload;
        Dynamixel: hardware error status bits, reported with the alert bit 0x80)."""
        self._emu._call("set_alarm", self.id, int(bits))

    @property
    def error_byte(self) -> int:
        return self._get("error_byte")


def _knob(name: str) -> property:
    def get(self: ServoEmulator) -> float:
        return self._knobs[name]

    def put(self: ServoEmulator, value: float) -> None:
        self._call("knob", name, float(value))
        self._knobs[name] = float(value)

    return property(get, put)



# The servo process: servo_peer.py imported by name from this folder (its cached bytecode; -I -S:
# the standard library only, whatever the caller's environment), then ``_serve_main``.
_SERVE = "import sys; sys.path.append(sys.argv[1]); import servo_peer; servo_peer._serve_main(sys.argv[2:])"


class ServoEmulator:
    """Servos on a pseudo-terminal, answered by their own process; a context manager (``start`` /
    ``stop``). ``received``: the wire bytes of the last 1000 valid instruction packets. ``clock``:
    None (real time) or a ``SharedFakeClock``. Thread-safe (one request at a time)."""

    #: seconds a request may take before the servo process counts as hung (a loaded host is slow)
    REQUEST_TIMEOUT_S = 60.0

    corrupt_rate = _knob("corrupt_rate")
    drop_rate = _knob("drop_rate")
    delay_s = _knob("delay_s")

    def __init__(self, protocol: Literal["feetech", "dynamixel"], servos: Mapping[int, str], *, seed: int = 0,
                 max_speed_ticks_s: float = 4000, clock: SharedFakeClock | None = None):
        if protocol not in ("feetech", "dynamixel"):
            raise ValueError(f"emulator protocol: expected 'feetech' or 'dynamixel', found {protocol!r}")
        table = FEETECH_MODELS if protocol == "feetech" else DYNAMIXEL_MODELS
        for model in servos.values():
            if model not in table:
                raise ValueError(f"emulator: expected a model in {sorted(table)}, found {model!r}")
        if clock is not None and not isinstance(clock, SharedFakeClock):
            raise TypeError(f"emulator clock: expected None (real time) or a SharedFakeClock (the servo process "
                            f"reads it), found {type(clock).__name__}")
        self.protocol, self.max_speed_ticks_s, self.clock = protocol, float(max_speed_ticks_s), clock
        self._config = {"protocol": protocol, "servos": {int(i): m for i, m in servos.items()}, "seed": int(seed),
                        "max_speed_ticks_s": float(max_speed_ticks_s)}
        self._servos = {int(i): EmulatedServo(self, int(i), m) for i, m in servos.items()}
        self._knobs = {"corrupt_rate": 0.0, "drop_rate": 0.0, "delay_s": 0.0}
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._lock = threading.RLock()
        self._proc: Any = None  # subprocess.Popen
        self._sock: socket.socket | None = None
        self._inbox = bytearray()
        self._seq = 0
        self._stopped = False

    def servo(self, servo_id: int) -> EmulatedServo:
        return self._servos[servo_id]

    def set_physical(self, raws: Mapping[int, float]) -> None:
        """Move several shafts by hand at once (physical ticks by servo id): one request."""
        self._call("set_physical", {int(i): float(r) for i, r in raws.items()})

    def disappear(self, servo_id: int) -> None:
        self._call("disappear", int(servo_id))

    def reappear(self, servo_id: int) -> None:
        self._call("reappear", int(servo_id))

    @property
    def stats(self) -> EmulatorStats:
        """The counters, as they are now (a copy)."""
        return EmulatorStats(**self._call("stats"))

    @property
    def received(self) -> list[bytes]:
        return self._call("received")

    def sync(self, timeout_s: float = 1.0) -> bool:
        """Wait (real time) until every byte the host wrote so far has been handled: a packet
        without a reply (sync write) has taken effect, e.g. before a test moves a fake clock.
        The servo process sends itself a marker (a ping to id 253) through the pty, behind them."""
        try:
            return bool(self._call("sync", timeout_s=timeout_s))
        except TimeoutError:
            return False

    # ---- lifecycle
    def start(self) -> ServoEmulator:
        import subprocess

        with self._lock:
            if self._proc is not None:
                return self
            if self._stopped:
                raise RuntimeError(f"servo emulator on {self.port} was stopped")
            mine, theirs = socket.socketpair()
            clock_fd = self.clock.fileno() if self.clock is not None else -1
            fds = [theirs.fileno(), self._master, self._slave] + ([clock_fd] if clock_fd >= 0 else [])
            try:
                self._proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _SERVE, _HERE,
                                               *(str(fd) for fd in fds[:3]), str(clock_fd)],
                                              pass_fds=fds, stdin=subprocess.DEVNULL)
            finally:
                theirs.close()
            os.close(self._master)  # the servo process owns the pty now: it ends with that process
            os.close(self._slave)
            self._master = self._slave = -1
            self._sock = mine
            _send(mine, self._config)
            try:
                self._wait(0, self.REQUEST_TIMEOUT_S)
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            proc, sock, self._proc, self._sock = self._proc, self._sock, None, None
            if sock is not None:
                try:
                    self._seq += 1
                    _send(sock, (self._seq, "stop", ()))
                except OSError:
                    pass
                sock.close()  # the process also ends when it sees the socket close
            if proc is not None:
                try:
                    proc.wait(timeout=10)
                except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: it hangs
                    proc.kill()
                    proc.wait()
            for fd in (self._master, self._slave):
                if fd >= 0:
                    os.close(fd)
            self._master = self._slave = -1

    def __enter__(self) -> ServoEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            if self._proc is not None or self._master >= 0:
                self.stop()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    # ---- requests
    def _call(self, op: str, *args: Any, timeout_s: float | None = None) -> Any:
        with self._lock:
            if self._proc is None:
                self.start()
            assert self._sock is not None
            self._seq += 1
            seq = self._seq
            _send(self._sock, (seq, op, args))
            return self._wait(seq, self.REQUEST_TIMEOUT_S if timeout_s is None else timeout_s)

    def _wait(self, seq: int, timeout_s: float) -> Any:
        """The reply to request ``seq`` (replies to abandoned requests are dropped)."""
        sock, deadline = self._sock, time.monotonic() + timeout_s
        assert sock is not None
        while True:
            for got, ok, value in _frames(self._inbox):
                if got != seq:
                    continue
                if not ok:
                    raise RuntimeError(f"servo emulator: {value}")
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"servo emulator on {self.port}: no answer in {timeout_s:g} s")
            ready, _, _ = select.select([sock], [], [], left)
            if ready:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise RuntimeError(f"servo emulator on {self.port}: its process ended "
                                       f"(exit code {self._proc.poll() if self._proc else None})")
                self._inbox += chunk
