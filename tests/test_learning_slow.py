"""Learning results (slow: ~18 minutes each; run with `pytest -m slow`).

Each runs bench/learning.py: record scripted demos, train with the CLI on this machine's CPU
threads within the stated budget, evaluate on 50 held-out seeds. The figures are in
docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "learning.py"


def _recipe(tmp_path: Path, recipe: str, *extra: str) -> dict:
    r = subprocess.run([sys.executable, str(BENCH), "--recipe", recipe, "--out", str(tmp_path), *extra],
                       text=True, capture_output=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_lift_state_reaches_90_percent_in_15_minutes(tmp_path):
    res = _recipe(tmp_path, "lift_state", "--demos", "100", "--minutes", "15", "--eval-episodes", "50")
    assert res["episodes"] == 50 and res["train_time_s"] <= 15 * 60 + 30
    assert res["success_rate"] >= 0.9, res


@pytest.mark.slow
def test_push_t_state_reports_success_and_coverage(tmp_path):
    res = _recipe(tmp_path, "push_t_state", "--demos", "100", "--minutes", "15", "--eval-episodes", "50")
    assert res["episodes"] == 50 and 0.0 <= res["mean_max_coverage"] <= 1.0
    # the block starts at 0.09 mean coverage on these seeds; the measured run (25 min, 1 thread,
    # docs/benchmarks.md) reached 0.60: require well above the start, not that figure
    assert res["mean_max_coverage"] > 0.3, res


@pytest.mark.slow
def test_steering_lifts_a_30_demo_policy_beyond_the_95_percent_interval(tmp_path):
    """Issue 8: a lift policy from 30 scripted demos (3,000 steps, one thread: ~0.46-0.49 measured), steered by a
    Cal-QL critic from 60 of its rollouts and the demos, K = 16, on 200 held-out seeds. Measured: +19 points,
    interval +10.7 to +27.3 (docs/benchmarks.md). About 45 minutes on 2 cores."""
    from support.sim_recordings import record_lift

    demos = record_lift(tmp_path / "demos.zarr", seeds=tuple(range(30)), cameras=(), tactile=False)
    r = subprocess.run([sys.executable, "-m", "robot_learning", "train", "--dataset", str(demos), "--out",
                        str(tmp_path / "base"), "--obs", "state", "--steps", "3000", "--threads", "1",
                        "--eval-episodes", "0",
                        "--no-progress"], text=True, capture_output=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    bench = Path(__file__).resolve().parents[1] / "bench" / "finetune.py"
    r = subprocess.run([sys.executable, str(bench), "--base", str(tmp_path / "base"), "--demos", str(demos),
                        "--arms", "steer", "--episodes", "200", "--seed", "120000", "--out", str(tmp_path / "ft"),
                        "--no-save"], text=True, capture_output=True, timeout=7200)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0.3 <= res["base"]["success_rate"] <= 0.7, res         # a base with room to improve
    assert res["steer"]["paired_gain_ci95"][0] > 0, res          # the gain exceeds the 95% interval


@pytest.mark.slow
def test_residual_ppo_raises_a_30_demo_policy_by_20_points_in_45_minutes(tmp_path):
    """Issue 8: the same 30-demo lift base, run at sampling temperature 0 (0.575 on these 200 held-out seeds),
    fine-tuned by residual PPO for 45 minutes (16 twin envs in 2 worker processes), then evaluated on 200 held-out
    seeds, paired with the base alone at temperature 0. Measured 2026-12-02: 0.81, +23.5 points (+16.8 to +30.2;
    docs/benchmarks.md). About 65 minutes on 2 cores."""
    from support.sim_recordings import record_lift

    demos = record_lift(tmp_path / "demos.zarr", seeds=tuple(range(30)), cameras=(), tactile=False)
    r = subprocess.run([sys.executable, "-m", "robot_learning", "train", "--dataset", str(demos), "--out",
                        str(tmp_path / "base"), "--obs", "state", "--steps", "3000", "--threads", "1",
                        "--eval-episodes", "0", "--no-progress"], text=True, capture_output=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    bench = Path(__file__).resolve().parents[1] / "bench" / "finetune.py"
    r = subprocess.run([sys.executable, str(bench), "--base", str(tmp_path / "base"), "--demos", str(demos),
                        "--arms", "ppo", "--minutes", "45", "--episodes", "200", "--seed", "120000",
                        "--ppo-flags=--workers 2",
                        "--out", str(tmp_path / "ft"), "--no-save"], text=True, capture_output=True, timeout=7200)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert 0.3 <= res["base_t0"]["success_rate"] <= 0.7, res      # a base with room to improve
    assert res["ppo"]["paired_gain"] >= 0.20, res
    assert res["ppo"]["paired_gain_ci95"][0] > 0, res
