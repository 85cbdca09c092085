"""Gamepad teleop through pygame (SDL): sticks drive the end effector, buttons the gripper and
episode events. Works headless (``SDL_VIDEODRIVER=dummy`` is set if no display is configured).

Default mapping (SDL GameController layout: Xbox-style pads, most others through SDL's mapping
database):

    left stick      x / y of the tool (stick up: away from the base)
    right stick     up / down (vertical), turn (horizontal)
    A               close / open the gripper
    B / X / Y       next episode / re-record / stop
    left bumper     hold to take over from a policy (intervention)

Stick deflection is a velocity: each ``get_action`` returns the motion for the time since the
previous call, as a delta command for the runtime's Cartesian stage.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from robot_learning.core.ee_features import DELTA
from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware.teleop import EpisodeEvent, Teleop


@dataclass(frozen=True)
class GamepadMapping:
    axis_x: int = 1          # left stick vertical -> tool x (inverted: up is away)
    axis_y: int = 0          # left stick horizontal -> tool y (inverted: right is -y)
    axis_z: int = 3          # right stick vertical -> tool z (inverted: up is up)
    axis_yaw: int = 2        # right stick horizontal -> turn
    button_gripper: int = 0
    button_next: int = 1
    button_rerecord: int = 2
    button_stop: int = 3
    button_takeover: int = 9
    deadzone: float = 0.12
    max_speed_m_s: float = 0.15
    max_turn_rad_s: float = 1.2

    def __post_init__(self) -> None:
        if not 0 <= self.deadzone < 1:
            raise ConfigError.expected("gamepad deadzone", "0 <= deadzone < 1", self.deadzone)


class GamepadTeleop(Teleop):
    def __init__(self, index: int = 0, mapping: GamepadMapping = GamepadMapping(), clock=None,
                 name: str = "gamepad"):
        super().__init__(name, clock)
        self.index, self.mapping = index, mapping
        self._joy = None
        self._buttons: np.ndarray | None = None
        self._gripper = 0.0
        self._t_ns: int | None = None

    @property
    def action_features(self) -> FeatureSet:
        return DELTA

    def _connect(self) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # its banner would land in --json stdout
        import pygame

        pygame.display.init()  # the event subsystem that joystick input needs (no audio, no window)
        pygame.joystick.init()
        pygame.event.pump()
        n = pygame.joystick.get_count()
        if self.index >= n:
            raise DeviceFaultError(self.name, f"expected a gamepad at index {self.index}, found {n} connected")
        self._joy = pygame.joystick.Joystick(self.index)
        self._joy.init()
        m = self.mapping
        need_axes = max(m.axis_x, m.axis_y, m.axis_z, m.axis_yaw) + 1
        if self._joy.get_numaxes() < need_axes:
            raise DeviceFaultError(self.name, f"{self._joy.get_name()}: expected >= {need_axes} axes, found "
                                              f"{self._joy.get_numaxes()}")
        self._buttons = self._read_buttons()
        pygame.event.get(self._joy_event_types(pygame))  # presses before connect do not count
        self._t_ns = None

    def _disconnect(self) -> None:
        if self._joy is not None:
            self._joy.quit()
            self._joy = None

    @staticmethod
    def _joy_event_types(pygame) -> tuple:
        return (pygame.JOYBUTTONDOWN, pygame.JOYBUTTONUP, pygame.JOYAXISMOTION, pygame.JOYHATMOTION,
                pygame.JOYBALLMOTION)

    def _read_buttons(self) -> np.ndarray:
        return np.array([self._joy.get_button(i) for i in range(self._joy.get_numbuttons())], dtype=bool)

    def _axis(self, i: int) -> float:
        v = float(self._joy.get_axis(i))
        dz = self.mapping.deadzone
        return 0.0 if abs(v) < dz else float(np.sign(v) * (abs(v) - dz) / (1 - dz))

    def _get_action(self, observation: Observation | None) -> Stamped[Action]:
        import pygame

        # Take the joystick events out of pygame's queue (this also pumps it, and keeps it from filling
        # up): a press released again before this call is in them, not in the button state.
        me = self._joy.get_instance_id()
        downs = [e.button for e in pygame.event.get(self._joy_event_types(pygame))
                 if e.type == pygame.JOYBUTTONDOWN and getattr(e, "instance_id", None) == me]
        now = self.clock.now_ns()
        dt = 0.0 if self._t_ns is None else min((now - self._t_ns) / 1e9, 0.2)  # never a leap after a stall
        self._t_ns = now
        m = self.mapping
        v = np.array([-self._axis(m.axis_x), -self._axis(m.axis_y), -self._axis(m.axis_z)]) * m.max_speed_m_s
        turn = -self._axis(m.axis_yaw) * m.max_turn_rad_s
        buttons = self._read_buttons()
        pressed = buttons & ~self._buttons[:len(buttons)] if self._buttons is not None else buttons
        self._buttons = buttons
        presses = downs + [int(i) for i in np.flatnonzero(pressed) if int(i) not in downs]  # an event may be lost

        for _ in range(presses.count(m.button_gripper)):
            self._gripper = 1.0 - self._gripper
        for b, ev in ((m.button_next, EpisodeEvent.NEXT), (m.button_rerecord, EpisodeEvent.RERECORD),
                      (m.button_stop, EpisodeEvent.STOP)):
            for _ in range(presses.count(b)):
                self.post_event(ev)
        self.set_intervention(m.button_takeover < len(buttons) and bool(buttons[m.button_takeover]))
        action = Action({"ee_dpos_m": (v * dt).astype(np.float32),
                         "ee_drot_rad": np.array([0.0, 0.0, turn * dt], dtype=np.float32),
                         "gripper_pos": np.array([self._gripper], dtype=np.float32)})
        return Stamped(action, now, now)
