"""Training-loader throughput: random (observation window, action chunk) items per second.

Records (or reuses) a lift dataset under bench/results/ (gitignored): ``--episodes`` scripted
episodes, one front camera at ``--image-size`` px streamed at 30 Hz, control at 10 Hz. Then
draws windows of To=2 RGB frames + To=2 robot states and Tp=16 executed actions (Ta=8) through
``torch.utils.data.DataLoader`` (batch 64, shuffle) over ``WindowDataset``, with 0 and 2 workers,
with the decoded-frame cache (default budget) and without it (every window decodes its JPEGs).

- cold: the first epoch, starting with an empty cache (and, with workers, their start-up);
- warm: later epochs (persistent workers keep their caches) for at least ``--seconds``.

The main process runs with ``torch.set_num_threads(1)`` (DataLoader workers always do): the
collate step is a copy, and on a small VM a 2-thread OpenMP copy stalls whenever another
process holds the second core. One extra row shows 0 workers with torch's default threads.
``foreign_cpu_s`` is the CPU time other processes (not this one or its workers) used during a
row: the machine is shared, so read rows with a large figure as disturbed.

    .venv/bin/python bench/loader.py [--episodes 20] [--image-size 96] [--seconds 3] [--rerecord]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from robot_learning.datasets.recorder import Recorder, schema_for  # noqa: E402
from robot_learning.datasets.sampler import DEFAULT_CACHE_BYTES, WindowDataset, WindowSampler  # noqa: E402
from robot_learning.datasets.store import EpisodeStore  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
OBS = [("front_rgb", "front_rgb"), ("robot", "joint_pos_rad")]
To, Tp, Ta = 2, 16, 8


def record(path: Path, episodes: int, image_size: int) -> float:
    from robot_learning.datasets.scripted import record_expert_episodes
    from robot_learning.sim.env import SimEnv, SimEnvConfig

    t0 = time.perf_counter()
    env = SimEnv(SimEnvConfig(task="lift", cameras=("front",), image_size=image_size, camera_fps=30.0))
    schema = schema_for(env.robot.state_features, env.sensors, env.robot.action_features, 10.0)
    store = EpisodeStore.create(path, schema)
    rec = Recorder(store, env.sensors)
    record_expert_episodes(env, rec, range(episodes), keep_failures=True)
    rec.shutdown()
    env.close()
    return time.perf_counter() - t0


def dataset(episodes: int, image_size: int, rerecord: bool) -> tuple[Path, float | None]:
    path = RESULTS / f"loader_lift_{image_size}px_{episodes}ep.zarr"
    if path.exists() and not rerecord:
        try:
            s = EpisodeStore.open(path)
            size = s.schema.stream("front_rgb").features["front_rgb"].shape[0]
            if len(s.episodes) == episodes and size == image_size:
                return path, None
        except Exception:  # noqa: BLE001 - anything unreadable is re-recorded
            pass
    if path.exists():
        shutil.rmtree(path)
    RESULTS.mkdir(parents=True, exist_ok=True)
    return path, record(path, episodes, image_size)


def _cpu_by_pid() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds) of every process (Linux /proc)."""
    tck = os.sysconf("SC_CLK_TCK")
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                out[int(d)] = (int(parts[1]), (int(parts[11]) + int(parts[12])) / tck)
            except (OSError, IndexError, ValueError):
                pass
    return out


def _foreign_cpu(before: dict, after: dict) -> float:
    mine = {os.getpid()}
    for snap in (before, after):
        changed = True
        while changed:
            new = {p for p, (pp, _) in snap.items() if pp in mine and p not in mine}
            changed = bool(new)
            mine |= new
    return sum(after[p][1] - before.get(p, (0, 0.0))[1] for p in after if p not in mine and p in before)


