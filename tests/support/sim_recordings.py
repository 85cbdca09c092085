"""Small sim datasets recorded inside the tests (the real recorder, the real scripted expert), the 2-step base
policy trained on them, and the CLI run in process."""

from robot_learning.datasets.scripted import LIFT_SEEDS, record_lift  # noqa: F401  (the product's recording)
from robot_learning.sim.env import SimEnv


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
