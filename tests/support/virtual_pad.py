"""SDL's own virtual joystick (SDL_JoystickAttachVirtual in the SDL library pygame loads), for gamepad tests:
a device whose sticks and buttons the test sets, read through the real pygame/SDL input path."""

import ctypes
import glob
import os

import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


class VirtualPad:
    """A virtual game controller attached through SDL (6 axes, 12 buttons)."""

    def __init__(self):
        import pygame

        libs = glob.glob(os.path.join(os.path.dirname(pygame.__file__), "..", "pygame.libs", "libSDL2-2*.so*"))
        self.sdl = ctypes.CDLL(libs[0]) if libs else ctypes.CDLL("libSDL2-2.0.so.0")
        pygame.display.init()
        pygame.joystick.init()
        self.sdl.SDL_JoystickOpen.restype = ctypes.c_void_p
        self.sdl.SDL_JoystickSetVirtualAxis.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int16]
        self.sdl.SDL_JoystickSetVirtualButton.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8]
        self.index = self.sdl.SDL_JoystickAttachVirtual(1, 6, 12, 0)  # SDL_JOYSTICK_TYPE_GAMECONTROLLER
        assert self.index >= 0, "SDL could not attach a virtual joystick"
        self.handle = self.sdl.SDL_JoystickOpen(self.index)

    def axis(self, i: int, value: float) -> None:  # value in [-1, 1]
        self.sdl.SDL_JoystickSetVirtualAxis(self.handle, i, int(round(np.clip(value, -1, 1) * 32767)))
        self.sdl.SDL_JoystickUpdate()

    def button(self, i: int, down) -> None:
        self.sdl.SDL_JoystickSetVirtualButton(self.handle, i, int(bool(down)))
        self.sdl.SDL_JoystickUpdate()

    def apply(self, kind: str, i: int, value: float) -> None:
        """One recorded event: ("axis", i, value) or ("button", i, 0/1)."""
        self.axis(i, value) if kind == "axis" else self.button(i, value)

    def detach(self) -> None:
        self.sdl.SDL_JoystickDetachVirtual(self.index)
