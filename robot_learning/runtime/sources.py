"""Action sources: what the control runtime asks for an action each tick.

A source must answer quickly. ``next_action(obs)`` returns a stamped action, or None when it has
nothing new this tick (the runtime then keeps the last command, and the watchdog holds the
robot when nothing fresh arrives for too long). Slow producers (a policy, a network client) go
behind ``AsyncSource``, which runs them in a thread so the loop never waits on them.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol, runtime_checkable

from robot_learning.core.clock import Clock
from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped


@runtime_checkable
class ActionSource(Protocol):
    action_features: FeatureSet

    def reset(self) -> None: ...

    def next_action(self, observation: Observation) -> Stamped[Action] | None: ...


class TeleopSource:
    """Actions from a Teleop device; ``intervention`` mirrors the device's takeover flag (unless
    ``report_intervention`` is False: plain teleop, where no policy is there to take over from)."""

    def __init__(self, teleop, report_intervention: bool = True):
        self.teleop = teleop
        self.action_features = teleop.action_features
        self.report_intervention = report_intervention

    def reset(self) -> None:
        self.teleop.poll_events()  # drop events from before the run

    @property
    def intervention(self) -> bool:
        return self.report_intervention and self.teleop.intervention

    def next_action(self, observation: Observation) -> Stamped[Action] | None:
        return self.teleop.get_action(observation)


class FunctionSource:
    """Wraps ``fn(observation) -> Action`` (a scripted expert, a trajectory); stamps it with the clock."""

    def __init__(self, fn: Callable[[Observation], Action | None], action_features: FeatureSet, clock: Clock):
        self.fn = fn
        self.action_features = action_features
        self.clock = clock

    def reset(self) -> None:
        pass

    def next_action(self, observation: Observation) -> Stamped[Action] | None:
        t = self.clock.now_ns()
        action = self.fn(observation)
        if action is None:
            return None
        return Stamped(action, t_capture_ns=t, t_receive_ns=max(t, self.clock.now_ns()))


class AsyncSource:
    """Runs a (possibly slow) source in a worker thread; the loop gets the newest result.

    Each tick the runtime hands the newest observation to the worker; the worker computes an
    action for it and publishes it, stamped with the observation's tick time, so the watchdog
    sees how old an action really is. Actions are handed out once.
    """

    def __init__(self, inner: ActionSource):
        self.inner = inner
        self.action_features = inner.action_features
        self._cv = threading.Condition()
        self._obs: Observation | None = None
        self._result: Stamped[Action] | None = None
        self._error: BaseException | None = None
        self._stop = False
        self._thread: threading.Thread | None = None

    def reset(self) -> None:
        self.close()
        self.inner.reset()
        with self._cv:
            self._obs, self._result, self._error, self._stop = None, None, None, False
        self._thread = threading.Thread(target=self._work, name="async-source", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or self._obs is not None)
                if self._stop:
                    return
                obs, self._obs = self._obs, None
            try:
                out = self.inner.next_action(obs)
            except BaseException as e:  # surfaced in the control thread
                with self._cv:
                    self._error = e
                return
            if out is not None:
                stamped = Stamped(out.value, t_capture_ns=min(obs.t_ns, out.t_capture_ns),
                                  t_receive_ns=out.t_receive_ns, seq=out.seq)
                with self._cv:
                    self._result = stamped

    def next_action(self, observation: Observation) -> Stamped[Action] | None:
        with self._cv:
            if self._error is not None:
                raise self._error
            result, self._result = self._result, None
            self._obs = observation
            self._cv.notify_all()
        return result
