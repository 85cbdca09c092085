"""Benchmark scripts still run (tiny sizes; the figures themselves live in docs/benchmarks.md)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_servo_bus_bench_runs_and_reports_no_failed_reads():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "servo_bus.py"), "--reads", "50", "--writes", "20",
                        "--corrupt-reads", "60", "--vanish-reps", "1", "--no-save"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    project = out["median"]["project"]
    assert project["read_ms"]["p50"] > 0
    c = project["corrupt"]
    assert c["corrupted_replies"] > 0 and c["failed"] == 0 and c["stale_values"] == 0 and c["wrong_values"] == 0
    # 4 tries of the bus's wait (12 ms on a quiet host, longer on one that delivered replies late), settling between
    wait_ms = project["vanish_try_timeout_ms"]
    assert 0 < project["vanish_ms"]["p50"] < 4 * (wait_ms + 3) + 40, (project["vanish_ms"], wait_ms)


def test_serve_bench_runs_every_reported_measurement():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "serve.py"), "--chunks", "5", "--warmup", "1",
                        "--ticks", "12", "--modes", "open-loop", "rtc", "--no-save"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["remote"]["overhead_ms"]["p50"] > 0 and set(out["null"]) >= {"state"}
    assert set(out["loop"]) == {"open-loop_local", "open-loop_remote", "rtc_local", "rtc_remote"}
    rtc = out["loop"]["rtc_remote"]
    assert rtc["chunks"] >= 1 and rtc["smoothness"]["step_max_rad"] is not None


def test_finetune_bench_pairs_the_steered_arm_with_the_base(lift_base, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "finetune.py"), "--base", str(lift_base["run"]),
                        "--demos", str(lift_base["demos"]), "--arms", "steer", "--episodes", "1", "--rollouts", "2",
                        "--critic-steps", "20", "--samples", "2", "--out", str(tmp_path), "--no-save"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    from robot_learning.datasets.store import EpisodeStore

    # the critic's data: the base's 2 rollouts, failures kept, on their own seeds
    assert [e.seed for e in EpisodeStore.open(tmp_path / "rollouts.zarr").episodes] == [200_000, 200_001]
    base, steer = (json.loads((tmp_path / d / "eval.json").read_text()) for d in ("eval-base", "eval-steer"))
    assert "steer" not in base and steer["steer"] == {"critic": str(tmp_path / "critic"), "samples": 2, "beta": 0.0}
    # both arms on the same held-out seed, paired on it
    assert out["eval_seeds"] == [120_000, 120_000]
    assert [d["seed"] for d in base["episodes_detail"]] == [d["seed"] for d in steer["episodes_detail"]] == [120_000]
    b, s = int(base["episodes_detail"][0]["success"]), int(steer["episodes_detail"][0]["success"])
    assert out["base"] == {"success_rate": b, "episodes": 1, "ci95": base["ci95"]}
    st = out["steer"]
    assert st["success_rate"] == s and st["episodes"] == 1 and st["ci95"] == steer["ci95"] and st["samples"] == 2
    assert st["paired_gain"] == s - b
    assert (st["won_only_here"], st["won_only_by_base"]) == (int(s > b), int(b > s))
    # one pair: no spread to estimate, so the interval is the difference +- z
    assert st["paired_gain_ci95"] == [round(s - b - 1.959964, 4), round(s - b + 1.959964, 4)]


def test_base_noise_bench_replays_seeds_and_a_zero_temperature_base_repeats_itself(lift_base):
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "base_noise.py"), "--checkpoint", str(lift_base["run"]),
                        "--seeds", "2", "--repeats", "2", "--envs", "4", "--temperature", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["episodes"] == 4 and sum(out["successes_per_seed_histogram"]) == 2
    fails = out["failures_best_progress"]
    assert len(fails) == 4 - round(4 * out["success_rate"])
    # deterministic base, no action noise: both replays of a seed end with the same best progress
    assert len(fails) % 2 == 0 and fails[0::2] == fails[1::2]
