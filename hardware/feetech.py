"""Feetech STS servo bus (SO-100 / SO-101 arms) over the vendor SDK ``scservo_sdk``.

STS series only (``sts3215``, ``sts3250``; 4096 ticks a turn, little-endian registers, SDK
``PacketHandler(0)``). SCS servos (big-endian, another control table, 1024 ticks) are not
supported. The SDK keeps the byte order in a process-wide global; the bus sets it before every
try, so another Feetech user in the same process cannot flip it under us.

Control table (STS memory table, verified against the SDK's ping, which reads the model number
at address 3): EEPROM 0..39 (written only while ``lock`` (55) is 0), RAM 40..; multi-byte values
little-endian; signed values sign-magnitude (``homing_offset`` sign bit 11, speeds and positions
bit 15, ``present_load`` bit 10). Units: positions in ticks (4096 a turn), speeds in ticks/s
(the manual's step/s), ``goal_time`` ms, ``return_delay`` 2 us, ``present_voltage`` 0.1 V,
``present_temperature`` deg C, ``present_current`` 6.5 mA, ``present_load`` 0.1 % of max torque.
``homing_offset`` follows the project convention natively: ``present = actual - offset``.
STS servos have no bus watchdog (``set_watchdog`` returns False).
"""

from __future__ import annotations

from typing import Any

from robot_learning.hardware.servo_bus import ModelSpec, Register, ServoBus

_E = {"eeprom": True}
_RO = {"readonly": True}

STS_TABLE: dict[str, Register] = {
    "model_number": Register(3, 2, eeprom=True, readonly=True),
    "id": Register(5, 1, **_E),
    "baudrate": Register(6, 1, unit="index: 0=1M 1=500k 2=250k 3=128k 4=115.2k", **_E),
    "return_delay": Register(7, 1, unit="2 us", **_E),
    "status_return_level": Register(8, 1, unit="0: reply to read/ping only, 1: to all", **_E),
    "min_position_limit": Register(9, 2, unit="ticks", **_E),
    "max_position_limit": Register(11, 2, unit="ticks", **_E),
    "max_temperature": Register(13, 1, unit="deg C", **_E),
    "max_voltage": Register(14, 1, unit="0.1 V", **_E),
    "min_voltage": Register(15, 1, unit="0.1 V", **_E),
    "max_torque": Register(16, 2, unit="0.1 %", **_E),
    "p_coefficient": Register(21, 1, **_E),
    "d_coefficient": Register(22, 1, **_E),
    "i_coefficient": Register(23, 1, **_E),
    "homing_offset": Register(31, 2, sign_bit=11, unit="ticks", **_E),
    "operating_mode": Register(33, 1, unit="0 position, 1 speed, 2 PWM, 3 step", **_E),
    "torque_enable": Register(40, 1),
    "acceleration": Register(41, 1, unit="100 ticks/s^2"),
    "goal_position": Register(42, 2, sign_bit=15, unit="ticks"),
    "goal_time": Register(44, 2, unit="ms"),
    "goal_speed": Register(46, 2, sign_bit=15, unit="ticks/s (0: maximum)"),
    "torque_limit": Register(48, 2, unit="0.1 %"),
    "lock": Register(55, 1, unit="1: EEPROM write-protected"),
    "present_position": Register(56, 2, sign_bit=15, unit="ticks", **_RO),
    "present_speed": Register(58, 2, sign_bit=15, unit="ticks/s", **_RO),
    "present_load": Register(60, 2, sign_bit=10, unit="0.1 %", **_RO),
    "present_voltage": Register(62, 1, unit="0.1 V", **_RO),
    "present_temperature": Register(63, 1, unit="deg C", **_RO),
    "status": Register(65, 1, **_RO),
    "moving": Register(66, 1, **_RO),
    "present_current": Register(69, 2, sign_bit=15, unit="6.5 mA", **_RO),
}

FEETECH_MODELS: dict[str, ModelSpec] = {
    "sts3215": ModelSpec(777, 4096, STS_TABLE),
    "sts3250": ModelSpec(2825, 4096, STS_TABLE),
}


class FeetechBus(ServoBus):
    """Feetech STS servos on one port (default 1 Mbaud). See ``ServoBus`` for the API."""

    protocol = "feetech"
    DEFAULT_BAUDRATE = 1_000_000
    MODELS = FEETECH_MODELS
    EEPROM_LOCK = "lock"  # homing offset: -2047..2047 ticks (sign-magnitude, 11 bits)

    def _sdk(self) -> Any:
        import scservo_sdk

        return scservo_sdk

    def _packet_handler(self) -> Any:
        return self._sdk().PacketHandler(0)

    def _before_try(self) -> None:
        self._sdk().scservo_def.SCS_SETEND(0)  # STS: little-endian

    def set_watchdog(self, timeout_s: float | None) -> bool:
        """STS servos have no bus watchdog: returns False (the arm's own watchdog must stop it)."""
        return False
