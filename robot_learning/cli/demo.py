"""``robot-learning demo``: the main job on the embedded default (MuJoCo twin, local files).

1. The scripted expert drives the Panda twin through the control runtime on ``lift``; the episodes
   are recorded into a zarr dataset (verified) and filmed.
2. Safety: a trajectory with NaN commands, a jump, a stalled source and a past-limit target goes
   through the same runtime on the twin: the filter and the watchdog act (tick log and plot).
3. Timing: the same loop on the real clock (the emulated arm) reports its period error.
Training is not there yet, and the demo says so.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from robot_learning.cli.commands import DemoConfig

NOT_YET = (
    "diffusion policy training and sim evaluation (issue #5): the recorded demos are not trained on yet",
)


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def run_demo(cfg: DemoConfig) -> int:
    from robot_learning.cli.demo_safety import run_safety
    from robot_learning.cli.demo_sim import run_sim_expert
    from robot_learning.core.clock import default_clock
    from robot_learning.hardware.emulated_arm import EmulatedArm
    from robot_learning.runtime.control import ControlRuntime, RuntimeConfig
    from robot_learning.runtime.sources import FunctionSource
    from robot_learning.sim.env import SimEnv, SimEnvConfig

    duration_s = cfg.duration_s if cfg.duration_s is not None else (4.0 if cfg.quick else 10.0)
    episodes = 2 if cfg.quick else 10
    out = cfg.out if cfg.out is not None else Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    wall0 = time.perf_counter()

    print(f"[1/3] record: scripted expert on the MuJoCo Panda twin, task lift, {episodes} episodes "
          f"(seeds {cfg.seed}..{cfg.seed + episodes - 1}), through the control runtime on the sim clock")
    sim = run_sim_expert("lift", "panda", episodes, cfg.seed, out / "sim_lift.mp4", size=128 if cfg.quick else 192,
                         dataset=out / "demos.zarr")
    verdict = "verify ok" if not sim["dataset_problems"] else f"verify FAILED: {sim['dataset_problems'][:2]}"
    _print_rows([("expert success", f"{sim['expert_success_rate']:.2f} over {episodes} episodes"),
                 ("dataset", f"{sim['dataset']} ({episodes} episodes recorded, {verdict})"),
                 ("video", f"{sim['video']} ({sim['video_frames']} frames: front camera | wrist camera)")])

    print(f"\n[2/3] safety: faulty trajectory on the Panda twin, {cfg.rate_hz:g} Hz for {duration_s:g} s of sim time")
    env = SimEnv(SimEnvConfig(task="lift", robot="panda", object_state=False))
    env.reset(cfg.seed)
    safety, rows = run_safety(env.robot, np.asarray(env.robot.spec.home_qpos), env.world.clock, cfg.rate_hz,
                              duration_s, cfg.seed, out,
                              "Panda twin: NaN, jump, stalled source, past-limit target")
    env.close()
    _print_rows(rows + [("plot", str(out / "safety_joint1.png")), ("tick log", str(out / "safety_ticks.csv"))])

    timing_s = 2.0 if cfg.quick else 5.0
    print(f"\n[3/3] timing: the same loop on the real clock at {cfg.rate_hz:g} Hz for {timing_s:g} s (emulated arm)")
    clock = default_clock()
    with EmulatedArm(clock=clock) as arm:
        hold = arm.hold()
        rt = ControlRuntime(arm, FunctionSource(lambda obs: hold, arm.action_features, clock),
                            RuntimeConfig(rate_hz=cfg.rate_hz), clock=clock)
        timing = rt.run(duration_s=timing_s)
    pe = timing.loop.error_percentiles_ms()
    _print_rows([("ticks", f"{timing.loop.ticks} ({timing.loop.overruns} overruns)"),
                 ("period error", f"p50 {pe['p50']:.3f} ms, p99 {pe['p99']:.3f} ms, max {pe['max']:.3f} ms")])

    summary = {"sim": sim, "safety": safety, "timing": {"rate_hz": cfg.rate_hz, **timing.summary()},
               "wall_s": round(time.perf_counter() - wall0, 1), "not_yet": list(NOT_YET), "out": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n  summary   {out / 'summary.json'}  (total {summary['wall_s']} s)")
    print("\nNot there yet:")
    for line in NOT_YET:
        print(f"  - {line}")
    if cfg.json:
        print(json.dumps(summary))
    ok = sim["expert_success_rate"] > 0 and not sim["dataset_problems"] and safety["executed_within_joint_limits"]
    return 0 if ok else 1
