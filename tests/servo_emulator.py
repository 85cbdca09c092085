"""A stateful servo emulator on a pseudo-terminal: Feetech STS and Dynamixel Protocol 2.0, byte-exact.

Test-side only. ``ServoEmulator(protocol, {id: model})`` opens a pty (both ends raw); ``port`` is
the slave's path for the bus under test. A thread reads instruction packets from the master (ping,
read, write, reg write / action, sync read, sync write; Dynamixel also bulk read) and writes status
packets: Feetech ``FF FF id len err params ~sum``, Dynamixel ``FF FF FD 00 id len_l len_h 55 err
params crc_l crc_h`` with byte stuffing and CRC-16 (poly 0x8005), coded here from the protocol
documents, not from the SDKs.

Physics: with torque on the shaft moves toward the goal (clamped to the EEPROM position limits) at
``max_speed_ticks_s``, or the servo's speed register when set (Feetech goal speed, ticks/s;
Dynamixel profile velocity, 0.229 rev/min), whichever is lower; time comes from ``clock`` (default
the monotonic clock) and is advanced at every packet and every 2 ms. With torque off the shaft stays
where it is unless the test moves it (``set_physical``). Torque changes leave the goal register as
it is: write goal = present before enabling torque, as on real servos.
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
"""

from __future__ import annotations

import collections
import os
import random
import select
import sys
import threading
import time
import tty
from dataclasses import dataclass
from typing import Literal, Mapping

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


class EmulatedServo:
    """One emulated servo. ``registers``: the whole control table (EEPROM + RAM, bytes)."""

    def __init__(self, emu: ServoEmulator, servo_id: int, model: str):
        self._emu, self.id, self.model = emu, servo_id, model
        self.feetech = emu.protocol == "feetech"
        self._lay = _FEETECH if self.feetech else _DYNAMIXEL
        self.registers = bytearray(256)
        self._physical = 2048.0
        self._velocity = 0.0
        self._alarm = 0
        self._pending: tuple[int, bytes] | None = None
        self.last_packet_ns = emu._now()
        lay, table = self._lay, FEETECH_MODELS if self.feetech else DYNAMIXEL_MODELS
        if model not in table:
            raise ValueError(f"emulator: expected a model in {sorted(table)}, found {model!r}")
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

    # ---- state
    @property
    def homing_offset(self) -> int:
        return self._signed(*self._lay.offset)

    def _reported(self) -> float:
        sign = -1 if self.feetech else 1
        return (self._physical + sign * self.homing_offset) % 4096

    @property
    def torque_enabled(self) -> bool:
        with self._emu._lock:
            return self.registers[self._lay.torque] != 0

    @property
    def goal(self) -> int:
        """Goal position register (reported ticks, before the limits)."""
        with self._emu._lock:
            return self._signed(self._lay.goal, self._lay.size)

    @property
    def present_raw(self) -> int:
        """The physical shaft angle 0..4095 (before the homing offset)."""
        with self._emu._lock:
            self._emu._tick(self._emu._now())
            return int(round(self._physical)) % 4096

    @property
    def present(self) -> int:
        """The position the servo reports (ticks, after the homing offset)."""
        with self._emu._lock:
            self._emu._tick(self._emu._now())
            return self._get(self._lay.present, self._lay.size, signed=not self.feetech)

    def set_physical(self, raw: float) -> None:
        """Move the shaft by hand to ``raw`` (physical ticks)."""
        with self._emu._lock:
            self._emu._tick(self._emu._now())
            self._physical = float(raw) % 4096
            self._refresh()

    move_to = set_physical

    @property
    def alarm(self) -> int:
        return self._alarm

    @alarm.setter
    def alarm(self, bits: int) -> None:
        """Status error bits (Feetech: 1 voltage, 2 angle, 4 overheat, 8 current, 32 overload;
        Dynamixel: hardware error status bits, reported with the alert bit 0x80)."""
        with self._emu._lock:
            self._alarm = int(bits)
            if not self.feetech:
                self.registers[70] = self._alarm

    @property
    def error_byte(self) -> int:
        return self._alarm if self.feetech else (DXL_ALERT if self._alarm else 0)

    def _target_and_speed(self) -> tuple[float, float]:
        lay, (lo_a, hi_a, size) = self._lay, self._lay.limits
        lo, hi = self._get(lo_a, size), self._get(hi_a, size)
        if hi <= lo:
            lo, hi = 0, 4095
        target = min(max(self._signed(lay.goal, lay.size), lo), hi)
        limit = abs(self._signed(*lay.speed_limit)) * (1 if self.feetech else _DXL_TICKS_PER_UNIT_S)
        speed = self._emu.max_speed_ticks_s
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


