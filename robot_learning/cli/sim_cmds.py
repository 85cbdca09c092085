"""``robot-learning sim list | check | view``."""

from __future__ import annotations

import json
import math
import sys
import time

import numpy as np

from robot_learning.cli.commands import SimCheckConfig, SimListConfig, SimViewConfig
from robot_learning.errors import ConfigError


def wilson_ci95(successes: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a success rate."""
    if n == 0:
        return (0.0, 1.0)
    z, p = 1.959964, successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def run_sim_list(cfg: SimListConfig) -> int:
    from robot_learning.core.robot_models import ROBOTS
    from robot_learning.sim.tasks.registry import get_task_class, task_names

    rows = []
    for name in task_names():
        try:
            cls = get_task_class(name)
        except ImportError as e:
            rows.append({"task": name, "robots": [], "error": str(e)})
            continue
        c = cls.default_config()
        rows.append({"task": name, "robots": list(cls.robots), "control_rate_hz": c.control_rate_hz,
                     "episode_len_s": c.episode_len_s, "doc": (cls.__module__ and sys.modules[cls.__module__].__doc__
                                                               or "").strip().splitlines()[0]})
    if cfg.json:
        print(json.dumps({"tasks": rows, "robots": sorted(ROBOTS)}))
        return 0
    for r in rows:
        print(f"{r['task']:<10} robots {','.join(r['robots']):<12} {r.get('doc', r.get('error', ''))}")
    print(f"\nrobot models: {', '.join(sorted(ROBOTS))}")
    return 0


def _env_and_expert(cfg, cameras=(), size=96, camera_fps=None):
    from robot_learning.sim.env import SimEnv, SimEnvConfig
    from robot_learning.sim.experts import make_expert
    from robot_learning.sim.experts.base import ExpertNoise
    from robot_learning.sim.randomize import DomainRandomization

    env = SimEnv(SimEnvConfig(task=cfg.task, robot=cfg.robot, cameras=cameras, image_size=size,
                              camera_fps=camera_fps, randomize=DomainRandomization() if cfg.randomize else None))
    expert = make_expert(env, ExpertNoise(waypoint_noise_m=cfg.waypoint_noise_m,
                                          action_noise_rad=cfg.action_noise_rad, speed_scale=cfg.speed_scale))
    return env, expert


def run_expert_episode(env, expert, seed: int, on_step=None) -> tuple[bool, int]:
    obs = env.reset(seed)
    expert.reset(obs, seed)
    success = False
    for k in range(env.max_steps):
        obs, _, terminated, truncated, info = env.step(expert.act(obs))
        if on_step is not None:
            on_step(env)
        success = info["success"]
        if terminated or truncated:
            return success, k + 1
    return success, env.max_steps


def run_sim_check(cfg: SimCheckConfig) -> int:
    from tqdm import tqdm

    env, expert = _env_and_expert(cfg)
    t0 = time.perf_counter()
    results = []
    try:
        bar = tqdm(range(cfg.episodes), desc=f"sim check {cfg.task}/{cfg.robot}", unit="ep", file=sys.stderr,
                   disable=not sys.stderr.isatty())
        for i in bar:
            results.append(run_expert_episode(env, expert, cfg.seed + i))
            bar.set_postfix(success=f"{np.mean([r[0] for r in results]):.2f}")
    except KeyboardInterrupt:
        print(f"interrupted after {len(results)} episodes", file=sys.stderr)
    finally:
        env.close()
    wall = time.perf_counter() - t0
    n = len(results)
    if n == 0:
        return 130
    wins = sum(r[0] for r in results)
    steps = sum(r[1] for r in results)
    lo, hi = wilson_ci95(wins, n)
    summary = {"task": cfg.task, "robot": cfg.robot, "episodes": n, "seed": cfg.seed, "success_rate": wins / n,
               "ci95": [round(lo, 4), round(hi, 4)], "mean_episode_steps": round(steps / n, 2),
               "randomize": cfg.randomize, "wall_s": round(wall, 2), "env_steps_per_s": round(steps / wall, 1),
               "failed_seeds": [cfg.seed + i for i, r in enumerate(results) if not r[0]]}
    if cfg.json:
        print(json.dumps(summary))
    else:
        print(f"{cfg.task} on {cfg.robot}: expert success {wins}/{n} = {wins / n:.3f} "
              f"(95% CI {lo:.3f}-{hi:.3f}), {steps / n:.1f} steps/episode, {steps / wall:.0f} env steps/s")
        if summary["failed_seeds"]:
            print(f"failed seeds: {summary['failed_seeds']}")
    return 0


def run_sim_view(cfg: SimViewConfig) -> int:
    from robot_learning.video import VideoWriter

    if cfg.camera not in ("front", "top", "side"):
        raise ConfigError.expected("--camera", "front, top or side", repr(cfg.camera))
    env, expert = _env_and_expert(cfg, cameras=(cfg.camera, "wrist"), size=cfg.size, camera_fps=cfg.fps)
    scene_cam, wrist_cam = env.sensors[0], env.sensors[1]
    last = {"scene": 0, "wrist": 0}
    wins = 0
    with VideoWriter(cfg.out, cfg.fps) as video:
        def grab(_env) -> None:
            scene = scene_cam.samples_after(last["scene"])
            wrist = {s.t_capture_ns: s for s in wrist_cam.samples_after(last["wrist"])}
            for s in scene:
                w = wrist.get(s.t_capture_ns)
                frame = s.value[scene_cam.name]
                if w is not None:
                    frame = np.concatenate([frame, w.value[wrist_cam.name]], axis=1)
                    last["wrist"] = w.seq
                else:
                    frame = np.concatenate([frame, np.zeros_like(frame)], axis=1)
                video.write(frame)
                last["scene"] = s.seq

        try:
            for i in range(cfg.episodes):
                ok, steps = run_expert_episode(env, expert, cfg.seed + i, on_step=grab)
                wins += ok
                print(f"episode {i} (seed {cfg.seed + i}): {'success' if ok else 'failure'} in {steps} steps")
        finally:
            env.close()
    print(f"wrote {cfg.out} ({video.frames} frames, {video.frames / cfg.fps:.1f} s; {wins}/{cfg.episodes} successes)")
    return 0
