"""Sim part of the demo: the task's scripted expert drives the MuJoCo twin through the control
runtime (the loop that teleop, record and deploy use) on the sim clock, with a 30 Hz scene
camera and the wrist camera streamed into a video."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_learning.runtime.control import ControlRuntime, RuntimeConfig, TickRecord
from robot_learning.runtime.sources import FunctionSource
from robot_learning.video import VideoWriter


def run_sim_expert(task: str, robot: str, episodes: int, seed: int, video: Path, size: int = 192,
                   dataset: Path | None = None) -> dict:
    from robot_learning.datasets.recorder import Recorder, schema_for
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify
    from robot_learning.sim.env import SimEnv, SimEnvConfig
    from robot_learning.sim.experts import make_expert

    env = SimEnv(SimEnvConfig(task=task, robot=robot, cameras=("front", "wrist"), image_size=size, camera_fps=30.0))
    expert = make_expert(env)
    scene, wrist = env.sensors[0], env.sensors[1]
    period = 1.0 / env.task.config.control_rate_hz
    seq = {"scene": 0, "wrist": 0}
    results = []
    recorder = None
    if dataset is not None:
        schema = schema_for(env.robot.state_features, env.sensors, env.robot.action_features,
                            env.task.config.control_rate_hz, {"name": robot, "kind": "sim", "task": task})
        recorder = Recorder(EpisodeStore.create(dataset, schema), env.sensors)
    with VideoWriter(video, 30.0) as writer:
        class Frames:
            """A sink: every frame each camera captured since the previous tick goes to the video."""

            def on_tick(self, tick: TickRecord) -> None:
                wrist_by_t = {s.t_capture_ns: s for s in wrist.samples_after(seq["wrist"])}
                for s in scene.samples_after(seq["scene"]):
                    w = wrist_by_t.get(s.t_capture_ns)
                    right = w.value[wrist.name] if w is not None else np.zeros_like(s.value[scene.name])
                    writer.write(np.concatenate([s.value[scene.name], right], axis=1))
                    seq["scene"] = s.seq
                    if w is not None:
                        seq["wrist"] = w.seq

            def close(self) -> None:
                pass

        for i in range(episodes):
            obs = env.reset(seed + i)
            expert.reset(obs, seed + i)
            seq["scene"] = scene.samples_after(0)[-1].seq
            seq["wrist"] = wrist.samples_after(0)[-1].seq
            runtime = ControlRuntime(env.robot, FunctionSource(expert.act, env.robot.action_features, env.world.clock),
                                     RuntimeConfig(rate_hz=env.task.config.control_rate_hz, max_sensor_age_s=period,
                                                   task=env.task.instruction()),
                                     sensors=env.sensors, sinks=[Frames()] + ([recorder] if recorder else []),
                                     clock=env.world.clock)
            if recorder:
                recorder.start_episode()
            stats = runtime.run(max_ticks=env.max_steps, should_stop=lambda t: env.task.success(env.world))
            ok = env.task.success(env.world)
            if recorder:
                recorder.end_episode(keep=True, task=env.task.instruction(), success=ok, seed=seed + i,
                                     operator_notes="scripted expert (demo)")
            results.append((ok, stats.loop.ticks, stats.holds))
    env.close()
    problems = None
    if recorder:
        recorder.shutdown()
        problems = verify(EpisodeStore.open(dataset))
    wins = sum(r[0] for r in results)
    return {"task": task, "robot": robot, "episodes": episodes, "seed": seed, "expert_success_rate": wins / episodes,
            "mean_ticks": float(np.mean([r[1] for r in results])), "holds": int(sum(r[2] for r in results)),
            "video": str(video), "video_frames": writer.frames,
            "dataset": str(dataset) if dataset else None, "dataset_problems": problems}
