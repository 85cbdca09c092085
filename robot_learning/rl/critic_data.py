"""Chunk-level transitions for an offline critic, from recorded episodes with success labels.

Every tick ``t`` of an episode starts a transition: the state at ``t`` (the chosen numeric features, read at the
stream row aligned to the tick), the action chunk ``a[t : t+H]`` (the executed actions; past the episode's end
the last action repeats), the state at ``t+H`` and whether the episode ends within the chunk. The reward is
sparse: 1 on the chunk that reaches the end of a successful episode, else 0; the end of any episode is terminal
(a failed episode ran out of time). The Monte-Carlo return of a transition is ``gamma ** k`` for a successful
episode whose end is ``k`` chunks after this one, 0 for a failed one (Cal-QL floors Q with it).

Demonstrations (success labels from the recorder) and policy rollouts (``eval --record``, failures kept) load
together, as long as they share the action features and hold the chosen state features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.errors import ConfigError, SpecMismatchError


@dataclass
class Transitions:
    state: np.ndarray        # (N, S) float32
    chunk: np.ndarray        # (N, H, Da) float32
    next_state: np.ndarray   # (N, S)
    reward: np.ndarray       # (N,)
    done: np.ndarray         # (N,) 1.0 where the episode ends within the chunk
    mc_return: np.ndarray    # (N,)
    episode: np.ndarray      # (N,) int64 episode number (over all datasets)
    success: np.ndarray      # (N,) bool: the transition's episode succeeded
    state_features: FeatureSet
    action_features: FeatureSet

    def __len__(self) -> int:
        return int(self.state.shape[0])

    def subset(self, mask: np.ndarray) -> Transitions:
        f = {k: getattr(self, k)[mask] for k in ("state", "chunk", "next_state", "reward", "done", "mc_return",
                                                  "episode", "success")}
        return Transitions(**f, state_features=self.state_features, action_features=self.action_features)


def state_features_of(store, names: Sequence[str] | None = None) -> FeatureSet:
    """The numeric state features of ``store`` (all of them, or ``names`` in that order)."""
    available = {s.name: s for st in store.schema.streams for s in st.features if s.kind is FeatureKind.STATE}
    if names is None:
        return FeatureSet(list(available.values()))
    missing = [n for n in names if n not in available]
    if missing:
        raise SpecMismatchError.expected("dataset state features", f"{list(names)}",
                                         f"missing {missing} (has {sorted(available)})")
    return FeatureSet([available[n] for n in names])


def _stream_of(store, name: str) -> str:
    for st in store.schema.streams:
        if name in st.features:
            return st.name
    raise SpecMismatchError(f"dataset: no stream holds feature {name!r}")


def read_aligned(store, ep, ticks, name: str) -> np.ndarray:
    """Feature ``name`` of episode ``ep`` at every tick: the stream row aligned to each tick (ticks before the
    stream's first sample take that first sample)."""
    stream = _stream_of(store, name)
    rows = np.asarray(ticks[f"{stream}.row"])
    if np.any(rows < 0):
        if not np.any(rows >= 0):
            raise SpecMismatchError(f"{store.path} episode {ep.index}: no {stream} sample for any tick")
        rows = np.where(rows < 0, rows[int(np.argmax(rows >= 0))], rows)
    return np.asarray(store.read(stream, name, rows))


def load_transitions(paths: Sequence[Path], horizon: int, gamma: float,
                     feature_names: Sequence[str] | None = None) -> Transitions:
    from robot_learning.datasets.store import EpisodeStore

    if horizon < 1:
        raise ConfigError.expected("critic horizon", ">= 1", horizon)
    if not paths:
        raise ConfigError("--dataset: give at least one dataset")
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("state", "chunk", "next_state", "reward", "done",
                                                           "mc_return", "episode", "success")}
    feats = actions = None
    n_ep = 0
    for path in paths:
        if not Path(path).exists():
            raise ConfigError(f"--dataset {path}: no such dataset folder")
        store = EpisodeStore.open(path)
        if feats is None:
            feats = state_features_of(store, feature_names)
            actions = store.schema.action_features
        elif store.schema.action_features != actions:
            raise SpecMismatchError.expected(f"action features of {path}", list(actions.names),
                                             list(store.schema.action_features.names))
        else:
            state_features_of(store, list(feats.names))
        unlabelled = [e.index for e in store.episodes if e.success is None]
        if unlabelled:
            raise ConfigError(f"--dataset {path}: episodes {unlabelled[:5]} have no success label (the critic learns "
                              "from success and failure)")
        for ep in store.episodes:
            ticks = store.ticks(ep)
            T = int(ticks["t_ns"].shape[0])
            if T == 0:
                continue
            cols = []
            for s in feats:
                cols.append(np.asarray(read_aligned(store, ep, ticks, s.name), dtype=np.float32).reshape(T, -1))
            state = np.concatenate(cols, axis=1)
            act = np.concatenate([np.asarray(ticks[f"action.{a.name}"], dtype=np.float32).reshape(T, -1)
                                  for a in actions], axis=1)
            idx = np.minimum(np.arange(T)[:, None] + np.arange(horizon)[None, :], T - 1)
            nxt = np.minimum(np.arange(T) + horizon, T - 1)
            done = (np.arange(T) + horizon >= T).astype(np.float32)
            ok = bool(ep.success)
            chunks_left = np.ceil((T - np.arange(T)) / horizon) - 1       # chunks after this one until the end
            parts["state"].append(state)
            parts["chunk"].append(act[idx])
            parts["next_state"].append(state[nxt])
            parts["reward"].append(done * float(ok))
            parts["done"].append(done)
            parts["mc_return"].append((gamma ** chunks_left).astype(np.float32) * float(ok))
            parts["episode"].append(np.full(T, n_ep, dtype=np.int64))
            parts["success"].append(np.full(T, ok))
            n_ep += 1
    if n_ep == 0:
        raise ConfigError("--dataset: no ticks in the given datasets")
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    for k in ("reward", "done", "mc_return"):
        cat[k] = cat[k].astype(np.float32)
    return Transitions(**cat, state_features=feats, action_features=actions)
