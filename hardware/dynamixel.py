"""Dynamixel X-series servo bus (Koch / GELLO arms) over ``dynamixel_sdk``, Protocol 2.0.

Models: ``xl330-m077``, ``xl330-m288``, ``xl430-w250``, ``xm430-w350``, ``xc430-w150`` (4096
ticks a turn). Control table from the X-series e-manual: EEPROM 0..63 (written only with torque
off: the servo answers "access error" otherwise), RAM 64..; little-endian; signed registers
two's complement. Units: positions ticks, ``homing_offset`` ticks, velocities 0.229 rev/min,
``profile_acceleration`` 214.577 rev/min^2, currents 1 mA (XL330) / 2.69 mA (XM, XC),
``bus_watchdog`` 20 ms, ``return_delay`` 2 us, voltage 0.1 V, temperature deg C. The XL430 has
no current control: its 126 is ``present_load`` (0.1 %), and it has no ``goal_current``.

The Dynamixel homing offset adds (``present = actual + homing_offset``); the bus writes the
negated project offset so that ``reported = raw - offset`` as everywhere in the project.
Writes expect a status reply: keep ``status_return_level`` (68) at its factory value 2.

Byte stuffing: ``dynamixel_sdk`` 4.1.0's ``txPacket`` ignores the list ``addStuffing`` returns,
so an instruction whose payload holds ``FF FF FD`` goes out unstuffed (a servo may take it for a
new header), and its in-place ``removeStuffing`` loses a byte for some payloads (12 of the 21,824
payloads of 3..7 bytes over FF/FD/00/01). ``protocol2_handler()`` fixes both.
"""

from __future__ import annotations

import math
from typing import Any

from robot_learning.errors import ConfigError
from robot_learning.hardware.servo_bus import ModelSpec, Register, ServoBus

_E = {"eeprom": True}
_RO = {"readonly": True}
WATCHDOG_UNIT_S = 0.02

X_TABLE: dict[str, Register] = {
    "model_number": Register(0, 2, eeprom=True, readonly=True),
    "firmware_version": Register(6, 1, eeprom=True, readonly=True),
    "id": Register(7, 1, **_E),
    "baudrate": Register(8, 1, unit="index: 1=57.6k 3=1M 4=2M 5=3M 6=4M", **_E),
    "return_delay": Register(9, 1, unit="2 us", **_E),
    "drive_mode": Register(10, 1, **_E),
    "operating_mode": Register(11, 1, unit="0 current, 1 velocity, 3 position, 4 extended, 5 current-based", **_E),
    "homing_offset": Register(20, 4, twos=True, unit="ticks (servo: present = actual + offset)", **_E),
    "moving_threshold": Register(24, 4, unit="0.229 rev/min", **_E),
    "temperature_limit": Register(31, 1, unit="deg C", **_E),
    "max_voltage_limit": Register(32, 2, unit="0.1 V", **_E),
    "min_voltage_limit": Register(34, 2, unit="0.1 V", **_E),
    "pwm_limit": Register(36, 2, unit="0.113 %", **_E),
    "current_limit": Register(38, 2, unit="mA units", **_E),
    "velocity_limit": Register(44, 4, unit="0.229 rev/min", **_E),
    "max_position_limit": Register(48, 4, unit="ticks", **_E),
    "min_position_limit": Register(52, 4, unit="ticks", **_E),
    "shutdown": Register(63, 1, **_E),
    "torque_enable": Register(64, 1),
    "led": Register(65, 1),
    "status_return_level": Register(68, 1, unit="0 ping only, 1 ping+read, 2 all"),
    "hardware_error_status": Register(70, 1, **_RO),
    "velocity_i_gain": Register(76, 2),
    "velocity_p_gain": Register(78, 2),
    "position_d_gain": Register(80, 2),
    "position_i_gain": Register(82, 2),
    "position_p_gain": Register(84, 2),
    "bus_watchdog": Register(98, 1, twos=True, unit="20 ms (0 off, -1 tripped)"),
    "goal_pwm": Register(100, 2, twos=True, unit="0.113 %"),
    "goal_current": Register(102, 2, twos=True, unit="mA units"),
    "goal_velocity": Register(104, 4, twos=True, unit="0.229 rev/min"),
    "profile_acceleration": Register(108, 4, unit="214.577 rev/min^2"),
    "profile_velocity": Register(112, 4, unit="0.229 rev/min (0: maximum)"),
    "goal_position": Register(116, 4, twos=True, unit="ticks"),
    "moving": Register(122, 1, **_RO),
    "present_pwm": Register(124, 2, twos=True, **_RO),
    "present_current": Register(126, 2, twos=True, unit="mA units", **_RO),
    "present_velocity": Register(128, 4, twos=True, unit="0.229 rev/min", **_RO),
    "present_position": Register(132, 4, twos=True, unit="ticks", **_RO),
    "present_input_voltage": Register(144, 2, unit="0.1 V", **_RO),
    "present_temperature": Register(146, 1, unit="deg C", **_RO),
}

