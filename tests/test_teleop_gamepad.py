"""Gamepad teleop against SDL's own virtual joystick (SDL_JoystickAttachVirtual in the SDL library
that pygame loads): the real pygame/SDL input path, with a device whose sticks the test moves."""

import os

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
import pygame  # noqa: E402

from support.virtual_pad import VirtualPad  # noqa: E402

from robot_learning.core import FakeClock  # noqa: E402
from robot_learning.errors import DeviceFaultError  # noqa: E402
from robot_learning.hardware import EpisodeEvent  # noqa: E402
from robot_learning.hardware.teleop_gamepad import GamepadTeleop  # noqa: E402


def test_sticks_buttons_and_takeover_through_sdl():
    pad = VirtualPad()
    clock = FakeClock()
    try:
        with GamepadTeleop(index=pad.index, clock=clock) as gp:
            gp.get_action()                  # starts the time base
            pad.axis(1, -1.0)                # left stick fully up: away from the base
            pad.axis(3, 0.05)                # inside the dead zone: no vertical motion
            clock.advance_s(0.1)
            a = gp.get_action().value
            np.testing.assert_allclose(a["ee_dpos_m"], [0.015, 0.0, 0.0], atol=2e-4)  # 0.15 m/s x 0.1 s
            pad.button(0, True)              # A: close the gripper (once per press)
            pad.button(1, True)              # B: next episode
            pad.button(9, True)              # left bumper held: takeover
            clock.advance_s(0.1)
            a = gp.get_action().value
            assert a["gripper_pos"][0] == 1.0 and gp.intervention
            assert gp.poll_events() == [EpisodeEvent.NEXT]
            clock.advance_s(0.1)
            assert gp.get_action().value["gripper_pos"][0] == 1.0 and gp.poll_events() == []  # held, not re-pressed
            pad.button(9, False)
            pad.axis(1, 0.0)
            clock.advance_s(5.0)             # a stall: motion is capped, never a leap
            b = gp.get_action().value
            assert not b["ee_dpos_m"].any() and not gp.intervention
    finally:
        pad.detach()


def test_missing_gamepad_is_a_clear_error():
    pygame.display.init()
    pygame.joystick.init()
    with pytest.raises(DeviceFaultError, match="expected a gamepad at index 7"):
        GamepadTeleop(index=7).connect()
