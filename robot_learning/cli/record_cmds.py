"""``robot-learning record``: teleoperate (or run the scripted expert) and record episodes, on the MuJoCo twin
(here) or on a real servo-bus arm (``record_real``)."""

from __future__ import annotations

import json
import sys
import time

from robot_learning.hardware.teleop import EpisodeEvent
from robot_learning.runtime.sources import TeleopSource
from robot_learning.cli.commands import RecordConfig
from robot_learning.errors import ConfigError, StorageError

SIM_CAMERAS = ("front", "wrist")   # what the sim records when --cameras is not given


def open_view(cfg: RecordConfig, progress: dict):
    """The live view sink (``--view``), or None."""
    if not cfg.view:
        return None
    from robot_learning.datasets.live_view import LiveView

    return LiveView(status=lambda: f"episode {progress['episode'] + 1}/{cfg.episodes}  drops "
                                   f"{progress['recorder'].dropped if progress['recorder'] else 0}")


def report(cfg: RecordConfig, kept: int, t0: float) -> int:
    """The final JSON line on stdout."""
    from robot_learning.datasets.store import EpisodeStore

    print(file=sys.stderr)
    eps = EpisodeStore.open(cfg.dataset).episodes
    print(json.dumps({"dataset": str(cfg.dataset), "recorded": kept, "episodes": len(eps),
                      "wall_s": round(time.perf_counter() - t0, 2)}))
    return 0


def run_record(cfg: RecordConfig) -> int:
    if not cfg.rig.robot.startswith("sim:"):
        from robot_learning.cli.record_real import run_record_real

        return run_record_real(cfg)
    from robot_learning.datasets.recorder import Recorder, open_store, schema_for
    from robot_learning.rig import parse_robot
    from robot_learning.runtime.sources import FunctionSource
    from robot_learning.sim.env import SimEnv, SimEnvConfig
    from robot_learning.sim.experts import make_expert

    from robot_learning.sim.world import PhysicsConfig

    _, task_name, model = parse_robot(cfg.rig.robot)
    human = cfg.rig.teleop != "scripted"
    cameras = SIM_CAMERAS if cfg.rig.cameras is None else cfg.rig.cameras
    env = SimEnv(SimEnvConfig(task=task_name, robot=model, cameras=cameras,
                              image_size=cfg.image_size, camera_fps=cfg.camera_fps, tactile=cfg.tactile,
                              physics=PhysicsConfig(realtime=human)))  # a person needs real time
    sensors = env.sensors
    rate = env.task.config.control_rate_hz
    schema = schema_for(env.robot.state_features, sensors, env.robot.action_features, rate,
                        {"name": model, "kind": "sim", "task": task_name}, "png" if cfg.lossless else "jpeg")
    teleop, stage, view = None, None, None
    progress = {"episode": 0, "recorder": None}
    try:  # devices and the display first: a missing one must not leave an empty dataset behind
        view = open_view(cfg, progress)
        if human:
            teleop, stage = _human_teleop(cfg, env, rate)
        store = open_store(cfg.dataset, schema)
    except BaseException:
        try:
            if teleop is not None:
                teleop.disconnect()
            if view is not None:
                view.destroy()
        finally:
            env.close()
        raise
    first_seed = cfg.seed if cfg.seed is not None else len(store.episodes)
    recorder = Recorder(store, sensors)
    progress["recorder"] = recorder
    sinks = [recorder] + ([view] if view is not None else [])
    expert = None if human else make_expert(env)
    kept, t0, i, attempt = 0, time.perf_counter(), 0, 0
    try:
        while i < cfg.episodes:
            seed = first_seed + i
            progress["episode"] = i
            obs = env.reset(seed, instruction=cfg.rig.task)
            instruction = env.instruction
            if human:
                source = TeleopSource(teleop)
            else:
                expert.reset(obs, seed)
                source = FunctionSource(expert.act, env.robot.action_features, env.world.clock)
            runtime = env.make_runtime(source, sinks=tuple(sinks), cartesian=stage, instruction=instruction)
            events: list[EpisodeEvent] = []

            def should_stop(tick, events=events) -> bool:
                if human:
                    events.extend(teleop.poll_events())
                    return bool(events)
                return env.task.success(env.world)

            recorder.start_episode()
            stats = runtime.run(max_ticks=env.max_steps, duration_s=cfg.episode_s, should_stop=should_stop)
            if stats.interrupted:    # Ctrl-C ended the run: the episode is unfinished
                raise KeyboardInterrupt
            success = env.task.success(env.world)
            rerecord = EpisodeEvent.RERECORD in events
            keep = not rerecord and (success or cfg.keep_failures or human)
            rec = recorder.end_episode(keep=keep, task=instruction, success=success, seed=seed,
                                       operator_notes="scripted expert" if not human else f"{cfg.rig.teleop} teleop")
            kept += int(rec is not None)
            attempt += 1
            status = "kept" if keep else ("discarded: re-record" if rerecord else "discarded (failed)")
            print(f"\repisode {i + 1}/{cfg.episodes}  seed {seed}  {status}  ticks {stats.loop.ticks}  "
                  f"drops {recorder.dropped}  {time.perf_counter() - t0:.1f} s", end="", file=sys.stderr, flush=True)
            if EpisodeEvent.STOP in events:
                break
            if not rerecord:
                i += 1
    except KeyboardInterrupt:
        print("\ninterrupted: the unfinished episode is discarded; earlier episodes are intact", file=sys.stderr)
    except OSError as e:
        print(file=sys.stderr)  # end the status line
        raise StorageError(f"writing {cfg.dataset} failed ({e.strerror or e}); episodes committed before are intact") \
            from None
    finally:
        try:
            recorder.shutdown()
        finally:
            if teleop is not None:
                teleop.disconnect()
            if view is not None:
                view.destroy()
            env.close()
    return report(cfg, kept, t0)


def _human_teleop(cfg: RecordConfig, env, rate: float):
    """A human teleop device and the Cartesian stage that maps its deltas, boxed to the task's workspace (a leader
    arm commands the twin's joints directly: no stage)."""
    from robot_learning.rig import cartesian_stage, make_ee_teleop

    rig = cfg.rig
    if rig.teleop.endswith("-leader"):
        from robot_learning.hardware.arms import get_arm
        from robot_learning.hardware.servo_arm import LeaderArm, ServoArmConfig

        spec = get_arm(rig.teleop)
        if spec.twin != env.robot.spec.name:
            hint = f": use --robot sim:TASK:{spec.twin}" if spec.twin else ""
            raise ConfigError(f"--teleop {rig.teleop} commands the joints of a {spec.twin or spec.kind}, not of the "
                              f"sim {env.robot.spec.name}{hint}")
        teleop = LeaderArm(spec, ServoArmConfig(rig.teleop_port, rig.teleop_id, rig.calibration_dir, watchdog_s=None),
                           action_features=env.robot.action_features, clock=env.world.clock)
        teleop.connect()
        return teleop, None
    teleop = make_ee_teleop(rig.teleop, env.world.clock, step_m=0.01 * env.task.workspace.object_scale)
    teleop.connect()
    return teleop, cartesian_stage(env.robot.spec.name, rate, env)
