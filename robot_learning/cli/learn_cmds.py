"""``robot-learning train``, ``tokenizer train`` and ``eval``."""

from __future__ import annotations

import json
from datetime import datetime

from robot_learning.cli.commands import EvalConfig
from robot_learning.errors import ConfigError
from robot_learning.training.config import TokenizerTrainConfig, TrainConfig


def run_train(cfg: TrainConfig) -> int:
    from robot_learning.training.trainer import train

    summary = train(cfg)
    if summary.get("interrupted"):
        return 130
    ev = summary.get("eval") or {}
    print(f"trained {summary['steps']} steps in {summary['train_time_s']:.0f} s ({summary['wall_s']:.0f} s wall); "
          f"policy {summary['policy']}; curves {summary['curves']}")
    if summary.get("eval_note"):
        print(summary["eval_note"])
    if ev:
        print(f"eval {ev['task']}: success {ev['success_rate']:.2f} over {ev['episodes']} held-out episodes "
              f"(95% CI {ev['ci95'][0]:.2f}-{ev['ci95'][1]:.2f}), latency p50 {ev['latency_ms_p50']:.1f} ms/chunk")
    return 0


def run_tokenizer_train(cfg: TokenizerTrainConfig) -> int:
    from robot_learning.training.tokenizer import train_tokenizer

    s = train_tokenizer(cfg)
    print(f"CARP tokenizer: {s['steps']} steps in {s['train_time_s']:.0f} s on {s['chunks']} chunks; reconstruction "
          f"MAE {s['recon_mae_normalised']:.4f} (normalised), {s['recon_mae_action_units']:.5f} (action units); "
          f"codes used per scale {s['codes_used_per_scale']}; tokenizer {s['tokenizer']}")
    return 130 if s["interrupted"] else 0


def parse_env(spec: str | None, meta: dict) -> tuple[str, str]:
    """(task, robot model) from ``--env``, or the sim task and model the policy was trained on."""
    from robot_learning.rig import parse_sim_robot

    robot = meta.get("robot", {}) if isinstance(meta.get("robot"), dict) else {}
    if spec is None:
        if robot.get("kind") != "sim" or not robot.get("task"):
            raise ConfigError("--env: the checkpoint was not trained on sim data; give --env sim:TASK")
        return robot["task"], robot.get("name", "panda")
    return parse_sim_robot(spec, flag="--env", default_model=robot.get("name", "panda"))


def run_eval(cfg: EvalConfig) -> int:
    from robot_learning.core.device import resolve_device
    from robot_learning.evaluation.metrics import summarize
    from robot_learning.evaluation.rollout import evaluate, held_out_seeds, seen_seeds
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir

    policy_dir = resolve_policy_dir(cfg.checkpoint)
    policy = load_policy(policy_dir, device=resolve_device(cfg.device))
    task, robot = parse_env(cfg.env, policy.meta)
    seeds = held_out_seeds(cfg.seed, cfg.episodes, seen_seeds(policy.meta), "--seed")
    cfg.sampling.apply(policy)
    if cfg.steer is not None:
        from robot_learning.policies.steered import SteeredPolicy
        from robot_learning.rl.critic import ChunkCritic

        policy = SteeredPolicy(policy, ChunkCritic.load(cfg.steer), cfg.samples, cfg.beta)
    # beside the policy folder, never inside it: saving a policy replaces its whole folder
    out = cfg.out if cfg.out is not None else policy_dir.parent / f"eval-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    results = evaluate(policy, task, seeds, robot=robot, video_dir=out if cfg.videos else None, videos=cfg.videos,
                       progress=not cfg.json, record=cfg.record, notes=f"policy rollout: {policy_dir}",
                       instruction=cfg.instruction)
    sampler = policy.sampler
    summary = {"task": task, "robot": robot, "checkpoint": str(policy_dir),
               "sampler": getattr(sampler, "kind", None), "sampling_steps": getattr(sampler, "steps", None),
               "sampling_temperature": getattr(sampler, "temperature", None),
               **summarize(results)}
    if cfg.steer is not None:
        summary["steer"] = {"critic": str(cfg.steer), "samples": cfg.samples, "beta": cfg.beta}
    if cfg.record is not None:
        summary["recorded"] = str(cfg.record)
    if cfg.instruction != "right":
        summary["instruction"] = cfg.instruction
    (out / "eval.json").write_text(json.dumps({**summary, "episodes_detail": [
        {"seed": r.seed, "success": r.success, "length": r.length, "max_reward": r.max_reward,
         "max_coverage": r.max_coverage} for r in results]}, indent=2))
    if cfg.json:
        print(json.dumps(summary))
    else:
        lo, hi = summary["ci95"]
        print(f"{task} ({robot}): success {summary['success_rate']:.2f} over {summary['episodes']} held-out episodes "
              f"(seeds {seeds[0]}..{seeds[-1]}, 95% CI {lo:.2f}-{hi:.2f}); mean length "
              f"{summary['mean_episode_length']:.1f} ticks; latency p50 {summary['latency_ms_p50']:.1f} ms, "
              f"p90 {summary['latency_ms_p90']:.1f} ms per chunk ({summary['sampler'] or 'no sampler'}"
              f"{'-' + str(summary['sampling_steps']) if summary['sampling_steps'] else ''})")
        if "mean_max_coverage" in summary:
            print(f"mean max coverage {summary['mean_max_coverage']:.3f}")
        print(f"videos and eval.json in {out}")
    return 0
