"""``robot-learning deploy``: a trained policy (a local run folder, or a policy server at ``ws://``) drives a robot
through the control runtime that recorded its demonstrations.

- sim robot (``sim:TASK[:MODEL]``): ``--episodes N --seed S`` runs N held-out episodes through the same rollout as
  ``eval`` and prints the success rate (``--json``: one line with ``success_rate`` and ``episodes``); open-loop
  (the default there) steps the twin as fast as it can, as ``eval``; the worker-thread modes step it in real time,
  so the policy's latency costs what it would on the robot;
- real arm (``so101``, ``koch``): runs until ``--duration-s`` or Ctrl-C, with a status line, optionally recording.

Chunks execute in ``--mode`` (``robot_learning.deploy.chunk_queue``); the safety filter and the watchdog sit between
the policy and the motors as always: a policy server that stalls or dies stops the actions, and the watchdog holds
the robot within its periods.
"""

from __future__ import annotations

import json
import sys
import time

from robot_learning.errors import ConfigError


def run_deploy(cfg) -> int:
    from robot_learning.core.device import resolve_device
    from robot_learning.deploy.remote import open_policy
    from robot_learning.rig import parse_robot

    where, name, model = parse_robot(cfg.rig.robot)
    policy = open_policy(cfg.policy, token=cfg.token, device=resolve_device(cfg.device))
    try:
        if where == "sim":
            return _deploy_sim(cfg, policy, name, model)
        return _deploy_real(cfg, policy)
    finally:
        policy.close()


def _latency(policy) -> dict:
    timing = dict(policy.last_timing)
    return {"server_timing_ms": timing} if timing else {}


def _deploy_sim(cfg, policy, task: str, model: str) -> int:
    from robot_learning.evaluation.metrics import summarize
    from robot_learning.evaluation.rollout import evaluate, held_out_seeds, seen_seeds

    seeds = held_out_seeds(cfg.seed, cfg.episodes, seen_seeds(policy.meta), "--seed")
    mode = cfg.mode or "open-loop"
    t0 = time.perf_counter()
    realtime = cfg.realtime or mode != "open-loop"
    results = evaluate(policy, task, seeds, robot=model, progress=not cfg.json, mode=mode, realtime=realtime)
    summary = {"robot": cfg.rig.robot, "policy": cfg.policy, "mode": mode, "realtime": realtime, **summarize(results),
               "wall_s": round(time.perf_counter() - t0, 2), **_latency(policy)}
    if cfg.json:
        print(json.dumps(summary))
    else:
        lo, hi = summary["ci95"]
        print(f"{task} ({model}) via {cfg.policy}, {mode}: success {summary['success_rate']:.2f} over {summary['episodes']} "
              f"episodes (seeds {seeds[0]}..{seeds[-1]}, 95% CI {lo:.2f}-{hi:.2f}); latency p50 "
              f"{summary['latency_ms_p50']:.1f} ms per chunk")
    return 0


def _deploy_real(cfg, policy) -> int:
    from robot_learning.cli.hardware_cmds import StatusLine, TrackingSink, _open_recorder
    from robot_learning.evaluation.rollout import check_env_features
    from robot_learning.policies.executor import ChunkExecutor
    from robot_learning.rig import open_rig

    if cfg.session.record is None and cfg.session.duration_s is None:
        print("deploying until Ctrl-C", file=sys.stderr)
    rig = open_rig(cfg.rig, quiet=cfg.json)
    recorder = None
    try:
        runtime_features = rig.robot.state_features
        for s in rig.sensors:
            runtime_features = runtime_features + s.features
        check_env_features(runtime_features, policy.observation_features)
        if policy.action_features != rig.robot.action_features:
            raise ConfigError.expected("policy action features", list(rig.robot.action_features.names),
                                       list(policy.action_features.names))
        tracking = TrackingSink()
        box: dict = {}

        def policy_status() -> str:   # latency of the last chunk and the queue, for the status line
            ex = box.get("executor")
            lat = ex.latencies_s[-1] * 1e3 if ex is not None and ex.latencies_s else float("nan")
            queued = getattr(ex, "queued", None)
            return f"latency {lat:5.1f} ms" + (f"  queue {queued}" if queued is not None else "")

        sinks = [tracking] + ([] if cfg.json else [StatusLine(rig, tracking, extra=policy_status)])
        if cfg.session.record is not None:
            recorder = _open_recorder(cfg.session.record, rig)
            sinks.insert(0, recorder)
            recorder.start_episode()
        mode = cfg.mode or "queue"
        if mode != "open-loop":
            from robot_learning.deploy.chunk_queue import QueuedChunkSource

            executor = QueuedChunkSource(policy, rig.clock, int(1e9 / rig.rate_hz), merge=mode)
        else:
            executor = ChunkExecutor(policy, rig.clock)
        source = box["executor"] = executor
        if rig.teleop is not None:   # a human takes over (leader arm moved, or an end-effector device's control held)
            from robot_learning.deploy.intervention import InterventionSource

            # the Cartesian stage converts the human's tool deltas inside the source: the runtime sees joint commands
            stage, rig.stage = rig.stage, None
            source = InterventionSource(executor, rig.teleop, stage=stage)
        try:
            stats = rig.runtime(source, sinks, task=cfg.rig.task).run(duration_s=cfg.session.duration_s)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
        if recorder is not None:
            recorder.end_episode(keep=True, task=cfg.rig.task or "", operator_notes=f"deploy {cfg.policy}")
    finally:
        try:
            if recorder is not None:
                recorder.shutdown()
        finally:
            rig.close()
    lat = sorted(executor.latencies_s) or [float("nan")]
    summary = {"robot": cfg.rig.robot, "policy": cfg.policy, "mode": mode, **stats.summary(),
               "latency_ms_p50": round(1e3 * lat[len(lat) // 2], 2), **_latency(policy),
               "intervention_ticks": getattr(source, "human_ticks", 0), "takeovers": getattr(source, "takeovers", 0),
               "stale_dropped": getattr(executor, "stale_dropped", 0),
               "final_joint_pos_rad": tracking.final_joint_pos_rad}
    print(json.dumps(summary) if cfg.json else "  ".join(f"{k} {v}" for k, v in summary.items()))
    return 0
