"""The demo's improvement steps over the trained policy, without retraining it: residual RL (RLPD, an actor process
and this learner) and value-guided steering (a Cal-QL critic from the policy's own rollouts plus the demos), each
evaluated on the same held-out seeds as the base."""

from __future__ import annotations

from pathlib import Path


def finetune_step(out: Path, demos: Path, quick: bool, minutes: float, eval_episodes: int, eval_seed: int,
                  seed: int, progress: bool) -> dict:
    from robot_learning.evaluation.config import HeldOutEvalConfig
    from robot_learning.rl.config import FinetuneRLPDConfig, RLRunConfig
    from robot_learning.rl.rlpd import finetune_rlpd

    run = RLRunConfig(out=out / "finetune", minutes=None if quick else minutes, eval_every_min=1e9, seed=seed,
                      progress=progress)
    cfg = FinetuneRLPDConfig(checkpoint=out / "train", run=run, env="sim:lift", demos=(demos,),
                             episodes=2 if quick else None, warmup_steps=10 if quick else 500,
                             actor_delay=0 if quick else 1000, evaluation=HeldOutEvalConfig(eval_episodes, eval_seed),
                             eval_start=False)
    return finetune_rlpd(cfg)


def steer_step(out: Path, demos: Path, quick: bool, rollouts: int, eval_seeds: list[int], samples: int,
               seed: int, progress: bool) -> dict:
    """Record the base's rollouts (failures kept), train a critic on them and the demos, evaluate the steered base.
    Returns {"rollouts", "rollout_success_rate", "critic", "val_auc", "eval"} or {"skipped": reason}."""
    from robot_learning.errors import InsufficientDataError
    from robot_learning.evaluation.metrics import summarize
    from robot_learning.evaluation.rollout import evaluate
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir
    from robot_learning.policies.steered import SteeredPolicy
    from robot_learning.rl.config import CriticTrainConfig
    from robot_learning.rl.critic import ChunkCritic
    from robot_learning.rl.critic_train import train_critic

    base = load_policy(resolve_policy_dir(out / "train"))
    first = 200_000 + seed
    rec = evaluate(base, "lift", range(first, first + rollouts), progress=progress, record=out / "rollouts.zarr",
                   notes="demo: base rollouts for the critic")
    rate = sum(r.success for r in rec) / len(rec)
    try:
        crit = train_critic(CriticTrainConfig(method="train", dataset=(demos, out / "rollouts.zarr"),
                                              out=out / "critic", steps=100 if quick else 2500, val_fraction=0.1,
                                              seed=seed, progress=progress))
    except InsufficientDataError as e:   # e.g. the base succeeded in every rollout: nothing to tell apart
        return {"skipped": str(e), "rollouts": rollouts, "rollout_success_rate": rate}
    steered = SteeredPolicy(base, ChunkCritic.load(out / "critic"), samples=samples, beta=0.0)
    ev = summarize(evaluate(steered, "lift", eval_seeds, progress=progress))
    return {"rollouts": rollouts, "rollout_success_rate": rate, "critic": crit["critic"], "val_auc": crit["val_auc"],
            "samples": samples, "eval": ev}
