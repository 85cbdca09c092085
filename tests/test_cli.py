import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robot_learning.cli.main import condense_usage_error

EXE = str(Path(sys.executable).with_name("robot-learning"))


def _run(*args, timeout=120):
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_help_lists_subcommands():
    r = _run("--help")
    assert r.returncode == 0
    for sub in ("demo", "doctor"):
        assert sub in r.stdout


@pytest.mark.parametrize("args, expect", [
    (["demo", "--rate-hz", "abc"], "--rate-hz"),
    (["demo", "--bogus"], "--bogus"),
    (["demo", "--rate-hz", "0"], "expected 1..1000, found 0.0"),
    (["nosuchcommand"], "nosuchcommand"),
    ([], "subcommand"),
])
def test_bad_input_prints_one_line_and_exits_2(args, expect):
    r = _run(*args)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("robot-learning: error:") and expect in lines[0]
    assert "Traceback" not in r.stderr + r.stdout


def test_condense_wraps_long_messages():
    box = ("╭─ Value error ──────╮\n│ Error parsing --x: │\n│ bad value 'y'      │\n│ ────────────────── │\n"
           "│ Argument helptext: │\n╰────────────────────╯\n")
    assert condense_usage_error(box) == "value error: Error parsing --x: bad value 'y'"


def test_demo_quick_records_trains_evaluates(tmp_path):
    r = _run("demo", "--quick", "--duration-s", "3", "--out", str(tmp_path), "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    sim, safety, table = summary["sim"], summary["safety"], summary["table"]
    # the scripted expert on seeds 0..3 (deterministic resets and physics) wins every episode
    assert sim["episodes"] == 4 and sim["expert_success_rate"] == 1.0 and sim["video_frames"] > 30
    assert table["demos"] == 4 and table["expert_success_rate"] == 1.0 and table["train_steps"] == 20
    ev = summary["train"]["eval"]
    assert table["eval_episodes"] == ev["episodes"] == 2 and ev["seeds"] == [100_000, 100_001]
    # a 20-step policy may win either seed: the rate is what happened, with its Wilson 95% interval (by hand)
    assert table["success_rate"] == ev["success_rate"] == ev["successes"] / 2
    assert table["ci95"] == ev["ci95"] == {0: [0.0, 0.6576], 1: [0.0945, 0.9055], 2: [0.3424, 1.0]}[ev["successes"]]
    assert 0 < table["latency_ms_p50"] == ev["latency_ms_p50"] <= ev["latency_ms_p90"]
    assert safety["rejected"] > 0 and safety["watchdog_trips"] >= 1 and safety["clipped_ticks"] > 0
    assert safety["executed_within_joint_limits"]
    assert safety["max_command_rate_over_cap"] <= 1.0 + 1e-6
    assert safety["watchdog_hold_after_periods"] <= 3
    assert summary["timing"]["ticks"] > 50
    assert "Summary" in r.stdout and "held-out" in r.stdout
    assert summary["sim"]["dataset_problems"] == []
    # the improvement steps: residual RLPD with its actor process, steering with a critic from the rollouts
    # ... each evaluated on the policy's held-out seeds
    ft, st = summary["finetune"], summary["steer"]
    assert ft["episodes"] == 2 and ft["eval_episodes"] == 2 and ft["eval_seeds"] == [100_000, 100_001]
    assert table["finetuned_success_rate"] == ft["success_rate"] in (0.0, 0.5, 1.0)
    assert st["rollouts"] == 3 and st["samples"] == 16 and st["eval"]["seeds"] == [100_000, 100_001]
    assert table["steered_success_rate"] == st["eval"]["success_rate"] == st["eval"]["successes"] / 2
    assert "fine-tuned (RLPD)" in r.stdout and "steered (K=16)" in r.stdout
    for f in ("sim_lift.mp4", "finetune/policy/config.json", "finetune/actor0.log", "critic/critic/config.json", "safety_ticks.csv", "safety_joint1.png", "summary.json", "demos.zarr/zarr.json",
              "train/policy/model.safetensors", "train/curves.png", "train/train_log.csv"):
        assert (tmp_path / f).stat().st_size > 0


def test_doctor_json():
    r = _run("doctor", "--json")
    assert r.returncode == 0
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout           # one JSON line: no SDK banner (pygame prints one on import)
    info = json.loads(lines[0])
    assert info["torch"].startswith("2.13") and "mujoco" in info
    assert info["scservo_sdk"] == "installed" and info["dynamixel_sdk"] == "installed"
    assert isinstance(info["uvc_cameras"], int) and isinstance(info["realsense_cameras"], int)
