"""A stateful servo emulator on a pseudo-terminal: Feetech STS and Dynamixel Protocol 2.0, byte-exact.

``ServoEmulator(protocol, {id: model})`` opens a pty (both ends raw); ``port`` is the slave's path
for the bus under test (or ``robot-learning`` on the command line). The servos live in **their own
process** (started by ``start()``, a context manager), as real servos do: the host's threads, its
GIL and its busy loops never delay an answer, and a loaded host is loaded only the way a real one
is. The process reads instruction packets from the master (ping, read, write, reg write / action,
sync read, sync write; Dynamixel also bulk read) and writes status packets: Feetech ``FF FF id len
err params ~sum``, Dynamixel ``FF FF FD 00 id len_l len_h 55 err params crc_l crc_h`` with byte
stuffing and CRC-16 (poly 0x8005), coded here from the protocol documents, not from the SDKs. The
``ServoEmulator`` object is a handle: ``servo(id)``, the fault knobs and the counters are requests
to that process over a socket (a few tens of microseconds each).

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

Standard library only (the servo process runs this file by path, under the caller's interpreter,
which need not have the project installed: ``bench/servo_bus.py`` drives LeRobot's stack with it).
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
import sys
import threading
import time
import tty
from typing import Any, Literal, Mapping

FEETECH_MODELS = {"sts3215": 777, "sts3250": 2825}
DYNAMIXEL_MODELS = {"xl330-m077": 1190, "xl330-m288": 1200, "xl430-w250": 1060, "xm430-w350": 1020,
                    "xc430-w150": 1070}
PING, READ, WRITE, REG_WRITE, ACTION, SYNC_READ, SYNC_WRITE, BULK_READ = 1, 2, 3, 4, 5, 0x82, 0x83, 0x92
BROADCAST = 0xFE
MARK_ID = 253  # ServoEmulator.sync's marker (never a servo id)
DXL_ACCESS_ERROR, DXL_INSTRUCTION_ERROR, DXL_DATA_RANGE_ERROR, DXL_ALERT = 0x07, 0x02, 0x04, 0x80


# ---------------------------------------------------------------------------- codecs
def feetech_checksum(body: bytes) -> int:
    """``~(id + length + instruction/error + params) & 0xFF``."""
    return ~sum(body) & 0xFF


def feetech_packet(servo_id: int, code: int, params: bytes = b"") -> bytes:
    """A Feetech packet; ``code`` is the instruction, or the error byte of a status packet."""
    body = bytes([servo_id, len(params) + 2, code]) + bytes(params)
    return b"\xff\xff" + body + bytes([feetech_checksum(body)])


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_CRC = _crc_table()


def dxl_crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16/BUYPASS (poly 0x8005, init 0, no reflection), as Protocol 2.0 specifies."""
    for b in data:
        crc = ((crc << 8) ^ _CRC[((crc >> 8) ^ b) & 0xFF]) & 0xFFFF
    return crc


def dxl_stuff(payload: bytes) -> bytes:
    """Byte stuffing: an ``FD`` after every ``FF FF FD`` of the payload."""
    out = bytearray()
    for i, b in enumerate(payload):
        out.append(b)
        if b == 0xFD and i >= 2 and payload[i - 2] == 0xFF and payload[i - 1] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def dxl_unstuff(data: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(data):
        out.append(data[i])
        if data[i] == 0xFD and i >= 2 and data[i - 2:i] == b"\xff\xff" and data[i + 1:i + 2] == b"\xfd":
            i += 1
        i += 1
    return bytes(out)


def dxl_packet(servo_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A Protocol 2.0 packet (status packets: ``instruction=0x55``, params start with the error)."""
    stuffed = dxl_stuff(bytes([instruction]) + bytes(params))
    head = b"\xff\xff\xfd\x00" + bytes([servo_id]) + (len(stuffed) + 2).to_bytes(2, "little")
    return head + stuffed + dxl_crc16(head + stuffed).to_bytes(2, "little")


def parse_feetech(buf: bytearray) -> tuple[list[tuple[int, int, bytes, bytes]], int]:
    """Complete packets ``(id, instruction, params, wire bytes)`` taken from ``buf``, and the count
    of bad ones skipped; an incomplete packet stays in ``buf``."""
    packets, bad = [], 0
    while True:
        i = buf.find(b"\xff\xff")
        if i < 0:
            del buf[: len(buf) - (1 if buf[-1:] == b"\xff" else 0)]
            return packets, bad
        del buf[:i]
        if len(buf) < 4:
            return packets, bad
        if buf[2] == 0xFF:  # FF FF FF: the header starts one byte later
            del buf[0]
            continue
        if buf[3] < 2:
            bad += 1
            del buf[:2]
            continue
        total = buf[3] + 4
        if len(buf) < total:
            return packets, bad
        wire = bytes(buf[:total])
        if feetech_checksum(wire[2:-1]) != wire[-1]:
            bad += 1
            del buf[:2]
            continue
        packets.append((wire[2], wire[4], wire[5:-1], wire))
        del buf[:total]


def parse_dynamixel(buf: bytearray) -> tuple[list[tuple[int, int, bytes, bytes]], int]:
    packets, bad = [], 0
    while True:
        i = buf.find(b"\xff\xff\xfd\x00")
        if i < 0:
            del buf[: max(0, len(buf) - 3)]
            return packets, bad
        del buf[:i]
        if len(buf) < 7:
            return packets, bad
        length = buf[5] | buf[6] << 8
        total = length + 7
        if length < 3:
            bad += 1
            del buf[:4]
            continue
        if len(buf) < total:
            return packets, bad
        wire = bytes(buf[:total])
        if dxl_crc16(wire[:-2]) != int.from_bytes(wire[-2:], "little"):
            bad += 1
            del buf[:4]
            continue
        payload = dxl_unstuff(wire[7:-2])
        packets.append((wire[4], payload[0], payload[1:], wire))
        del buf[:total]


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
    """The servo process: ``servo_emulator.py CTRL_FD MASTER_FD SLAVE_FD CLOCK_FD`` (-1: real time);
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


# The servo process: this file imported by name from its folder (its cached bytecode; -I -S: the
# standard library only, whatever the caller's environment), then ``_serve_main``.
_HERE = os.path.dirname(os.path.abspath(__file__))
_SERVE = "import sys; sys.path.append(sys.argv[1]); import servo_emulator; servo_emulator._serve_main(sys.argv[2:])"


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

