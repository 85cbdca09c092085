"""How much of a frozen base's success is decided by noise: the base policy replayed on the same seeds several
times, at a sampling temperature and with Gaussian noise added to each executed action (in normalised units, as
a residual policy's exploration adds it), in N twin envs at once (the residual-PPO rollout path: ``BatchedBase``
and ``SimEnv.step``).

    .venv/bin/python bench/base_noise.py --checkpoint RUN --temperature 0 1 --action-noise 0 0.0135

prints one JSON line per setting: the success rate, the histogram of successes per seed (index k: seeds that
succeeded k times out of --repeats) and, per failed episode, its best task progress (the task's dense reward).
A base whose seeds succeed 0 or --repeats times is deterministic; one whose seeds mostly sit in between leaves
a residual learner little signal of its own. Use validation seeds (default 200000+), not the evaluation ones.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def run(base, task: str, robot: str, seeds: list[int], repeats: int, noise: float, n_envs: int,
        seed: int) -> dict:
    from robot_learning.core.frame import Action
    from robot_learning.evaluation.rollout import env_config_for
    from robot_learning.rl.vec_base import BatchedBase
    from robot_learning.sim.env import SimEnv

    cfg = env_config_for(base.observation_features, task, robot)
    jobs = [s for s in seeds for _ in range(repeats)]
    n = min(n_envs, len(jobs))
    envs = [SimEnv(cfg) for _ in range(n)]
    vb = BatchedBase(base, n, seed=seed)
    rng = np.random.default_rng(seed)
    wins: dict[int, int] = {s: 0 for s in seeds}
    progress_of_failures: list[float] = []
    cur: list[int | None] = [None] * n
    best = np.zeros(n)
    obs = [None] * n
    t0 = time.perf_counter()
    steps = 0
    try:
        def start(i: int) -> None:
            cur[i] = jobs.pop() if jobs else None
            if cur[i] is not None:
                vb.reset(i)
                obs[i], best[i] = envs[i].reset(cur[i]), 0.0
        for i in range(n):
            start(i)
        while any(c is not None for c in cur):
            live = [o if o is not None else obs[0] for o in obs]
            a = vb.actions(live)
            if noise > 0:
                an = base.normalizer.normalize("action", torch.from_numpy(a))
                an = an + noise * torch.from_numpy(rng.standard_normal(an.shape).astype(np.float32))
                a = base.normalizer.unnormalize("action", an).numpy()
            for i, env in enumerate(envs):
                if cur[i] is None:
                    continue
                obs[i], progress, success, truncated, _ = env.step(Action.from_vector(base.action_features, a[i]))
                best[i] = max(best[i], progress)
                steps += 1
                if success or truncated:
                    wins[cur[i]] += int(success)
                    if not success:
                        progress_of_failures.append(round(float(best[i]), 3))
                    start(i)
    finally:
        for env in envs:
            env.close()
    k = np.array([wins[s] for s in seeds])
    return {"success_rate": round(float(k.sum()) / (len(seeds) * repeats), 4), "episodes": len(seeds) * repeats,
            "seeds": [seeds[0], seeds[-1]], "repeats": repeats,
            "successes_per_seed_histogram": np.bincount(k, minlength=repeats + 1).tolist(),
            "failures_best_progress": sorted(progress_of_failures),
            "env_steps_per_s": round(steps / (time.perf_counter() - t0), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="base policy: a training run folder or a policy folder")
    ap.add_argument("--env", default=None, help="sim:TASK[:MODEL] (default: the task and robot the base was trained on)")
    ap.add_argument("--seed", type=int, default=200_000, help="first seed (validation seeds, not evaluation ones)")
    ap.add_argument("--seeds", type=int, default=40, help="number of seeds")
    ap.add_argument("--repeats", type=int, default=4, help="episodes per seed")
    ap.add_argument("--temperature", type=float, nargs="+", default=[1.0, 0.0],
                    help="sampling temperatures of the base to try (diffusion / flow)")
    ap.add_argument("--action-noise", type=float, nargs="+", default=[0.0],
                    help="std of Gaussian noise on each executed action, normalised units (residual scale * "
                         "exp(log-std): 0.1 * e^-2 = 0.0135)")
    ap.add_argument("--envs", type=int, default=16, help="twin envs stepped together")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from robot_learning.cli.learn_cmds import parse_env
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir

    base = load_policy(resolve_policy_dir(args.checkpoint))
    task, robot = parse_env(args.env, base.meta)
    seeds = list(range(args.seed, args.seed + args.seeds))
    for temp in args.temperature:
        base.set_sampler(base.sampler.kind, base.sampler.steps, temp)
        for noise in args.action_noise:
            res = run(base, task, robot, seeds, args.repeats, noise, args.envs, seed=0)
            print(json.dumps({"temperature": temp, "action_noise": noise, **res}), flush=True)


if __name__ == "__main__":
    main()
