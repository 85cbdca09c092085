"""The benchmark runner (robot_learning/benchmarks): a toy suite (tests/support/toy_suite.py, a numpy point-mass
reach task implementing the SUITE contract) drives the whole path under the project's own interpreter through the
framework's --python override: demos -> store -> verify -> train -> serve -> eval -> JSON. Plus the venv cache's
stamp logic and bad input. The Meta-World test needs the suite's real venv (marked benchmark_venv)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from robot_learning.benchmarks import venvs
from robot_learning.benchmarks.suites import SUITES, get_suite, parse_tasks, suite_from_file
from robot_learning.cli.main import main
from robot_learning.errors import ConfigError

TOY = Path(__file__).resolve().parent / "support" / "toy_suite.py"


def _run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_toy_suite_end_to_end(tmp_path, capsys):
    """demos -> store -> verify -> train 2 steps -> serve -> eval 2 episodes -> one JSON line and results.json."""
    out = tmp_path / "bench"
    rc, stdout, stderr = _run_cli(capsys, "benchmark", "run", str(TOY), "--python", sys.executable, "--tasks", "reach",
                                  "--demos", "3", "--steps", "2", "--episodes", "2", "--seed", "7", "--out", str(out),
                                  "--device", "cpu", "--json")
    assert rc == 0, stderr[-2000:]
    doc = json.loads(stdout.strip().splitlines()[-1])
    assert doc["suite"] == "toy" and set(doc["tasks"]) == {"reach"} and doc["complete"]
    task = doc["tasks"]["reach"]
    assert task["episodes"] == 2 and task["demos"] == 3 and task["train_steps"] == 2
    assert 0.0 <= task["ci95"][0] <= task["success_rate"] <= task["ci95"][1] <= 1.0
    assert task["latency_ms_p50"] > 0 and "mean_min_distance" not in task   # the toy suite declares no metric
    assert doc["mean_success"] == task["success_rate"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"]["reach"]["seeds"] == [100007, 100008]            # held out: --seed + 100000
    # the store: verified, the suite's seeds per episode, benchmark robot metadata
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify

    store = EpisodeStore.open(out / "reach" / "demos.zarr")
    assert verify(store) == []
    assert [e.seed for e in store.episodes] == [7, 8, 9] and all(e.success for e in store.episodes)
    assert store.schema.robot == {"name": "point_mass", "kind": "benchmark", "suite": "toy", "task": "reach",
                                  "model": "point_mass"}
    assert store.schema.control_rate_hz == 10.0
    # per-episode lines and videos of at least 320 px
    lines = [json.loads(x) for x in (out / "reach" / "eval" / "episodes.jsonl").read_text().splitlines()]
    assert [x["seed"] for x in lines] == [100007, 100008] and all(x["chunks"] >= 1 for x in lines)
    import av

    videos = sorted((out / "reach" / "eval" / "videos").glob("*.mp4"))
    assert len(videos) == 2
    with av.open(str(videos[0])) as c:
        assert c.streams.video[0].width >= 320
    # the run's training skipped the twin with a note, as `train` does for a robot without a twin
    summary = json.loads((out / "reach" / "run" / "summary.json").read_text())
    assert summary["eval"] == {}
    # a second run with the same --out keeps the finished task
    rc, stdout, stderr = _run_cli(capsys, "benchmark", "run", str(TOY), "--python", sys.executable, "--tasks", "reach",
                                  "--demos", "3", "--steps", "2", "--episodes", "2", "--seed", "7", "--out", str(out))
    assert rc == 0 and "finished in an earlier run" in stderr
    assert "reach" in stdout and "mean success" in stdout
    # the subcommands one by one: setup, demos, eval (held-out seeds only)
    py = ("--python", sys.executable)
    rc, stdout, _ = _run_cli(capsys, "benchmark", "setup", str(TOY), *py, "--json")
    assert rc == 0 and json.loads(stdout)["tasks"] == ["reach", "reach-far"]
    rc, stdout, stderr = _run_cli(capsys, "benchmark", "demos", str(TOY), "--task", "reach-far", "--demos", "1",
                                  "--seed", "3", "--out", str(tmp_path / "one.zarr"), *py)
    assert rc == 0 and "1 demos" in stdout and "dataset verify: ok" in stdout, stderr
    rc, stdout, stderr = _run_cli(capsys, "benchmark", "eval", str(TOY), "--task", "reach", "--checkpoint",
                                  str(out / "reach" / "run"), "--episodes", "1", "--eval-seed", "200000", "--videos",
                                  "0", "--device", "cpu", "--out", str(tmp_path / "ev"), *py, "--json")
    assert rc == 0, stderr
    ev = json.loads(stdout)
    assert ev["episodes"] == 1 and ev["suite"] == "toy" and (tmp_path / "ev" / "eval.json").is_file()
    rc, _, stderr = _run_cli(capsys, "benchmark", "eval", str(TOY), "--task", "reach", "--checkpoint",
                             str(out / "reach" / "run"), "--episodes", "2", "--eval-seed", "8", *py)
    assert rc == 2 and "were in the training data" in stderr


def test_train_on_a_robot_without_a_twin_finishes_with_a_note(tmp_path, capsys):
    """A dataset whose robot has no twin model ('sawyer', even marked as sim) trains, writes its curves and
    summary, and says why nothing was evaluated in the twin."""
    from robot_learning.benchmarks.demos import append_episode, schema_from_spec
    from robot_learning.datasets.store import EpisodeStore

    spec = {"observation": [{"name": "pos", "shape": [2], "dtype": "float32", "kind": "state", "units": "m"}],
            "action": {"name": "action", "shape": [2], "dtype": "float32", "kind": "action", "units": "1"},
            "control_hz": 10.0, "robot": {"kind": "sim", "task": "reach", "model": "sawyer"}}
    store = EpisodeStore.create(tmp_path / "d.zarr", schema_from_spec(spec))
    rng = np.random.default_rng(0)
    for seed in range(2):
        append_episode(store, {"seed": seed, "success": True, "obs": {"pos": rng.random((30, 2), np.float32)},
                               "actions": rng.random((30, 2), np.float32)}, "reach", "test")
    rc, stdout, stderr = _run_cli(capsys, "train", "--dataset", str(tmp_path / "d.zarr"), "--out", str(tmp_path / "r"),
                                  "--steps", "2", "--warmup-steps", "1", "--eval-episodes", "2", "--no-progress")
    assert rc == 0, stderr
    assert "no twin evaluation" in stdout and "'sawyer'" in stdout
    assert (tmp_path / "r" / "summary.json").is_file() and (tmp_path / "r" / "curves.png").is_file()


# --------------------------------------------------------------------------- venv cache
def _fake_create(calls: list):
    def create(suite, target: Path, progress) -> None:
        calls.append(target)
        (target / "bin").mkdir(parents=True)
        (target / "bin" / "python").symlink_to(sys.executable)
        venvs.copy_scripts(suite, target / "adapter")
        (target / venvs.STAMP).write_text("{}")
    return create


def test_venv_cache_creates_once_and_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv(venvs.CACHE_ENV, str(tmp_path / "cache"))
    suite = suite_from_file(TOY)
    calls: list = []
    env = venvs.ensure_suite_env(suite, create=_fake_create(calls), progress=lambda s: None)
    assert env.venv == tmp_path / "cache" / f"toy-{venvs.venv_hash(suite)}" and len(calls) == 1
    assert venvs.is_complete(env.venv)
    assert {p.name for p in env.scripts.iterdir()} == {"driver.py", "client.py", "toy_suite.py"}
    again = venvs.ensure_suite_env(suite, create=_fake_create(calls), progress=lambda s: None)
    assert again.venv == env.venv and len(calls) == 1
    assert not list((tmp_path / "cache").glob("*.partial-*"))
    # the hash follows the requirements
    assert venvs.venv_hash(suite_from_file(TOY, requirements=("numpy<3",))) != venvs.venv_hash(suite)


def test_half_made_venv_is_rebuilt_never_used(tmp_path):
    suite = suite_from_file(TOY)
    target = venvs.venv_dir(suite, tmp_path)
    (target / "bin").mkdir(parents=True)   # an interrupted install: no stamp
    notes: list[str] = []
    calls: list = []
    env = venvs.ensure_suite_env(suite, root=tmp_path, create=_fake_create(calls), progress=notes.append)
    assert len(calls) == 1 and venvs.is_complete(env.venv) and any("unfinished" in n for n in notes)


def test_failed_creation_leaves_nothing(tmp_path):
    suite = suite_from_file(TOY)

    def broken(suite, target, progress):
        (target / "bin").mkdir(parents=True)
        raise ConfigError("pip failed")

    with pytest.raises(ConfigError, match="pip failed"):
        venvs.ensure_suite_env(suite, root=tmp_path, create=broken, progress=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_offline_venv_creation_says_the_index_is_needed_once(tmp_path, monkeypatch):
    """pip pointed at an index that does not answer: one ConfigError line, no venv left behind."""
    for var in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "2")
    suite = suite_from_file(TOY, requirements=("robot-learning-toy-suite-package",))
    with pytest.raises(ConfigError, match="needs the package index once") as info:
        venvs.ensure_suite_env(suite, root=tmp_path, progress=lambda s: None)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- bad input
def test_unknown_suite_and_task(capsys, tmp_path):
    with pytest.raises(ConfigError, match="benchmark suite"):
        get_suite("metaverse")
    rc, _, err = _run_cli(capsys, "benchmark", "run", "metaverse", "--quick")
    assert rc == 2 and "expected one of ['aloha', 'metaworld', 'pusht', 'robosuite']" in err
    assert len(err.strip().splitlines()) == 1
    rc, _, err = _run_cli(capsys, "benchmark", "run", str(TOY), "--python", sys.executable, "--tasks", "reach,fly",
                          "--out", str(tmp_path / "o"))
    assert rc == 2 and "toy task" in err and "'fly'" in err and "reach-far" in err
    with pytest.raises(ConfigError, match="metaworld task"):
        parse_tasks("reach,teleport", SUITES["metaworld"], ["reach", "push"])
    mt10 = parse_tasks(None, SUITES["metaworld"])
    assert mt10[:2] == ("reach", "push") and len(mt10) == 10
    rc, _, err = _run_cli(capsys, "benchmark", "run", "metaworld", "--steps", "0")
    assert rc == 2 and "--steps" in err


def test_benchmark_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    text = capsys.readouterr().out
    for sub in ("setup", "demos", "eval", "run"):
        assert sub in text


# --------------------------------------------------------------------------- Meta-World (its own venv)
def _metaworld_env(tmp_path: Path):
    suite = SUITES["metaworld"]
    if venvs.is_complete(venvs.venv_dir(suite)):
        return venvs.ensure_suite_env(suite)
    probe = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d",
                            str(tmp_path / "probe"), "metaworld==3.1.1"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip("the Meta-World venv is not cached and the package index is unreachable "
                    "(run `robot-learning benchmark setup metaworld` once where it is)")
    return venvs.ensure_suite_env(suite)


@pytest.mark.benchmark_venv
def test_metaworld_adapter_demos_and_server_loop(tmp_path):
    """The Meta-World adapter: its spec maps the 39-d state into named features, two expert demos record and
    verify, and a policy trained 2 steps on them is served through a few steps of the real suite."""
    from robot_learning.benchmarks.demos import driver_json, record_demos
    from robot_learning.benchmarks.evaluate import evaluate_task
    from robot_learning.evaluation.config import HeldOutEvalConfig
    from robot_learning.training.config import TrainConfig
    from robot_learning.training.trainer import train

    env = _metaworld_env(tmp_path)
    spec = driver_json(env, "spec", "--task", "reach")
    assert sum(f["shape"][0] for f in spec["observation"]) == 39 and spec["action"]["shape"] == [4]
    assert spec["robot"] == {"kind": "benchmark", "suite": "metaworld", "task": "reach", "model": "sawyer"}
    res = record_demos(env, "reach", tmp_path / "d.zarr", 2, first_seed=0, progress=lambda s: None)
    assert res.episodes == 2 and res.seeds == (0, 1) and res.problems == ()
    train(TrainConfig(dataset=tmp_path / "d.zarr", out=tmp_path / "run", steps=2, warmup_steps=1,
                      evaluation=HeldOutEvalConfig(eval_episodes=0), progress=False, device="cpu"))
    summary = evaluate_task(env, tmp_path / "run", "reach", [100000], tmp_path / "eval", videos=1, max_steps=12,
                            progress=lambda s: None)
    assert summary["episodes"] == 1 and summary["mean_episode_length"] <= 12 and summary["chunks"] >= 1
    assert len(summary["videos"]) == 1
