"""A frozen base policy playing its chunks open loop in N environments at once.

Each env is one session of the base (``Policy.new_session``: its own observation history and RNG on the same
weights, no copies). Chunks start together: every ``Ta`` steps all envs get their next chunk from one batched
call (``Policy.predict_chunks`` over the sessions' histories), so N envs cost one inference per chunk, not N. An
env that starts an episode between two such steps gets a first chunk at once (batched with the other envs
starting then) and joins the common schedule at the next one, so its first chunk plays only until then: without
that, episodes of different lengths spread the envs' chunk boundaries over every step and the sampling calls
multiply by up to ``Ta``. A base whose chunks cannot be batched (ACT with temporal ensembling infers every tick)
runs its N sessions through their own ``infer``.
"""

from __future__ import annotations

import numpy as np
import torch

from robot_learning.core.frame import Observation
from robot_learning.errors import ConfigError
from robot_learning.policies.base import Policy


class BatchedBase:
    def __init__(self, base: Policy, n: int, seed: int = 0):
        if n < 1:
            raise ConfigError.expected("number of envs", ">= 1", n)
        if not base.can_open_sessions:
            raise ConfigError(f"a {base.kind} policy runs one episode at a time; a base for N envs must be a learned "
                              "policy folder")
        self.base, self.n = base, int(n)
        self.batched = base.can_batch
        self.sessions = [base.new_session(int(seed) + k) for k in range(self.n)]
        if self.batched:
            self.Ta = int(base.actions_per_chunk)
            self.generator = torch.Generator().manual_seed(int(seed))   # one draw for each batched call
        self.chunks: list[np.ndarray | None] = [None] * self.n   # (Ta, Da) actions of each env's current chunk
        self.index = [0] * self.n
        self.inferences = 0
        self.steps = 0                  # common step counter: chunks start together every Ta steps

    @property
    def histories(self):
        return [s.history for s in self.sessions]

    def reset(self, i: int) -> None:
        """Env ``i`` starts a new episode."""
        self.chunks[i], self.index[i] = None, 0
        self.sessions[i].reset()

    def actions(self, observations: list[Observation]) -> np.ndarray:
        """(N, Da) base actions (unnormalised) for this tick of every env."""
        if len(observations) != self.n:
            raise ConfigError.expected("observations", self.n, len(observations))
        if self.batched and self.steps % self.Ta == 0:
            need = list(range(self.n))
        else:
            need = [i for i in range(self.n) if self.chunks[i] is None or self.index[i] >= len(self.chunks[i])]
        self.steps += 1
        if self.batched:
            for s, o in zip(self.sessions, observations):
                s.observe(o)
            if need:
                seq = self.base.predict_chunks([self.sessions[i] for i in need], self.generator)
                for row, i in enumerate(need):
                    self.chunks[i], self.index[i] = seq[row], 0
                self.inferences += 1
        else:
            for i, o in enumerate(observations):
                if i in need:
                    self.chunks[i], self.index[i] = np.asarray(self.sessions[i].infer(o).actions, np.float32), 0
                    self.inferences += 1
                else:
                    self.sessions[i].observe(o)
        out = np.stack([self.chunks[i][self.index[i]] for i in range(self.n)])
        for i in range(self.n):
            self.index[i] += 1
        return out
