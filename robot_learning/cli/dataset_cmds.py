"""``robot-learning dataset replay | view | split | merge | delete-episode``."""

from __future__ import annotations

import json

import numpy as np

from robot_learning.cli.commands import (DatasetDeleteConfig, DatasetMergeConfig, DatasetReplayConfig,
                                         DatasetSplitConfig, DatasetViewConfig)
from robot_learning.errors import ConfigError


def run_replay(cfg: DatasetReplayConfig) -> int:
    from robot_learning.datasets.replay import replay_episode
    from robot_learning.datasets.store import EpisodeStore

    store = EpisodeStore.open(cfg.dataset)
    indices = range(len(store.episodes)) if cfg.episode == -1 else [cfg.episode]
    results = [replay_episode(store, i) for i in indices]
    if cfg.json:
        print(json.dumps(results[0] if len(results) == 1 else {"episodes": results}))
    else:
        for r in results:
            e = r["tracking_error_rad"]
            print(f"episode {r['episode']}: {r['ticks']} ticks, joint tracking error mean {e['mean']:.2e} rad, "
                  f"max {e['max']:.2e} rad; success recorded {r['recorded_success']}, replayed {r['replayed_success']}")
    return 0


def run_view(cfg: DatasetViewConfig) -> int:
    from robot_learning.core.features import FeatureKind
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.video import VideoWriter

    store = EpisodeStore.open(cfg.dataset)
    eps = store.episodes
    if not 0 <= cfg.episode < len(eps):
        raise ConfigError.expected("--episode", f"0..{len(eps) - 1}", cfg.episode)
    if cfg.out.suffix.lower() == ".rrd":
        from robot_learning.datasets.rerun_export import export_rrd

        export_rrd(store, cfg.episode, cfg.out)
        print(f"wrote {cfg.out}: episode {cfg.episode}, every stream at its capture times (open with: rerun {cfg.out})")
        return 0
    ep = eps[cfg.episode]
    cams = [(s.name, f.name, s.rate_hz) for s in store.schema.streams for f in s.features if f.kind is FeatureKind.RGB]
    if not cams:
        raise ConfigError(f"{cfg.dataset}: no camera streams to view")
    base = cams[0]
    times = store.stream_times(ep, base[0])
    columns = []
    for stream, feat, _ in cams:  # each camera's frame nearest in capture time to the first camera's
        t = store.stream_times(ep, stream)
        a = ep.streams[stream][0]
        idx = np.clip(np.searchsorted(t, times), 0, len(t) - 1)
        columns.append(store.read(stream, feat, a + idx))
    h = max(c.shape[1] for c in columns)
    frames = np.concatenate([np.pad(c, ((0, 0), (0, h - c.shape[1]), (0, 0), (0, 0))) for c in columns], axis=2)
    fps = base[2] or store.schema.control_rate_hz
    with VideoWriter(cfg.out, fps) as w:
        for f in frames:
            w.write(f)
    print(f"wrote {cfg.out}: episode {cfg.episode}, {len(frames)} frames at {fps:g} fps, cameras "
          f"{[c[1] for c in cams]}")
    return 0


def run_split(cfg: DatasetSplitConfig) -> int:
    from robot_learning.datasets.edit import copy_episodes
    from robot_learning.datasets.store import EpisodeStore

    src = EpisodeStore.open(cfg.dataset)
    order = list(range(len(src.episodes)))
    if cfg.seed is not None:
        np.random.default_rng(cfg.seed).shuffle(order)
    k = int(round(cfg.fraction * len(order)))
    if k == 0 or k == len(order):
        raise ConfigError(f"--fraction {cfg.fraction} of {len(order)} episodes leaves one side empty")
    copy_episodes([(src, sorted(order[:k]))], cfg.out_a)
    copy_episodes([(src, sorted(order[k:]))], cfg.out_b)
    print(json.dumps({"out_a": str(cfg.out_a), "episodes_a": k, "out_b": str(cfg.out_b),
                      "episodes_b": len(order) - k}))
    return 0


def run_merge(cfg: DatasetMergeConfig) -> int:
    from robot_learning.datasets.edit import copy_episodes
    from robot_learning.datasets.store import EpisodeStore

    if len(cfg.datasets) < 2:
        raise ConfigError.expected("datasets to merge", "two or more", len(cfg.datasets))
    stores = [EpisodeStore.open(p) for p in cfg.datasets]
    out = copy_episodes([(s, range(len(s.episodes))) for s in stores], cfg.out)
    print(json.dumps({"out": str(cfg.out), "episodes": len(out.episodes)}))
    return 0


def run_delete(cfg: DatasetDeleteConfig) -> int:
    from robot_learning.datasets.edit import delete_episodes

    left = delete_episodes(cfg.dataset, cfg.index)
    print(json.dumps({"dataset": str(cfg.dataset), "deleted": sorted(set(cfg.index)), "episodes": left}))
    return 0
