"""Sim throughput, side by side in one run, per task (robot: panda unless --robot):

- raw ``mj_step`` steps/s on the task's compiled model (no controller, no sensors);
- env steps/s without rendering (``SimEnv.step``: runtime, safety filter, observation, reward),
  also expressed as physics steps/s and as a ratio to raw (goal >= 0.8);
- RGB and depth render fps at 96x96, 224x224 and 640x480 for each camera.

    .venv/bin/python bench/sim.py [--robot so101] [--tasks lift,stack] [--seconds 2] [--json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402

from robot_learning.sim.env import SimEnv, SimEnvConfig  # noqa: E402
from robot_learning.sim.sensors import SimCamera  # noqa: E402

SIZES = ((96, 96), (224, 224), (640, 480))
CAMERAS = ("front", "top", "side", "wrist")


def rate(fn, seconds: float, min_iters: int = 5) -> float:
    fn()  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < min_iters or time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - t0)


def bench_task(task: str, robot: str, seconds: float) -> dict:
    env = SimEnv(SimEnvConfig(task=task, robot=robot))
    env.reset(seed=0)
    m, d = env.world.model, mujoco.MjData(env.world.model)
    d.qpos[:] = env.world.data.qpos
    d.ctrl[:] = env.world.data.ctrl
    raw = rate(lambda: mujoco.mj_step(m, d), seconds, 1000)
    substeps = env.period_ns // env.world.step_ns
    action = env.home_action()
    state = {"n": 0}

    def env_step():
        env.step(action)
        state["n"] += 1
        if state["n"] >= env.max_steps - 1:
            env.reset(seed=state["n"])
            state["n"] = 0

    env_rate = rate(env_step, seconds, 20)
    out = {"task": task, "robot": robot, "nbody": m.nbody, "ngeom": m.ngeom, "raw_mj_step_per_s": round(raw),
           "env_steps_per_s": round(env_rate, 1), "physics_steps_per_env_step": int(substeps),
           "env_physics_steps_per_s": round(env_rate * substeps),
           "env_vs_raw": round(env_rate * substeps / raw, 3), "render_fps": {}}
    world = env.world
    for cam in CAMERAS:
        mj_cam = env.robot.spec.wrist_camera if cam == "wrist" else cam
        for w, h in SIZES:
            for depth in (False, True):
                c = SimCamera(world, mj_cam, w, h, fps=None, depth=False, name="bench")
                c.connect()
                r = c._renderer
                if depth:
                    r.enable_depth_rendering()

                def render():
                    r.update_scene(world.data, mj_cam)
                    r.render()

                fps = rate(render, seconds / 4, 5)
                c.disconnect()
                out["render_fps"][f"{cam}_{'depth' if depth else 'rgb'}_{w}x{h}"] = round(fps, 1)
    env.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--robot", default="panda")
    ap.add_argument("--tasks", default="lift,stack,push_t,insertion")
    ap.add_argument("--seconds", type=float, default=2.0, help="measuring time per figure")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
            "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(), "mujoco": mujoco.__version__,
            "MUJOCO_GL": os.environ.get("MUJOCO_GL")}
    results = [bench_task(t, args.robot, args.seconds) for t in args.tasks.split(",")]
    if args.json:
        print(json.dumps({"meta": meta, "results": results}))
    else:
        print(f"{meta['date']}  {meta['machine']}  cpus={meta['cpu_count']}  load={meta['loadavg']}  "
              f"mujoco {meta['mujoco']} ({meta['MUJOCO_GL']})\n")
        print(f"{'task':<10} {'robot':<6} {'raw mj_step/s':>14} {'env steps/s':>12} {'env phys/s':>11} {'env/raw':>8}")
        for r in results:
            print(f"{r['task']:<10} {r['robot']:<6} {r['raw_mj_step_per_s']:>14} {r['env_steps_per_s']:>12} "
                  f"{r['env_physics_steps_per_s']:>11} {r['env_vs_raw']:>8}")
        print("\nrender fps (rgb / depth)")
        head = "".join(f"{f'{w}x{h}':>16}" for w, h in SIZES)
        for r in results:
            print(f"\n{r['task']}: {'camera':<8}{head}")
            for cam in CAMERAS:
                cells = "".join(f"{r['render_fps'][f'{cam}_rgb_{w}x{h}']:>8.0f} /{r['render_fps'][f'{cam}_depth_{w}x{h}']:>6.0f}"
                                for w, h in SIZES)
                print(f"{'':<6}{cam:<8}{cells}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"sim_{args.robot}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))


if __name__ == "__main__":
    main()