@dataclass
class EmulatorStats:
    packets: int = 0      # valid instruction packets received
    bad_packets: int = 0  # checksum / CRC errors from the host
    replies: int = 0      # status packets written (corrupted ones included)
    corrupted: int = 0
    dropped: int = 0


class ServoEmulator:
    """Servos on a pseudo-terminal; a context manager (starts / stops the thread, closes fds).
    ``received``: the wire bytes of the last 1000 valid instruction packets."""

    def __init__(self, protocol: Literal["feetech", "dynamixel"], servos: Mapping[int, str], *, seed: int = 0,
                 max_speed_ticks_s: float = 4000, clock=None):
        if protocol not in ("feetech", "dynamixel"):
            raise ValueError(f"emulator protocol: expected 'feetech' or 'dynamixel', found {protocol!r}")
        self.protocol, self.max_speed_ticks_s, self._clock = protocol, float(max_speed_ticks_s), clock
        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        self._last_ns = self._now()
        self._servos = {int(i): EmulatedServo(self, int(i), m) for i, m in servos.items()}
        self._gone: set[int] = set()
        self.corrupt_rate = self.drop_rate = self.delay_s = 0.0
        self.stats = EmulatorStats()
        self.received: collections.deque[bytes] = collections.deque(maxlen=1000)
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._marks = threading.Condition()
        self._marks_sent = self._marks_seen = 0

    def _now(self) -> int:
        return self._clock.now_ns() if self._clock is not None else time.monotonic_ns()

    def servo(self, servo_id: int) -> EmulatedServo:
        return self._servos[servo_id]

    def disappear(self, servo_id: int) -> None:
        with self._lock:
            self._gone.add(servo_id)

    def reappear(self, servo_id: int) -> None:
        with self._lock:
            self._gone.discard(servo_id)
            self._servos[servo_id].last_packet_ns = self._now()

    def sync(self, timeout_s: float = 1.0) -> bool:
        """Wait (real time) until every byte the host wrote so far has been handled: a packet
        without a reply (sync write) has taken effect, e.g. before a test moves a FakeClock.
        The emulator sends itself a marker (a ping to id 253) through the pty, behind them."""
        with self._marks:
            self._marks_sent += 1
            target = self._marks_sent
        marker = feetech_packet(MARK_ID, PING) if self.protocol == "feetech" else dxl_packet(MARK_ID, PING)
        os.write(self._slave, marker)
        with self._marks:
            return self._marks.wait_for(lambda: self._marks_seen >= target, timeout_s)

    # ---- lifecycle
    def start(self) -> ServoEmulator:
        # The SDKs busy-wait for status packets holding the GIL between reads; a 0.5 ms switch
        # interval (instead of 5 ms) lets this thread answer promptly. Restored by stop().
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(min(self._old_switch, 0.0005))
        self._thread = threading.Thread(target=self._run, name=f"servo-emulator-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
            sys.setswitchinterval(self._old_switch)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
        self._master = self._slave = -1

    def __enter__(self) -> ServoEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- the thread
    def _tick(self, now: int) -> None:
        """Advance every servo to ``now``; a tripped watchdog stops its servo at the deadline."""
        dt = max(0, now - self._last_ns) / 1e9
        for s in self._servos.values():
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

    def _run(self) -> None:
        buf, parse = bytearray(), parse_feetech if self.protocol == "feetech" else parse_dynamixel
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.002)
                if ready:
                    buf += os.read(self._master, 4096)
            except (OSError, ValueError):
                return
            with self._lock:
                now = self._now()
                self._tick(now)
                packets, bad = parse(buf)
                self.stats.bad_packets += bad
                replies: list[tuple[float, bytes]] = []
                for sid, inst, params, wire in packets:
                    if sid == MARK_ID and inst == PING:
                        with self._marks:
                            self._marks_seen += 1
                            self._marks.notify_all()
                        continue
                    self.stats.packets += 1
                    self.received.append(wire)
                    replies += self._handle(sid, inst, params, now)
            for delay, data in replies:
                if delay > 0:
                    time.sleep(delay)
                try:
                    os.write(self._master, data)
                except OSError:
                    self.stats.dropped += 1

    def _reply(self, s: EmulatedServo, error: int, data: bytes = b"") -> list[tuple[float, bytes]]:
        if self.protocol == "feetech":
            packet = bytearray(feetech_packet(s.id, error | s.error_byte, data))
        else:
            packet = bytearray(dxl_packet(s.id, 0x55, bytes([error | s.error_byte]) + data))
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
        alive = {i: s for i, s in self._servos.items() if i not in self._gone}
        head = 2 if fe else 4  # address + length fields of read / sync packets
        addr = (params[0] if fe else int.from_bytes(params[:2], "little")) if params else 0
        out: list[tuple[float, bytes]] = []

        def level(s: EmulatedServo) -> int:  # 0 ping only, 1 + reads, 2 all (Feetech 0 -> 1, 1 -> 2)
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
