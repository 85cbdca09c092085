"""Residual PPO (ResiP) in the MuJoCo twin: ``finetune_residual(cfg)``.

Each iteration runs ``rollout_steps`` control steps in each of ``num_envs`` envs (``SimEnv.step``: the safety
filter, the robot and the physics as everywhere else). Per step the frozen base gives every env its action
(``BatchedBase``: one batched sampling call when chunks run out), the residual actor samples a correction
around its mean, and the env executes ``a_base + scale * residual`` (normalised space). The reward is sparse:
1 at success, which ends the episode; time limits truncate (and bootstrap). Then PPO updates the actor and a
separate critic (on the normalised state) on the iteration's samples. With ``--workers W`` the envs are split over
W processes (``rollout_workers.ParallelRollouts``: batches of the same form, collected in parallel).

Seeds: RL episodes reset with ``train_seed, train_seed + 1, ...``; the range used is stored in the policy's
metadata, with the base's demonstration seeds, so ``eval`` refuses them. Evaluations (the residual's mean
action through ``evaluate``: the control runtime, held-out seeds) run at the start, which measures the base
alone since the residual starts at zero, every ``eval_every_min`` minutes and at the end.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from robot_learning.core.frame import Action
from robot_learning.errors import ConfigError, SimulationDivergedError
from robot_learning.rl.config import FinetuneResidualConfig, set_torch_threads
from robot_learning.rl.ppo import Batch, PPOConfig, ReturnNormalizer, ValueNet, gae, gaussian_logp, ppo_update

RL_FIELDS = ("iteration", "env_steps", "episodes", "train_success_rate", "mean_episode_length", "policy_loss",
             "value_loss", "approx_kl", "clip_frac", "epochs", "env_steps_per_s", "train_time_s", "wall_s")
EVAL_FIELDS = ("iteration", "env_steps", "train_time_s", "success_rate", "episodes", "ci95_lo", "ci95_hi",
               "mean_episode_length")
CHECKPOINT_EVERY_S = 120.0


def _ppo_config(cfg: FinetuneResidualConfig) -> PPOConfig:
    return PPOConfig(gamma=cfg.gamma, gae_lambda=cfg.gae_lambda, clip=cfg.clip, target_kl=cfg.target_kl,
                     epochs=cfg.epochs, minibatches=cfg.minibatches, lr_actor=cfg.lr_actor, lr_critic=cfg.lr_critic,
                     critic_hidden=tuple(cfg.hidden))


class Rollouts:
    """The vectorised envs with the base, stepping the residual policy and collecting one PPO batch."""

    def __init__(self, policy, task: str, robot: str, n: int, first_seed: int, seed: int, seed_stride: int = 1):
        from robot_learning.evaluation.rollout import env_config_for
        from robot_learning.rl.vec_base import BatchedBase
        from robot_learning.sim.env import SimEnv

        self.policy, self.n = policy, n
        cfg = env_config_for(policy.observation_features, task, robot)
        self.envs = []
        try:
            for _ in range(n):
                self.envs.append(SimEnv(cfg))
        except BaseException:
            self.close()
            raise
        self.base = BatchedBase(policy.base, n, seed=seed)
        self.next_seed = int(first_seed)
        self.first_seed = int(first_seed)
        self.seed_stride = int(seed_stride)     # reset seeds: first_seed, + stride, ... (workers interleave)
        self.phi = np.zeros(n)       # the task's dense progress reward at each env's current state (shaping)
        self.obs = [self._reset(i) for i in range(n)]
        self.ep_len = np.zeros(n, dtype=np.int64)
        self.max_steps = self.envs[0].max_steps

    def _reset(self, i: int):
        self.base.reset(i)
        seed, self.next_seed = self.next_seed, self.next_seed + self.seed_stride
        obs = self.envs[i].reset(seed)
        self.phi[i] = self.envs[i].task.reward(self.envs[i].world)
        return obs

    def state(self, observations) -> torch.Tensor:
        return self.policy.state_input({s.name: np.stack([o.values[s.name] for o in observations])
                                        for s in self.policy.state_feats})

    def collect(self, steps: int, actor, log_std: float, generator: torch.Generator, reward_norm: ReturnNormalizer,
                shaping_gamma: float | None = None):
        """One batch. ``shaping_gamma``: add potential-based shaping ``gamma * phi(s') - phi(s)`` (phi: the task's
        dense reward; phi = 0 after a diverged step) to the sparse success reward."""
        p, n = self.policy, self.n
        xs, states, next_states, res, logps = [], [], [], [], []
        rewards = np.zeros((steps, n))
        terminated = np.zeros((steps, n))
        done = np.zeros((steps, n))
        finished: list[tuple[bool, int]] = []
        std = float(np.exp(log_std))
        for t in range(steps):
            base_n = p.normalizer.normalize("action", torch.from_numpy(self.base.actions(self.obs)))
            state_n = self.state(self.obs)
            x = p.actor_input(state_n, base_n)
            with torch.no_grad():
                mean = actor(x)
                r = mean + std * torch.randn(mean.shape, generator=generator)
                logp = gaussian_logp(r, mean, log_std)
                act = p.combine(base_n, r).numpy()
            finals = []
            for i, env in enumerate(self.envs):
                try:
                    o, phi, success, trunc, _ = env.step(Action.from_vector(p.action_features, act[i]))
                except SimulationDivergedError:   # the physics diverged: a failed episode, no bootstrap
                    o, phi, success, trunc, diverged = self.obs[i], 0.0, False, False, True
                else:
                    diverged = False
                self.ep_len[i] += 1
                rewards[t, i] = 1.0 if success else 0.0
                if shaping_gamma is not None:
                    rewards[t, i] += shaping_gamma * phi - self.phi[i]
                    self.phi[i] = phi
                terminated[t, i] = 1.0 if (success or diverged) else 0.0
                done[t, i] = 1.0 if (success or trunc or diverged) else 0.0
                finals.append(o)
                if done[t, i]:
                    finished.append((bool(success), int(self.ep_len[i])))
                    self.ep_len[i] = 0
                    self.obs[i] = self._reset(i)
                else:
                    self.obs[i] = o
            xs.append(x)
            states.append(state_n)
            next_states.append(self.state(finals))
            res.append(r)
            logps.append(logp)
        return (torch.stack(xs), torch.stack(states), torch.stack(next_states), torch.stack(res), torch.stack(logps),
                normalize_rewards(rewards, done, reward_norm), terminated, done, finished)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []


def normalize_rewards(rewards: np.ndarray, done: np.ndarray, reward_norm: ReturnNormalizer | None) -> np.ndarray:
    """(T, N) rewards divided by the running return std, step by step (unchanged without a normaliser)."""
    if reward_norm is None:
        return rewards
    return np.stack([reward_norm(rewards[t], done[t].astype(bool)) for t in range(len(rewards))])


def build_residual_policy(cfg: FinetuneResidualConfig, task: str):
    """The base from ``cfg.checkpoint`` (refused for another task) at ``cfg.base_temperature``, wrapped in a
    zero-initialised residual policy (seeded by the caller's torch seed)."""
    from robot_learning.policies.residual import ResidualConfig, ResidualPolicy
    from robot_learning.rl.run_common import load_base_for, set_base_temperature

    base = load_base_for(cfg.checkpoint, task, cfg.run.device)
    set_base_temperature(base, cfg.base_temperature)
    return ResidualPolicy(base, ResidualConfig(tuple(cfg.hidden), cfg.scale, cfg.log_std), dict(base.meta))


def _save(out: Path, policy, critic, opt_a, opt_c, info: dict) -> None:
    from safetensors.torch import save_file

    from robot_learning.policies.checkpoint import atomic_dir, commit_dir
    from robot_learning.training.state import _flatten_optimizer

    policy.save(out / "policy")
    tmp = atomic_dir(out / "checkpoint")
    save_file({k: v.detach().contiguous() for k, v in policy.actor.state_dict().items()}, str(tmp / "actor.safetensors"))
    save_file({k: v.detach().contiguous() for k, v in critic.state_dict().items()}, str(tmp / "critic.safetensors"))
    groups = {}
    for name, opt in (("opt_actor", opt_a), ("opt_critic", opt_c)):
        tensors, groups[name] = _flatten_optimizer(opt)
        save_file(tensors, str(tmp / f"{name}.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**info, "optimizer_param_groups": groups}, indent=2))
    commit_dir(tmp, out / "checkpoint")


def _load(out: Path, policy, critic, opt_a, opt_c) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from robot_learning.training.state import restore_optimizer

    ck = out / "checkpoint"
    if not (ck / "state.json").is_file():
        raise ConfigError(f"--resume: no checkpoint in {ck} (state.json missing); run without --resume first")
    try:
        info = json.loads((ck / "state.json").read_text())
        policy.actor.load_state_dict(load_file(str(ck / "actor.safetensors")))
        critic.load_state_dict(load_file(str(ck / "critic.safetensors")))
        for name, opt in (("opt_actor", opt_a), ("opt_critic", opt_c)):
            restore_optimizer(opt, load_file(str(ck / f"{name}.safetensors")), info["optimizer_param_groups"][name])
    except (OSError, json.JSONDecodeError, SafetensorError, ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"--resume: checkpoint {ck} is unreadable or does not match ({e})") from None
    return info


def finetune_residual(cfg: FinetuneResidualConfig) -> dict:
    from robot_learning.evaluation.rollout import seen_seeds
    from robot_learning.rig import parse_robot
    from robot_learning.rl.rollout_workers import ParallelRollouts
    from robot_learning.rl.run_common import HeldOutEval, run_folder
    from robot_learning.training.logs import CsvLog

    _, task, robot = parse_robot(cfg.env)
    set_torch_threads(cfg.threads)
    torch.manual_seed(cfg.run.seed)
    policy = build_residual_policy(cfg, task)
    base = policy.base
    eval_seeds = cfg.evaluation.seeds(seen_seeds(base.meta))
    ppo = _ppo_config(cfg)
    critic = ValueNet(policy.state_dim, ppo.critic_hidden)
    opt_a = torch.optim.Adam(policy.actor.parameters(), lr=ppo.lr_actor, eps=1e-5)
    opt_c = torch.optim.Adam(critic.parameters(), lr=ppo.lr_critic, eps=1e-5)
    out = run_folder(cfg.run.out, cfg.run.resume)
    info = {"iteration": 0, "env_steps": 0, "train_time_s": 0.0, "next_seed": cfg.train_seed, "reward_norm": None,
            "evals": []}
    if cfg.run.resume:
        info = _load(out, policy, critic, opt_a, opt_c)
    gen = torch.Generator().manual_seed(cfg.run.seed + 7919 * int(info["iteration"]))
    reward_norm = ReturnNormalizer(cfg.num_envs, ppo.gamma) if ppo.norm_reward else None
    if reward_norm is not None and info.get("reward_norm"):
        reward_norm.load(info["reward_norm"])
    rl_log = CsvLog(out / "rl_log.csv", RL_FIELDS, truncate_after_step=None)
    ev_log = CsvLog(out / "eval_log.csv", EVAL_FIELDS)
    if cfg.workers > 1:
        envs = ParallelRollouts(cfg, int(info["next_seed"]), cfg.run.seed + int(info["iteration"]))
    else:
        envs = Rollouts(policy, task, robot, cfg.num_envs, int(info["next_seed"]),
                        cfg.run.seed + int(info["iteration"]))
    steps = cfg.rollout_steps or envs.max_steps
    budget_iters = cfg.iterations if cfg.iterations is not None else (None if cfg.run.minutes is not None else 100)

    def meta() -> dict:
        ranges = list(base.meta.get("train_seed_ranges", [])) + [[cfg.train_seed, envs.next_seed]]
        return {"train_seed_ranges": ranges, "finetune": {"method": "residual-ppo", "env": cfg.env,
                                                          "iterations": info["iteration"], "env_steps": info["env_steps"],
                                                          "reward": cfg.reward, "base_temperature": cfg.base_temperature}}

    evaluate_now = HeldOutEval(policy, task, robot, eval_seeds if cfg.evaluation.eval_episodes else [], ev_log,
                               info, ("iteration", "env_steps"), cfg.run.progress)

    def checkpoint() -> None:
        info["next_seed"] = envs.next_seed
        info["reward_norm"] = reward_norm.state() if reward_norm is not None else None
        policy.meta.update(meta())
        _save(out, policy, critic, opt_a, opt_c, info)

    wall0, interrupted = time.perf_counter(), False
    last_ck, last_eval = time.perf_counter(), info["train_time_s"]
    bar = None
    try:
        if not info["evals"]:
            evaluate_now()           # the residual is zero: the base alone
        if cfg.run.progress:
            from tqdm import tqdm
            bar = tqdm(total=budget_iters, initial=int(info["iteration"]), desc="residual PPO", unit="it")
        while True:
            if budget_iters is not None and info["iteration"] >= budget_iters:
                break
            if cfg.run.minutes is not None and info["train_time_s"] >= cfg.run.minutes * 60:
                break
            t0 = time.perf_counter()
            policy.actor.train()
            x, state, next_state, r, logp, rew, term, done, finished = envs.collect(
                steps, policy.actor, policy.config.log_std, gen, reward_norm,
                ppo.gamma if cfg.reward == "shaped" else None)
            roll_s = time.perf_counter() - t0
            with torch.no_grad():
                values = critic(state).numpy()
                next_values = critic(next_state).numpy()
            adv, ret = gae(rew, values, next_values, term, done, ppo.gamma, ppo.gae_lambda)
            flat = lambda a: torch.as_tensor(a, dtype=torch.float32).reshape(steps * cfg.num_envs, *a.shape[2:])  # noqa: E731
            batch = Batch(flat(x), flat(state), flat(r), flat(logp), flat(adv), flat(ret))
            stats = ppo_update(policy.actor, critic, opt_a, opt_c, batch, policy.config.log_std, ppo, gen)
            info["iteration"] += 1
            info["env_steps"] += steps * cfg.num_envs
            dt = time.perf_counter() - t0
            info["train_time_s"] += dt
            wins = [s for s, _ in finished]
            row = {"iteration": info["iteration"], "env_steps": info["env_steps"], "episodes": len(finished),
                   "train_success_rate": round(float(np.mean(wins)), 4) if wins else None,
                   "mean_episode_length": round(float(np.mean([n for _, n in finished])), 1) if finished else None,
                   **{k: round(float(stats[k]), 5) for k in ("policy_loss", "value_loss", "approx_kl", "clip_frac")},
                   "epochs": stats["epochs"], "env_steps_per_s": round(steps * cfg.num_envs / roll_s, 1),
                   "train_time_s": round(info["train_time_s"], 1), "wall_s": round(time.perf_counter() - wall0, 1)}
            rl_log.write(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(success=row["train_success_rate"], kl=row["approx_kl"], sps=row["env_steps_per_s"])
            if time.perf_counter() - last_ck >= CHECKPOINT_EVERY_S:
                checkpoint()
                last_ck = time.perf_counter()
            if info["train_time_s"] - last_eval >= cfg.run.eval_every_min * 60:
                evaluate_now()
                last_eval = info["train_time_s"]
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    try:
        checkpoint()
        final = None if interrupted else evaluate_now()
        if final is not None:
            checkpoint()      # the evaluation is in the saved history
    finally:
        envs.close()
        rl_log.close()
        ev_log.close()
    curves = plot_rl_curves(out)
    first = info["evals"][0] if info["evals"] else None
    summary = {"out": str(out), "policy": str(out / "policy"), "env": cfg.env, "iterations": info["iteration"],
               "env_steps": info["env_steps"], "train_time_s": round(info["train_time_s"], 1),
               "base_success_rate": first["success_rate"] if first else None,
               "success_rate": final["success_rate"] if final else None,
               "eval_episodes": cfg.evaluation.eval_episodes,
               "eval_seeds": [eval_seeds[0], eval_seeds[-1]] if eval_seeds else [],
               "curves": str(curves), "interrupted": interrupted}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def plot_rl_curves(run_dir: Path, title: str = "residual PPO",
                   right: tuple[str, str] = ("approx_kl", "approx KL per update")) -> Path:
    """``curves.png``: training-episode success and held-out evaluation success (95% CI) against env steps, and
    the ``right`` = (rl_log column, label) beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robot_learning.training.logs import read_csv

    run_dir = Path(run_dir)
    rl = read_csv(run_dir / "rl_log.csv") if (run_dir / "rl_log.csv").exists() else []
    ev = read_csv(run_dir / "eval_log.csv") if (run_dir / "eval_log.csv").exists() else []
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    pts = [(int(r["env_steps"]), float(r["train_success_rate"])) for r in rl if r.get("train_success_rate")]
    if pts:
        a.plot(*zip(*pts), lw=1, label="training episodes")
    if ev:
        xs = [int(r["env_steps"]) for r in ev]
        sr = [float(r["success_rate"]) for r in ev]
        err = [[max(0.0, s - float(r["ci95_lo"])) for s, r in zip(sr, ev)],
               [max(0.0, float(r["ci95_hi"]) - s) for s, r in zip(sr, ev)]]
        a.errorbar(xs, sr, yerr=err, fmt="o-", capsize=4, label="held-out evaluation (95% CI)")
    a.set(xlabel="env steps", ylabel="success rate", ylim=(-0.02, 1.02), title=title)
    a.grid(alpha=0.3)
    if pts or ev:
        a.legend(loc="lower right")
    col, label = right
    ys = [(int(r["env_steps"]), float(r[col])) for r in rl if r.get(col) not in (None, "")]
    if ys:
        b.plot(*zip(*ys), lw=1)
    b.set(xlabel="env steps", ylabel=label, title=label)
    b.grid(alpha=0.3)
    fig.tight_layout()
    path = run_dir / "curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
