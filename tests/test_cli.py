import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from robot_learning.cli.main import condense_usage_error, main

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


def test_demo_quick_runs_the_runtime_and_shows_safety(tmp_path):
    r = _run("demo", "--quick", "--duration-s", "1.5", "--out", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["ticks"] >= 70
    assert summary["rejected"] > 0 and summary["watchdog_trips"] >= 1 and summary["clipped_ticks"] > 0
    assert summary["executed_max_abs_joint_rad"] <= summary["joint_limit_rad"]
    assert summary["executed_max_rate_rad_s"] <= summary["velocity_cap_rad_s"] + 1e-9
    assert summary["watchdog_hold_after_periods"] <= 3
    assert "Not there yet" in r.stdout
    for f in ("ticks.csv", "joint1.png", "summary.json"):
        assert (tmp_path / f).stat().st_size > 0


def test_doctor_json(capsys):
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["torch"].startswith("2.13") and "mujoco" in info
