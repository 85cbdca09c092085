"""The servo process of the servo emulator: the servos' register files, their physics, the rules and
the faults, answering the bus on the pty and the ``ServoEmulator`` handle on a socket.

The process reads instruction packets from the master (ping, read, write, reg write / action,
sync read, sync write; Dynamixel also bulk read) and writes status packets (``servo_packets``).

Physics: with torque on the shaft moves toward the goal (clamped to the EEPROM position limits) at
``max_speed_ticks_s``, or the servo's speed register when set (Feetech goal speed, ticks/s;
Dynamixel profile velocity, 0.229 rev/min), whichever is lower; time comes from the monotonic clock
(one clock for every process), or from a ``SharedFakeClock`` that the caller moves; the servos are
advanced to the present at every packet and every request. With torque off the shaft stays where
it is unless the caller moves it (``set_physical``). Torque changes leave the goal register as it
is: write goal = present before enabling torque, as on real servos.
Reported position: Feetech ``(physical - offset) mod 4096`` (offset sign-magnitude, bit 11);
Dynamixel ``(physical + offset) mod 4096`` (offset two's complement): real X servos report
``actual + offset`` without the wrap, i.e. they differ only outside ``0..4095``.

Rules: Feetech EEPROM (addresses < 40) keeps its old value unless Lock (55) is 0; read-only
addresses (0..4, 56..) ignore writes. Dynamixel answers "access error" (7) to EEPROM (< 64) writes
with torque on, to read-only addresses and to goal writes while the bus watchdog is tripped, and
"data range error" (4) to a homing offset outside +-1024 (the X series' limit).
Dynamixel bus watchdog (98, 1..127 x 20 ms, only with torque on): when no instruction packet
addressed to the servo (its id, or listed in a sync/bulk packet, or a broadcast ping/action)
arrived for that long, the servo stops (goal := present, at the exact deadline) and 98 becomes
0xFF (-1); goal registers stay read-only until 0 is written to 98.
Status return levels are honoured (Feetech 8: 0 = read/ping only; Dynamixel 68: 0 ping, 1 +read,
2 all), and so is the return delay (2 us units, starts at 0 here; factory 250).
Faults: ``corrupt_rate`` (bad checksum/CRC), ``drop_rate`` (reply never sent), ``delay_s`` (extra
latency per reply), ``disappear(id)`` (servo deaf and mute), ``servo(id).alarm`` (status error
byte; on Dynamixel the alert bit 0x80 with the bits in hardware error status, 70).

Standard library only (the servo process imports this file by name from its folder, under the
caller's interpreter, which need not have the project installed; see ``servo_emulator``).
"""

from __future__ import annotations

import collections
import marshal
import mmap
import os
import random
import select
import socket
import struct
import time
from typing import Any, Mapping

if __package__:  # robot_learning.hardware.servo_peer
    from robot_learning.hardware.servo_packets import (
        ACTION, BROADCAST, BULK_READ, DXL_ACCESS_ERROR, DXL_ALERT, DXL_DATA_RANGE_ERROR, DXL_INSTRUCTION_ERROR,
        DYNAMIXEL_MODELS, FEETECH_MODELS, PING, READ, REG_WRITE, SYNC_READ, SYNC_WRITE, WRITE, dxl_packet,
        feetech_packet, parse_dynamixel, parse_feetech)
else:  # standalone: by name from its folder (the servo process), or loaded by path after servo_packets
    from servo_packets import (  # type: ignore[no-redef]
        ACTION, BROADCAST, BULK_READ, DXL_ACCESS_ERROR, DXL_ALERT, DXL_DATA_RANGE_ERROR, DXL_INSTRUCTION_ERROR,
        DYNAMIXEL_MODELS, FEETECH_MODELS, PING, READ, REG_WRITE, SYNC_READ, SYNC_WRITE, WRITE, dxl_packet,
        feetech_packet, parse_dynamixel, parse_feetech)

MARK_ID = 253  # ServoEmulator.sync's marker (never a servo id)


# ---------------------------------------------------------------------------- servos
# addresses: model number, torque enable, goal / present position (size: pos_size), present speed,
# moving, (offset address, size), (min limit, max limit, size), (speed register, size), return
# delay, status return level, end of the EEPROM
_Layout = collections.namedtuple("_Layout", "model torque goal present speed moving offset limits speed_limit "
                                            "return_delay status_level eeprom_end size")
