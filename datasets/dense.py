"""Every window of a ``WindowSampler`` held in memory as per-tick tables plus index arrays.

``WindowSampler.__getitem__`` builds one item at a time (about a thousand per second from
Python); a training step wants hundreds. For datasets that fit in memory (the state-based ones
always do, 96-px image sets of a few hundred episodes too) ``DenseWindows`` reads each aligned
sample once (images decoded once), keeps one table per feature, indexed by tick or by decoded
frame, and builds a batch with a single gather per feature. Items match the sampler's exactly
(same padding and masks); ``tests/test_training.py`` checks that.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from robot_learning.datasets.sampler import WindowSampler
from robot_learning.datasets.stats import OBS_PREFIX
from robot_learning.datasets.store import _is_image
from robot_learning.errors import ConfigError


class DenseWindows:
    def __init__(self, sampler: WindowSampler, device: str | torch.device = "cpu", max_bytes: int = 4 << 30,
                 progress: bool = False, decode_batch: int = 256):
        s = sampler
        self.sampler, self.device = s, torch.device(device)
        obs_rel, act_rel, obs_ticks, act_ticks, L = s.window_ticks(np.arange(len(s)))
        self.n = len(s)
        total = 0
        self.tables: dict[str, torch.Tensor] = {}
        self.index: dict[str, torch.Tensor] = {}
        self.images: set[str] = set()
        for stream, f in s.obs_keys:
            key = OBS_PREFIX + f
            if f in s._numeric:
                ticks, inv = np.unique(obs_ticks, return_inverse=True)
                table = s._numeric[f][ticks]
                self.tables[key] = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32))
                self.index[key] = torch.from_numpy(inv.reshape(obs_ticks.shape).astype(np.int64))
            else:
                rows = s._rows[stream][obs_ticks]
                urows, inv = np.unique(rows, return_inverse=True)
                spec = s.specs[f]
                nbytes = len(urows) * spec.size * (1 if _is_image(spec) else np.dtype(spec.dtype).itemsize)
                if total + nbytes > max_bytes:
                    raise ConfigError(f"{f}: {len(urows)} decoded frames need {nbytes / 2**20:.0f} MiB, over the "
                                      f"in-memory budget {max_bytes / 2**20:.0f} MiB; use the streaming loader")
                parts = []
                it = range(0, len(urows), decode_batch)
                if progress:
                    from tqdm import tqdm
                    it = tqdm(it, desc=f"decode {f}", unit="batch", leave=False)
                for k in it:
                    parts.append(s._decode(stream, f, urows[k:k + decode_batch]))
                table = np.concatenate(parts)
                if _is_image(spec):
                    table = np.ascontiguousarray(table.transpose(0, 3, 1, 2))   # CHW, as WindowDataset
                    self.images.add(key)
                    self.tables[key] = torch.from_numpy(table)
                else:
                    self.tables[key] = torch.from_numpy(np.ascontiguousarray(table, dtype=np.float32))
                self.index[key] = torch.from_numpy(inv.reshape(rows.shape).astype(np.int64))
            total += self.tables[key].numel() * self.tables[key].element_size()
        self.tables["action"] = torch.from_numpy(np.ascontiguousarray(s._actions, dtype=np.float32))
        self.index["action"] = torch.from_numpy(act_ticks.astype(np.int64))
        self.obs_is_pad = torch.from_numpy(obs_rel < 0)
        self.action_is_pad = torch.from_numpy((act_rel < 0) | (act_rel >= L))
        self.nbytes = total + self.tables["action"].numel() * 4
        for k in list(self.tables):
            self.tables[k] = self.tables[k].to(self.device)
            self.index[k] = self.index[k].to(self.device)
        self.obs_is_pad = self.obs_is_pad.to(self.device)
        self.action_is_pad = self.action_is_pad.to(self.device)

    def __len__(self) -> int:
        return self.n

    def batch(self, items: torch.Tensor | np.ndarray) -> Mapping[str, torch.Tensor]:
        """Items ``items`` (B,) as one batch: the keys and layout of ``WindowDataset`` (chw)."""
        idx = torch.as_tensor(items, dtype=torch.int64, device=self.device)
        out = {k: self.tables[k][self.index[k][idx]] for k in self.tables}
        out["obs_is_pad"] = self.obs_is_pad[idx]
        out["action_is_pad"] = self.action_is_pad[idx]
        return out
