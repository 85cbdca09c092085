"""Off-policy residual RL (SAC with RLPD's choices, HIL-SERL's actor / learner split): ``finetune_rlpd(cfg)``.

This process is the learner: it holds the replay buffers (online episodes; demonstrations plus every human
intervention tick), runs the SAC updates (``robot_learning.rl.sac``) and answers the actors over the link
(``robot_learning.rl.link``). Actor processes (``finetune actor``; ``--actors N`` starts them here) play the residual
policy with exploration through the control runtime and send each episode. The learner answers an episode, with
its newest actor weights, once it has made the updates owed for the data before it (``utd`` per env step), so an
actor plays while the learner learns from its previous episode.

Seeds: the learner hands every episode its reset seed (``train_seed``, ``train_seed + 1``, ...); the range is stored
in the policy's metadata so ``eval`` refuses it. Evaluations (the residual's deterministic action through
``evaluate``, held-out seeds) run at the start (the base alone: the residual starts at zero), every
``eval_every_min`` minutes of training and at the end.
"""

from __future__ import annotations

import json
import logging
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

from robot_learning.errors import ConfigError, WorkerFailedError
from robot_learning.rl.config import FinetuneRLPDConfig
from robot_learning.rl.sac import SAC, Replay, SACConfig

RL_FIELDS = ("episode", "env_steps", "seed", "success", "length", "intervention_ticks", "train_success_rate",
             "updates", "q_loss", "q_mean", "actor_loss", "entropy", "alpha", "train_time_s", "wall_s")
EVAL_FIELDS = ("episode", "env_steps", "train_time_s", "success_rate", "episodes", "ci95_lo", "ci95_hi",
               "mean_episode_length")
CHECKPOINT_EVERY_S = 120.0
REPLAY_CAPACITY = 1_000_000
log = logging.getLogger(__name__)


def _sac_config(cfg: FinetuneRLPDConfig) -> SACConfig:
    return SACConfig(gamma=cfg.gamma, ensemble=cfg.ensemble, target_subset=cfg.target_subset, utd=cfg.utd,
                     batch_size=cfg.batch_size, lr_actor=cfg.lr_actor, lr_critic=cfg.lr, lr_alpha=cfg.lr,
                     alpha_init=cfg.alpha_init, demo_fraction=cfg.demo_fraction, actor_delay=cfg.actor_delay,
                     residual_penalty=cfg.residual_penalty, critic_hidden=tuple(cfg.hidden))


def _save(out: Path, policy, sac: SAC, online: Replay, info: dict) -> None:
    from safetensors.numpy import save_file as save_numpy
    from safetensors.torch import save_file

    from robot_learning.policies.checkpoint import atomic_dir, commit_dir
    from robot_learning.training.state import _flatten_optimizer

    policy.save(out / "policy")
    tmp = atomic_dir(out / "checkpoint")
    for name, m in sac.modules().items():
        save_file({k: v.detach().contiguous() for k, v in m.state_dict().items()}, str(tmp / f"{name}.safetensors"))
    groups = {}
    for name, opt in sac.optimizers().items():
        tensors, groups[name] = _flatten_optimizer(opt)
        save_file(tensors, str(tmp / f"{name}.safetensors"))
    save_numpy({k: np.ascontiguousarray(v) for k, v in online.arrays().items()}, str(tmp / "replay.safetensors"))
    state = {**info, "log_alpha": float(sac.log_alpha.detach()), "critic_updates": sac.critic_updates,
             "actor_updates": sac.actor_updates, "optimizer_param_groups": groups}
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    commit_dir(tmp, out / "checkpoint")


def _load(out: Path, sac: SAC, online: Replay) -> dict:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file as load_numpy
    from safetensors.torch import load_file

    from robot_learning.training.state import restore_optimizer

    ck = out / "checkpoint"
    if not (ck / "state.json").is_file():
        raise ConfigError(f"--resume: no checkpoint in {ck} (state.json missing); run without --resume first")
    try:
        info = json.loads((ck / "state.json").read_text())
        for name, m in sac.modules().items():
            m.load_state_dict(load_file(str(ck / f"{name}.safetensors")))
        for name, opt in sac.optimizers().items():
            restore_optimizer(opt, load_file(str(ck / f"{name}.safetensors")), info["optimizer_param_groups"][name])
        with torch.no_grad():
            sac.log_alpha.fill_(float(info["log_alpha"]))
        sac.critic_updates, sac.actor_updates = int(info["critic_updates"]), int(info["actor_updates"])
        replay = load_numpy(str(ck / "replay.safetensors"))
        if len(replay["x"]):
            online.add(**replay)
    except (OSError, json.JSONDecodeError, SafetensorError, ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"--resume: checkpoint {ck} is unreadable or does not match ({e})") from None
    return info


