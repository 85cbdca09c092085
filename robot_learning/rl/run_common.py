"""What every fine-tuning run shares: loading the base for a twin task, the run folder, and the held-out
evaluations (through ``evaluate``, logged to eval_log.csv and kept in the run's state)."""

from __future__ import annotations

import logging
from pathlib import Path

from robot_learning.errors import ConfigError

log = logging.getLogger(__name__)


def load_base_for(checkpoint: Path, task: str, device: str = "cpu"):
    """The saved policy at ``checkpoint`` on ``device`` (a ``--device`` spelling: auto, cpu, cuda[:N]), refused (one
    line) when it was trained on another twin task."""
    from robot_learning.core.device import resolve_device
    from robot_learning.policies.checkpoint import load_policy

    base = load_policy(checkpoint, device=resolve_device(device))
    trained_on = base.meta.get("robot", {})
    base_task = trained_on.get("task") if trained_on.get("kind") == "sim" else None
    if base_task and base_task != task:
        raise ConfigError.expected("--env task", f"the base policy's task {base_task!r}", repr(task))
    return base


def set_base_temperature(base, temperature: float) -> None:
    """A diffusion / flow base samples at ``temperature`` from now on (and is saved so); other bases (no sampler
    temperature: ACT, AR, ...) run as they are."""
    sampler = getattr(base, "sampler", None)
    if hasattr(sampler, "temperature") and sampler.temperature != temperature:
        base.set_sampler(sampler.kind, sampler.steps, float(temperature))


def run_folder(out: Path, resume: bool) -> Path:
    """``out`` created; refused when it already holds a run and ``resume`` is off."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        raise ConfigError(f"--out {out} is not empty; pass --resume to continue that run or pick a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


class HeldOutEval:
    """Evaluations of a policy on fixed held-out seeds: each one a row of ``log`` (a ``CsvLog``) stamped with the
    run's progress counters ``keys`` from ``info``, appended to ``info["evals"]``."""

    def __init__(self, policy, task: str, robot: str, seeds: list[int], log, info: dict, keys: tuple[str, ...],
                 progress: bool):
        self.policy, self.task, self.robot, self.seeds = policy, task, robot, list(seeds)
        self.log, self.info, self.keys, self.progress = log, info, keys, progress

    def __call__(self) -> dict | None:
        from robot_learning.evaluation.metrics import summarize
        from robot_learning.evaluation.rollout import evaluate

        if not self.seeds:
            return None
        self.policy.eval()
        s = summarize(evaluate(self.policy, self.task, self.seeds, robot=self.robot, progress=self.progress))
        row = {**{k: self.info[k] for k in self.keys}, "train_time_s": round(self.info["train_time_s"], 1),
               "success_rate": s["success_rate"], "episodes": s["episodes"], "ci95_lo": s["ci95"][0],
               "ci95_hi": s["ci95"][1], "mean_episode_length": s["mean_episode_length"]}
        self.log.write(row)
        self.info["evals"].append(row)
        if self.progress:
            where = ", ".join(f"{k.replace('_', ' ')} {self.info[k]}" for k in self.keys)
            log.info("eval @ %s: success %.2f over %d held-out episodes (95%% CI %.2f-%.2f)", where,
                     s["success_rate"], s["episodes"], s["ci95"][0], s["ci95"][1])
        return row