_FEETECH = _Layout(3, 40, 42, 56, 58, 66, (31, 2), (9, 11, 2), (46, 2), 7, 8, 40, 2)
_DYNAMIXEL = _Layout(0, 64, 116, 132, 128, 122, (20, 4), (52, 48, 4), (112, 4), 9, 68, 64, 4)
_DXL_TICKS_PER_UNIT_S = 0.229 / 60 * 4096  # 0.229 rev/min in ticks/s
_DXL_READONLY = set(range(0, 7)) | {70} | set(range(120, 148))
_DXL_GOALS = set(range(100, 108)) | set(range(116, 120))

class _Servo:
    """One emulated servo, in the servo process. ``registers``: the whole control table (EEPROM + RAM)."""

    def __init__(self, peer: _Peer, servo_id: int, model: str):
        self._peer, self.id, self.model = peer, servo_id, model
        self.feetech = peer.protocol == "feetech"
        self._lay = _FEETECH if self.feetech else _DYNAMIXEL
        self.registers = bytearray(256)
        self._physical = 2048.0
        self._velocity = 0.0
        self.alarm = 0
        self._pending: tuple[int, bytes] | None = None
        self.last_packet_ns = peer.now()
        lay, table = self._lay, FEETECH_MODELS if self.feetech else DYNAMIXEL_MODELS
        self._put(lay.model, 2, table[model])
        self._put(lay.limits[1], lay.limits[2], 4095)
        self._put(lay.goal, lay.size, 2048)
        if self.feetech:
            self.registers[5], self.registers[55], self.registers[8] = servo_id, 1, 1
            self.registers[62], self.registers[63] = 74, 30
        else:
            self.registers[7], self.registers[6], self.registers[11], self.registers[68] = servo_id, 52, 3, 2
            self._put(144, 2, 50 if model.startswith("xl330") else 120)
            self.registers[146] = 30
        self._refresh()

    # ---- register helpers (little-endian)
    def _get(self, addr: int, size: int, signed: bool = False) -> int:
        return int.from_bytes(self.registers[addr:addr + size], "little", signed=signed)

    def _put(self, addr: int, size: int, value: int) -> None:
        self.registers[addr:addr + size] = (int(value) % (1 << 8 * size)).to_bytes(size, "little")

    def _signed(self, addr: int, size: int) -> int:
        if not self.feetech:
            return self._get(addr, size, signed=True)
        raw, bit = self._get(addr, size), 11 if addr == self._lay.offset[0] else 15
        magnitude = raw & ((1 << bit) - 1)
        return -magnitude if raw >> bit & 1 else magnitude

    def _put_signed(self, addr: int, size: int, value: int) -> None:
        self._put(addr, size, (abs(value) | 1 << 15 if value < 0 else value) if self.feetech else value)

    # ---- state (what ``EmulatedServo`` asks for)
    def homing_offset(self) -> int:
        return self._signed(*self._lay.offset)

    def _reported(self) -> float:
        sign = -1 if self.feetech else 1
        return (self._physical + sign * self.homing_offset()) % 4096

    def torque_enabled(self) -> bool:
        return self.registers[self._lay.torque] != 0

    def goal(self) -> int:
        return self._signed(self._lay.goal, self._lay.size)

    def present_raw(self) -> int:
        return int(round(self._physical)) % 4096

    def present(self) -> int:
        return self._get(self._lay.present, self._lay.size, signed=not self.feetech)

    def set_physical(self, raw: float) -> None:
        self._physical = float(raw) % 4096
        self._refresh()

    def set_alarm(self, bits: int) -> None:
        self.alarm = int(bits)
        if not self.feetech:
            self.registers[70] = self.alarm

    def error_byte(self) -> int:
        return self.alarm if self.feetech else (DXL_ALERT if self.alarm else 0)

    def _target_and_speed(self) -> tuple[float, float]:
        lay, (lo_a, hi_a, size) = self._lay, self._lay.limits
        lo, hi = self._get(lo_a, size), self._get(hi_a, size)
        if hi <= lo:
            lo, hi = 0, 4095
        target = min(max(self._signed(lay.goal, lay.size), lo), hi)
        limit = abs(self._signed(*lay.speed_limit)) * (1 if self.feetech else _DXL_TICKS_PER_UNIT_S)
        speed = self._peer.max_speed_ticks_s
        return float(target), min(speed, limit) if limit > 0 else speed

    def _advance(self, dt: float) -> None:
        if dt <= 0:
            return
        self._velocity = 0.0
        if self.registers[self._lay.torque]:
            target, speed = self._target_and_speed()
            rep = self._reported()
            step = speed * dt
            if abs(target - rep) <= step:
                new = target
            else:
                new = rep + step * (1 if target > rep else -1)
                self._velocity = speed * (1 if target > rep else -1)
            self._physical = (self._physical + new - rep) % 4096

    def _refresh(self) -> None:
        lay = self._lay
        rep = int(round(self._reported())) % 4096
        self._put(lay.present, lay.size, rep)
        moving = bool(self.registers[lay.torque]) and abs(self._target_and_speed()[0] - self._reported()) > 0.5
        self.registers[lay.moving] = int(moving)
        v = self._velocity if self.feetech else self._velocity / _DXL_TICKS_PER_UNIT_S
        self._put_signed(lay.speed, 2 if self.feetech else 4, int(round(v)))

    def _watchdog_deadline(self) -> int | None:
        wd = self.registers[98]
        if self.feetech or not self.registers[self._lay.torque] or not 1 <= wd <= 127:
            return None
        return self.last_packet_ns + wd * 20_000_000

    def _write(self, addr: int, data: bytes) -> int:
        """Apply a write; the status error byte it earns (0: done or silently ignored)."""
        span = set(range(addr, addr + len(data)))
        if self.feetech:
            for a, b in zip(range(addr, addr + len(data)), data):
                if a <= 4 or a >= 56 or (a < self._lay.eeprom_end and self.registers[55]):
                    continue  # read-only, or EEPROM while locked: the old value stays
                self.registers[a] = b
            return 0
        if span & _DXL_READONLY or (min(span) < 64 and self.registers[self._lay.torque]):
            return DXL_ACCESS_ERROR
        if span & _DXL_GOALS and self.registers[98] == 0xFF:
            return DXL_ACCESS_ERROR
        off_addr, off_size = self._lay.offset
        if addr == off_addr and len(data) >= off_size:  # X series: homing offset limited to +-1024
            value = int.from_bytes(data[:off_size], "little", signed=True)
            if not -1024 <= value <= 1024:
                return DXL_DATA_RANGE_ERROR
        self.registers[addr:addr + len(data)] = data
        return 0


