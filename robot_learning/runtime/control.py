"""The one control runtime: teleop, record, deploy and the RL actor all run this loop.

Per tick (absolute deadlines, see ``RateLoop``):

1. read the robot state and every sensor, aligned to the tick by capture timestamp;
2. ask the action source for an action;
3. watchdog: no fresh action for more than ``watchdog_periods`` periods -> hold;
4. safety filter (limits, caps, NaN rejection; a rejected command -> hold);
5. send to the robot; it returns the action it executed;
6. hand the tick (observation, requested and executed action, flags) to every sink.

Sinks always receive the executed action: what the recorder stores is what the robot did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from robot_learning.core.clock import NS_PER_S, Clock, default_clock
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.core.frame import Action, Observation
from robot_learning.core.limits import SafetyConfig
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError, SpecMismatchError, StaleFrameError
from robot_learning.hardware.robot import Robot
from robot_learning.hardware.sensor import StreamingSensor
from robot_learning.runtime.loop import LoopStats, RateLoop, Watchdog
from robot_learning.runtime.safety import SafetyFilter
from robot_learning.runtime.sources import ActionSource

if TYPE_CHECKING:  # the Cartesian stage pulls in mink/mujoco: only runtimes that use it pay for it
    from robot_learning.runtime.cartesian_stage import CartesianStage


@dataclass(frozen=True)
class RuntimeConfig:
    """Settings of the control loop.

    rate_hz: control rate. watchdog_periods: hold the robot when no fresh action arrived for
    more than this many periods. max_sensor_age_s: a sensor sample further than this from the
    tick is stale (the tick holds). task: instruction text added to observations as the
    language feature ``task`` (None: no language feature).
    """

    rate_hz: float = 30.0
    watchdog_periods: float = 3.0
    max_sensor_age_s: float = 0.1
    task: str | None = None

    def __post_init__(self) -> None:
        if not (0 < self.rate_hz <= 2000):
            raise ConfigError.expected("rate_hz", "0 < rate_hz <= 2000", self.rate_hz)
        if not self.watchdog_periods >= 1:
            raise ConfigError.expected("watchdog_periods", ">= 1", self.watchdog_periods)
        if not self.max_sensor_age_s > 0:
            raise ConfigError.expected("max_sensor_age_s", "> 0", self.max_sensor_age_s)


@dataclass(frozen=True)
class TickRecord:
    """Everything that happened in one tick. ``observation`` is None when a sensor was stale."""

    index: int
    t_ns: int
    observation: Observation | None
    requested: Action | None
    executed: Action
    held: bool
    reason: str | None
    clipped_elements: int
    intervention: bool = False


class Sink(Protocol):
    def on_tick(self, tick: TickRecord) -> None: ...

    def close(self) -> None: ...


@dataclass
class RunStats:
    loop: LoopStats = field(default_factory=LoopStats)
    holds: int = 0
    rejected: int = 0
    watchdog_trips: int = 0
    stale_sensor_ticks: int = 0
    clipped_ticks: int = 0
    interrupted: bool = False
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"ticks": self.loop.ticks, "overruns": self.loop.overruns, "missed_ticks": self.loop.missed_ticks,
                "holds": self.holds, "rejected": self.rejected, "watchdog_trips": self.watchdog_trips,
                "stale_sensor_ticks": self.stale_sensor_ticks, "clipped_ticks": self.clipped_ticks,
                "period_error_ms": self.loop.error_percentiles_ms(), "interrupted": self.interrupted}


TASK_FEATURE = FeatureSpec("task", (), "str", FeatureKind.LANGUAGE, units="text")


class ControlRuntime:
    """Runs a robot with an action source, sensors, the safety filter, the watchdog and sinks.

    The robot and sensors must be connected by the caller (context managers); the runtime
    never disconnects them, but on any exit from ``run`` (end, error, Ctrl-C) it holds the
    robot and closes the sinks.
    """

    def __init__(self, robot: Robot, source: ActionSource, config: RuntimeConfig = RuntimeConfig(), *,
                 sensors: Sequence[StreamingSensor] = (), sinks: Sequence[Sink] = (),
                 safety: SafetyConfig | None = None, clock: Clock | None = None,
                 cartesian: CartesianStage | None = None):
        self.robot = robot
        self.source = source
        self.config = config
        self.sensors = tuple(sensors)
        self.sinks = list(sinks)
        self.clock = clock if clock is not None else default_clock()
        self.cartesian = cartesian
        if cartesian is None and source.action_features != robot.action_features:
            raise SpecMismatchError.expected("action source features", robot.action_features,
                                             source.action_features)
        self.observation_features = self._build_obs_features()
        period_s = 1.0 / config.rate_hz
        self.safety = SafetyFilter(safety if safety is not None else robot.default_safety(),
                                   robot.action_features, robot.state_features, period_s)
        self.loop = RateLoop(self.clock, config.rate_hz)
        self.watchdog = Watchdog(self.loop.period_ns, config.watchdog_periods)
        self.stats = RunStats(loop=self.loop.stats)
        self._last_executed: Action | None = None
        self._hold_reason: str | None = None  # set while the robot is held; cleared by a fresh action
        self._index = 0
        self.task_text = config.task

    def set_task(self, text: str) -> None:
        """Change the instruction observations carry from now on (a new episode's task)."""
        if self.config.task is None:
            raise SpecMismatchError.expected("runtime for set_task", "one built with an instruction (task=...)",
                                             "none: its observations have no language feature")
        self.task_text = str(text)

    def _build_obs_features(self) -> FeatureSet:
        feats = self.robot.state_features
        for s in self.sensors:
            feats = feats + s.features
        if self.config.task is not None:
            feats = feats + FeatureSet([TASK_FEATURE])
        return feats

    # --- one tick --------------------------------------------------------------------------
    def observe(self, t_ns: int) -> Observation:
        """Robot state and sensor samples aligned to ``t_ns``; raises StaleFrameError."""
        state = self.robot.read_state()
        values: dict[str, object] = dict(state.value)
        t_cap = {k: state.t_capture_ns for k in state.value}
        t_recv = {k: state.t_receive_ns for k in state.value}
        for sensor in self.sensors:
            sample = sensor.read_aligned(t_ns, self.config.max_sensor_age_s)
            values.update(sample.value)
            t_cap.update({k: sample.t_capture_ns for k in sample.value})
            t_recv.update({k: sample.t_receive_ns for k in sample.value})
        if self.config.task is not None:
            values["task"] = self.task_text
            t_cap["task"] = t_ns
        return Observation(t_ns=t_ns, features=self.observation_features, values=values, t_capture_ns=t_cap,
                           t_receive_ns=t_recv)

    def _hold(self, reason: str) -> Action:
        executed = self.robot.hold()
        self.safety.note_executed(executed)
        self._last_executed = executed
        self._hold_reason = reason
        self.stats.holds += 1
        key = reason.split(":")[0]
        self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
        return executed

    def step(self, t_ns: int) -> TickRecord:
        """Run one tick for the deadline ``t_ns`` (no sleeping; ``run`` does the timing)."""
        try:
            obs: Observation | None = self.observe(t_ns)
        except StaleFrameError as e:
            self.stats.stale_sensor_ticks += 1
            return self.apply(None, None, reason=f"stale sensor: {e}")
        return self.apply(obs, self.source.next_action(obs))

    def apply(self, obs: Observation | None, stamped: Stamped[Action] | None,
              reason: str | None = None) -> TickRecord:
        """Watchdog -> safety filter -> robot -> sinks for one tick's observation and action.

        ``step`` calls it with the source's action; an env that is handed its actions (gym
        ``step(action)``) calls it directly, so the same checks apply there.
        """
        requested: Action | None = None
        clipped = 0
        now = self.clock.now_ns()
        if stamped is not None:
            requested = stamped.value
            if self.watchdog.is_fresh(stamped.t_capture_ns, now):
                self.watchdog.feed(stamped.t_capture_ns)
            else:
                requested, reason = None, reason or "late action: older than the watchdog timeout"
        trips_before = self.watchdog.trips
        if self.watchdog.expired(now):
            if self.watchdog.trips > trips_before:
                self.stats.watchdog_trips += 1
            late_ms = self.watchdog.timeout_ns / 1e6
            reason = reason or f"watchdog: no fresh action for {late_ms:.0f} ms or more"
            return self._emit(obs, requested, self._hold(reason), True, reason, 0)
        if obs is None:
            return self._emit(obs, None, self._hold(reason or "stale sensor"), True, reason, 0)
        if requested is None:
            # Nothing new this tick: stay held if held, else keep following the last command.
            if self._last_executed is None or self._hold_reason is not None:
                why = self._hold_reason or "waiting for the first action"
                return self._emit(obs, None, self._hold(why), True, why, 0)
            executed = self.robot.send_action(self._last_executed)
            self._last_executed = executed
            return self._emit(obs, None, executed, False, reason, 0)
        joint_cmd = requested
        if self.cartesian is not None:  # end-effector command: workspace box + IK first
            joint_cmd, why = self.cartesian.to_joints(requested, obs)
            if joint_cmd is None:
                self.stats.rejected += 1
                reason = f"rejected: {why}"
                return self._emit(obs, requested, self._hold(reason), True, reason, 0)
        result = self.safety(joint_cmd, obs.state)
        if result.action is None:
            self.stats.rejected += 1
            reason = f"rejected: {result.rejected}"
            return self._emit(obs, requested, self._hold(reason), True, reason, 0)
        clipped = result.clipped_elements
        if clipped:
            self.stats.clipped_ticks += 1
        executed = self.robot.send_action(result.action)
        self.safety.note_executed(executed)
        self._last_executed = executed
        self._hold_reason = None
        return self._emit(obs, requested, executed, False, None, clipped)

    def _emit(self, obs, requested, executed, held, reason, clipped) -> TickRecord:
        intervention = bool(getattr(self.source, "intervention", False))
        tick = TickRecord(self._index, obs.t_ns if obs is not None else self.clock.now_ns(), obs, requested,
                          executed, held, reason, clipped, intervention)
        self._index += 1
        for sink in self.sinks:
            sink.on_tick(tick)
        return tick

    # --- the loop --------------------------------------------------------------------------
    def begin(self) -> int:
        """Start a run or an episode: forget the previous command, restart the watchdog."""
        self.safety.reset(None)
        self._last_executed, self._hold_reason = None, None
        if self.cartesian is not None:
            self.cartesian.reset()
        self.source.reset()
        start = self.clock.now_ns()
        self.watchdog = Watchdog(self.loop.period_ns, self.config.watchdog_periods)
        self.watchdog.feed(start)
        return start

    def run(self, max_ticks: int | None = None, duration_s: float | None = None,
            should_stop: Callable[[TickRecord], bool] | None = None) -> RunStats:
        """Run until ``max_ticks``, ``duration_s``, ``should_stop(tick)`` or Ctrl-C.

        Ctrl-C ends the run cleanly (``stats.interrupted``); any other error is re-raised after
        the robot is held and the sinks are closed.
        """
        if max_ticks is None and duration_s is None and should_stop is None:
            raise ConfigError("run(): give max_ticks, duration_s or should_stop, or it never ends")
        start = self.begin()
        end_ns = start + int(duration_s * NS_PER_S) if duration_s is not None else None
        try:
            while True:
                t = self.loop.wait()
                if end_ns is not None and t >= end_ns:
                    break
                tick = self.step(t)
                if max_ticks is not None and self._index >= max_ticks:
                    break
                if should_stop is not None and should_stop(tick):
                    break
        except KeyboardInterrupt:
            self.stats.interrupted = True
        finally:
            try:
                if self.robot.is_connected:
                    self.robot.hold()
            finally:
                close = getattr(self.source, "close", None)
                if close is not None:
                    close()
                for sink in self.sinks:
                    sink.close()
        return self.stats


def executed_vector(ticks: Sequence[TickRecord], features: FeatureSet) -> np.ndarray:
    """(T, Da) matrix of executed actions, for analysis and tests."""
    return np.stack([t.executed.vector(features) for t in ticks]) if ticks else np.zeros((0, 0))
