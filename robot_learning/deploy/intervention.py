"""``InterventionSource``: a policy drives, and a human takes over while the teleop device's takeover flag is raised
(a leader arm moved from rest, a held gamepad bumper or SpaceMouse button, the keyboard's ``t``).

Every tick the policy's source still sees the observation (its action is dropped while the human drives), so its
history stays current and, when the flag drops, it resumes from the present: a queued source drops the actions
whose tick has passed. ``intervention`` is the flag of this tick, which the runtime hands to its sinks: the
recorder stores it per tick (the dataset's ``ticks/intervention`` mask, data for human-in-the-loop RL).

An end-effector device (gamepad, SpaceMouse, keyboard) takes over a joint-space policy through ``stage`` (the rig's
``CartesianStage`` over the twin's model): at each takeover its target restarts from the tool pose the policy left,
and its deltas become joint commands here, so the runtime, the safety filter and the recording see joint actions
whoever drives. A human command the stage rejects (non-finite) gives no action that tick: the runtime keeps the
last command, then the watchdog holds.
"""

from __future__ import annotations

from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.errors import SpecMismatchError


class InterventionSource:
    def __init__(self, inner, teleop, stage=None):
        wanted = inner.action_features
        if stage is None and teleop.action_features != wanted:
            raise SpecMismatchError.expected(
                f"{teleop.name} actions for a takeover", list(wanted.names),
                f"{list(teleop.action_features.names)} (an end-effector device needs the Cartesian stage)")
        if stage is not None and set(wanted.names) != {"joint_pos_rad", "gripper_pos"}:
            raise SpecMismatchError.expected("policy actions for an end-effector takeover",
                                             ["joint_pos_rad", "gripper_pos"], list(wanted.names))
        self.inner, self.teleop, self.stage = inner, teleop, stage
        self.action_features = wanted
        self._active = False
        self.takeovers = 0
        self.human_ticks = 0
        self.rejected = 0

    @property
    def intervention(self) -> bool:
        return self._active

    def reset(self) -> None:
        self.inner.reset()
        self.teleop.poll_events()
        self._active = False

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def next_action(self, observation: Observation) -> Stamped[Action] | None:
        human = self.teleop.get_action(observation)        # read every tick: the takeover flag comes with it
        policy = self.inner.next_action(observation)
        active = bool(self.teleop.intervention)
        if active and not self._active:
            self.takeovers += 1
            if self.stage is not None:
                self.stage.reset()                          # the tool target starts where the policy left it
        self._active = active
        if not active:
            return policy
        self.human_ticks += 1
        if self.stage is None or human is None:
            return human
        joints, _why = self.stage.to_joints(human.value, observation)
        if joints is None:
            self.rejected += 1
            return None
        return Stamped(Action.from_vector(self.action_features, joints.vector(self.action_features)),
                       t_capture_ns=human.t_capture_ns, t_receive_ns=human.t_receive_ns)