def run_loader(path: Path, workers: int, cache_bytes: int, batch: int, seconds: float,
               main_threads: int = 1) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(main_threads)
    cpu0 = _cpu_by_pid()
    sampler = WindowSampler(EpisodeStore.open(path), OBS, None, To, Tp, Ta, cache_bytes=cache_bytes)
    ds = WindowDataset(sampler)
    g = torch.Generator().manual_seed(0)
    dl = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, generator=g,
                    persistent_workers=workers > 0)
    t0 = time.perf_counter()
    n = sum(b["action"].shape[0] for b in dl)
    cold = time.perf_counter() - t0
    n_warm, epochs, t1 = 0, 0, time.perf_counter()
    while epochs < 2 or time.perf_counter() - t1 < seconds:
        for b in dl:
            n_warm += b["action"].shape[0]
        epochs += 1
    warm = time.perf_counter() - t1
    foreign = _foreign_cpu(cpu0, _cpu_by_pid())
    del dl
    torch.set_num_threads(threads)
    return {"workers": workers, "cache_mb": cache_bytes >> 20, "main_torch_threads": main_threads,
            "foreign_cpu_s": round(foreign, 2), "items_per_epoch": n,
            "cold_epoch_s": round(cold, 3), "cold_windows_per_s": round(n / cold, 1),
            "warm_epochs": epochs, "warm_windows_per_s": round(n_warm / warm, 1)}


def sampler_only(path: Path, cache_bytes: int, seconds: float) -> float:
    """Items/s of ``WindowSampler.__getitem__`` alone (numpy, one process, warm cache)."""
    s = WindowSampler(EpisodeStore.open(path), OBS, None, To, Tp, Ta, cache_bytes=cache_bytes)
    order = np.random.default_rng(0).permutation(len(s))
    for i in order:
        s[i]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for i in order:
            s[i]
        n += len(order)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--rerecord", action="store_true")
    args = ap.parse_args()
    load_start = os.getloadavg()
    path, rec_s = dataset(args.episodes, args.image_size, args.rerecord)
    store = EpisodeStore.open(path)
    eps = store.episodes
    ticks = sum(e.length for e in eps)
    frames = store.root["streams/front_rgb/front_rgb.end"].shape[0]
    jpeg_bytes = eps[-1].image_bytes["front_rgb/front_rgb"][1]
    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    for cache in (DEFAULT_CACHE_BYTES, 0):
        for w in (int(x) for x in args.workers.split(",")):
            rows.append(run_loader(path, w, cache, args.batch, args.seconds))
    rows.append(run_loader(path, 0, DEFAULT_CACHE_BYTES, args.batch, args.seconds, main_threads=default_threads))
    raw = {"cached": round(sampler_only(path, DEFAULT_CACHE_BYTES, args.seconds)),
           "no_cache": round(sampler_only(path, 0, args.seconds))}
    load_end = os.getloadavg()
    out = {"bench": "loader", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": "bench/loader.py " + " ".join(sys.argv[1:]),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                       "torch": torch.__version__, "processor": platform.processor()},
           "load_avg_start": [round(x, 2) for x in load_start], "load_avg_end": [round(x, 2) for x in load_end],
           "dataset": {"path": str(path.relative_to(RESULTS.parent.parent)), "episodes": len(eps), "ticks": ticks,
                       "frames": frames, "image_size": args.image_size, "jpeg_mb": round(jpeg_bytes / 1e6, 2),
                       "record_s": None if rec_s is None else round(rec_s, 1)},
           "window": {"To": To, "Tp": Tp, "Ta": Ta, "batch": args.batch, "obs": [f for _, f in OBS]},
           "dataloader": rows, "sampler_getitem_per_s": raw}
    print(f"dataset: {len(eps)} episodes, {ticks} ticks, {frames} frames {args.image_size}x{args.image_size} "
          f"({out['dataset']['jpeg_mb']} MB JPEG)" + (f", recorded in {rec_s:.1f} s" if rec_s else ", reused"))
    print(f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
          f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}")
    print(f"{'workers':>7} {'cache':>8} {'main thr':>8} {'items/epoch':>11} {'cold epoch s':>12} {'cold win/s':>10} "
          f"{'warm win/s':>10} {'foreign cpu s':>13}")
    for r in rows:
        cache = f"{r['cache_mb']} MB" if r["cache_mb"] else "none"
        print(f"{r['workers']:>7} {cache:>8} {r['main_torch_threads']:>8} {r['items_per_epoch']:>11} "
              f"{r['cold_epoch_s']:>12} {r['cold_windows_per_s']:>10} {r['warm_windows_per_s']:>10} "
              f"{r['foreign_cpu_s']:>13}")
    print(f"WindowSampler.__getitem__ alone (1 process): {raw['cached']} items/s cached, "
          f"{raw['no_cache']} items/s without cache")
    line = json.dumps(out)
    print(line)
    (RESULTS / "loader.json").write_text(line + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
