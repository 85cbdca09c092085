"""``robot-learning record`` and ``robot-learning dataset info | verify``."""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from robot_learning.cli.commands import DatasetInfoConfig, DatasetVerifyConfig, RecordConfig
from robot_learning.errors import ConfigError


def parse_sim_robot(spec: str) -> tuple[str, str]:
    parts = spec.split(":")
    if parts[0] != "sim" or len(parts) not in (2, 3):
        raise ConfigError.expected("--robot", "sim:TASK or sim:TASK:MODEL (real robots arrive with the drivers)",
                                   repr(spec))
    return parts[1], parts[2] if len(parts) == 3 else "panda"


def run_record(cfg: RecordConfig) -> int:
    from robot_learning.datasets.recorder import Recorder, schema_for
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.runtime.control import ControlRuntime, RuntimeConfig
    from robot_learning.runtime.sources import FunctionSource
    from robot_learning.sim.env import SimEnv, SimEnvConfig
    from robot_learning.sim.experts import make_expert

    task_name, model = parse_sim_robot(cfg.robot)
    if cfg.teleop != "scripted":
        raise ConfigError.expected("--teleop", "scripted (keyboard, gamepad, spacemouse and leader arms arrive with "
                                   "the hardware drivers)", repr(cfg.teleop))
    env = SimEnv(SimEnvConfig(task=task_name, robot=model, cameras=cfg.cameras, image_size=cfg.image_size,
                              camera_fps=cfg.camera_fps, tactile=cfg.tactile))
    sensors = env.sensors
    rate = env.task.config.control_rate_hz
    schema = schema_for(env.robot.state_features, sensors, env.robot.action_features, rate,
                        {"name": model, "kind": "sim", "task": task_name}, "png" if cfg.lossless else "jpeg")
    if cfg.dataset.exists():
        store = EpisodeStore.open(cfg.dataset, mode="a")
        if store.schema.to_json() != schema.to_json():
            raise ConfigError(f"{cfg.dataset}: its schema (streams, features, rates) differs from this recording's; "
                              "record into a new dataset")
        rep = store.recovery
        if rep is not None and not rep.clean:
            print(f"recovered {cfg.dataset}: discarded an unfinished episode ({rep.discarded_ticks} ticks, "
                  f"rows {dict(rep.discarded_rows)}, {rep.partial_files_removed} partial files)", file=sys.stderr)
    else:
        store = EpisodeStore.create(cfg.dataset, schema)
    first_seed = cfg.seed if cfg.seed is not None else len(store.episodes)
    expert = make_expert(env)
    recorder = Recorder(store, sensors)
    instruction = cfg.task or env.task.instruction()
    kept, t0 = 0, time.perf_counter()
    try:
        for i in range(cfg.episodes):
            seed = first_seed + i
            obs = env.reset(seed)
            expert.reset(obs, seed)
            runtime = ControlRuntime(env.robot, FunctionSource(expert.act, env.robot.action_features, env.world.clock),
                                     RuntimeConfig(rate_hz=rate, max_sensor_age_s=1.0 / rate, task=instruction),
                                     sensors=sensors, sinks=[recorder], clock=env.world.clock)
            recorder.start_episode()
            stats = runtime.run(max_ticks=env.max_steps, should_stop=lambda t: env.task.success(env.world))
            success = env.task.success(env.world)
            keep = success or cfg.keep_failures
            rec = recorder.end_episode(keep=keep, task=instruction, success=success,
                                       operator_notes="scripted expert", seed=seed)
            kept += int(rec is not None)
            elapsed = time.perf_counter() - t0
            print(f"\repisode {i + 1}/{cfg.episodes}  seed {seed}  {'kept' if keep else 'discarded (failed)'}  "
                  f"ticks {stats.loop.ticks}  drops {recorder.dropped}  {elapsed:.1f} s", end="", file=sys.stderr,
                  flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: the unfinished episode is discarded; earlier episodes are intact", file=sys.stderr)
    except OSError as e:
        print(file=sys.stderr)  # end the status line
        raise ConfigError(f"writing {cfg.dataset} failed ({e.strerror or e}); episodes committed before are intact") \
            from None
    finally:
        try:
            recorder.shutdown()
        finally:
            env.close()
    print(file=sys.stderr)
    eps = EpisodeStore.open(cfg.dataset).episodes
    print(json.dumps({"dataset": str(cfg.dataset), "recorded": kept, "episodes": len(eps),
                      "wall_s": round(time.perf_counter() - t0, 2)}))
    return 0


def dataset_info(store) -> dict:
    eps = store.episodes
    ticks = sum(e.length for e in eps)
    streams = {}
    for s in store.schema.streams:
        rows = sum(e.streams[s.name][1] - e.streams[s.name][0] for e in eps if s.name in e.streams)
        dur = sum((e.t_end_ns - e.t_start_ns) / 1e9 for e in eps)
        intervals = rows - len(eps)  # samples per episode span one interval fewer than they number
        streams[s.name] = {"rows": rows, "measured_rate_hz": round(intervals / dur, 2) if dur > 0 else None,
                           "nominal_rate_hz": s.rate_hz, "features": s.features.to_json()}
    return {"path": str(store.path), "episodes": len(eps), "ticks": ticks, "fps": store.schema.control_rate_hz,
            "success": sum(1 for e in eps if e.success), "robot": dict(store.schema.robot),
            "action_features": store.schema.action_features.to_json(), "streams": streams,
            "tasks": sorted({e.task for e in eps}), "dropped_ticks": sum(e.dropped.get("ticks", 0) for e in eps)}


def run_dataset_info(cfg: DatasetInfoConfig) -> int:
    from robot_learning.datasets.store import EpisodeStore

    info = dataset_info(EpisodeStore.open(cfg.dataset))
    if cfg.json:
        print(json.dumps(info))
        return 0
    print(f"{info['path']}: {info['episodes']} episodes ({info['success']} successful), {info['ticks']} ticks at "
          f"{info['fps']:g} Hz, robot {info['robot']}, tasks {info['tasks']}, dropped ticks {info['dropped_ticks']}")
    for name, s in info["streams"].items():
        feats = ", ".join(f"{f['name']} {tuple(f['shape'])} {f['dtype']} [{f['units']}]" for f in s["features"])
        print(f"  {name:<14} {s['rows']:>7} rows  {s['measured_rate_hz'] or 0:>6.1f} Hz  {feats}")
    acts = ", ".join(f"{f['name']} {tuple(f['shape'])}" for f in info["action_features"])
    print(f"  {'actions':<14} {acts}")
    return 0


def run_dataset_verify(cfg: DatasetVerifyConfig) -> int:
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify

    store = EpisodeStore.open(cfg.dataset)
    problems = verify(store)
    if cfg.json:
        print(json.dumps({"dataset": str(cfg.dataset), "ok": not problems, "episodes": len(store.episodes),
                          "problems": problems}))
    elif problems:
        print(f"{cfg.dataset}: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
    else:
        print(f"{cfg.dataset}: ok ({len(store.episodes)} episodes)")
    return 0 if not problems else 1
