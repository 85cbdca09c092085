"""Language following (issue 9), end to end through the CLI a user runs: scripted demonstrations of ``lift_color``
(three cubes, the instruction names the goal), a policy trained on them, and the same held-out seeds evaluated
with the right instruction, a wrong one (another cube's colour) and an empty one. A policy that follows language
succeeds well above chance only with the right one; pairs are per seed.

    .venv/bin/python bench/language.py --demos 60 --policy vla --vla-head flow --steps 3000 --episodes 50 \\
        --out /tmp/language

Prints one table and one JSON line, appended to bench/results/language.jsonl. Steps already done in --out (the
dataset, the trained policy, an evaluation) are reused.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

from runner import cli  # bench/runner.py (the script's folder is on sys.path)

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demos", type=int, default=60)
    ap.add_argument("--policy", default="vla")
    ap.add_argument("--obs", default="state", help="what else the policy sees (the instruction always)")
    ap.add_argument("--train-flags", nargs=argparse.REMAINDER, default=[],
                    help="more train flags, e.g. --vla-head flow (must come last)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/language"))
    a = ap.parse_args()

    from robot_learning.evaluation.metrics import paired_difference

    a.out.mkdir(parents=True, exist_ok=True)
    demos = a.out / "lift_color.zarr"
    if not demos.exists():
        cli("record", "--robot", "sim:lift_color", "--teleop", "scripted", "--episodes", str(a.demos), "--dataset",
            str(demos), "--seed", "0", "--no-tactile", threads=a.threads)
    run = a.out / f"{a.policy}{''.join(a.train_flags).replace('-', '_')}"
    if not (run / "summary.json").is_file():
        obs = a.obs if a.policy == "vla" else f"{a.obs},language"
        t0 = time.time()
        cli("train", "--dataset", str(demos), "--out", str(run), "--policy", a.policy, "--obs", obs, "--steps",
            str(a.steps), "--minutes", str(a.minutes), "--eval-episodes", "0", "--threads", str(a.threads),
            "--no-progress", *a.train_flags, threads=a.threads)
        print(f"trained in {time.time() - t0:.0f} s", flush=True)
    summary = json.loads((run / "summary.json").read_text())
    evals = {}
    for mode in ("right", "wrong", "empty"):
        d = run / f"eval-{mode}-{a.seed}-{a.episodes}"
        if not (d / "eval.json").is_file():
            cli("eval", "--checkpoint", str(run), "--episodes", str(a.episodes), "--seed", str(a.seed), "--videos",
                "1", "--instruction", mode, "--out", str(d), threads=a.threads)
        evals[mode] = json.loads((d / "eval.json").read_text())
    ok = {m: [bool(e["success"]) for e in ev["episodes_detail"]] for m, ev in evals.items()}
    print(f"\n{a.policy} {' '.join(a.train_flags)} on lift_color, {summary['episodes']} demos, {summary['steps']} steps "
          f"({summary['train_time_s'] / 60:.1f} min); {a.episodes} held-out seeds from {a.seed}:\n")
    print("| instruction | success (95% CI) | paired vs right |")
    print("|---|---|---|")
    rows = {}
    for m, ev in evals.items():
        diff = paired_difference(ok["right"], ok[m]) if m != "right" else None
        rows[m] = {"success": ev["success_rate"], "ci95": ev["ci95"], "paired_vs_right": diff}
        d = "-" if diff is None else (f"{diff['difference'] * 100:+.0f} points ({diff['ci95'][0] * 100:+.1f} to "
                                      f"{diff['ci95'][1] * 100:+.1f})")
        print(f"| {m} | {ev['success_rate']:.2f} ({ev['ci95'][0]:.2f}-{ev['ci95'][1]:.2f}) | {d} |")
    line = {"bench": "language", "date": datetime.date.today().isoformat(), "machine": platform.node(),
            "cpus": os.cpu_count(), "threads": a.threads, "policy": a.policy, "flags": a.train_flags,
            "demos": summary["episodes"], "steps": summary["steps"], "train_min": round(summary["train_time_s"] / 60, 1),
            "episodes": a.episodes, "seed": a.seed, "rows": rows}
    print(json.dumps(line))
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "language.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
