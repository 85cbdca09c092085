"""Summary statistics of an evaluation: success rate with a Wilson 95% interval, episode length,
inference latency per chunk, and (push_t) mean max coverage."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from robot_learning.evaluation.rollout import EpisodeResult


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (sensible at 0 and n successes)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(results: Sequence[EpisodeResult]) -> dict:
    n = len(results)
    wins = sum(r.success for r in results)
    lo, hi = wilson_interval(wins, n)
    lat_ms = np.array([x for r in results for x in r.latencies_s], dtype=np.float64) * 1e3
    out = {
        "success_rate": wins / n if n else 0.0,
        "episodes": n,
        "successes": wins,
        "ci95": [round(lo, 4), round(hi, 4)],
        "mean_episode_length": float(np.mean([r.length for r in results])) if n else 0.0,
        "mean_max_reward": float(np.mean([r.max_reward for r in results])) if n else 0.0,
        "latency_ms_p50": float(np.percentile(lat_ms, 50)) if lat_ms.size else None,
        "latency_ms_p90": float(np.percentile(lat_ms, 90)) if lat_ms.size else None,
        "chunks": int(lat_ms.size),
        "seeds": [r.seed for r in results],
    }
    cov = [r.max_coverage for r in results if r.max_coverage is not None]
    if cov:
        out["mean_max_coverage"] = float(np.mean(cov))
    out["videos"] = [r.video for r in results if r.video]
    return out


def paired_difference(a: Sequence[bool], b: Sequence[bool], z: float = 1.959964) -> dict:
    """Success of ``b`` minus success of ``a`` over the same seeds (one pair per seed): the difference, its 95%
    interval (normal approximation on the per-seed differences, as a paired t with many pairs), and the
    discordant counts (seeds only ``b`` won, seeds only ``a`` won)."""
    x = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    if x.size != len(a) or x.size == 0:
        raise ValueError(f"paired_difference: expected two equal, non-empty outcome lists, found {len(a)} and {len(b)}")
    n = x.size
    half = z * (float(x.std(ddof=1)) / math.sqrt(n) if n > 1 else 1.0)
    d = float(x.mean())
    return {"difference": d, "ci95": [d - half, d + half], "pairs": n, "only_b": int((x > 0).sum()),
            "only_a": int((x < 0).sum())}
