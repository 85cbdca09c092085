"""Replay: re-execute an episode's recorded (executed) actions on the sim robot, from the same
reset seed, and measure how closely the robot follows the recorded joint trajectory."""

from __future__ import annotations

import numpy as np

from robot_learning.core.frame import Action
from robot_learning.datasets.recorder import ROBOT_STREAM
from robot_learning.datasets.store import EpisodeStore
from robot_learning.errors import ConfigError


def replay_episode(store: EpisodeStore, index: int, env=None) -> dict:
    from robot_learning.sim.env import SimEnv, SimEnvConfig

    robot = dict(store.schema.robot)
    if robot.get("kind") != "sim":
        raise ConfigError.expected("replay target", "a dataset recorded on the sim twin", robot)
    eps = store.episodes
    if not 0 <= index < len(eps):
        raise ConfigError.expected("episode index", f"0..{len(eps) - 1}", index)
    ep = eps[index]
    if ep.seed is None:
        raise ConfigError(f"episode {index} has no reset seed: it cannot be replayed in sim")
    own = env is None
    env = env or SimEnv(SimEnvConfig(task=robot["task"], robot=robot["name"], object_state=False))
    try:
        env.reset(ep.seed)
        ticks = store.ticks(ep)
        a, b = ep.streams[ROBOT_STREAM]
        recorded = store.read(ROBOT_STREAM, "joint_pos_rad", slice(a, b)).astype(np.float64)
        measured = [np.asarray(env.observation.state["joint_pos_rad"], dtype=np.float64)]
        names = [f.name for f in store.schema.action_features]
        for t in range(len(ticks["t_ns"]) - 1):
            action = Action({n: np.asarray(ticks[f"action.{n}"][t]) for n in names})
            obs, *_ = env.step(action)
            measured.append(np.asarray(obs.state["joint_pos_rad"], dtype=np.float64))
        measured = np.stack(measured)
        err = np.abs(measured - recorded[:len(measured)])
        return {"episode": index, "ticks": int(len(measured)), "tracking_error_rad": {
                    "mean": float(err.mean()), "max": float(err.max()), "final": float(err[-1].max())},
                "recorded_success": ep.success, "replayed_success": bool(env.task.success(env.world))}
    finally:
        if own:
            env.close()
