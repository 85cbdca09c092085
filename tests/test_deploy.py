"""`robot-learning deploy` on the sim twin: a trained policy run locally and the same policy through the policy
server over a real socket give the same episodes on the same held-out seeds."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from robot_learning.cli.main import main

from sim_recordings import record_lift


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("deploy")
    ds = d / "lift.zarr"
    record_lift(ds)
    run = d / "run"
    assert main(["train", "--dataset", str(ds), "--out", str(run), "--batch-size", "8", "--steps", "2",
                 "--eval-episodes", "0", "--no-progress"]) == 0
    return run


def _cli(*args) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(list(args)) == 0
    return json.loads(buf.getvalue().strip().splitlines()[-1])


def test_deploy_through_the_server_equals_local(run_dir):
    from robot_learning.deploy.server import PolicyServer
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir

    args = ["--robot", "sim:lift", "--episodes", "2", "--seed", "100000", "--json"]
    local = _cli("deploy", "--policy", str(run_dir), *args)
    server = PolicyServer(load_policy(resolve_policy_dir(run_dir)), port=0)
    port = server.start()
    try:
        remote = _cli("deploy", "--policy", f"ws://127.0.0.1:{port}", *args)
    finally:
        server.stop()
    assert local["episodes"] == remote["episodes"] == 2
    assert local["seeds"] == remote["seeds"] == [100_000, 100_001]
    # Same seeds, same sampler seeds, same observations: the same episodes, tick for tick.
    assert local["success_rate"] == remote["success_rate"]
    assert local["mean_episode_length"] == remote["mean_episode_length"]
    assert local["mean_max_reward"] == pytest.approx(remote["mean_max_reward"], abs=1e-6)
    assert remote["chunks"] == local["chunks"] > 0
    assert {"infer_ms", "round_trip_ms"} <= set(remote["server_timing_ms"])


def test_deploy_refuses_training_seeds_and_bad_urls(run_dir, capsys):
    assert main(["deploy", "--policy", str(run_dir), "--robot", "sim:lift", "--seed", "0"]) == 2
    assert "seed" in capsys.readouterr().err
    assert main(["deploy", "--policy", "ws://127.0.0.1:9", "--robot", "sim:lift"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "policy server ws://127.0.0.1:9" in err
