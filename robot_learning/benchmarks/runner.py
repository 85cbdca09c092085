"""One suite end to end: its venv, then per task demos -> store -> verify -> train -> serve + eval, then the table.

Out folder (``--out``, default ``runs/benchmarks/<suite>-<time>``)::

    results.json              every finished task's figures (rewritten after each task), the settings, the machine
    <task>/demos.zarr         the task's demonstrations (verified)
    <task>/run/               the training run (policy/, logs, curves.png, summary.json)
    <task>/eval/              episodes.jsonl (one line per episode as it ends), videos/
    <task>/result.json        the task's figures

Nothing finished is lost to Ctrl-C or a crash: a task's result is written as soon as it ends, and running the same
command with the same ``--out`` again skips finished tasks and reuses a finished store or training run.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from robot_learning.benchmarks.suites import SuiteRecord, parse_tasks
from robot_learning.errors import ConfigError

QUICK = {"demos": 10, "steps": 300, "episodes": 5}
EVAL_SEED_OFFSET = 100_000


@dataclass(frozen=True)
class BenchmarkPlan:
    """The settings of one benchmark run (the CLI's flags, resolved)."""

    tasks: tuple[str, ...]
    demos: int
    steps: int
    episodes: int
    seed: int = 0
    eval_seed: int | None = None       # default seed + 100000: disjoint from the demo seeds
    policy: str = "diffusion"
    obs: str = "state"
    image_size: int | None = None
    batch_size: int = 64
    threads: int | None = None
    device: str = "cpu"
    videos: int = 2
    video_size: int = 320
    max_demo_seeds: int | None = None

    @property
    def first_eval_seed(self) -> int:
        return self.eval_seed if self.eval_seed is not None else self.seed + EVAL_SEED_OFFSET


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(terse=True)}


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(path)


def _demos_done(store: Path, want: int) -> bool:
    from robot_learning.datasets.store import EpisodeStore

    if not (store / "zarr.json").is_file():
        return False
    try:
        return len(EpisodeStore.open(store).episodes) >= want
    except Exception:
        return False


