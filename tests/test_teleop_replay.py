"""A recorded gamepad session replayed into SDL's virtual joystick (SDL_JoystickAttachVirtual in
the SDL library pygame loads), through the real GamepadTeleop on a fake clock at 20 Hz: the
motion integrated over the whole stream is the expected path, and takeover and episode events
land on the expected ticks.

The expected values come from an independent model of the default mapping: left stick up is away
from the base (+x) and right is -y, right stick up is +z and right is -yaw. Deflection past the
dead zone is a velocity, held over the time since the previous tick.
"""

import os

import numpy as np

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
import pygame  # noqa: E402

from support.virtual_pad import VirtualPad  # noqa: E402

from robot_learning.core import FakeClock  # noqa: E402
from robot_learning.hardware import EpisodeEvent  # noqa: E402
from robot_learning.hardware.teleop_gamepad import GamepadTeleop  # noqa: E402

SPEED, TURN, DZ = 0.15, 1.2, 0.12   # GamepadMapping's defaults
TICK_MS = 50
MS = 1_000_000

# The recording: (t_ms, "axis" | "button", index, value), in SDL GameController numbering.
SESSION = [
    (100, "axis", 1, -1.0),     # left stick fully up: away from the base
    (130, "axis", 0, 0.08),     # left stick drifts inside the dead zone
    (400, "axis", 1, -0.5),     # half way
    (600, "axis", 1, 0.0),
    (600, "axis", 3, -0.8),     # right stick up: the tool goes up
    (700, "axis", 2, 0.6),      # right stick right: turn clockwise (-yaw)
    (900, "axis", 3, 0.0), (900, "axis", 2, 0.0), (900, "axis", 0, 0.0),
    (1000, "button", 9, 1),     # left bumper held: takeover ...
    (1000, "axis", 0, 1.0),     # ... while pushing right (-y)
    (1300, "axis", 0, 0.0),
    (1400, "button", 9, 0),
    (1500, "button", 0, 1), (1620, "button", 0, 0),   # A: close the gripper
    (2000, "button", 1, 1), (2130, "button", 1, 0),   # B: next episode
    (2500, "button", 2, 1), (2700, "button", 2, 0),   # X: re-record
    (2810, "button", 0, 1), (2840, "button", 0, 0),   # A tapped between two ticks: opens the gripper
    (2910, "button", 3, 1), (2940, "button", 3, 0),   # Y tapped between two ticks: stop
    (3200, "axis", 1, -1.0),    # full away again, then the caller stalls
]
END_MS = 3300
STALL_S = 5.0


def _stick(value: float) -> float:
    v = int(round(value * 32767)) / 32768  # SDL's int16, as pygame reads it back
    return 0.0 if abs(v) < DZ else float(np.sign(v) * (abs(v) - DZ) / (1 - DZ))


def expected_ticks(session, ticks_ms):
    """Per tick: (motion (6,), takeover held, gripper, events) from the recording alone."""
    axes, buttons, gripper, out, prev_t = np.zeros(6), np.zeros(12, bool), 0.0, [], 0
    pending = list(session)
    for t in ticks_ms:
        presses = []
        while pending and pending[0][0] <= t:
            _, kind, i, value = pending.pop(0)
            if kind == "axis":
                axes[i] = value
            else:
                if value and not buttons[i]:
                    presses.append(i)
                buttons[i] = bool(value)
        dt = min((t - prev_t) / 1e3, 0.2)
        v = np.array([-_stick(axes[1]) * SPEED, -_stick(axes[0]) * SPEED, -_stick(axes[3]) * SPEED,
                      0.0, 0.0, -_stick(axes[2]) * TURN])
        gripper = (1.0 - gripper) if presses.count(0) % 2 else gripper
        events = [{1: EpisodeEvent.NEXT, 2: EpisodeEvent.RERECORD, 3: EpisodeEvent.STOP}[b]
                  for b in presses if b in (1, 2, 3)]
        out.append((v * dt, bool(buttons[9]), gripper, events))
        prev_t = t
    return out


def test_recorded_session_gives_the_expected_path_takeover_and_events():
    ticks_ms = list(range(TICK_MS, END_MS + 1, TICK_MS)) + [END_MS + int(STALL_S * 1e3)]
    want = expected_ticks(SESSION, ticks_ms)
    pad, clock = VirtualPad(), FakeClock()
    pending = list(SESSION)
    got = []
    try:
        with GamepadTeleop(index=pad.index, clock=clock) as gp:
            gp.get_action()                      # the time base starts at t = 0
            for t in ticks_ms:
                while pending and pending[0][0] <= t:
                    pad.apply(*pending.pop(0)[1:])
                clock.set(t * MS)
                a = gp.get_action().value
                got.append((np.concatenate([a["ee_dpos_m"], a["ee_drot_rad"]]), gp.intervention,
                            float(a["gripper_pos"][0]), gp.poll_events()))
    finally:
        pad.detach()
    for t, (motion, takeover, grip, events), (w_motion, w_takeover, w_grip, w_events) in zip(ticks_ms, got, want):
        np.testing.assert_allclose(motion, w_motion, atol=2e-6, err_msg=f"tick at {t} ms")
        assert (takeover, grip, events) == (w_takeover, w_grip, w_events), f"tick at {t} ms"

    total = sum(m for m, *_ in got)
    path = sum(m for m, *_ in want)
    np.testing.assert_allclose(total, path, atol=1e-5)
    # the same path by hand, counting ticks: full away on 6 ticks, half way on 4, full away on the
    # last 3 before the stall and 0.2 s (the cap) after it; -y on 6 ticks; +z at 0.8 on 6; -yaw at
    # 0.6 on 4. The drift on axis 0 never moves the tool.
    full, half, up, turn = (abs(_stick(v)) for v in (-1.0, -0.5, -0.8, 0.6))
    np.testing.assert_allclose(path, [SPEED * (0.3 * full + 0.2 * half + 0.15 * full + 0.2 * full),
                                      -SPEED * 0.3 * full, SPEED * 0.3 * up, 0, 0, -TURN * 0.2 * turn], atol=1e-6)
    takeover_ticks = [t for t, g in zip(ticks_ms, got) if g[1]]
    assert takeover_ticks == list(range(1000, 1400, TICK_MS))
    events = [(t, e) for t, g in zip(ticks_ms, got) for e in g[3]]
    assert events == [(2000, EpisodeEvent.NEXT), (2500, EpisodeEvent.RERECORD), (2950, EpisodeEvent.STOP)]
    assert got[ticks_ms.index(1500)][2] == 1.0 and got[ticks_ms.index(2850)][2] == 0.0
