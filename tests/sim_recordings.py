"""Small sim datasets recorded inside the tests (the real recorder, the real scripted expert)."""

from robot_learning.datasets.scripted import record_sim_dataset
from robot_learning.sim.env import SimEnv, SimEnvConfig

LIFT_SEEDS = (0, 1, 2)


def record_lift(path, camera_fps=None, seeds=LIFT_SEEDS, **env_overrides):
    """Scripted lift episodes: state, object state, front + wrist cameras at 96 px (at ticks, or
    streamed at ``camera_fps`` so image rows are not tick rows) and tactile; every one kept."""
    cfg = dict(task="lift", cameras=("front", "wrist"), image_size=96, tactile=True, object_state=True,
               camera_fps=camera_fps)
    with SimEnv(SimEnvConfig(**{**cfg, **env_overrides})) as env:
        episodes = record_sim_dataset(env, path, seeds, keep_failures=True)
    assert all(e.record is not None for e in episodes)
    return path
