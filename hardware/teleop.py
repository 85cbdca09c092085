"""The Teleop contract: a human (or a scripted expert) producing actions, a takeover flag and
episode events."""

from __future__ import annotations

import threading
from abc import abstractmethod
from enum import Enum

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.hardware.device import Device


class EpisodeEvent(str, Enum):
    """Operator requests while recording."""

    NEXT = "next"            # finish this episode (keep it) and start the next
    RERECORD = "rerecord"    # discard this episode and record it again
    STOP = "stop"            # keep this episode and stop recording


class Teleop(Device):
    """A teleoperation device.

    - ``action_features``: what ``get_action`` returns (the robot's action features, or
      Cartesian targets for an end-effector controller); readable while disconnected.
    - ``get_action(observation)``: the operator's current command, stamped when it was read.
    - ``intervention``: True while the human takes over from a policy (deploy / RL).
    - ``poll_events()``: episode events since the last poll (each returned once).
    """

    def __init__(self, name: str, clock=None):
        super().__init__(name, clock)
        self._events: list[EpisodeEvent] = []
        self._events_lock = threading.Lock()
        self._intervention = False

    @property
    @abstractmethod
    def action_features(self) -> FeatureSet: ...

    def get_action(self, observation: Observation | None = None) -> Stamped[Action]:
        self._require_connected("get_action")
        return self._get_action(observation)

    @abstractmethod
    def _get_action(self, observation: Observation | None) -> Stamped[Action]: ...

    @property
    def intervention(self) -> bool:
        return self._intervention

    def set_intervention(self, active: bool) -> None:
        """Drivers call this when the operator presses / releases the takeover control."""
        self._intervention = bool(active)

    def post_event(self, event: EpisodeEvent) -> None:
        """Drivers call this from their input thread when the operator asks for an event."""
        with self._events_lock:
            self._events.append(EpisodeEvent(event))

    def poll_events(self) -> list[EpisodeEvent]:
        with self._events_lock:
            events, self._events = self._events, []
        return events