def _spawn_actor(cfg: FinetuneRLPDConfig, url: str, k: int, log_path: Path) -> subprocess.Popen:
    import os

    cmd = [sys.executable, "-m", "robot_learning", "finetune", "actor", "--learner", url,
           "--checkpoint", str(cfg.checkpoint), "--env", cfg.env, "--seed", str(cfg.run.seed * 1000 + k),
           "--threads", "1", "--device", cfg.run.device]
    if cfg.token:
        cmd += ["--token", cfg.token]
    if cfg.takeover_after_ticks is not None:
        cmd += ["--takeover-after-ticks", str(cfg.takeover_after_ticks),
                "--takeover-probability", str(cfg.takeover_probability)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = open(log_path, "a")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        log.close()


def finetune_rlpd(cfg: FinetuneRLPDConfig) -> dict:
    from robot_learning.evaluation.rollout import seen_seeds
    from robot_learning.policies.residual import ResidualConfig, ResidualPolicy
    from robot_learning.rig import parse_robot
    from robot_learning.rl.actor import actor_weights
    from robot_learning.rl.demo_data import demo_transitions, episode_transitions
    from robot_learning.rl.link import LearnerLink
    from robot_learning.rl.residual_ppo import plot_rl_curves
    from robot_learning.rl.run_common import HeldOutEval, load_base_for, run_folder, set_base_temperature
    from robot_learning.training.logs import CsvLog

    _, task, robot = parse_robot(cfg.env)
    torch.set_num_threads(1)          # the actor takes the other core
    torch.manual_seed(cfg.run.seed)
    base = load_base_for(cfg.checkpoint, task, cfg.run.device)
    set_base_temperature(base, cfg.base_temperature)
    eval_seeds = cfg.evaluation.seeds(seen_seeds(base.meta))
    out = run_folder(cfg.run.out, cfg.run.resume)
    policy = ResidualPolicy(base, ResidualConfig(tuple(cfg.hidden), cfg.scale, cfg.log_std, head="tanh",
                                                 select=cfg.select, ensemble=cfg.ensemble,
                                                 critic_hidden=tuple(cfg.hidden)), dict(base.meta))
    sac = SAC(policy, _sac_config(cfg), seed=cfg.run.seed)
    x_dim = policy.state_dim + policy.action_dim
    online = Replay(x_dim, policy.action_dim, REPLAY_CAPACITY)
    demos = Replay(x_dim, policy.action_dim, REPLAY_CAPACITY)
    demo_info = {"episodes": 0, "transitions": 0, "clipped_fraction": 0.0}
    if cfg.demos:
        data, demo_info = demo_transitions(policy, cfg.demos, progress=cfg.run.progress)
        demos.add(**data)
    info = {"episode": 0, "env_steps": 0, "train_time_s": 0.0, "next_seed": cfg.train_seed, "evals": [],
            "recent": [], "weights_version": 0}
    if cfg.run.resume:
        info = _load(out, sac, online)
        iv = online.arrays()["intervened"] > 0      # intervention ticks rejoin the demonstrations
        if np.any(iv):
            demos.add(**{k: v[iv] for k, v in online.arrays().items()})
    rl_log = CsvLog(out / "rl_log.csv", RL_FIELDS, truncate_after_step=None)
    ev_log = CsvLog(out / "eval_log.csv", EVAL_FIELDS)
    budget_eps = cfg.episodes if cfg.episodes is not None else (None if cfg.run.minutes is not None else 200)
    weights = {"version": int(info["weights_version"]), "arrays": actor_weights(policy)}

    def welcome() -> dict:
        return {"type": "welcome", "residual": policy.config.to_json(), "weights": weights["arrays"],
                "weights_version": weights["version"], "next_seed": take_seed(), "gamma": cfg.gamma,
                "base_temperature": cfg.base_temperature}

    seeds_lock = threading.Lock()

    def take_seed() -> int:
        with seeds_lock:
            s, info["next_seed"] = int(info["next_seed"]), int(info["next_seed"]) + 1
            return s

    def meta() -> dict:
        ranges = list(base.meta.get("train_seed_ranges", [])) + [[cfg.train_seed, int(info["next_seed"])]]
        return {"train_seed_ranges": ranges, "finetune": {"method": "rlpd", "env": cfg.env, "episodes": info["episode"],
                                                          "env_steps": info["env_steps"],
                                                          "demos": [str(p) for p in cfg.demos],
                                                          "base_temperature": cfg.base_temperature}}

    evaluate_now = HeldOutEval(policy, task, robot, eval_seeds if cfg.evaluation.eval_episodes else [], ev_log,
                               info, ("episode", "env_steps"), cfg.run.progress)

    def checkpoint() -> None:
        info["weights_version"] = weights["version"]
        policy.meta.update(meta())
        _save(out, policy, sac, online, info)

    def owed() -> int:
        """SAC steps (utd critic updates each) owed for the online data so far."""
        n = info["env_steps"]
        return n if n >= cfg.warmup_steps and len(online) + len(demos) > 0 else 0

    link = LearnerLink(welcome, x_dim, policy.action_dim, cfg.host, cfg.port, cfg.token).start()
    procs: list[subprocess.Popen] = []
    pending: list[tuple] = []      # (episode message, SAC steps it waits for)
    stats: dict[str, float] = {}
    wall0, interrupted, stop = time.perf_counter(), False, False
    last_ck, last_eval = time.perf_counter(), info["train_time_s"]
    bar = None
    try:
        if not info["evals"] and cfg.eval_start:
            evaluate_now()          # the residual is zero: the base alone
        if cfg.run.progress:
            log.info("learner listening on %s", link.url)
        for k in range(cfg.actors):
            procs.append(_spawn_actor(cfg, link.url, k, out / f"actor{k}.log"))
        if cfg.run.progress:
            from tqdm import tqdm
            bar = tqdm(total=budget_eps, initial=int(info["episode"]), desc="RLPD", unit="ep")
        steps_done = sac.actor_updates
        t_last = time.perf_counter()
        while True:
            now = time.perf_counter()
            info["train_time_s"] += now - t_last
            t_last = now
            if not stop and ((budget_eps is not None and info["episode"] >= budget_eps)
                             or (cfg.run.minutes is not None and info["train_time_s"] >= cfg.run.minutes * 60)):
                stop = True
            try:
                ep = link.episodes.get(timeout=0.01 if steps_done < owed() else 0.2)
            except queue.Empty:
                ep = None
            if ep is not None:
                pending.append((ep, owed()))
                data = episode_transitions(ep.x, ep.r, ep.intervened, ep.success)
                if len(data["x"]):
                    online.add(**data)
                    iv = data["intervened"] > 0
                    if np.any(iv):
                        demos.add(**{k: v[iv] for k, v in data.items()})
                info["episode"] += 1
                info["env_steps"] += len(ep.x)
                info["recent"] = (info["recent"] + [int(ep.success)])[-20:]
                row = {"episode": info["episode"], "env_steps": info["env_steps"], "seed": ep.seed,
                       "success": int(ep.success), "length": len(ep.x), "intervention_ticks": int(ep.intervened.sum()),
                       "train_success_rate": round(float(np.mean(info["recent"])), 3), "updates": sac.critic_updates,
                       **{k: round(float(v), 5) for k, v in stats.items() if k in RL_FIELDS},
                       "train_time_s": round(info["train_time_s"], 1), "wall_s": round(time.perf_counter() - wall0, 1)}
                rl_log.write(row)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(success=row["train_success_rate"], q=stats.get("q_mean"), updates=sac.critic_updates)
            for _ in range(min(16, max(0, owed() - steps_done))):
                stats = sac.step(online, demos)
                steps_done += 1
            ready = [p for p in pending if steps_done >= p[1] or stop]
            if ready:
                weights["arrays"], weights["version"] = actor_weights(policy), steps_done
                for ep_msg, _ in ready:
                    ep_msg.reply = {"type": "ack", "next_seed": take_seed(), "weights_version": weights["version"],
                                    "weights": weights["arrays"], "stop": stop}
                    ep_msg.done.set()
                pending = [p for p in pending if p not in ready]
            if stop and all(p.poll() is not None for p in procs) and (procs or cfg.actors == 0):
                while steps_done < owed():   # the updates owed for the last episodes, answered early at the stop
                    stats = sac.step(online, demos)
                    steps_done += 1
                break
            dead = [p for p in procs if p.poll() not in (None, 0)]
            if dead and not stop:
                raise WorkerFailedError(f"an actor process exited with code {dead[0].returncode}; "
                                        f"see {out}/actor*.log")
            if time.perf_counter() - last_ck >= CHECKPOINT_EVERY_S:
                checkpoint()
                last_ck = time.perf_counter()
            if info["train_time_s"] - last_eval >= cfg.run.eval_every_min * 60 and not stop:
                t_pause = time.perf_counter()
                evaluate_now()
                t_last += time.perf_counter() - t_pause        # evaluations do not count as training time
                last_eval = info["train_time_s"]
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        for ep_msg, _ in pending:
            ep_msg.reply = {"type": "ack", "stop": True}
            ep_msg.done.set()
        link.close()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.terminate()
                p.wait(timeout=10)
    try:
        checkpoint()
        final = None if interrupted else evaluate_now()
        if final is not None:
            checkpoint()
    finally:
        rl_log.close()
        ev_log.close()
    curves = plot_rl_curves(out, title="residual RLPD", right=("q_mean", "mean Q of the batch"))
    first = info["evals"][0] if info["evals"] and info["evals"][0]["episode"] == 0 else None
    summary = {"out": str(out), "policy": str(out / "policy"), "env": cfg.env, "episodes": info["episode"],
               "env_steps": info["env_steps"], "critic_updates": sac.critic_updates,
               "train_time_s": round(info["train_time_s"], 1), "demos": demo_info,
               "base_success_rate": first["success_rate"] if first else None,
               "success_rate": final["success_rate"] if final else None,
               "eval_episodes": cfg.evaluation.eval_episodes,
               "eval_seeds": [eval_seeds[0], eval_seeds[-1]] if eval_seeds else [], "curves": str(curves),
               "interrupted": interrupted}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
