"""The wire format of the servo emulator's servos: Feetech STS and Dynamixel Protocol 2.0 packets, byte-exact.

Feetech ``FF FF id len err params ~sum``; Dynamixel ``FF FF FD 00 id len_l len_h inst params crc_l crc_h``
(status packets: ``inst`` 0x55, params start with the error byte) with byte stuffing and CRC-16
(poly 0x8005), coded here from the protocol documents, not from the SDKs. Also the instruction
codes, the error codes and the model numbers the emulated servos answer with.

Standard library only, and no imports of its own: see ``servo_emulator`` (the servo process
imports this file by name from its folder, under the caller's interpreter).
"""

from __future__ import annotations

FEETECH_MODELS = {"sts3215": 777, "sts3250": 2825}
DYNAMIXEL_MODELS = {"xl330-m077": 1190, "xl330-m288": 1200, "xl430-w250": 1060, "xm430-w350": 1020,
                    "xc430-w150": 1070}
PING, READ, WRITE, REG_WRITE, ACTION, SYNC_READ, SYNC_WRITE, BULK_READ = 1, 2, 3, 4, 5, 0x82, 0x83, 0x92
BROADCAST = 0xFE
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
