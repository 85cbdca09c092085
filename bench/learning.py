"""Learning results, end to end through the CLI a user runs: record scripted demos, train, evaluate
on held-out seeds. Prints one JSON line per recipe and appends it to bench/results/learning.jsonl.

Recipes (``--recipe``):

- ``lift_state``:  100 demos, state observations (robot + object state), 15 min of training;
- ``lift_image``:  100 demos, proprio + front and wrist RGB at 96 px, 30 min of training;
- ``push_t_state``: 100 demos of push_t, state observations, 15 min of training.

Evaluation: ``--eval-episodes`` (default 50) seeds from 100000, none of which were recorded.
Minutes are optimisation time (``train --minutes``); evaluation and recording are reported apart.

    .venv/bin/python bench/learning.py --recipe lift_state [--minutes 15] [--demos 100] [--out DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import time
from pathlib import Path

from runner import append_result, cli  # bench/runner.py

RESULTS = Path(__file__).resolve().parent / "results"
RECIPES = {
    "lift_state": {"task": "lift", "obs": "state", "minutes": 15.0, "cameras": ()},
    "lift_image": {"task": "lift", "obs": "proprio,rgb", "minutes": 30.0, "cameras": ("front", "wrist")},
    "push_t_state": {"task": "push_t", "obs": "state", "minutes": 15.0, "cameras": ()},
}


def run_recipe(name: str, out: Path, demos: int, minutes: float | None, eval_episodes: int, seed: int = 0,
               extra_train: tuple[str, ...] = ()) -> dict:
    rec = RECIPES[name]
    minutes = rec["minutes"] if minutes is None else minutes
    out.mkdir(parents=True, exist_ok=True)
    dataset, run = out / "demos.zarr", out / "run"
    shutil.rmtree(dataset, ignore_errors=True)
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    cams = ["--cameras", *rec["cameras"]] if rec["cameras"] else ["--cameras"]
    cli("record", "--dataset", str(dataset), "--robot", f"sim:{rec['task']}", "--episodes", str(demos),
        "--seed", str(seed), *cams, "--no-tactile", threads=None)
    record_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cli("train", "--dataset", str(dataset), "--out", str(run), "--obs", rec["obs"], "--minutes", str(minutes),
        "--eval-episodes", "0", "--seed", str(seed), "--no-progress", *extra_train, threads=None)
    train_wall_s = time.perf_counter() - t0
    summary = json.loads((run / "summary.json").read_text())
    t0 = time.perf_counter()
    r = cli("eval", "--checkpoint", str(run), "--episodes", str(eval_episodes), "--seed", "100000", "--json",
            "--videos", "4", "--out", str(out / "eval"), threads=None)
    ev = json.loads(r.stdout.strip().splitlines()[-1])
    ev.pop("seeds", None)
    return {"recipe": name, "task": rec["task"], "obs": rec["obs"], "demos": demos, "record_s": round(record_s, 1),
            "train_minutes_budget": minutes, "train_steps": summary["steps"],
            "train_time_s": summary["train_time_s"], "train_wall_s": round(train_wall_s, 1),
            "eval_wall_s": round(time.perf_counter() - t0, 1), **ev,
            "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
            "cpus": os.cpu_count(), "load_avg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", choices=sorted(RECIPES), default="lift_state")
    ap.add_argument("--demos", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=None, help="training budget (default: the recipe's)")
    ap.add_argument("--eval-episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--train-arg", action="append", default=[], help="extra `train` flag (repeatable), e.g. "
                    "--train-arg=--batch-size=64")
    args = ap.parse_args()
    out = args.out or RESULTS / f"learning_{args.recipe}"
    res = run_recipe(args.recipe, out, args.demos, args.minutes, args.eval_episodes, args.seed,
                     tuple(args.train_arg))
    append_result("learning", res)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
