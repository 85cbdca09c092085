"""Evaluate a trained policy on a suite task: serve it on a free loopback port (``PolicyServer`` in this process),
run ``driver.py ... eval`` in the suite's environment on held-out seeds, and summarise its per-episode lines.

The summary: success rate with a 95% Wilson interval, the suite's own metric (its mean over episodes), episode
length, latency per chunk (the client's round trip, ms) and the video files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from robot_learning.benchmarks.demos import DriverError
from robot_learning.benchmarks.venvs import SuiteEnv
from robot_learning.errors import ConfigError


def eval_seeds(first: int, n: int, demo_seeds) -> list[int]:
    """Seeds ``first .. first+n-1``, refused if any was a demonstration's."""
    from robot_learning.evaluation.rollout import held_out_seeds

    if n < 1:
        raise ConfigError.expected("--episodes", ">= 1", n)
    return held_out_seeds(first, n, demo_seeds, "--eval-seed")


def summarize_episodes(task: str, episodes: list[dict], metric: str | None = None) -> dict:
    """The task's figures from the driver's episode lines."""
    from robot_learning.evaluation.metrics import wilson_interval

    n = len(episodes)
    wins = sum(bool(e["success"]) for e in episodes)
    lo, hi = wilson_interval(wins, n)
    lat = np.array([x for e in episodes for x in e.get("latency_ms", [])], dtype=np.float64)
    out = {"task": task, "success_rate": wins / n if n else 0.0, "episodes": n, "successes": wins,
           "ci95": [round(lo, 4), round(hi, 4)],
           "mean_episode_length": float(np.mean([e["length"] for e in episodes])) if n else 0.0,
           "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
           "latency_ms_p90": float(np.percentile(lat, 90)) if lat.size else None,
           "chunks": int(lat.size), "seeds": [int(e["seed"]) for e in episodes],
           "videos": [e["video"] for e in episodes if e.get("video")]}
    if metric:
        values = [e["metrics"][metric] for e in episodes if e.get("metrics", {}).get(metric) is not None]
        if values and all(isinstance(v, (int, float)) for v in values):
            out[f"mean_{metric}"] = float(np.mean(values))
        elif values:
            out[metric] = {str(v): values.count(v) for v in sorted(set(map(str, values)))}
    return out


def evaluate_task(env: SuiteEnv, policy_dir: Path, task: str, seeds: list[int], out_dir: Path, *,
                  videos: int = 2, video_size: int = 320, image_size: int | None = None, device: str = "cpu",
                  sampling=None, max_steps: int | None = None, infer_threads: int = 1,
                  progress: Callable[[str], None] | None = None,
                  on_episode: Callable[[dict], None] | None = None) -> dict:
    """Serve ``policy_dir`` and run one suite episode per seed; per-episode lines go to ``out_dir/episodes.jsonl``
    as they come (``on_episode`` sees each). Returns the summary (``summarize_episodes``)."""
    from robot_learning.deploy.server import PolicyServer
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir

    if video_size < 320:
        raise ConfigError.expected("--video-size", ">= 320 px", video_size)
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    policy = load_policy(resolve_policy_dir(policy_dir), device=device)
    if sampling is not None:
        sampling.apply(policy)
    episodes: list[dict] = []
    import torch

    threads_before = torch.get_num_threads()
    # one observation per call: one thread is faster, and on a busy host several threads wait on each other
    # (a 4.7M-parameter diffusion policy took 12-30 s per chunk on 2 contended threads, 1.3 s on 1)
    torch.set_num_threads(max(1, int(infer_threads)))
    server = PolicyServer(policy, host="127.0.0.1", port=0)
    port = server.start()
    args = ["eval", "--task", task, "--url", f"ws://127.0.0.1:{port}", "--seeds", ",".join(map(str, seeds)),
            "--videos", str(videos), "--video-dir", str(out_dir / "videos"), "--video-size", str(video_size)]
    args += ["--image-size", str(image_size)] if image_size else []
    args += ["--max-steps", str(max_steps)] if max_steps else []
    t0 = time.perf_counter()
    err_lines: list[str] = []
    try:
        proc = subprocess.Popen(env.driver_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env.process_env())

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                err_lines.append(line.rstrip())
                del err_lines[:-50]

        pumper = threading.Thread(target=pump, daemon=True)
        pumper.start()
        try:
            assert proc.stdout is not None
            with open(out_dir / "episodes.jsonl", "w") as log:   # this evaluation's episodes
                for line in proc.stdout:
                    if not line.startswith("{"):
                        continue
                    doc = json.loads(line)
                    if doc.get("type") != "episode":
                        continue
                    episodes.append(doc)
                    log.write(json.dumps(doc) + "\n")
                    log.flush()
                    if on_episode is not None:
                        on_episode(doc)
                    say(f"[{env.suite.name}] eval {task}: seed {doc['seed']} "
                        f"{'success' if doc['success'] else 'failure'} in {doc['length']} steps "
                        f"({sum(e['success'] for e in episodes)}/{len(episodes)} of {len(seeds)})")
        except BaseException:
            proc.kill()
            raise
        finally:
            proc.wait()
            pumper.join(timeout=5)
    finally:
        server.stop()
        torch.set_num_threads(threads_before)
    if proc.returncode != 0 and len(episodes) < len(seeds):
        tail = " | ".join(ln for ln in err_lines[-5:] if ln.strip())
        raise DriverError(f"{env.suite.name} eval of {task} failed after {len(episodes)} episodes: {tail}")
    summary = summarize_episodes(task, episodes, env.suite.metric)
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    summary["policy"] = str(policy_dir)
    return summary
