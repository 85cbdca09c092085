"""Copying episodes between stores: the primitive behind split, merge and delete-episode.

Episodes are copied row for row: numeric arrays as they are, images as their encoded bytes
(no re-encoding, no quality loss), tick alignment rows rebased onto the destination. The
destination commits each copied episode like a recording does, so an interrupted copy leaves
a consistent store.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

import numpy as np

from robot_learning.datasets.schema import EpisodeRecord
from robot_learning.datasets.store import EpisodeStore, _is_image
from robot_learning.errors import ConfigError


def copy_episode(src: EpisodeStore, ep: EpisodeRecord, dst: EpisodeStore) -> EpisodeRecord:
    if src.schema.to_json() != dst.schema.to_json():
        raise ConfigError(f"{src.path} and {dst.path} have different schemas (streams, features or rates)")
    start = dst.lengths()
    for s in src.schema.streams:
        a, b = ep.streams[s.name]
        g = src.root[f"streams/{s.name}"]
        values, encoded = {}, {}
        for f in s.features:
            if _is_image(f):
                ends = np.asarray(g[f"{f.name}.end"][a:b])
                first = int(g[f"{f.name}.end"][a - 1]) if a > 0 else 0
                blob = np.asarray(g[f"{f.name}.jpeg"][first:int(ends[-1]) if len(ends) else first]).tobytes()
                bounds = np.concatenate([[0], ends - first])
                encoded[f.name] = [blob[bounds[i]:bounds[i + 1]] for i in range(len(ends))]
            else:
                values[f.name] = np.asarray(g[f.name][a:b])
        if b > a:
            dst.append_stream(s.name, values, np.asarray(g["t_capture_ns"][a:b]), np.asarray(g["t_receive_ns"][a:b]),
                              encoded=encoded)
    ticks = src.ticks(ep)
    rows = {}
    for s in src.schema.streams:
        r = np.asarray(ticks[f"{s.name}.row"])
        rows[s.name] = np.where(r >= 0, r - ep.streams[s.name][0] + start[1][s.name], -1)
    dst.append_ticks(ticks["t_ns"], {a.name: ticks[f"action.{a.name}"] for a in src.schema.action_features},
                     ticks["held"], ticks["intervention"], rows)
    meta = {k: getattr(ep, k) for k in ("task", "success", "t_start_ns", "t_end_ns", "intervention_ticks", "dropped",
                                          "operator_notes", "seed")}
    return dst.commit_episode(start, **meta)


def copy_episodes(sources: Iterable[tuple[EpisodeStore, Iterable[int]]], out: str | Path) -> EpisodeStore:
    """A new store at ``out`` holding the listed episodes of each source, in order."""
    sources = [(s, list(idx)) for s, idx in sources]
    if not sources:
        raise ConfigError("copy_episodes: no source datasets")
    dst = EpisodeStore.create(out, sources[0][0].schema)
    for src, indices in sources:
        eps = src.episodes
        for i in indices:
            if not 0 <= i < len(eps):
                raise ConfigError.expected(f"episode index in {src.path}", f"0..{len(eps) - 1}", i)
            copy_episode(src, eps[i], dst)
    return dst


def delete_episodes(path: str | Path, indices: Iterable[int]) -> int:
    """Remove episodes by rewriting the store without them; the original is replaced only once the
    copy is complete (a crash leaves the original untouched). Returns the remaining count."""
    path = Path(path)
    src = EpisodeStore.open(path)
    drop = set(indices)
    n = len(src.episodes)
    bad = [i for i in drop if not 0 <= i < n]
    if bad:
        raise ConfigError.expected("episode indices to delete", f"0..{n - 1}", bad)
    tmp = path.with_name(path.name + ".rewrite")
    if tmp.exists():
        shutil.rmtree(tmp)
    copy_episodes([(src, [i for i in range(n) if i not in drop])], tmp)
    old = path.with_name(path.name + ".old")
    path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old)
    return n - len(drop)
