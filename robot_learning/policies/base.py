"""The policy interface every learned (and wrapped) policy implements, and its action chunks.

Shape alphabet used across ``robot_learning.policies``: ``B`` batch, ``To`` observation steps a
policy conditions on, ``Tp`` predicted action steps (the horizon), ``Ta`` executed action steps,
``Da`` action dimension (the action features concatenated in order), ``D`` feature dimension.

A policy sees one ``Observation`` per control tick. ``observe(obs)`` adds it to the policy's
observation history without computing anything; ``infer(obs)`` adds it and returns an
``ActionChunk``: the actions for this tick and the next ``Ta - 1`` ticks, each with the control
tick time it is meant for. ``reset(seed=None)`` forgets the history (a new episode). The history repeats
the first observation of an episode, as the training windows pad the episode start.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Action, Observation
from robot_learning.errors import ConfigError, SpecMismatchError


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


class Policy(ABC):
    """The inference interface every policy implements (see the module docstring).

    Required: ``observation_features`` (what ``infer`` reads), ``action_features`` (what the chunks hold),
    ``control_period_ns`` (the tick the chunks are stamped with; None when the policy does not know it),
    ``meta`` (what the policy was trained on: task, robot, seeds), ``reset(seed=None)``, ``observe`` and
    ``infer``. ``last_latency_s`` is the wall time of the last ``infer``.

    Capabilities a policy may have, each a property saying whether it has it and the methods it then implements
    (the base class raises ``NotImplementedError`` for the others):

    - ``can_sample_chunks``: ``sample_chunks(obs, k)`` draws ``k`` chunks for one observation in one call
      (value-guided steering);
    - ``can_open_sessions``: ``new_session(seed)`` opens another episode on the same model (its own observation
      history and RNG, no copy of the weights), and ``predict_chunks(sessions, generator)`` infers one chunk for
      each of several sessions in one batched call where ``can_batch`` (vectorised RL and evaluation);
    - ``sampler`` / ``set_sampler``: a sampler (DDIM, Euler, greedy decoding, ...) that eval and serve can change.
    """

    kind: ClassVar[str] = "policy"
    observation_features: FeatureSet
    action_features: FeatureSet
    control_period_ns: int | None = None
    meta: dict
    last_latency_s: float = 0.0
    last_timing: Mapping[str, float] = MappingProxyType({})   # a served policy's server-side timing (ms)

    @abstractmethod
    def reset(self, seed: int | None = None) -> None:
        """A new episode: forget the observation history; ``seed`` seeds the policy's own randomness."""

    @abstractmethod
    def observe(self, observation: Observation) -> None:
        """Add ``observation`` to the history without inferring (a tick between chunks)."""

    @abstractmethod
    def infer(self, observation: Observation) -> ActionChunk:
        """Add ``observation`` to the history and return the chunk of actions from its tick on."""

    # --- capabilities -------------------------------------------------------------------------------------------
    @property
    def actions_per_chunk(self) -> int | None:
        """Ta: the actions of one ``infer`` chunk when the policy knows it ahead (None: it does not say)."""
        return None

    @property
    def can_sample_chunks(self) -> bool:
        return False

    def sample_chunks(self, observation: Observation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` chunks drawn for one observation: actions (k, Ta, Da) and their ticks (Ta,)."""
        raise NotImplementedError(f"a {self.kind} policy samples one chunk per infer")

    @property
    def can_open_sessions(self) -> bool:
        return False

    @property
    def can_batch(self) -> bool:
        return False

    def new_session(self, seed: int | None = None) -> Policy:
        """Another episode on this policy's model (a ``Policy`` of its own sharing the weights)."""
        raise NotImplementedError(f"a {self.kind} policy runs one episode at a time")

    def predict_chunks(self, sessions: Sequence[Policy], generator=None) -> np.ndarray:
        """(N, Ta, Da) actions: one chunk for each session's current history, in one batched call."""
        raise NotImplementedError(f"a {self.kind} policy infers one episode at a time")

    @property
    def sampler(self):
        """The sampler ``set_sampler`` changes (it has ``kind`` and ``steps``), or None."""
        return None

    def set_sampler(self, kind: str, steps: int | None = None, temperature: float | None = None) -> None:
        raise ConfigError(f"a {self.kind} policy has no sampler to choose (--sampler / --sampling-steps)")

    # --- resources ----------------------------------------------------------------------------------------------
    def save(self, path, meta: Mapping[str, Any] | None = None):
        raise ConfigError(f"a {self.kind} policy cannot be saved")

    def num_parameters(self) -> int:
        return 0

    def close(self) -> None:
        """Release what the policy holds (a connection); a local policy holds nothing."""

    @property
    def can_reconnect(self) -> bool:
        """Whether ``reconnect`` can recover from a lost connection (a policy behind a server)."""
        return False

    def reconnect(self) -> None:
        raise NotImplementedError(f"a {self.kind} policy has no connection to reopen")


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