class EmulatorStats:
    """``packets``: valid instruction packets received; ``bad_packets``: checksum / CRC errors
    from the host; ``replies``: status packets written (corrupted ones included); ``corrupted``,
    ``dropped``: replies spoiled or not sent by the fault knobs."""

    FIELDS = ("packets", "bad_packets", "replies", "corrupted", "dropped")

    def __init__(self, packets: int = 0, bad_packets: int = 0, replies: int = 0, corrupted: int = 0,
                 dropped: int = 0):
        self.packets, self.bad_packets, self.replies = packets, bad_packets, replies
        self.corrupted, self.dropped = corrupted, dropped

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EmulatorStats) and self.as_dict() == other.as_dict()

    def __repr__(self) -> str:
        return f"EmulatorStats({', '.join(f'{k}={v}' for k, v in self.as_dict().items())})"


# ---------------------------------------------------------------------------- the servo process
_FRAME = struct.Struct("<I")
# The messages are tuples of plain values in marshal's format (the servo process runs the caller's
# interpreter, so the format is the same on both ends; marshal loads in microseconds).


def _send(sock: socket.socket, message: Any) -> None:
    data = marshal.dumps(message)
    sock.sendall(_FRAME.pack(len(data)) + data)


def _frames(inbox: bytearray) -> list[Any]:
    """The complete messages at the front of ``inbox`` (taken out of it)."""
    out = []
    while len(inbox) >= _FRAME.size:
        (n,) = _FRAME.unpack_from(inbox)
        if len(inbox) < _FRAME.size + n:
            break
        out.append(marshal.loads(bytes(inbox[_FRAME.size:_FRAME.size + n])))
        del inbox[:_FRAME.size + n]
    return out


