"""Training batches with the episode's instruction: the dataset keeps one instruction per episode (its ``task``
metadata); a language-conditioned policy sees it at every observation step as a sentence embedding."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from robot_learning.datasets.stats import OBS_PREFIX
from robot_learning.errors import ConfigError


class WithInstructions:
    """``DenseWindows`` plus ``obs.<name>``: what the policy reads of each item's episode instruction
    (``policy.text_features``: sentence embeddings (B, To, D), and / or a VLA's token ids)."""

    def __init__(self, data, sampler, store, policy):
        by_index = {e.index: e for e in store.episodes}
        eps = sampler.index[:, 0]
        texts = []
        for i in np.unique(eps):
            task = getattr(by_index[int(i)], "task", None)
            if task is None:
                raise ConfigError(f"episode {int(i)} has no instruction (task); --obs language needs every episode's")
            texts.append(str(task))
        uniq = sorted(set(texts))
        policy.fit_text(uniq)   # on --resume the saved statistics replace these (they are applied in the policy)
        tables = policy.text_features(uniq)
        text_of = dict(zip(np.unique(eps).tolist(), texts))
        self.row = torch.tensor([uniq.index(text_of[int(e)]) for e in eps], dtype=torch.int64, device=data.device)
        self.text_tables = {k: t.to(data.device) for k, t in tables.items()}
        self.data, self.names = data, list(policy.language)
        self.instructions = uniq
        self.nbytes = data.nbytes

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, items) -> Mapping[str, torch.Tensor]:
        out = dict(self.data.batch(items))
        idx = torch.as_tensor(items, dtype=torch.int64, device=self.row.device)
        rows = self.row[idx]
        for n in self.names:
            for suffix, t in self.text_tables.items():
                out[OBS_PREFIX + n + suffix] = t[rows]
        return out

    @property
    def tables(self):
        return self.data.tables
