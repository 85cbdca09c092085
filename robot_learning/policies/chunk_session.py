"""``ChunkSession``: one episode of a learned chunk policy. The model (``ChunkPolicy``: network, normaliser,
an ``nn.Module``) is stateless between calls; an episode's state lives here: the observation history, the RNG
the sampler draws from, the latency of the last inference and whatever a family keeps per episode
(``state``: ACT's temporal ensemble). N episodes run on one model as N sessions, without copying the weights;
``ChunkPolicy.predict_chunks`` infers for several sessions in one batched call.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from robot_learning.core.frame import Observation
from robot_learning.policies.base import ActionChunk, ObservationHistory, Policy

if TYPE_CHECKING:
    from robot_learning.policies.chunk_policy import ChunkPolicy


class ChunkSession(Policy):
    """A ``Policy`` for one episode at a time on ``model``'s weights."""

    def __init__(self, model: ChunkPolicy, seed: int | None = None):
        self.model = model
        self.kind = model.kind
        self.history = ObservationHistory(model.observation_features, model.config.To)
        self.generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
        self.state: dict = {}
        self.last_latency_s = 0.0
        model.reset_session(self)

    # the model's description, read through (a sampler set on the model is every session's)
    @property
    def observation_features(self):
        return self.model.observation_features

    @property
    def action_features(self):
        return self.model.action_features

    @property
    def control_period_ns(self) -> int:
        return self.model.control_period_ns

    @property
    def meta(self) -> dict:
        return self.model.meta

    @property
    def sampler(self):
        return self.model.sampler

    @property
    def actions_per_chunk(self) -> int:
        return self.model.actions_per_chunk

    def set_sampler(self, kind: str, steps: int | None = None, temperature: float | None = None) -> None:
        self.model.set_sampler(kind, steps, *(() if temperature is None else (temperature,)))

    # --- Policy interface ---------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        self.history.reset()
        if seed is not None:
            self.generator.manual_seed(int(seed))
        self.model.reset_session(self)

    def observe(self, observation: Observation) -> None:
        self.history.push(observation)

    @torch.no_grad()
    def infer(self, observation: Observation) -> ActionChunk:
        t0 = time.perf_counter()
        self.observe(observation)
        chunk = self.model.infer_session(self, observation)
        self.last_latency_s = time.perf_counter() - t0
        return chunk

    @property
    def can_sample_chunks(self) -> bool:
        return True

    @torch.no_grad()
    def sample_chunks(self, observation: Observation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` independent chunks for one observation in one batched call (value-guided steering): actions
        (k, Ta, Da) and their ticks (Ta,). The observation joins the history once, as with ``infer``."""
        t0 = time.perf_counter()
        self.observe(observation)
        m = self.model
        batch = {name: v.expand(int(k), *v.shape[1:]) for name, v in m.window(self.history).items()}
        acts = m.sequences(batch, self.generator, sample=True)
        self.last_latency_s = time.perf_counter() - t0
        return acts, m.ticks(observation, m.config.Ta)

    @property
    def can_open_sessions(self) -> bool:
        return True

    @property
    def can_batch(self) -> bool:
        return self.model.can_batch

    def new_session(self, seed: int | None = None) -> ChunkSession:
        return ChunkSession(self.model, seed)

    def predict_chunks(self, sessions: Sequence[Policy], generator: torch.Generator | None = None) -> np.ndarray:
        return self.model.predict_chunks(sessions, generator)

    def num_parameters(self) -> int:
        return self.model.num_parameters()
