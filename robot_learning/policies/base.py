"""The policy interface every learned (and wrapped) policy implements, and its action chunks.

Shape alphabet used across ``robot_learning.policies``: ``B`` batch, ``To`` observation steps a
policy conditions on, ``Tp`` predicted action steps (the horizon), ``Ta`` executed action steps,
``Da`` action dimension (the action features concatenated in order), ``D`` feature dimension.

A policy sees one ``Observation`` per control tick. ``observe(obs)`` adds it to the policy's
observation history without computing anything; ``infer(obs)`` adds it and returns an
``ActionChunk``: the actions for this tick and the next ``Ta - 1`` ticks, each with the control
tick time it is meant for. ``reset()`` forgets the history (a new episode). The history repeats
the first observation of an episode, as the training windows pad the episode start.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.errors import SpecMismatchError


@dataclass(frozen=True)
class ActionChunk:
    """``actions`` (Ta, Da) float32 in the order of ``features``, unnormalised, and ``t_ns`` (Ta,)
    int64: the control tick each action is meant for (the first is the observation's tick)."""

    actions: np.ndarray
    t_ns: np.ndarray
    features: FeatureSet

    def __post_init__(self) -> None:
        da = sum(s.size for s in self.features)
        if self.actions.ndim != 2 or self.actions.shape[1] != da:
            raise SpecMismatchError.expected("action chunk shape", f"(Ta, {da})", self.actions.shape)
        if self.t_ns.shape != (self.actions.shape[0],):
            raise SpecMismatchError.expected("action chunk t_ns shape", (self.actions.shape[0],), self.t_ns.shape)
        for a in (self.actions, self.t_ns):
            a.setflags(write=False)

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def action(self, i: int) -> Action:
        """Step ``i`` as a named ``Action``."""
        return Action.from_vector(self.features, self.actions[i])


@runtime_checkable
class Policy(Protocol):
    """Inference interface (see the module docstring)."""

    observation_features: FeatureSet   # what ``infer`` reads from an observation
    action_features: FeatureSet        # what the chunks hold

    def reset(self) -> None: ...

    def observe(self, observation: Observation) -> None: ...

    def infer(self, observation: Observation) -> ActionChunk: ...


class ObservationHistory:
    """The last ``n`` observations' values of ``features`` (the first one repeated until ``n``
    have arrived). ``stacked()`` gives one (n, *shape) array per feature, oldest first."""

    def __init__(self, features: FeatureSet, n: int):
        self.features, self.n = features, int(n)
        self._buf: deque[dict[str, np.ndarray]] = deque(maxlen=self.n)
        self.last_t_ns: int | None = None

    def reset(self) -> None:
        self._buf.clear()
        self.last_t_ns = None

    def push(self, observation: Observation) -> None:
        values = {}
        for spec in self.features:
            if spec.name not in observation.values:
                raise SpecMismatchError.expected("observation for the policy", f"features {list(self.features.names)}",
                                                 f"keys {sorted(observation.values)}")
            v = np.asarray(observation.values[spec.name])
            if v.shape != spec.shape:
                raise SpecMismatchError.expected(f"observation {spec.name} shape", spec.shape, v.shape)
            values[spec.name] = v
        if not self._buf:
            self._buf.extend([values] * self.n)
        else:
            self._buf.append(values)
        self.last_t_ns = int(observation.t_ns)

    def stacked(self) -> dict[str, np.ndarray]:
        if not self._buf:
            raise RuntimeError("ObservationHistory.stacked() before any observation")
        return {s.name: np.stack([v[s.name] for v in self._buf]) for s in self.features}
