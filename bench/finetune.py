"""Fine-tuning and steering results (issue 8), end to end through the CLI a user runs, on one base policy and the
same held-out seeds for every arm, with paired differences (the same seed run by both arms).

Arms: the base alone (``eval``); the base steered by an offline Cal-QL critic trained on its own rollouts plus the
demonstrations (``eval --record``, ``critic train``, ``eval --steer``); residual RLPD (``finetune rlpd`` with the
demonstrations, evaluated by ``eval`` on the same seeds at the end); residual PPO (``finetune residual``). Both RL
arms run their base at sampling temperature 0 (their default), so the base is also evaluated at temperature 0
(``base_t0``) and they are paired with that; ``gain_over_base_as_trained`` pairs them with the base as trained.
Prints one JSON line and appends it to bench/results/finetune.jsonl.

    .venv/bin/python bench/finetune.py --base RUN --demos DEMOS.zarr --arms steer rlpd [--episodes 200]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

from runner import append_result, cli  # bench/runner.py (the script's folder is on sys.path)


def evaluate(checkpoint: Path, out: Path, seed: int, episodes: int, *extra: str) -> dict:
    """eval.json of ``robot-learning eval`` (per-episode outcomes in ``episodes_detail``)."""
    if not (out / "eval.json").is_file():
        cli("eval", "--checkpoint", str(checkpoint), "--episodes", str(episodes), "--seed", str(seed),
            "--videos", "0", "--out", str(out), *extra)
    return json.loads((out / "eval.json").read_text())


def outcomes(ev: dict) -> dict[int, bool]:
    return {int(e["seed"]): bool(e["success"]) for e in ev["episodes_detail"]}


def compare(base: dict, other: dict) -> dict:
    from robot_learning.evaluation.metrics import paired_difference

    a, b = outcomes(base), outcomes(other)
    seeds = sorted(set(a) & set(b))
    d = paired_difference([a[s] for s in seeds], [b[s] for s in seeds])
    return {"success_rate": other["success_rate"], "episodes": other["episodes"], "ci95": other["ci95"],
            "paired_gain": round(d["difference"], 4), "paired_gain_ci95": [round(x, 4) for x in d["ci95"]],
            "won_only_here": d["only_b"], "won_only_by_base": d["only_a"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the base policy's run folder")
    ap.add_argument("--demos", type=Path, required=True, help="demonstrations (critic data, RLPD's demo half)")
    ap.add_argument("--arms", nargs="+", default=["steer", "rlpd"], choices=["steer", "rlpd", "ppo"])
    ap.add_argument("--episodes", type=int, default=200, help="held-out evaluation episodes per arm")
    ap.add_argument("--seed", type=int, default=120_000, help="first held-out evaluation seed")
    ap.add_argument("--rollouts", type=int, default=60, help="base rollouts recorded for the critic")
    ap.add_argument("--critic-steps", type=int, default=2500)
    ap.add_argument("--samples", type=int, default=16, help="K of the steered policy")
    ap.add_argument("--minutes", type=float, default=40.0, help="training budget of each RL arm")
    ap.add_argument("--env", default="sim:lift", help="the twin task of the base")
    ap.add_argument("--ppo-flags", default="", help="extra flags of finetune residual, as one string: --ppo-flags='--reward shaped'")
    ap.add_argument("--rlpd-flags", default="", help="extra flags of finetune rlpd, as one string")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-finetune"))
    ap.add_argument("--no-save", action="store_true", help="do not append to bench/results/finetune.jsonl")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
              "cpus": os.cpu_count(), "base_policy": str(a.base), "demos": str(a.demos),
              "eval_seeds": [a.seed, a.seed + a.episodes - 1]}
    base = evaluate(a.base, a.out / "eval-base", a.seed, a.episodes)
    result["base"] = {"success_rate": base["success_rate"], "episodes": base["episodes"], "ci95": base["ci95"]}
    if "steer" in a.arms:
        rollouts = a.out / "rollouts.zarr"
        if not rollouts.exists():
            cli("eval", "--checkpoint", str(a.base), "--episodes", str(a.rollouts), "--seed", "200000",
                "--videos", "0", "--record", str(rollouts))
        if not (a.out / "critic" / "critic").exists():
            cli("critic", "train", "--dataset", str(a.demos), str(rollouts), "--out", str(a.out / "critic"),
                "--steps", str(a.critic_steps), "--no-progress")
        steer = evaluate(a.base, a.out / "eval-steer", a.seed, a.episodes, "--steer", str(a.out / "critic"),
                         "--samples", str(a.samples))
        result["steer"] = {**compare(base, steer), "samples": a.samples,
                           "critic": json.loads((a.out / "critic" / "summary.json").read_text())["val_auc"]}
    if {"rlpd", "ppo"} & set(a.arms):       # both run their base at temperature 0 (their default): pair with that
        base0 = evaluate(a.base, a.out / "eval-base-t0", a.seed, a.episodes, "--sampling-temperature", "0")
        result["base_t0"] = {"success_rate": base0["success_rate"], "episodes": base0["episodes"],
                             "ci95": base0["ci95"]}
    for arm, command in (("rlpd", ["finetune", "rlpd", "--demos", str(a.demos), *a.rlpd_flags.split()]),
                         ("ppo", ["finetune", "residual", *a.ppo_flags.split()])):
        if arm not in a.arms:
            continue
        run = a.out / arm
        if not (run / "summary.json").is_file():
            cli(*command, "--checkpoint", str(a.base), "--env", a.env, "--out", str(run), "--minutes",
                str(a.minutes), "--eval-episodes", "0", "--no-progress")
        ev = evaluate(run, a.out / f"eval-{arm}", a.seed, a.episodes)
        trained = json.loads((run / "summary.json").read_text())
        result[arm] = {**compare(base0, ev), "gain_over_base_as_trained": compare(base, ev)["paired_gain"],
                       "train_minutes": round(trained["train_time_s"] / 60, 1), "env_steps": trained["env_steps"]}
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    if not a.no_save:
        append_result("finetune", result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
