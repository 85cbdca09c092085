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
    assert 0 < project["vanish_ms"]["p50"] < 100
