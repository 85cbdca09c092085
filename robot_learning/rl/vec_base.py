"""A frozen base policy playing its chunks open loop in N environments at once.

Each env has its own observation history and chunk. Chunks start together: every ``Ta`` steps all envs get
their next chunk from one batched sampling call (a diffusion policy's ``predict_actions`` over the stacked
windows), so N envs cost one inference per chunk, not N. An env that starts an episode between two such steps
gets a first chunk at once (batched with the other envs starting then) and joins the common schedule at the
next one, so its first chunk plays only until then: without that, episodes of different lengths spread the
envs' chunk boundaries over every step and the sampling calls multiply by up to ``Ta``. A base without batched
sampling (any other ``Policy``) runs as N independent copies through its ``infer``.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from robot_learning.core.frame import Observation
from robot_learning.errors import ConfigError
from robot_learning.policies.base import ObservationHistory


class BatchedBase:
    def __init__(self, base, n: int, seed: int = 0):
        if n < 1:
            raise ConfigError.expected("number of envs", ">= 1", n)
        self.base, self.n = base, int(n)
        cfg = getattr(base, "config", None)
        self.batched = getattr(base, "batchable", True) and all(
            hasattr(x, a) for x, a in ((base, "predict_actions"), (base, "window"), (cfg, "To"), (cfg, "Ta")))
        if self.batched:
            self.To, self.Ta = int(cfg.To), int(cfg.Ta)
            self.histories = [ObservationHistory(base.observation_features, self.To) for _ in range(self.n)]
            self.generator = torch.Generator().manual_seed(int(seed))
        else:
            self.copies = [copy.deepcopy(base) for _ in range(self.n)]
            for k, c in enumerate(self.copies):
                c.reset(int(seed) + k) if _takes_seed(c) else c.reset()
        self.chunks: list[np.ndarray | None] = [None] * self.n   # (Ta, Da) actions of each env's current chunk
        self.index = [0] * self.n
        self.inferences = 0
        self.steps = 0                  # common step counter: chunks start together every Ta steps

    def reset(self, i: int) -> None:
        """Env ``i`` starts a new episode."""
        self.chunks[i], self.index[i] = None, 0
        if self.batched:
            self.histories[i].reset()
        else:
            self.copies[i].reset()

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
            for h, o in zip(self.histories, observations):
                h.push(o)
            if need:
                batch: dict[str, list[torch.Tensor]] = {}
                for i in need:
                    for k, v in self.base.window(self.histories[i]).items():
                        batch.setdefault(k, []).append(v)
                seq = self.base.predict_actions({k: torch.cat(v) for k, v in batch.items()},
                                                generator=self.generator if self.base.device.type == "cpu" else None)
                seq = seq.cpu().numpy()[:, self.To - 1:self.To - 1 + self.Ta].astype(np.float32)
                for row, i in enumerate(need):
                    self.chunks[i], self.index[i] = seq[row], 0
                self.inferences += 1
        else:
            for i, o in enumerate(observations):
                if i in need:
                    self.chunks[i], self.index[i] = np.asarray(self.copies[i].infer(o).actions, np.float32), 0
                    self.inferences += 1
                else:
                    self.copies[i].observe(o)
        out = np.stack([self.chunks[i][self.index[i]] for i in range(self.n)])
        for i in range(self.n):
            self.index[i] += 1
        if not np.all(np.isfinite(out)):
            raise ConfigError("the base policy produced a non-finite action; its checkpoint is broken")
        return out


def _takes_seed(policy) -> bool:
    import inspect

    try:
        return len(inspect.signature(policy.reset).parameters) >= 1
    except (TypeError, ValueError):
        return False
