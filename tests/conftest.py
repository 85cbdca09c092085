import os
import signal

# Tests send Ctrl-C to the commands they run (and to themselves); a shell that starts the suite as a background job
# hands every process SIGINT ignored, which would make those tests fail, so take the default back.
signal.signal(signal.SIGINT, signal.default_int_handler)

# Tests never touch the network, and render off-screen.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def lift_base(tmp_path_factory):
    """Scripted lift demonstrations and a policy trained 2 steps on them, shared read-only by every module that
    needs a trained policy (deploy, residual, steering, RLPD): {"dir", "demos", "run"}."""
    from support.sim_recordings import record_lift, train_two_steps

    d = tmp_path_factory.mktemp("lift_base")
    demos = record_lift(d / "lift.zarr")
    return {"dir": d, "demos": demos, "run": train_two_steps(demos, d / "run")}


@pytest.fixture
def cal_dir(tmp_path, monkeypatch):
    """A fresh calibration folder for the test, where the CLI and the arms look (ROBOT_LEARNING_CALIBRATION)."""
    d = tmp_path / "calibration"
    monkeypatch.setenv("ROBOT_LEARNING_CALIBRATION", str(d))
    return d