_XL430_TABLE = {k: v for k, v in X_TABLE.items() if k not in ("goal_current", "current_limit", "present_current")}
_XL430_TABLE["present_load"] = Register(126, 2, twos=True, unit="0.1 %", readonly=True)

DYNAMIXEL_MODELS: dict[str, ModelSpec] = {
    "xl330-m077": ModelSpec(1190, 4096, X_TABLE),
    "xl330-m288": ModelSpec(1200, 4096, X_TABLE),
    "xl430-w250": ModelSpec(1060, 4096, _XL430_TABLE),
    "xm430-w350": ModelSpec(1020, 4096, X_TABLE),
    "xc430-w150": ModelSpec(1070, 4096, X_TABLE),
}


def unstuff(body: list[int]) -> list[int]:
    """Protocol 2.0 payload without its stuffing: the ``FD`` after each ``FF FF FD`` dropped."""
    out, i = [], 0
    while i < len(body):
        out.append(body[i])
        if body[i] == 0xFD and i >= 2 and body[i - 2] == body[i - 1] == 0xFF and body[i + 1:i + 2] == [0xFD]:
            i += 1
        i += 1
    return out


def protocol2_handler() -> Any:
    """The SDK's ``Protocol2PacketHandler`` with the byte stuffing fixed both ways."""
    import dynamixel_sdk

    class Protocol2(dynamixel_sdk.Protocol2PacketHandler):
        def addStuffing(self, packet):  # noqa: N802 - txPacket drops the returned (longer) list
            packet[:] = super().addStuffing(packet)
            return packet

        def removeStuffing(self, packet):  # noqa: N802
            length = packet[5] | packet[6] << 8
            body = unstuff(list(packet[7:5 + length]))
            n = len(body) + 2
            packet[:] = list(packet[:5]) + [n & 0xFF, n >> 8] + body + list(packet[5 + length:7 + length])
            return packet

    return Protocol2()


class DynamixelBus(ServoBus):
    """Dynamixel X servos on one port (Protocol 2.0, default 1 Mbaud). See ``ServoBus``."""

    protocol = "dynamixel"
    DEFAULT_BAUDRATE = 1_000_000
    MODELS = DYNAMIXEL_MODELS
    HOMING_SIGN = -1  # the servo adds its offset: write the negated project offset
    MAX_HOMING_OFFSET = 1024  # X series: larger offsets are ignored in position control mode
    POSITION_MODE = 3

    def _sdk(self) -> Any:
        import dynamixel_sdk

        return dynamixel_sdk

    def _packet_handler(self) -> Any:
        return protocol2_handler()

    def set_watchdog(self, timeout_s: float | None) -> bool:
        """Bus watchdog (98) of every motor: stop when no instruction packet arrived for
        ``timeout_s`` (0.02..2.54 s, rounded up to 20 ms; ``None``: off). Writing 0 first clears
        a tripped watchdog (-1), whose goal registers are read-only until then."""
        units = 0
        if timeout_s is not None:
            units = math.ceil(round(timeout_s / WATCHDOG_UNIT_S, 6))
            if not 1 <= units <= 127:
                raise ConfigError.expected(f"{self.name} watchdog timeout", "0.02..2.54 s or None", timeout_s)
        for name in self.motors:
            self.write("bus_watchdog", name, 0)
            if units:
                self.write("bus_watchdog", name, units)
        return True
