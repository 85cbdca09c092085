"""Every policy family trained on the same demonstrations and evaluated on the same held-out seeds (issue 9),
end to end through the CLI a user runs: ``robot-learning train --policy F`` (one thread, the same time budget
each), ``robot-learning eval`` on the same seeds, and inference latency per chunk of every trained policy measured
here side by side on one fixed observation (interleaved rounds, so machine noise hits every family alike).

    .venv/bin/python bench/families.py --dataset DEMOS.zarr --families diffusion flow act ar --minutes 10 \\
        --episodes 50 --out /tmp/families

Prints one table and one JSON line, appended to bench/results/families.jsonl. A family whose run folder already
holds a trained policy is not trained again (delete the folder to retrain).
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

VARIANTS = {   # name -> train flags
    "diffusion": ["--policy", "diffusion"],
    "flow": ["--policy", "flow"],
    "act": ["--policy", "act"],
    "act-open-loop": ["--policy", "act", "--no-temporal-ensemble"],
    "ar": ["--policy", "ar"],
    "ar-quantile": ["--policy", "ar", "--binning", "quantile"],
    "carp": ["--policy", "carp"],
    "vla-bins": ["--policy", "vla", "--vla-head", "bins"],
    "vla-flow": ["--policy", "vla", "--vla-head", "flow"],
}


def lift_like_observation(policy, task: str):
    """A real first observation of ``task`` in the twin, with the features ``policy`` reads."""
    from robot_learning.evaluation.rollout import env_config_for
    from robot_learning.sim.env import SimEnv

    with SimEnv(env_config_for(policy.observation_features, task, "panda")) as env:
        return env.reset(123_456)


def latencies(policies: dict, rounds: int, calls: int, task: str) -> dict[str, dict]:
    """Per-chunk inference latency (ms) of each policy on one observation, rounds interleaved across policies."""
    import numpy as np

    times: dict[str, list[float]] = {k: [] for k in policies}
    obs = {k: lift_like_observation(p, task) for k, p in policies.items()}
    for k, p in policies.items():   # warm-up
        p.reset(0)
        p.infer(obs[k])
    for _ in range(rounds):
        for k, p in policies.items():
            p.reset(0)
            for _ in range(calls):
                t0 = time.perf_counter()
                p.infer(obs[k])
                times[k].append((time.perf_counter() - t0) * 1e3)
    return {k: {"p50_ms": round(float(np.median(v)), 2), "p90_ms": round(float(np.percentile(v, 90)), 2)}
            for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--families", nargs="+", default=["diffusion", "flow", "act", "ar"], choices=sorted(VARIANTS))
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per family")
    ap.add_argument("--steps", type=int, default=None, help="or a step budget (whichever ends first)")
    ap.add_argument("--obs", default="state")
    ap.add_argument("--episodes", type=int, default=50)
    ap.add_argument("--seed", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("/tmp/families"))
    ap.add_argument("--latency-rounds", type=int, default=5)
    ap.add_argument("--carp-tokenizer", type=Path, default=None,
                    help="a stage-1 tokenizer for carp (robot-learning tokenizer train) instead of training one first")
    a = ap.parse_args()

    import torch

    from robot_learning.policies.checkpoint import load_policy

    torch.set_num_threads(a.threads)
    rows, trained_now = {}, []
    for fam in a.families:
        run = a.out / fam
        if not (run / "summary.json").is_file():
            budget = ["--minutes", str(a.minutes)] + (["--steps", str(a.steps)] if a.steps else [])
            tok = ["--tokenizer", str(a.carp_tokenizer)] if fam == "carp" and a.carp_tokenizer is not None else []
            t0 = time.time()
            cli("train", "--dataset", str(a.dataset), "--out", str(run), "--obs", a.obs, *VARIANTS[fam], *budget, *tok,
                "--eval-episodes", "0", "--threads", str(a.threads), "--no-progress", threads=a.threads)
            print(f"{fam}: trained in {time.time() - t0:.0f} s", flush=True)
            trained_now.append(fam)
        summary = json.loads((run / "summary.json").read_text())
        ev_dir = run / f"eval-{a.seed}-{a.episodes}"
        if not (ev_dir / "eval.json").is_file():
            cli("eval", "--checkpoint", str(run), "--episodes", str(a.episodes), "--seed", str(a.seed),
                "--videos", "1", "--out", str(ev_dir), threads=a.threads)
        ev = json.loads((ev_dir / "eval.json").read_text())
        rows[fam] = {"success": ev["success_rate"], "ci95": ev["ci95"], "episodes": ev["episodes"],
                     "train_steps": summary["steps"], "train_min": round(summary["train_time_s"] / 60, 1),
                     "parameters": summary["parameters"], "eval_latency_p50_ms": round(ev["latency_ms_p50"], 1)}
        print(f"{fam}: success {ev['success_rate']:.2f} over {ev['episodes']} episodes", flush=True)
    task = json.loads((a.out / a.families[0] / "policy" / "config.json").read_text())["meta"]["robot"]["task"]
    policies = {f: load_policy(a.out / f) for f in a.families}
    if "diffusion" in policies:   # the same diffusion network sampled both ways (CARP's comparison)
        import copy

        for kind, steps in (("ddpm", 100), ("ddim", 10)):
            p = copy.deepcopy(policies["diffusion"])
            p.set_sampler(kind, steps)
            policies[f"diffusion {kind}-{steps}"] = p
    lat = latencies(policies, a.latency_rounds, 8, task)
    for f in a.families:
        rows[f]["latency"] = lat[f]
    print(f"\n| family | success ({a.episodes} held-out episodes, 95% CI) | train steps | train min | params | "
          f"latency per inference p50 / p90 |")
    print("|---|---|---:|---:|---:|---|")
    for f, r in rows.items():
        print(f"| {f} | {r['success']:.2f} ({r['ci95'][0]:.2f}-{r['ci95'][1]:.2f}) | {r['train_steps']} | "
              f"{r['train_min']} | {r['parameters'] / 1e6:.2f}M | {r['latency']['p50_ms']} / {r['latency']['p90_ms']} ms |")
    print("\n| policy | inference latency p50 / p90 (one thread, interleaved rounds) | vs diffusion ddim-10 |")
    print("|---|---|---:|")
    ref = lat.get("diffusion ddim-10", {}).get("p50_ms")
    for k, v in lat.items():
        ratio = f"{v['p50_ms'] / ref:.2f}x" if ref else "-"
        print(f"| {k} | {v['p50_ms']} / {v['p90_ms']} ms | {ratio} |")
    line = {"bench": "families", "latency": lat, "date": datetime.date.today().isoformat(), "machine": platform.node(),
            "cpus": os.cpu_count(), "threads": a.threads, "dataset": str(a.dataset), "obs": a.obs,
            "trained_now": trained_now, "budget": {"steps": a.steps, "minutes": a.minutes} if trained_now else None,
            "seed": a.seed, "rows": rows}   # each row's train_steps / train_min are what its run measured
    print(json.dumps(line))
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "families.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