class _Peer:
    """The servos of one emulator, in the servo process: the protocol, the physics, the faults."""

    _QUERIES = {"present", "present_raw", "goal", "torque_enabled", "homing_offset", "error_byte"}

    def __init__(self, protocol: str, servos: Mapping[int, str], seed: int, max_speed_ticks_s: float,
                 clock: mmap.mmap | None = None):
        self.protocol, self.max_speed_ticks_s, self._clock = protocol, float(max_speed_ticks_s), clock
        self._rng = random.Random(seed)
        self._last_ns = self.now()
        self.servos = {int(i): _Servo(self, int(i), m) for i, m in servos.items()}
        self.gone: set[int] = set()
        self.corrupt_rate = self.drop_rate = self.delay_s = 0.0
        self.stats = EmulatorStats()
        self.received: collections.deque[bytes] = collections.deque(maxlen=1000)

    def now(self) -> int:
        if self._clock is None:
            return time.monotonic_ns()
        while True:  # the owner may be writing it: two equal reads
            a, b = struct.unpack_from("<q", self._clock)[0], struct.unpack_from("<q", self._clock)[0]
            if a == b:
                return a

    def _tick(self, now: int) -> None:
        """Advance every servo to ``now``; a tripped watchdog stops its servo at the deadline."""
        dt = max(0, now - self._last_ns) / 1e9
        for s in self.servos.values():
            deadline = s._watchdog_deadline()
            if deadline is not None and deadline <= now:
                s._advance(max(0, deadline - self._last_ns) / 1e9)
                s._refresh()
                s._put(116, 4, s._get(132, 4))
                s.registers[98] = 0xFF
                s._advance(max(0, now - max(deadline, self._last_ns)) / 1e9)
            else:
                s._advance(dt)
            s._refresh()
        self._last_ns = max(self._last_ns, now)

    # ---- requests from the ServoEmulator handle
    def request(self, op: str, args: tuple) -> Any:
        self._tick(self.now())
        if op == "get":
            sid, name = args
            s = self.servos[sid]
            if name == "registers":
                return bytes(s.registers)
            if name == "alarm":
                return s.alarm
            if name not in self._QUERIES:
                raise ValueError(f"emulated servo: no attribute {name!r}")
            return getattr(s, name)()
        if op == "set_physical":
            for sid, raw in args[0].items():
                self.servos[sid].set_physical(raw)
            return None
        if op == "set_alarm":
            self.servos[args[0]].set_alarm(args[1])
            return None
        if op == "disappear":
            self.gone.add(args[0])
            return None
        if op == "reappear":
            self.gone.discard(args[0])
            self.servos[args[0]].last_packet_ns = self.now()
            return None
        if op == "knob":
            name, value = args
            if name not in ("corrupt_rate", "drop_rate", "delay_s"):
                raise ValueError(f"emulator: no knob {name!r}")
            setattr(self, name, float(value))
            return None
        if op == "stats":
            return self.stats.as_dict()
        if op == "received":
            return list(self.received)
        if op == "hello":
            return os.getpid()
        raise ValueError(f"emulator: unknown request {op!r}")

    def serve(self, ctrl: socket.socket, master: int, slave: int) -> None:
        """Answer the bus on ``master`` and the handle on ``ctrl`` until the handle says stop or goes."""
        buf, inbox = bytearray(), bytearray()
        parse = parse_feetech if self.protocol == "feetech" else parse_dynamixel
        marker = feetech_packet(MARK_ID, PING) if self.protocol == "feetech" else dxl_packet(MARK_ID, PING)
        marks_sent = marks_seen = 0
        syncs: list[tuple[int, int]] = []  # (marker number, request seq) of pending sync requests
        while True:
            ready, _, _ = select.select([master, ctrl], [], [])
            if master in ready:  # the bus first: a request sent after a packet sees its effect
                try:
                    buf += os.read(master, 4096)
                except BlockingIOError:
                    pass
                now = self.now()
                self._tick(now)
                packets, bad = parse(buf)
                self.stats.bad_packets += bad
                replies: list[tuple[float, bytes]] = []
                for sid, inst, params, wire in packets:
                    if sid == MARK_ID and inst == PING:
                        marks_seen += 1
                        continue
                    self.stats.packets += 1
                    self.received.append(wire)
                    replies += self._handle(sid, inst, params, now)
                for delay, data in replies:
                    if delay > 0:
                        time.sleep(delay)
                    try:
                        os.write(master, data)
                    except OSError:
                        self.stats.dropped += 1
                for mark, seq in [x for x in syncs if x[0] <= marks_seen]:
                    syncs.remove((mark, seq))
                    _send(ctrl, (seq, True, True))
            if ctrl in ready:
                chunk = ctrl.recv(1 << 16)
                if not chunk:
                    return  # the owner is gone
                inbox += chunk
                for seq, op, args in _frames(inbox):
                    if op == "sync":  # answered once the marker comes back through the pty
                        marks_sent += 1
                        syncs.append((marks_sent, seq))
                        os.write(slave, marker)
                        continue
                    if op == "stop":  # the handle closes its end at once: no reply
                        return
                    try:
                        reply = (seq, True, self.request(op, args))
                    except Exception as exc:  # noqa: BLE001 - reported to the handle, raised there
                        reply = (seq, False, f"{type(exc).__name__}: {exc}")
                    _send(ctrl, reply)

    def _reply(self, s: _Servo, error: int, data: bytes = b"") -> list[tuple[float, bytes]]:
        if self.protocol == "feetech":
            packet = bytearray(feetech_packet(s.id, error | s.error_byte(), data))
        else:
            packet = bytearray(dxl_packet(s.id, 0x55, bytes([error | s.error_byte()]) + data))
        if self._rng.random() < self.drop_rate:
            self.stats.dropped += 1
            return []
        if self._rng.random() < self.corrupt_rate:
            packet[-1] ^= 0x5A
            self.stats.corrupted += 1
        self.stats.replies += 1
        return [(self.delay_s + s.registers[s._lay.return_delay] * 2e-6, bytes(packet))]

    def _handle(self, sid: int, inst: int, params: bytes, now: int) -> list[tuple[float, bytes]]:
        fe = self.protocol == "feetech"
        alive = {i: s for i, s in self.servos.items() if i not in self.gone}
        head = 2 if fe else 4  # address + length fields of read / sync packets
        addr = (params[0] if fe else int.from_bytes(params[:2], "little")) if params else 0
        out: list[tuple[float, bytes]] = []

        def level(s: _Servo) -> int:  # 0 ping only, 1 + reads, 2 all (Feetech 0 -> 1, 1 -> 2)
            v = s.registers[s._lay.status_level]
            return v + 1 if fe else v

        if inst in (SYNC_READ, SYNC_WRITE, BULK_READ):
            if sid != BROADCAST:
                return []
            if inst == BULK_READ and not fe:
                for k in range(0, len(params) - 4, 5):
                    s = alive.get(params[k])
                    if s is not None:
                        s.last_packet_ns = now
                        a = int.from_bytes(params[k + 1:k + 3], "little")
                        n = int.from_bytes(params[k + 3:k + 5], "little")
                        out += self._reply(s, 0, bytes(s.registers[a:a + n]))
                return out
            n = params[1] if fe else int.from_bytes(params[2:4], "little")
            if inst == SYNC_READ:
                for i in params[head:]:
                    s = alive.get(i)
                    if s is not None:
                        s.last_packet_ns = now
                        if level(s) >= 1:
                            out += self._reply(s, 0, bytes(s.registers[addr:addr + n]))
                return out
            for k in range(head, len(params) - n, n + 1):
                s = alive.get(params[k])
                if s is not None:
                    s.last_packet_ns = now
                    s._write(addr, params[k + 1:k + 1 + n])
            return out
        targets = list(alive.values()) if sid == BROADCAST else [alive[sid]] if sid in alive else []
        for s in targets:
            s.last_packet_ns = now
            if inst == PING:
                out += self._reply(s, 0, b"" if fe else s.registers[0:2] + s.registers[6:7])
            elif inst == READ and sid != BROADCAST and level(s) >= 1:
                n = params[1] if fe else int.from_bytes(params[2:4], "little")
                out += self._reply(s, 0, bytes(s.registers[addr:addr + n]))
            elif inst in (WRITE, REG_WRITE, ACTION):
                error = 0
                if inst == WRITE:
                    error = s._write(addr, params[1 if fe else 2:])
                elif inst == REG_WRITE:
                    s._pending = (addr, bytes(params[1 if fe else 2:]))
                elif s._pending is not None:
                    error, s._pending = s._write(*s._pending), None
                s._refresh()
                if sid != BROADCAST and level(s) >= 2:
                    out += self._reply(s, error)
            elif not fe and sid != BROADCAST:
                out += self._reply(s, DXL_INSTRUCTION_ERROR)
        return out


def _serve_main(argv: list[str]) -> None:
    """The servo process: ``servo_peer.py CTRL_FD MASTER_FD SLAVE_FD CLOCK_FD`` (-1: real time);
    its configuration is the first message on CTRL_FD."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the owner's: the process ends with it
    ctrl_fd, master, slave, clock_fd = (int(a) for a in argv)
    ctrl = socket.socket(fileno=ctrl_fd)
    inbox = bytearray()
    while not (config := _frames(inbox)):
        chunk = ctrl.recv(1 << 16)
        if not chunk:
            return
        inbox += chunk
    clock = mmap.mmap(clock_fd, 8) if clock_fd >= 0 else None
    peer = _Peer(clock=clock, **config[0])
    _send(ctrl, (0, True, os.getpid()))
    try:
        peer.serve(ctrl, master, slave)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the owner went away mid-reply
    finally:
        for fd in (master, slave):
            os.close(fd)
        ctrl.close()
