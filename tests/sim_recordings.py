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


def train_two_steps(demos, run):
    """A policy trained for 2 steps on ``demos`` (the real trainer, through the CLI): a fast base for the tests of
    everything that takes a trained policy (deploy, residuals, steering, fine-tuning)."""
    from robot_learning.cli.main import main

    assert main(["train", "--dataset", str(demos), "--out", str(run), "--batch-size", "8", "--steps", "2",
                 "--eval-episodes", "0", "--no-progress"]) == 0
    return run


def lift_observations(policy, n=12, seed=100_000):
    """``n`` observations of the lift twin for ``policy``'s features, the arm held at home from reset ``seed``."""
    from robot_learning.evaluation.rollout import env_config_for

    env = SimEnv(env_config_for(policy.observation_features, "lift", "panda"))
    try:
        obs = [env.reset(seed)]
        for _ in range(n - 1):
            obs.append(env.step(env.home_action())[0])
        return obs
    finally:
        env.close()


def run_cli(*args) -> tuple[int, str]:
    """``robot-learning ARGS`` in this process: (exit status, what it printed on stdout)."""
    import contextlib
    import io

    from robot_learning.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(list(args))
    return rc, buf.getvalue()
