"""``InterventionSource``: a policy drives, and a human takes over while the teleop device's takeover flag is raised
(a leader arm moved from rest, a held gamepad bumper or SpaceMouse button, the keyboard's ``t``).

Every tick the policy's source still sees the observation (its action is dropped while the human drives), so its
history stays current and, when the flag drops, it resumes from the present: a queued source drops the actions
whose tick has passed. ``intervention`` is the flag of this tick, which the runtime hands to its sinks: the
recorder stores it per tick (the dataset's ``ticks/intervention`` mask, data for human-in-the-loop RL).
"""

from __future__ import annotations

from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.errors import SpecMismatchError


class InterventionSource:
    def __init__(self, policy_source, teleop):
        if teleop.action_features != policy_source.action_features:
            raise SpecMismatchError.expected(
                f"{teleop.name} actions for a takeover", list(policy_source.action_features.names),
                f"{list(teleop.action_features.names)} (end-effector devices cannot take over a joint policy yet: "
                "use a leader arm)")
        self.policy_source, self.teleop = policy_source, teleop
        self.action_features = policy_source.action_features
        self._active = False
        self.takeovers = 0
        self.human_ticks = 0

    @property
    def intervention(self) -> bool:
        return self._active

    def reset(self) -> None:
        self.policy_source.reset()
        self.teleop.poll_events()
        self._active = False

    def close(self) -> None:
        close = getattr(self.policy_source, "close", None)
        if close is not None:
            close()

    def next_action(self, observation: Observation) -> Stamped[Action] | None:
        human = self.teleop.get_action(observation)        # read every tick: the takeover flag comes with it
        policy = self.policy_source.next_action(observation)
        active = bool(self.teleop.intervention)
        if active and not self._active:
            self.takeovers += 1
        self._active = active
        if active:
            self.human_ticks += 1
            return human
        return policy
