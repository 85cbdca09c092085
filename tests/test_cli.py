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
    assert sim["episodes"] == 4 and sim["expert_success_rate"] > 0 and sim["video_frames"] > 30
    assert table["demos"] == 4 and table["train_steps"] == 20 and table["eval_episodes"] == 2
    assert 0.0 <= table["success_rate"] <= 1.0 and table["latency_ms_p50"] > 0
    assert summary["train"]["eval"]["seeds"] == [100_000, 100_001]
    assert safety["rejected"] > 0 and safety["watchdog_trips"] >= 1 and safety["clipped_ticks"] > 0
    assert safety["executed_within_joint_limits"]
    assert safety["max_command_rate_over_cap"] <= 1.0 + 1e-6
    assert safety["watchdog_hold_after_periods"] <= 3
    assert summary["timing"]["ticks"] > 50
    assert "Summary" in r.stdout and "held-out" in r.stdout
    assert summary["sim"]["dataset_problems"] == []
    # the improvement steps: residual RLPD with its actor process, steering with a critic from the rollouts
    assert summary["finetune"]["episodes"] >= 2 and table["finetuned_success_rate"] is not None
    assert summary["steer"]["rollouts"] == 3 and table["steered_success_rate"] is not None
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
