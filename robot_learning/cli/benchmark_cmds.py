"""Runners of ``robot-learning benchmark`` (imported only when one runs)."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path

from robot_learning.cli.benchmark_configs import (BenchmarkDemosConfig, BenchmarkEvalConfig, BenchmarkRunConfig,
                                                  BenchmarkSetupConfig)


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _env(suite_name: str, python: Path | None, scripts_dir: Path | None):
    from robot_learning.benchmarks.demos import driver_json
    from robot_learning.benchmarks.suites import get_suite
    from robot_learning.benchmarks.venvs import ensure_suite_env

    suite = get_suite(suite_name)
    env = ensure_suite_env(suite, python=python, scripts_dir=scripts_dir, progress=_say)
    if not suite.default_tasks:   # an ad-hoc suite file: its own default set
        from robot_learning.benchmarks.suites import with_file_defaults

        suite = with_file_defaults(suite, driver_json(env, "tasks"))
        env = dataclasses.replace(env, suite=suite)
    return suite, env


def _task(env, suite, task: str) -> str:
    from robot_learning.benchmarks.demos import known_tasks
    from robot_learning.benchmarks.suites import parse_tasks

    return parse_tasks(task, suite, known_tasks(env))[0]


def run_setup(cfg: BenchmarkSetupConfig) -> int:
    import tempfile

    from robot_learning.benchmarks.demos import driver_json

    with tempfile.TemporaryDirectory(prefix="rl-bench-") as tmp:
        suite, env = _env(cfg.suite, cfg.python, Path(tmp) / "adapter" if cfg.python else None)
        info = driver_json(env, "tasks")
    doc = {"suite": suite.name, "venv": str(env.venv) if env.venv else None, "python": str(env.python),
           "requirements": list(suite.all_requirements), "tasks": info["tasks"],
           "default_tasks": info["default_tasks"]}
    if cfg.json:
        print(json.dumps(doc))
    else:
        print(f"{suite.name}: {'venv ' + doc['venv'] if doc['venv'] else 'python ' + doc['python']}")
        print(f"  {len(doc['tasks'])} tasks; default set: {', '.join(doc['default_tasks'])}")
    return 0


def run_demos(cfg: BenchmarkDemosConfig) -> int:
    from robot_learning.benchmarks.demos import record_demos

    suite, env = _env(cfg.suite, cfg.python, cfg.out.parent / f".{cfg.out.name}-adapter" if cfg.python else None)
    task = _task(env, suite, cfg.task)
    res = record_demos(env, task, cfg.out, cfg.demos, first_seed=cfg.seed, image_size=cfg.image_size,
                       max_seeds=cfg.max_seeds, progress=_say)
    print(f"{suite.name} {task}: {res.episodes} demos ({res.steps} steps) from {res.tried} seeds "
          f"({res.seeds[0]}..{res.seeds[-1]}; failed {list(res.failed_seeds) or 'none'}) in {res.wall_s:.0f} s "
          f"into {res.store}; dataset verify: ok")
    return 0


def _policy_image_size(policy_dir: Path) -> int | None:
    from robot_learning.core.features import FeatureKind
    from robot_learning.policies.checkpoint import load_policy

    policy = load_policy(policy_dir)
    sizes = {s.shape[0] for s in policy.observation_features if s.kind is FeatureKind.RGB}
    return sizes.pop() if sizes else None


def run_eval(cfg: BenchmarkEvalConfig) -> int:
    from robot_learning.benchmarks.evaluate import eval_seeds, evaluate_task
    from robot_learning.core.device import resolve_device
    from robot_learning.evaluation.rollout import seen_seeds
    from robot_learning.policies.checkpoint import read_policy_dir, resolve_policy_dir

    policy_dir = resolve_policy_dir(cfg.checkpoint)
    out = cfg.out or policy_dir.parent / f"eval-{Path(cfg.suite).stem}-{cfg.task}-{datetime.now():%Y%m%d-%H%M%S}"
    suite, env = _env(cfg.suite, cfg.python, out / "adapter" if cfg.python else None)
    task = _task(env, suite, cfg.task)
    doc = read_policy_dir(policy_dir)[0]
    seeds = eval_seeds(cfg.eval_seed, cfg.episodes, seen_seeds(doc.get("meta", {})))
    image_size = cfg.image_size or _policy_image_size(policy_dir)
    summary = evaluate_task(env, policy_dir, task, seeds, out, videos=cfg.videos, video_size=cfg.video_size,
                            image_size=image_size, device=resolve_device(cfg.device), progress=_say)
    summary["suite"] = suite.name
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    if cfg.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "seeds"}))
    else:
        lo, hi = summary["ci95"]
        lat = summary["latency_ms_p50"]
        print(f"{suite.name} {task}: success {summary['success_rate']:.2f} over {summary['episodes']} held-out "
              f"episodes (seeds {seeds[0]}..{seeds[-1]}, 95% CI {lo:.2f}-{hi:.2f}); mean length "
              f"{summary['mean_episode_length']:.1f} steps; latency p50 {'-' if lat is None else f'{lat:.1f}'} ms "
              f"per chunk; results in {out}")
    return 0


def run_benchmark_cmd(cfg: BenchmarkRunConfig) -> int:
    from robot_learning.benchmarks.demos import known_tasks
    from robot_learning.benchmarks.runner import json_line, resolve_plan, run_benchmark, table
    from robot_learning.core.device import resolve_device

    out = cfg.out or Path("runs/benchmarks") / f"{Path(cfg.suite).stem}-{datetime.now():%Y%m%d-%H%M%S}"
    suite, env = _env(cfg.suite, cfg.python, out / "adapter" if cfg.python else None)
    plan = resolve_plan(suite, known_tasks(env), cfg.tasks, cfg.demos, cfg.steps, cfg.episodes, cfg.quick,
                        seed=cfg.seed, eval_seed=cfg.eval_seed, policy=cfg.policy, obs=cfg.obs,
                        image_size=cfg.image_size, batch_size=cfg.batch_size, threads=cfg.threads,
                        device=resolve_device(cfg.device), videos=cfg.videos)
    try:
        doc = run_benchmark(env, suite, plan, out, say=_say)
    except KeyboardInterrupt:
        results = out / "results.json"
        if results.is_file():
            doc = json.loads(results.read_text())
            _say(table(doc, suite) if doc["tasks"] else "no task finished")
        _say(f"interrupted: finished tasks are in {results}; run the same command with --out {out} to continue")
        return 130
    if cfg.json:
        print(json.dumps(json_line(doc)))
    else:
        print(table(doc, suite))
        print(f"results in {out / 'results.json'}")
    return 0
