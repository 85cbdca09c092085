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
