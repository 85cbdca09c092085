"""``robot-learning dataset info | verify | replay | view | split | merge | delete-episode``."""

from __future__ import annotations

import json

import numpy as np

from robot_learning.cli.commands import (DatasetDeleteConfig, DatasetInfoConfig, DatasetMergeConfig,
                                         DatasetReplayConfig, DatasetSplitConfig, DatasetVerifyConfig,
                                         DatasetViewConfig)
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


def dataset_info(store) -> dict:
    eps = store.episodes
    ticks = sum(e.length for e in eps)
    streams = {}
    for s in store.schema.streams:
        rows = sum(e.streams[s.name][1] - e.streams[s.name][0] for e in eps if s.name in e.streams)
        dur = sum((e.t_end_ns - e.t_start_ns) / 1e9 for e in eps)
        intervals = rows - len(eps)  # samples per episode span one interval fewer than they number
        streams[s.name] = {"rows": rows, "measured_rate_hz": round(intervals / dur, 2) if dur > 0 else None,
                           "nominal_rate_hz": s.rate_hz, "features": s.features.to_json()}
    return {"path": str(store.path), "episodes": len(eps), "ticks": ticks, "fps": store.schema.control_rate_hz,
            "success": sum(1 for e in eps if e.success), "robot": dict(store.schema.robot),
            "action_features": store.schema.action_features.to_json(), "streams": streams,
            "tasks": sorted({e.task for e in eps}), "dropped_ticks": sum(e.dropped.get("ticks", 0) for e in eps)}


def run_info(cfg: DatasetInfoConfig) -> int:
    from robot_learning.datasets.store import EpisodeStore

    info = dataset_info(EpisodeStore.open(cfg.dataset))
    if cfg.json:
        print(json.dumps(info))
        return 0
    robot = {k: (v if k not in ("calibration", "cameras") else "stored") for k, v in info["robot"].items()}
    print(f"{info['path']}: {info['episodes']} episodes ({info['success']} successful), {info['ticks']} ticks at "
          f"{info['fps']:g} Hz, robot {robot}, tasks {info['tasks']}, dropped ticks {info['dropped_ticks']}")
    for name, s in info["streams"].items():
        feats = ", ".join(f"{f['name']} {tuple(f['shape'])} {f['dtype']} [{f['units']}]" for f in s["features"])
        print(f"  {name:<14} {s['rows']:>7} rows  {s['measured_rate_hz'] or 0:>6.1f} Hz  {feats}")
    acts = ", ".join(f"{f['name']} {tuple(f['shape'])}" for f in info["action_features"])
    print(f"  {'actions':<14} {acts}")
    return 0


def run_verify(cfg: DatasetVerifyConfig) -> int:
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify

    store = EpisodeStore.open(cfg.dataset)
    problems = verify(store)
    if cfg.json:
        print(json.dumps({"dataset": str(cfg.dataset), "ok": not problems, "episodes": len(store.episodes),
                          "problems": problems}))
    elif problems:
        print(f"{cfg.dataset}: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
    else:
        print(f"{cfg.dataset}: ok ({len(store.episodes)} episodes)")
    return 0 if not problems else 1
