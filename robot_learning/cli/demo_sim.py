"""Sim part of the demo: the task's scripted expert drives the MuJoCo twin through the control
runtime (the loop that teleop, record and deploy use) on the sim clock; the episodes are recorded
into a dataset and a 30 Hz scene camera and the wrist camera are streamed into a video."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_learning.runtime.control import TickRecord
from robot_learning.video import VideoWriter


class VideoSink:
    """Runtime sink: every frame the two cameras captured since the previous tick goes to the video
    (scene | wrist side by side, matched by capture time)."""

    def __init__(self, writer: VideoWriter, scene, wrist):
        self.writer, self.scene, self.wrist = writer, scene, wrist
        self._seq = {"scene": 0, "wrist": 0}

    def on_tick(self, tick: TickRecord) -> None:
        wrist_by_t = {s.t_capture_ns: s for s in self.wrist.samples_after(self._seq["wrist"])}
        for s in self.scene.samples_after(self._seq["scene"]):
            w = wrist_by_t.get(s.t_capture_ns)
            right = w.value[self.wrist.name] if w is not None else np.zeros_like(s.value[self.scene.name])
            self.writer.write(np.concatenate([s.value[self.scene.name], right], axis=1))
            self._seq["scene"] = s.seq
            if w is not None:
                self._seq["wrist"] = w.seq

    def close(self) -> None:
        pass


def run_sim_expert(task: str, robot: str, episodes: int, seed: int, video: Path, dataset: Path,
                   size: int = 192, video_episodes: int | None = None, tactile: bool = True) -> dict:
    """Record ``episodes`` expert episodes (seeds from ``seed``) into ``dataset``; the first
    ``video_episodes`` (default all) are also filmed into ``video``."""
    from robot_learning.datasets.scripted import record_expert_episodes, sim_dataset_recorder
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify
    from robot_learning.sim.env import SimEnv, SimEnvConfig

    env = SimEnv(SimEnvConfig(task=task, robot=robot, cameras=("front", "wrist"), image_size=size, camera_fps=30.0,
                                  tactile=tactile))
    try:
        filmed = episodes if video_episodes is None else min(episodes, video_episodes)
        with sim_dataset_recorder(env, dataset) as recorder:
            with VideoWriter(video, 30.0) as writer:
                results = record_expert_episodes(env, recorder, range(seed, seed + filmed), keep_failures=True,
                                                 sinks=(VideoSink(writer, env.sensors[0], env.sensors[1]),),
                                                 notes="scripted expert (demo)")
            results += record_expert_episodes(env, recorder, range(seed + filmed, seed + episodes),
                                              keep_failures=True, notes="scripted expert (demo)")
    finally:
        env.close()
    wins = sum(r.success for r in results)
    return {"task": task, "robot": robot, "episodes": episodes, "seed": seed, "expert_success_rate": wins / episodes,
            "mean_ticks": float(np.mean([r.stats.loop.ticks for r in results])),
            "holds": int(sum(r.stats.holds for r in results)), "video": str(video), "video_frames": writer.frames,
            "dataset": str(dataset), "dataset_problems": verify(EpisodeStore.open(dataset))}
