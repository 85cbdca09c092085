"""Residual PPO throughput with the envs in worker processes (``finetune residual --workers W``) against one
process, side by side in one run: the arms alternate, ``--rounds`` times each, and the ratio is of the medians.

Each run is ``finetune residual --iterations N`` from the same base (no evaluations); the figure is env steps per
second of training time (rollouts and PPO updates), from its rl_log.csv after the first iteration (which carries
the start-up). Prints one JSON line and appends it to bench/results/ppo_workers.jsonl.

    .venv/bin/python bench/ppo_workers.py --base RUN [--workers 1 2] [--num-envs 16] [--iterations 4]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import shutil
import statistics
import tempfile
from pathlib import Path

from runner import append_result, cli  # bench/runner.py (the script's folder is on sys.path)


def steps_per_s(run: Path) -> float:
    rows = list(csv.DictReader((run / "rl_log.csv").open()))
    if len(rows) < 2:
        raise SystemExit(f"{run}: need at least 2 iterations to leave out the first")
    first, last = rows[0], rows[-1]
    return (int(last["env_steps"]) - int(first["env_steps"])) / (float(last["train_time_s"]) - float(first["train_time_s"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the base policy's run folder")
    ap.add_argument("--env", default="sim:lift")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="arms (the first is the reference)")
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-save", action="store_true")
    a = ap.parse_args()
    sps: dict[int, list[float]] = {w: [] for w in a.workers}
    tmp = Path(tempfile.mkdtemp(prefix="ppo-workers-"))
    try:
        for r in range(a.rounds):
            for w in a.workers:
                run = tmp / f"w{w}-{r}"
                cli("finetune", "residual", "--checkpoint", str(a.base), "--env", a.env, "--out", str(run),
                    "--num-envs", str(a.num_envs), "--workers", str(w), "--iterations", str(a.iterations),
                    "--eval-episodes", "0", "--threads", "1", "--no-progress")
                sps[w].append(round(steps_per_s(run), 1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ref = statistics.median(sps[a.workers[0]])
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
              "cpus": os.cpu_count(), "base_policy": str(a.base), "env": a.env, "num_envs": a.num_envs,
              "iterations": a.iterations, "env_steps_per_s": {str(w): v for w, v in sps.items()},
              "ratio_to_first": {str(w): round(statistics.median(v) / ref, 2) for w, v in sps.items()}}
    if not a.no_save:
        append_result("ppo_workers", result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
