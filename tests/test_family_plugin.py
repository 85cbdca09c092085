"""A policy family added from outside the package (tests/plugins/toy_family, installed as a distribution with an
entry point in ``robot_learning.families``) trains, resumes, saves, reloads, evaluates and serves through the CLI
with no edit inside robot_learning."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

PLUGIN = Path(__file__).parent / "plugins" / "toy_family" / "toy_family.py"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder for PYTHONPATH holding the plug-in module and its distribution metadata (what pip would write)."""
    d = tmp_path_factory.mktemp("site")
    shutil.copy(PLUGIN, d / "toy_family.py")
    info = d / "toy_family-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-family\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[robot_learning.families]\ntoy = toy_family:FAMILY\n")
    return d


def test_toy_family_end_to_end_through_the_cli(site, lift_base, tmp_path, monkeypatch, capsys):
    """In this process (the plug-in's folder on sys.path, found through its entry point) train, resume and evaluate
    it with the CLI; then serve it from a fresh process that sees the plug-in only through PYTHONPATH."""
    from robot_learning.cli.main import main
    from robot_learning.deploy.client import PolicyClient
    from robot_learning.errors import ConfigError
    from robot_learning.policies.checkpoint import load_policy
    from support.sim_recordings import lift_observations, run_cli

    run = tmp_path / "run"
    common = ["train", "--dataset", str(lift_base["demos"]), "--out", str(run), "--policy", "toy", "--batch-size",
              "8", "--horizon", "8", "--action-steps", "4", "--videos", "0", "--no-progress"]
    assert main(common + ["--steps", "1"]) == 2     # not installed: the usage error lists the families there are
    assert capsys.readouterr().err == (
        "robot-learning: error: invalid choice 'toy' for argument '--policy'. Expected one of ('diffusion', 'flow', "
        "'act', 'ar', 'carp', 'vla'). (see robot-learning --help)\n")

    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "--policy {diffusion,flow,act,ar,carp,vla,toy}" in text, text
    assert "toy: a two-layer MLP from the state to the action chunk (a plug-in)" in text

    rc, out = run_cli(*common, "--steps", "2", "--eval-episodes", "1")
    assert rc == 0 and re.search(r"trained 2 steps .*\neval lift: success (0|1)\.00 over 1 held-out episodes", out), out
    rc, out = run_cli(*common, "--steps", "4", "--eval-episodes", "0", "--resume")
    assert rc == 0 and "trained 4 steps" in out, out
    doc = json.loads((run / "policy" / "config.json").read_text())
    assert doc["policy"] == "toy" and doc["config"]["toy"]["Ta"] == 4
    rc, out = run_cli("eval", "--checkpoint", str(run), "--episodes", "1", "--videos", "0", "--json",
                      "--out", str(tmp_path / "eval"))
    summary = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and summary["episodes"] == 1 and summary["success_rate"] in (0.0, 1.0) and summary["sampler"] is None
    local = load_policy(run)
    assert type(local).__name__ == "ToyPolicy" and type(local).__module__ == "toy_family"

    # serve it from a fresh process (port 0: the server says where) and compare with the policy loaded here
    env = {**os.environ, "PYTHONPATH": str(site)}
    server = subprocess.Popen([sys.executable, "-m", "robot_learning", "serve", "--checkpoint", str(run),
                               "--port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while "ws://" not in line:
            line = server.stderr.readline()
            assert line or server.poll() is None, "the server exited before it served"
        url = re.search(r"(ws://[\d.]+:\d+)", line).group(1)
        obs = lift_observations(local, n=1)[0]
        values = {s.name: obs.values[s.name] for s in local.observation_features}
        with PolicyClient(url) as client:
            assert client.spec()["policy"] == "toy"
            client.reset(seed=0)
            served = client.infer(values, int(obs.t_ns)).actions
        local.reset(0)
        np.testing.assert_array_equal(served, local.infer(obs).actions)
        assert served.shape == (4, local.action_dim)
    finally:
        server.terminate()
        server.wait(timeout=30)

    # without the plug-in, its checkpoint names a family nobody registered: one line
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="checkpoint policy kind: expected one of .*found 'toy'"):
        load_policy(run)
