"""A MuJoCo world and its clock.

``SimWorld`` owns one compiled model and its data. Its clock, ``SimClock``, is the project's
``Clock`` whose time is simulation time: ``sleep_until_ns(t)`` steps the physics until ``t``. So
the control runtime runs unchanged on the sim twin: where it would sleep on a real robot, the
world advances. Time is counted in integer physics steps, so timestamps are exact and
monotonic across episode resets.

Sensors that sample at their own rate (cameras at 30 Hz, tactile at 100 Hz) register a
``SampleListener``; the world calls it whenever physics time crosses the listener's next
sample time, so each stream is captured at its own rate with a sim-clock timestamp.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import mujoco
import numpy as np

from robot_learning.core.clock import NS_PER_S
from robot_learning.errors import ConfigError


@dataclass(frozen=True)
class PhysicsConfig:
    """timestep_s: physics step (0.002 s = 500 Hz). realtime: also pace stepping to the wall clock
    (for watching; off for training and evaluation, where the sim runs as fast as it can)."""

    timestep_s: float = 0.002
    realtime: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.timestep_s <= 0.002):
            raise ConfigError.expected("physics timestep_s", "0 < timestep_s <= 0.002 (>= 500 Hz)", self.timestep_s)


class SampleListener:
    """Called at ``period_ns`` intervals of sim time with the sample time."""

    def __init__(self, period_ns: int, callback: Callable[[int], None]):
        if period_ns <= 0:
            raise ConfigError.expected("sample period_ns", "> 0", period_ns)
        self.period_ns = int(period_ns)
        self.callback = callback
        self.next_ns: int | None = None


class SimWorld:
    """One MuJoCo model + data, stepped by its clock."""

    def __init__(self, model: mujoco.MjModel, physics: PhysicsConfig = PhysicsConfig()):
        self.model = model
        self.model.opt.timestep = physics.timestep_s
        self.data = mujoco.MjData(model)
        self.physics = physics
        self.step_ns = int(round(physics.timestep_s * NS_PER_S))
        self._steps = 0
        self._listeners: list[SampleListener] = []
        self.lock = threading.RLock()
        self.clock = SimClock(self)
        self._wall0: float | None = None
        mujoco.mj_forward(self.model, self.data)

    # --- time ------------------------------------------------------------------------------
    def now_ns(self) -> int:
        return self._steps * self.step_ns

    def step(self, n: int = 1) -> None:
        with self.lock:
            for _ in range(n):
                mujoco.mj_step(self.model, self.data)
                self._steps += 1
                if self._listeners:
                    self._fire(self.now_ns())
        if self.physics.realtime:
            self._pace()

    def step_until(self, t_ns: int) -> None:
        """Advance physics to the first step at or after ``t_ns``."""
        remaining = t_ns - self.now_ns()
        if remaining > 0:
            self.step(-(-remaining // self.step_ns))

    def _pace(self) -> None:
        if self._wall0 is None:
            self._wall0 = time.perf_counter() - self.now_ns() / NS_PER_S
        ahead = self.now_ns() / NS_PER_S - (time.perf_counter() - self._wall0)
        if ahead > 0:
            time.sleep(ahead)

    # --- sampled sensors -------------------------------------------------------------------
    def add_listener(self, listener: SampleListener, sample_now: bool = True) -> None:
        with self.lock:
            now = self.now_ns()
            listener.next_ns = now if sample_now else now + listener.period_ns
            self._listeners.append(listener)
            self._fire(now)

    def remove_listener(self, listener: SampleListener) -> None:
        with self.lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _fire(self, now: int) -> None:
        for lst in self._listeners:
            if lst.next_ns is not None and now >= lst.next_ns:
                lst.callback(now)
                # next sample on the listener's own grid (no drift, no bursts after a long gap)
                lst.next_ns += max(1, -(-(now - lst.next_ns + 1) // lst.period_ns)) * lst.period_ns

    # --- state -----------------------------------------------------------------------------
    def reset_data(self) -> None:
        """Reset physics state (time keeps counting: the clock is monotonic across episodes). In real time, the
        pacing re-anchors to the wall clock: the time spent between episodes is not run off at full speed."""
        with self.lock:
            mujoco.mj_resetData(self.model, self.data)
            mujoco.mj_forward(self.model, self.data)
            self._wall0 = None

    def forward(self) -> None:
        with self.lock:
            mujoco.mj_forward(self.model, self.data)

    def has_nan(self) -> bool:
        d = self.data
        return not (np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel)))


class SimClock:
    """The project Clock on simulation time: sleeping steps the physics."""

    def __init__(self, world: SimWorld):
        self._world = world

    def now_ns(self) -> int:
        return self._world.now_ns()

    def sleep_until_ns(self, deadline_ns: int) -> None:
        self._world.step_until(deadline_ns)
