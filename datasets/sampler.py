"""Windows for Diffusion-Policy-style training: ``To`` observations and ``Tp`` actions per item.

Item ``i`` is one control tick ``t`` of one committed episode (of length ``L``):

- ``obs.<feature>``: (To, ...) the observations at ticks ``t-To+1 .. t`` (each tick's aligned row
  ``ticks/<stream>.row``), edge-padded at the episode start (the first tick repeated);
  ``obs_is_pad`` (To,) marks the repeated steps. Images come decoded, (To, H, W, 3) uint8.
- ``action``: (Tp, Da) the executed actions of ticks ``t-To+1 .. t-To+Tp``, the ``action_keys``
  features concatenated in that order, edge-padded at both episode ends (first/last action
  repeated); ``action_is_pad`` (Tp,) marks the repeated steps.
- ``episode_index`` (the ``EpisodeRecord.index``) and ``tick`` (``t``, within its episode).

Windows never cross episode boundaries. Which ticks are indexed follows the Diffusion Policy
sampler: ``pad_before = To-1`` (every tick from the first is indexed) and ``pad_after`` (default
``Ta-1``): the last indexed tick of an episode is the one whose action chunk has ``pad_after``
padded steps, ``t_max = L - 1 - (Tp - To) + pad_after`` (an episode shorter than that yields no
items). ``pad_after >= Tp - To`` indexes every tick of every episode.

A tick whose stream had no sample yet (row -1) uses the episode's nearest earlier aligned row
(the observation a runtime would still hold), or the first one for leading ticks; an episode with
no aligned row at all for an observed stream is an error. Counts are in ``filled_rows``.

Memory and speed: numeric features (state, taxels; at most ``preload_max_bytes`` per sample) are
read for all committed ticks at construction. Frame-like features (images, depth maps) are decoded
in chunks of ``chunk_frames`` consecutive frames of one episode (only the frames some tick is
aligned to) and kept in an LRU cache of at most ``cache_bytes`` decoded bytes per process.

Processes: the sampler never pickles its zarr handle. In a DataLoader worker (fork or spawn) it
re-opens the store read-only on first use (detected by pid). A forked worker keeps the frames the
parent had already decoded (they are immutable); a spawned one starts with an empty cache.

``WindowDataset`` wraps a sampler as a ``torch.utils.data.Dataset`` returning tensors: images
uint8 ``(To, 3, H, W)`` (``image_layout="chw"``, default) or ``(To, H, W, 3)`` (``"hwc"``);
depth maps ``(To, H, W)``, numeric observations and ``action`` float32; masks bool; the indices
int64 scalars. Normalisation is not applied here: it belongs to the policy (``stats.Normalizer``;
``WindowSampler.output_stats`` keys the dataset statistics like the items).

A sampler is not thread-safe (its cache is mutated on reads): one per process or worker.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from robot_learning.core.features import FeatureKind, FeatureSpec
from robot_learning.datasets.stats import OBS_PREFIX, concat_stats
from robot_learning.datasets.store import EpisodeStore, _is_image
from robot_learning.errors import ConfigError, SpecMismatchError

DEFAULT_CACHE_BYTES = 256 << 20


@dataclass(frozen=True)
class _Frames:
    """Frame-like rows of one stream that some indexed tick uses, cut into chunks."""

    rows: np.ndarray          # (U,) sorted unique absolute stream rows
    chunk_of: np.ndarray      # (U,) chunk id of each
    chunk_start: np.ndarray   # (C + 1,) first position of each chunk in ``rows`` (+ the end)


class WindowSampler:
    """Random access to (observation window, action chunk) items; see the module docstring."""

    def __init__(self, store: EpisodeStore, obs_keys: Sequence[tuple[str, str] | str],
                 action_keys: Sequence[str] | None = None, To: int = 2, Tp: int = 16, Ta: int = 8, *,
                 pad_after: int | None = None, episodes: Sequence[int] | None = None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, chunk_frames: int = 16, preload_max_bytes: int = 4096):
        if not (To >= 1 and Tp >= To and 1 <= Ta <= Tp - To + 1):
            raise ConfigError.expected("window sizes", "To >= 1, Tp >= To, 1 <= Ta <= Tp - To + 1",
                                       f"To={To}, Tp={Tp}, Ta={Ta}")
        self.To, self.Tp, self.Ta = int(To), int(Tp), int(Ta)
        self.pad_after = int(Ta - 1 if pad_after is None else pad_after)
        if self.pad_after < 0:
            raise ConfigError.expected("pad_after", ">= 0", pad_after)
        if chunk_frames < 1:
            raise ConfigError.expected("chunk_frames", ">= 1", chunk_frames)
        self.path = Path(store.path)
        self.cache_bytes, self.chunk_frames = int(cache_bytes), int(chunk_frames)
        self._store: EpisodeStore | None = store
        self._pid: int | None = os.getpid()
        schema = store.schema

        # --- keys ----------------------------------------------------------------------------
        self.obs_keys: tuple[tuple[str, str], ...] = tuple(self._resolve_obs_key(store, k) for k in obs_keys)
        if len({f for _, f in self.obs_keys}) != len(self.obs_keys):
            raise ConfigError.expected("obs_keys", "each feature once", self.obs_keys)
        names = schema.action_features.names
        self.action_keys: tuple[str, ...] = tuple(names if action_keys is None else
                                                  (a[len("action."):] if a.startswith("action.") else a
                                                   for a in action_keys))
        if not self.action_keys:
            raise ConfigError.expected("action_keys", "at least one action feature", "none")
        for a in self.action_keys:
            schema.action_features[a]  # raises SpecMismatchError naming the known features
        self.specs: dict[str, FeatureSpec] = {f: schema.stream(s).features[f] for s, f in self.obs_keys}
        self.action_dim = sum(schema.action_features[a].size for a in self.action_keys)

        # --- episodes and the index ----------------------------------------------------------
        committed = store.episodes
        if episodes is not None:
            wanted = sorted(set(int(e) for e in episodes))
            bad = [e for e in wanted if not 0 <= e < len(committed)]
            if bad:
                raise ConfigError.expected("episodes", f"indices of committed episodes 0..{len(committed) - 1}", bad)
            eps = [committed[e] for e in wanted]
        else:
            eps = committed
        if not eps:
            raise ConfigError.expected("dataset for sampling", "at least one committed episode", "none")
        self.episodes = tuple(eps)
        t_end = committed[-1].ticks[1]
        self._ep_start = np.array([e.ticks[0] for e in eps], dtype=np.int64)
        self._ep_len = np.array([e.length for e in eps], dtype=np.int64)
        self._ep_index = np.array([e.index for e in eps], dtype=np.int64)
        last = self._ep_len - 1 - (self.Tp - self.To) + self.pad_after   # last indexed tick
        n_items = np.clip(np.minimum(last + 1, self._ep_len), 0, None)
        self._item_ep = np.repeat(np.arange(len(eps)), n_items)
        first_item = np.concatenate([[0], np.cumsum(n_items)[:-1]])
        self._item_tick = np.arange(int(n_items.sum())) - np.repeat(first_item, n_items)

        # --- numeric arrays in memory ---------------------------------------------------------
        ticks = store.root["ticks"]
        self._actions = np.concatenate([np.asarray(ticks[f"action.{a}"][0:t_end]).reshape(t_end, -1)
                                        for a in self.action_keys], axis=1)
        self._rows: dict[str, np.ndarray] = {}
        self.filled_rows: dict[str, int] = {}
        for s in sorted({s for s, _ in self.obs_keys}):
            self._rows[s], self.filled_rows[s] = self._aligned_rows(np.asarray(ticks[f"{s}.row"][0:t_end]), s)
        self._numeric: dict[str, np.ndarray] = {}
        self._frame_keys: set[str] = set()
        used = self._used_ticks()
        for s, f in self.obs_keys:
            spec = self.specs[f]
            per_sample = spec.size * np.dtype("uint8" if _is_image(spec) else spec.dtype).itemsize
            if _is_image(spec) or spec.kind is FeatureKind.DEPTH or per_sample > preload_max_bytes:
                self._frame_keys.add(f)
                continue
            rows = self._rows[s]
            lo, hi = int(rows[used].min()), int(rows[used].max()) + 1
            block = np.asarray(store.root[f"streams/{s}/{f}"][lo:hi])
            vals = np.zeros((t_end, *spec.shape), dtype=block.dtype)
            vals[used] = block[rows[used] - lo]
            self._numeric[f] = vals
        self._frames: dict[str, _Frames] = {}
        for s in sorted({s for s, f in self.obs_keys if f in self._frame_keys}):
            self._frames[s] = self._chunk_layout(s)
        # end offsets of the committed encoded frames, in memory: one zarr read per decoded run
        self._ends: dict[str, np.ndarray] = {}
        for s, f in self.obs_keys:
            if f in self._frame_keys and _is_image(self.specs[f]):
                n = committed[-1].streams[s][1]
                self._ends[f] = np.asarray(store.root[f"streams/{s}/{f}.end"][0:n], dtype=np.int64)
        self._handles: dict[str, object] = {}
        self._cache: OrderedDict = OrderedDict()
        self._cache_used = 0
        self.cache_hits = self.cache_misses = self.decoded_frames = 0

    # --- construction helpers ----------------------------------------------------------------
    @staticmethod
    def _resolve_obs_key(store: EpisodeStore, key: tuple[str, str] | str) -> tuple[str, str]:
        if isinstance(key, str):  # a bare feature name: feature names are unique across streams
            hits = [s.name for s in store.schema.streams if key in s.features]
            if len(hits) != 1:
                raise SpecMismatchError.expected("observation feature", "a feature of one stream "
                                                 f"{[(s.name, s.features.names) for s in store.schema.streams]}",
                                                 repr(key))
            return hits[0], key
        stream, feature = key
        spec = store.schema.stream(stream).features[feature]
        if spec.kind is FeatureKind.LANGUAGE:
            raise ConfigError.expected(f"observation {feature}", "numeric or image", "language")
        return stream, feature

    def _used_ticks(self) -> np.ndarray:
        return np.concatenate([np.arange(a, a + n) for a, n in zip(self._ep_start, self._ep_len)])

    def _aligned_rows(self, rows: np.ndarray, stream: str) -> tuple[np.ndarray, int]:
        rows = rows.astype(np.int64, copy=True)
        filled = 0
        for ep, a, n in zip(self.episodes, self._ep_start, self._ep_len):
            r = rows[a:a + n]
            valid = r >= 0
            if not valid.any():
                raise ConfigError(f"episode {ep.index}: no tick has an aligned sample of stream {stream!r}")
            lo, hi = ep.streams.get(stream, (0, 0))
            if np.any((r[valid] < lo) | (r[valid] >= hi)):
                raise SpecMismatchError.expected(f"episode {ep.index} {stream}.row", f"rows in {lo}..{hi - 1} or -1",
                                                 f"{r[valid].min()}..{r[valid].max()}")
            if not valid.all():
                filled += int((~valid).sum())
                pos = np.where(valid, np.arange(n), 0)
                np.maximum.accumulate(pos, out=pos)           # index of the newest valid tick so far
                first = int(np.argmax(valid))
                pos[:first] = first                            # leading ticks: the first aligned row
                r[:] = r[pos]
        return rows, filled

    def _chunk_layout(self, stream: str) -> _Frames:
        rows, chunk_of, starts = [], [], [0]
        c = 0
        for a, n in zip(self._ep_start, self._ep_len):
            u = np.unique(self._rows[stream][a:a + n])
            for k in range(0, len(u), self.chunk_frames):
                part = u[k:k + self.chunk_frames]
                rows.append(part)
                chunk_of.append(np.full(len(part), c, dtype=np.int64))
                starts.append(starts[-1] + len(part))
                c += 1
        return _Frames(np.concatenate(rows), np.concatenate(chunk_of), np.asarray(starts, dtype=np.int64))

    # --- process safety ----------------------------------------------------------------------
    @property
    def store(self) -> EpisodeStore:
        """The store, re-opened read-only in a process other than the one that last opened it."""
        if self._store is None or self._pid != os.getpid():
            self._store = EpisodeStore.open(self.path)
            self._pid = os.getpid()
            self._handles = {}
        return self._store

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.update(_store=None, _pid=None, _handles={}, _cache=OrderedDict(), _cache_used=0)
        return state

    # --- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._item_ep)

    @property
    def index(self) -> np.ndarray:
        """(N, 2) int64: (episode_index, tick) of every item."""
        return np.stack([self._ep_index[self._item_ep], self._item_tick], axis=1)

    def item_of(self, episode_index: int, tick: int) -> int:
        """The item index of a tick of an episode (ValueError if it is not indexed)."""
        hit = np.flatnonzero((self._ep_index[self._item_ep] == episode_index) & (self._item_tick == tick))
        if hit.size != 1:
            raise ValueError(f"episode {episode_index} tick {tick} is not an item of this sampler")
        return int(hit[0])

    def __getitem__(self, i: int) -> dict[str, np.ndarray | int]:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"item {i} out of range for {n} items")
        # the per-item form of window_ticks (scalar arithmetic: ~20% faster per item on this hot
        # path); tests/test_training.py checks the two give bit-equal windows
        e, t = int(self._item_ep[i]), int(self._item_tick[i])
        g0, L = int(self._ep_start[e]), int(self._ep_len[e])
        obs_rel = t - self.To + 1 + np.arange(self.To)
        act_rel = t - self.To + 1 + np.arange(self.Tp)
        obs_ticks = g0 + np.clip(obs_rel, 0, L - 1)
        act_ticks = g0 + np.clip(act_rel, 0, L - 1)
        out: dict[str, np.ndarray | int] = {}
        for s, f in self.obs_keys:
            if f in self._numeric:
                out[OBS_PREFIX + f] = self._numeric[f][obs_ticks]
            else:
                out[OBS_PREFIX + f] = self._read_frames(s, f, self._rows[s][obs_ticks])
        out["action"] = self._actions[act_ticks]
        out["obs_is_pad"] = obs_rel < 0
        out["action_is_pad"] = (act_rel < 0) | (act_rel >= L)
        out["episode_index"] = int(self._ep_index[e])
        out["tick"] = t
        return out

    def window_ticks(self, items: np.ndarray) -> tuple[np.ndarray, ...]:
        """For item indices of any shape S: the observation and action ticks relative to the
        episode start, (*S, To) and (*S, Tp), the absolute dataset ticks they read (edge-padded:
        clipped to the episode), and the episode lengths (*S, 1)."""
        e, t = self._item_ep[items], self._item_tick[items]
        g0, L = self._ep_start[e][..., None], self._ep_len[e][..., None]
        obs_rel = t[..., None] - self.To + 1 + np.arange(self.To)
        act_rel = t[..., None] - self.To + 1 + np.arange(self.Tp)
        return obs_rel, act_rel, g0 + np.clip(obs_rel, 0, L - 1), g0 + np.clip(act_rel, 0, L - 1), L

    def _read_frames(self, stream: str, feature: str, rows: np.ndarray) -> np.ndarray:
        if self.cache_bytes <= 0:  # no cache: decode exactly the frames needed
            u, inv = np.unique(rows, return_inverse=True)
            self.decoded_frames += len(u)
            self.cache_misses += 1
            return self._decode(stream, feature, u)[inv]
        fr = self._frames[stream]
        pos = np.searchsorted(fr.rows, rows)
        chunks = fr.chunk_of[pos]
        spec = self.specs[feature]
        out = np.empty((len(rows), *spec.shape), dtype=np.uint8 if _is_image(spec) else np.dtype(spec.dtype))
        for c in np.unique(chunks):
            block = self._chunk(stream, feature, int(c))
            sel = chunks == c
            out[sel] = block[pos[sel] - fr.chunk_start[c]]
        return out

    def _chunk(self, stream: str, feature: str, c: int) -> np.ndarray:
        key = (stream, feature, c)
        block = self._cache.get(key)
        if block is not None:
            self._cache.move_to_end(key)
            self.cache_hits += 1
            return block
        self.cache_misses += 1
        fr = self._frames[stream]
        rows = fr.rows[fr.chunk_start[c]:fr.chunk_start[c + 1]]
        block = self._decode(stream, feature, rows)
        block.setflags(write=False)
        self.decoded_frames += len(rows)
        self._cache[key] = block
        self._cache_used += block.nbytes
        while self._cache_used > self.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_used -= old.nbytes
        return block

    def _decode(self, stream: str, feature: str, rows: np.ndarray) -> np.ndarray:
        """Frames at sorted absolute ``rows``: images with one read of their encoded bytes (what
        ``EpisodeStore.read`` decodes, without re-reading the offsets), other features via the store."""
        spec = self.specs[feature]
        if feature not in self._ends:
            return self.store.read(stream, feature, rows)
        store = self.store  # re-opens (and drops old handles) in a new process
        blob_arr = self._handles.get(feature)
        if blob_arr is None:
            blob_arr = self._handles[feature] = store.root[f"streams/{stream}/{feature}.jpeg"]
        ends = self._ends[feature]
        stops = ends[rows]
        starts = np.where(rows > 0, ends[np.maximum(rows - 1, 0)], 0)
        off = int(starts.min())
        blob = np.asarray(blob_arr[off:int(stops.max())])
        out = np.empty((len(rows), *spec.shape), dtype=np.uint8)
        for k in range(len(rows)):
            img = cv2.imdecode(blob[starts[k] - off:stops[k] - off], cv2.IMREAD_COLOR)
            if img is None or img.shape != spec.shape:
                raise SpecMismatchError.expected(f"{stream}/{feature} frame {rows[k]}", f"an image {spec.shape}",
                                                 "undecodable bytes" if img is None else img.shape)
            out[k] = img[..., ::-1]
        return out

    def cache_info(self) -> dict:
        return {"hits": self.cache_hits, "misses": self.cache_misses, "decoded_frames": self.decoded_frames,
                "chunks": len(self._cache), "bytes": self._cache_used, "budget_bytes": self.cache_bytes}

    # --- statistics --------------------------------------------------------------------------
    def output_stats(self, stats: Mapping[str, Mapping[str, np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
        """Statistics keyed like this sampler's numeric outputs (``obs.<feature>`` and the
        concatenated ``action``), from ``stats.compute_stats``/``load_stats``; for a Normalizer."""
        out = {"action": concat_stats(stats, [f"action.{a}" for a in self.action_keys])}
        for _, f in self.obs_keys:
            if f in self._numeric:
                key = OBS_PREFIX + f
                if key not in stats:
                    raise SpecMismatchError.expected("statistics", f"an entry for {key!r}", f"keys {sorted(stats)}")
                out[key] = dict(stats[key])
        return out


class WindowDataset(Dataset):
    """``torch.utils.data.Dataset`` over a ``WindowSampler`` (tensor layout in the module docstring)."""

    def __init__(self, sampler: WindowSampler, image_layout: str = "chw"):
        if image_layout not in ("chw", "hwc"):
            raise ConfigError.expected("image_layout", "'chw' or 'hwc'", repr(image_layout))
        self.sampler, self.image_layout = sampler, image_layout
        self._images = {OBS_PREFIX + f for f, spec in sampler.specs.items() if _is_image(spec)}

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.sampler[i]
        out: dict[str, torch.Tensor] = {}
        for k, v in item.items():
            if k in ("episode_index", "tick"):
                out[k] = torch.tensor(v, dtype=torch.int64)
            elif k in self._images:
                x = torch.from_numpy(np.ascontiguousarray(v))
                out[k] = x.permute(0, 3, 1, 2) if self.image_layout == "chw" else x
            elif v.dtype == np.bool_:
                out[k] = torch.from_numpy(v)
            else:
                out[k] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))
        return out