def run_task(env, suite: SuiteRecord, task: str, plan: BenchmarkPlan, task_dir: Path,
             say: Callable[[str], None]) -> dict:
    """Demos, training and evaluation of one task; returns its figures (also written to ``result.json``)."""
    import shutil

    from robot_learning.benchmarks.demos import record_demos
    from robot_learning.benchmarks.evaluate import eval_seeds, evaluate_task
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.evaluation.config import HeldOutEvalConfig
    from robot_learning.training.config import TrainConfig
    from robot_learning.training.trainer import train

    task_dir.mkdir(parents=True, exist_ok=True)
    store_path = task_dir / "demos.zarr"
    t_demos = time.perf_counter()
    if _demos_done(store_path, plan.demos):
        say(f"[{suite.name}] {task}: reusing {store_path}")
    else:
        if store_path.exists():
            shutil.rmtree(store_path)   # an unfinished store: its demos are made again
        res = record_demos(env, task, store_path, plan.demos, first_seed=plan.seed, image_size=plan.image_size,
                           max_seeds=plan.max_demo_seeds, progress=say)
        say(f"[{suite.name}] {task}: {res.episodes} demos ({res.steps} steps) from {res.tried} seeds in "
            f"{res.wall_s:.0f} s; dataset verify: ok")
    demos_s = time.perf_counter() - t_demos
    store = EpisodeStore.open(store_path)
    demo_seeds = sorted(int(e.seed) for e in store.episodes if e.seed is not None)
    seeds = eval_seeds(plan.first_eval_seed, plan.episodes, demo_seeds)
    run_dir = task_dir / "run"
    if (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
        say(f"[{suite.name}] {task}: reusing the trained policy in {run_dir}")
    else:
        cfg = TrainConfig(dataset=store_path, out=run_dir, policy=plan.policy, obs=plan.obs, steps=plan.steps,
                          batch_size=plan.batch_size, evaluation=HeldOutEvalConfig(eval_episodes=0), seed=plan.seed,
                          device=plan.device, threads=plan.threads, resume=(run_dir / "checkpoint").exists(),
                          progress=sys.stderr.isatty())
        say(f"[{suite.name}] {task}: training {plan.policy} for {plan.steps} steps on {len(store.episodes)} demos")
        summary = train(cfg)
        if summary.get("interrupted"):
            raise KeyboardInterrupt
    say(f"[{suite.name}] {task}: trained {summary['steps']} steps in {summary['train_time_s']:.0f} s; evaluating "
        f"{len(seeds)} held-out seeds from {seeds[0]}")
    ev = evaluate_task(env, run_dir, task, seeds, task_dir / "eval", videos=plan.videos, video_size=plan.video_size,
                       image_size=plan.image_size, device=plan.device, progress=say)
    result = {**ev, "demos": len(store.episodes), "demo_seeds": [demo_seeds[0], demo_seeds[-1]],
              "demo_steps": int(sum(e.length for e in store.episodes)), "demos_wall_s": round(demos_s, 1),
              "train_steps": int(summary["steps"]), "train_time_s": summary["train_time_s"],
              "parameters": summary.get("parameters"), "policy_family": plan.policy, "obs": plan.obs,
              "published": [asdict(p) for p in suite.published_for(task)]}
    _write_json(task_dir / "result.json", result)
    return result


def run_benchmark(env, suite: SuiteRecord, plan: BenchmarkPlan, out: Path,
                  say: Callable[[str], None] | None = None) -> dict:
    """Every task of ``plan`` in turn; returns the results document (also ``out/results.json``)."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    import torch

    mach = {**machine(), "train_threads": plan.threads or torch.get_num_threads(), "infer_threads": 1}
    mach.pop("torch_threads", None)
    doc = {"suite": suite.name, "tasks": {}, "mean_success": None, "settings": asdict(plan),
           "machine": mach, "out": str(out), "complete": False}
    t0 = time.perf_counter()
    try:
        for task in plan.tasks:
            task_dir = out / task
            done = task_dir / "result.json"
            if done.is_file():
                doc["tasks"][task] = json.loads(done.read_text())
                say(f"[{suite.name}] {task}: finished in an earlier run ({done})")
            else:
                doc["tasks"][task] = run_task(env, suite, task, plan, task_dir, say)
            doc["mean_success"] = _mean_success(doc)
            _write_json(out / "results.json", doc)
        doc["complete"] = True
    finally:
        doc["mean_success"] = _mean_success(doc)
        doc["wall_s"] = round(time.perf_counter() - t0, 1)
        _write_json(out / "results.json", doc)
    return doc


def _mean_success(doc: dict) -> float | None:
    rates = [t["success_rate"] for t in doc["tasks"].values()]
    return round(sum(rates) / len(rates), 4) if rates else None


def json_line(doc: dict) -> dict:
    """The one-line ``--json`` form: per task the figures without the per-episode lists."""
    keep = ("success_rate", "episodes", "successes", "ci95", "mean_episode_length", "latency_ms_p50",
            "latency_ms_p90", "demos", "train_steps", "train_time_s", "policy_family", "obs")
    tasks = {}
    for name, t in doc["tasks"].items():
        row = {k: t.get(k) for k in keep}
        row.update({k: v for k, v in t.items() if k.startswith("mean_") and k != "mean_episode_length"})
        tasks[name] = row
    return {"suite": doc["suite"], "tasks": tasks, "mean_success": doc["mean_success"],
            "settings": doc["settings"], "machine": doc["machine"], "out": doc["out"], "complete": doc["complete"],
            "wall_s": doc.get("wall_s")}


def table(doc: dict, suite: SuiteRecord) -> str:
    """Ours beside the published figure, one row per task."""
    head = ["task", "success (95% CI)", "eps", "metric", "length", "p50 ms", "demos", "steps", "train min",
            "published"]
    rows = []
    for task, t in doc["tasks"].items():
        metric = next((f"{k[5:]} {v:.3f}" for k, v in t.items() if k.startswith("mean_")
                       and k != "mean_episode_length" and isinstance(v, float)), "-")
        pub = "; ".join(f"{p.figure} ({p.source.split(':')[0].split(',')[0]})" for p in suite.published_for(task))
        lat = t.get("latency_ms_p50")
        rows.append([task, f"{t['success_rate']:.2f} ({t['ci95'][0]:.2f}-{t['ci95'][1]:.2f})", str(t["episodes"]),
                     metric, f"{t['mean_episode_length']:.0f}", "-" if lat is None else f"{lat:.1f}",
                     str(t.get("demos", "-")), str(t.get("train_steps", "-")),
                     f"{t.get('train_time_s', 0) / 60:.1f}", pub or "-"])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in [head, *rows]]
    mean = doc.get("mean_success")
    lines.append(f"mean success over {len(rows)} task(s): {mean:.3f}" if mean is not None else "no task finished")
    return "\n".join(lines)


def resolve_plan(suite: SuiteRecord, known: list[str], tasks: str | None, demos: int | None, steps: int | None,
                 episodes: int | None, quick: bool, **rest) -> BenchmarkPlan:
    """The plan from the flags: ``--quick`` is one task (the suite's quick one unless --tasks) with small budgets
    (each overridable by its flag); otherwise the suite's defaults."""
    if quick and tasks is None:
        tasks = suite.quick_task or (known[0] if known else None)
    names = parse_tasks(tasks, suite, known)
    base = QUICK if quick else {"demos": suite.demos, "steps": 5000, "episodes": 50}
    plan = BenchmarkPlan(tasks=names, demos=demos if demos is not None else base["demos"],
                         steps=steps if steps is not None else base["steps"],
                         episodes=episodes if episodes is not None else base["episodes"], **rest)
    for flag, v in (("--demos", plan.demos), ("--steps", plan.steps), ("--episodes", plan.episodes)):
        if v < 1:
            raise ConfigError.expected(flag, ">= 1", v)
    return plan
