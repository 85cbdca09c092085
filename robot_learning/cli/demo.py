"""``robot-learning demo``: the main job on the embedded default (MuJoCo twin, local files).

1. Record: the scripted expert drives the Panda twin through the control runtime on ``lift``; the
   episodes (state, front and wrist cameras, taxels) go into a zarr dataset (verified) and a video.
2. Train: a state-based diffusion policy on that dataset (``robot-learning train``), with a time
   budget, checkpoints, logs and curves.
3. Evaluate: the EMA policy on held-out seeds in the twin, through the same control runtime:
   success rate with a 95% interval, latency per chunk, rollout videos.
4. Fine-tune: residual RL (RLPD: an actor process plays the twin, this process learns, the demos in half of every
   batch) over the frozen policy, evaluated on the same held-out seeds.
5. Steer: the policy's own rollouts (failures kept) and the demos train a Cal-QL critic; the policy steered by it
   (best of K sampled chunks) is evaluated on the same seeds. The three success rates go side by side.
6. Safety: a trajectory with NaN commands, a jump, a stalled source and a past-limit target goes
   through the runtime on the twin: the filter and the watchdog act (tick log and plot).
7. Timing: the same loop on the real clock (the emulated arm) reports its period error.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from robot_learning.cli.commands import DemoConfig

def _rate(v, n: int | None = None, ci=None) -> str:
    if v is None:
        return "-"
    text = f"{v:.2f}" + (f" over {n} held-out episodes" if n else "")
    return text + (f" (95% CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else "")


def _print_rows(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def run_demo(cfg: DemoConfig) -> int:
    from robot_learning.cli.demo_safety import run_safety
    from robot_learning.cli.demo_sim import run_sim_expert
    from robot_learning.core.clock import default_clock
    from robot_learning.evaluation.config import HeldOutEvalConfig
    from robot_learning.hardware.emulated_arm import EmulatedArm
    from robot_learning.runtime.control import ControlRuntime, RuntimeConfig
    from robot_learning.runtime.sources import FunctionSource
    from robot_learning.sim.env import SimEnv, SimEnvConfig
    from robot_learning.training.config import TrainConfig
    from robot_learning.training.trainer import train

    duration_s = cfg.duration_s if cfg.duration_s is not None else (4.0 if cfg.quick else 10.0)
    episodes = cfg.demos if cfg.demos is not None else (4 if cfg.quick else 100)
    minutes = cfg.train_minutes if cfg.train_minutes is not None else (None if cfg.quick else 15.0)
    eval_episodes = cfg.eval_episodes if cfg.eval_episodes is not None else (2 if cfg.quick else 50)
    out = cfg.out if cfg.out is not None else Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    wall0 = time.perf_counter()

    print(f"[1/7] record: scripted expert on the MuJoCo Panda twin, task lift, {episodes} episodes "
          f"(seeds {cfg.seed}..{cfg.seed + episodes - 1}), through the control runtime on the sim clock", flush=True)
    t0 = time.perf_counter()
    sim = run_sim_expert("lift", "panda", episodes, cfg.seed, out / "sim_lift.mp4", size=96,
                         dataset=out / "demos.zarr", video_episodes=2)
    record_s = time.perf_counter() - t0
    verdict = "verify ok" if not sim["dataset_problems"] else f"verify FAILED: {sim['dataset_problems'][:2]}"
    _print_rows([("expert success", f"{sim['expert_success_rate']:.2f} over {episodes} episodes ({record_s:.0f} s)"),
                 ("dataset", f"{sim['dataset']} ({episodes} episodes: state, front + wrist 96 px, taxels; {verdict})"),
                 ("video", f"{sim['video']} (first 2 episodes: front camera | wrist camera)")])

    import torch

    budget = f"{minutes:g} min" if minutes is not None else f"{cfg.train_steps or 20} steps"
    print(f"\n[2/7] train: state-based diffusion policy (U-Net, DDPM, EMA) for {budget} on "
          f"{torch.get_num_threads()} CPU threads", flush=True)
    tcfg = TrainConfig(dataset=out / "demos.zarr", out=out / "train", obs="state", minutes=minutes,
                       steps=cfg.train_steps if cfg.train_steps is not None else (20 if cfg.quick else None),
                       evaluation=HeldOutEvalConfig(eval_episodes, 100_000 + cfg.seed), videos=3, seed=cfg.seed,
                       progress=not cfg.json)
    run = train(tcfg)
    if run.get("interrupted"):
        print("demo interrupted during training; the checkpoint is in", tcfg.out)
        return 130
    ev = run["eval"]
    _print_rows([("steps", f"{run['steps']} in {run['train_time_s'] / 60:.1f} min ({run['windows']} windows, "
                           f"{run['parameters'] / 1e6:.1f}M parameters)"),
                 ("policy", run["policy"]), ("curves", run["curves"])])

    print(f"\n[3/7] evaluate: {ev['episodes']} held-out seeds ({ev['seeds'][0]}..{ev['seeds'][-1]}) in the twin, "
          "through the control runtime", flush=True)
    _print_rows([("success", f"{ev['success_rate']:.2f} ({ev['successes']}/{ev['episodes']}, 95% CI "
                             f"{ev['ci95'][0]:.2f}-{ev['ci95'][1]:.2f})"),
                 ("latency", f"p50 {ev['latency_ms_p50']:.1f} ms, p90 {ev['latency_ms_p90']:.1f} ms per chunk of 8 "
                             "actions (DDIM-10)"),
                 ("videos", f"{Path(ev['videos'][0]).parent} ({len(ev['videos'])} rollouts)" if ev["videos"] else "none")])

    from robot_learning.cli.demo_rl import finetune_step, steer_step

    ft_minutes = cfg.finetune_minutes if cfg.finetune_minutes is not None else 5.0
    print(f"\n[4/7] fine-tune: residual RLPD over the frozen policy "
          f"({'2 episodes' if cfg.quick else f'{ft_minutes:g} min'}; an actor process, this learner, the demos in "
          "half of every batch)", flush=True)
    ft = finetune_step(out, out / "demos.zarr", cfg.quick, ft_minutes, ev["episodes"], ev["seeds"][0], cfg.seed,
                       not cfg.json)
    _print_rows([("training", f"{ft['episodes']} episodes, {ft['env_steps']} env steps, {ft['critic_updates']} "
                              f"critic updates in {ft['train_time_s'] / 60:.1f} min"),
                 ("success", _rate(ft["success_rate"], ft["eval_episodes"])), ("policy", ft["policy"])])

    samples = cfg.steer_samples
    rollouts = 3 if cfg.quick else 60
    print(f"\n[5/7] steer: {rollouts} rollouts of the policy + the demos -> a Cal-QL critic; the best of {samples} "
          "sampled chunks each time", flush=True)
    st = steer_step(out, out / "demos.zarr", cfg.quick, rollouts, list(ev["seeds"]), samples, cfg.seed, not cfg.json)
    if "skipped" in st:
        _print_rows([("skipped", st["skipped"])])
    else:
        _print_rows([("critic", f"{st['critic']} (held-out AUC {st['val_auc'] if st['val_auc'] is None else round(st['val_auc'], 3)}, "
                                f"rollouts {st['rollout_success_rate']:.2f} successful)"),
                     ("success", _rate(st["eval"]["success_rate"], st["eval"]["episodes"], st["eval"]["ci95"]))])
    steered_rate = None if "skipped" in st else st["eval"]["success_rate"]

    print(f"\n[6/7] safety: faulty trajectory on the Panda twin, {cfg.rate_hz:g} Hz for {duration_s:g} s of sim time")
    env = SimEnv(SimEnvConfig(task="lift", robot="panda", object_state=False))
    env.reset(cfg.seed)
    safety, rows = run_safety(env.robot, np.asarray(env.robot.spec.home_qpos), env.world.clock, cfg.rate_hz,
                              duration_s, cfg.seed, out,
                              "Panda twin: NaN, jump, stalled source, past-limit target")
    env.close()
    _print_rows(rows + [("plot", str(out / "safety_joint1.png")), ("tick log", str(out / "safety_ticks.csv"))])

    timing_s = 2.0 if cfg.quick else 5.0
    print(f"\n[7/7] timing: the same loop on the real clock at {cfg.rate_hz:g} Hz for {timing_s:g} s (emulated arm)")
    clock = default_clock()
    with EmulatedArm(clock=clock) as arm:
        hold = arm.hold()
        rt = ControlRuntime(arm, FunctionSource(lambda obs: hold, arm.action_features, clock),
                            RuntimeConfig(rate_hz=cfg.rate_hz), clock=clock)
        timing = rt.run(duration_s=timing_s)
    pe = timing.loop.error_percentiles_ms()
    _print_rows([("ticks", f"{timing.loop.ticks} ({timing.loop.overruns} overruns)"),
                 ("period error", f"p50 {pe['p50']:.3f} ms, p99 {pe['p99']:.3f} ms, max {pe['max']:.3f} ms")])

    wall = round(time.perf_counter() - wall0, 1)
    table = {"demos": episodes, "expert_success_rate": sim["expert_success_rate"], "record_s": round(record_s, 1),
             "train_steps": run["steps"], "train_min": round(run["train_time_s"] / 60, 2),
             "success_rate": ev["success_rate"], "eval_episodes": ev["episodes"], "ci95": ev["ci95"],
             "latency_ms_p50": ev["latency_ms_p50"], "latency_ms_p90": ev["latency_ms_p90"],
             "finetuned_success_rate": ft["success_rate"], "steered_success_rate": steered_rate, "wall_s": wall}
    summary = {"table": table, "sim": sim, "train": run, "finetune": ft, "steer": st, "safety": safety,
               "timing": {"rate_hz": cfg.rate_hz, **timing.summary()}, "wall_s": wall, "out": str(out)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\nSummary")
    _print_rows([("demos", f"{episodes} scripted episodes, expert success {sim['expert_success_rate']:.2f}"),
                 ("training", f"{run['steps']} steps, {run['train_time_s'] / 60:.1f} min"),
                 ("success", f"policy {ev['success_rate']:.2f} | fine-tuned (RLPD) {_rate(ft['success_rate'])} | "
                             f"steered (K={samples}) {_rate(steered_rate)}, on the same {ev['episodes']} held-out "
                             f"seeds (policy 95% CI {ev['ci95'][0]:.2f}-{ev['ci95'][1]:.2f})"),
                 ("latency", f"{ev['latency_ms_p50']:.1f} ms p50 per chunk"),
                 ("videos", f"{sim['video']}, {out / 'train' / 'videos'}"),
                 ("plots", f"{run['curves']}, {out / 'safety_joint1.png'}"),
                 ("summary", f"{out / 'summary.json'} (total {wall:.0f} s)")])
    if cfg.json:
        print(json.dumps(summary))
    ok = sim["expert_success_rate"] > 0 and not sim["dataset_problems"] and safety["executed_within_joint_limits"]
    return 0 if ok else 1
