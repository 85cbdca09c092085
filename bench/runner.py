"""The ``robot-learning`` command as the benches run it: the venv's entry point, offline, EGL rendering, a fixed
number of OpenMP threads (several processes share these machines' cores), stderr's tail on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli(*args: str, threads: int | None = 1) -> subprocess.CompletedProcess:
    """Run ``robot-learning ARGS``; exit with its stderr's tail if it fails. ``threads=None``: the caller's
    OMP_NUM_THREADS."""
    exe = Path(sys.executable).with_name("robot-learning")
    env = dict(os.environ, HF_HUB_OFFLINE="1", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run([str(exe), *args], text=True, capture_output=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"robot-learning {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()[-2000:]}")
    return r


RESULTS = Path(__file__).resolve().parent / "results"


def append_result(name: str, result: dict) -> Path:
    """Append ``result`` as one JSON line to bench/results/NAME.jsonl (created when missing); returns the file."""
    import json

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.jsonl"
    with path.open("a") as f:
        f.write(json.dumps(result) + "\n")
    return path
