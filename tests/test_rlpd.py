"""Off-policy residual RL: the tanh residual starts at its base, SAC updates learn a known Q and move the actor
towards it, demonstrations and intervention ticks become residual transitions, the actor / learner link refuses
bad messages over a real socket, and `finetune rlpd` trains with an actor process, resumes, reloads and evaluates."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from robot_learning.cli.main import main

from support.sim_recordings import run_cli as _cli, lift_observations


@pytest.fixture(scope="module")
def tanh_policy(lift_base):
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.policies.residual import ResidualConfig, ResidualPolicy

    return ResidualPolicy(load_policy(lift_base["run"]), ResidualConfig(hidden=(32, 32), head="tanh"))


def test_tanh_residual_starts_at_its_base_and_samples_inside_its_range(lift_base, tanh_policy):
    from robot_learning.policies.checkpoint import load_policy

    base, p = load_policy(lift_base["run"]), tanh_policy
    obs = lift_observations(base, n=10)
    base.reset(3)
    p.reset(3)
    for k, o in enumerate(obs):
        if k % 8 == 0:
            chunk = base.infer(o)
        else:
            base.observe(o)
        np.testing.assert_allclose(p.infer(o).actions[0], chunk.actions[k % 8], atol=1e-5)
        assert p.last_step.t_ns == o.t_ns and p.last_step.x.shape == (p.state_dim + p.action_dim,)
    x = torch.randn(256, p.state_dim + p.action_dim)
    r, logp = p.sample_residual(x, torch.Generator().manual_seed(0))
    assert r.shape == (256, p.action_dim) and torch.all(r.abs() < 1) and torch.all(torch.isfinite(logp))
    # the residual of an action inverts combine (inside the range)
    base_n = torch.zeros(1, p.action_dim)
    a = p.combine(base_n, torch.full((1, p.action_dim), 0.5))
    np.testing.assert_allclose(p.residual_of(base_n, p.normalizer.normalize("action", a)), 0.5, atol=1e-5)


def test_replay_ring_and_mixed_batches():
    from robot_learning.errors import ConfigError
    from robot_learning.rl.sac import Replay, SACConfig, mixed_batch

    def rows(n, tag):
        return {"x": np.full((n, 3), tag, np.float32), "r": np.zeros((n, 2), np.float32), "reward": np.zeros(n),
                "x_next": np.zeros((n, 3)), "done": np.zeros(n), "intervened": np.zeros(n)}

    online, demos = Replay(3, 2, capacity=5), Replay(3, 2)
    online.add(**rows(4, 1.0))
    online.add(**rows(3, 2.0))               # wraps: 2 of the first rows are overwritten
    assert len(online) == 5 and online.added == 7 and (online.data["x"][:, 0] == 2.0).sum() == 3
    bad = rows(1, 1.0)
    bad["reward"] = np.array([np.nan])
    with pytest.raises(ConfigError):
        online.add(**bad)
    demos.add(**rows(10, 9.0))
    b = mixed_batch(online, demos, SACConfig(batch_size=64, demo_fraction=0.5), np.random.default_rng(0))
    assert (b["x"][:, 0] == 9.0).sum() == 32 and len(b["x"]) == 64
    b = mixed_batch(Replay(3, 2), demos, SACConfig(batch_size=8), np.random.default_rng(0))
    assert torch.all(b["x"][:, 0] == 9.0)    # no online data yet: the batch is all demonstrations


def test_sac_updates_learn_a_known_q_and_move_the_actor_towards_it(tanh_policy):
    from robot_learning.policies.residual import ResidualConfig, ResidualPolicy
    from robot_learning.rl.sac import SAC, Replay, SACConfig

    torch.manual_seed(0)
    p = ResidualPolicy(tanh_policy.base, ResidualConfig(hidden=(32, 32), head="tanh", select=True, ensemble=2,
                                                        critic_hidden=(64, 64)))
    sac = SAC(p, SACConfig(batch_size=128, ensemble=2, utd=4, actor_delay=0, lr_actor=1e-3, lr_critic=1e-3,
                           critic_hidden=(64, 64)), seed=0)
    assert sac.q is p.q                    # EXPO: the policy acts with the learner's critic
    X, da = p.state_dim + p.action_dim, p.action_dim
    rng = np.random.default_rng(0)
    n = 2000
    r = rng.uniform(-1, 1, (n, da)).astype(np.float32)
    online = Replay(X, da)
    # one-step episodes: reward 1 when the first residual component is positive
    online.add(x=rng.normal(size=(n, X)), r=r, reward=(r[:, 0] > 0).astype(np.float32), x_next=np.zeros((n, X)),
               done=np.ones(n), intervened=np.zeros(n))
    x = torch.from_numpy(rng.normal(size=(256, X)).astype(np.float32))
    for _ in range(300):
        stats = sac.step(online, Replay(X, da))
    assert sac.critic_updates == 1200 and sac.actor_updates == 300
    plus, minus = torch.zeros(256, da), torch.zeros(256, da)
    plus[:, 0], minus[:, 0] = 0.8, -0.8
    with torch.no_grad():
        assert float((sac.q(x, plus) - sac.q(x, minus)).mean()) > 0.5
        assert float(p.residual_mean(x)[:, 0].mean()) > 0.3          # the actor went for the reward
        # EXPO's selection keeps a better edit and vetoes a worse one (the base action instead)
        kept = (p.select(x, plus) == plus).all(1).float().mean()
        vetoed = (p.select(x, minus) == 0).all(1).float().mean()
        assert kept > 0.9 and vetoed > 0.9, (kept, vetoed)
    assert np.isfinite(stats["q_loss"]) and stats["alpha"] > 0


def test_demonstrations_and_intervention_ticks_become_residual_transitions(lift_base, tanh_policy):
    from robot_learning.core.frame import Action
    from robot_learning.rl.actor import TransitionSink
    from robot_learning.rl.demo_data import demo_transitions, episode_transitions
    from robot_learning.runtime.control import TickRecord

    p = tanh_policy
    data, info = demo_transitions(p, [lift_base["demos"]])
    assert info["episodes"] == 3 and info["transitions"] == len(data["x"])
    assert data["reward"].sum() == 3 and data["done"].sum() == 3         # one success at the end of each episode
    assert np.all(np.abs(data["r"]) < 1) and np.all(data["intervened"] == 1)
    # an episode that failed keeps no terminal transition and no reward
    t = episode_transitions(data["x"][:5], data["r"][:5], np.zeros(5, bool), success=False)
    assert len(t["x"]) == 4 and t["reward"].sum() == 0 and t["done"].sum() == 0

    # the sink turns executed actions (a human's on intervention ticks) into residuals of that tick's base action
    obs = lift_observations(p.base, n=3, seed=100_020)
    sink = TransitionSink(p)
    p.reset(0)
    for k, o in enumerate(obs):
        chunk = p.infer(o)
        executed = chunk.actions[0] + (0.01 if k == 2 else 0.0)
        act = Action.from_vector(p.action_features, executed)
        sink.on_tick(TickRecord(k, o.t_ns, o, act, act, False, None, 0, intervention=(k == 2)))
    sink.on_tick(TickRecord(3, obs[-1].t_ns + 1, obs[-1], None, act, True, "watchdog", 0))   # a held tick
    x, r, iv = sink.arrays()
    assert x.shape[0] == 3 and sink.skipped == 1 and iv.tolist() == [False, False, True]
    np.testing.assert_allclose(r[:2], 0.0, atol=1e-4)          # the policy's own (zero) residual
    assert np.all(np.abs(r[2]) > 0.01)                          # the human's correction


def test_learner_link_answers_actors_and_refuses_bad_messages(tanh_policy):
    from websockets.sync.client import connect

    from robot_learning.deploy.client import decode, encode
    from robot_learning.errors import ConfigError, WorkerFailedError
    from robot_learning.rl.link import ActorLink, LearnerLink

    X, da = tanh_policy.state_dim + tanh_policy.action_dim, tanh_policy.action_dim
    link = LearnerLink(lambda: {"type": "welcome", "weights_version": 0, "next_seed": 7}, X, da).start()
    try:
        with pytest.raises(ConfigError, match="input / action sizes"):
            ActorLink(link.url).hello(X + 1, da)
        actor = ActorLink(link.url)
        assert actor.hello(X, da)["next_seed"] == 7
        with pytest.raises(WorkerFailedError, match="learner refused: episode r"):   # the actor's failure, not config
            actor.send_episode(1, np.zeros((3, X)), np.full((3, da), 2.0), np.zeros(3, bool), True, 0)
        with connect(link.url, proxy=None) as ws:
            for msg in ({"type": "episode", "seed": 1, "x": np.zeros((3, X), np.float32),
                         "r": np.full((3, da), 2.0, np.float32), "intervened": np.zeros(3, bool), "success": True,
                         "weights_version": 0},
                        {"type": "episode", "seed": 1, "x": np.full((3, X), np.nan, np.float32),
                         "r": np.zeros((3, da), np.float32), "intervened": np.zeros(3, bool), "success": True,
                         "weights_version": 0},
                        {"type": "shutdown"}):
                ws.send(encode(msg))
                assert decode(ws.recv(timeout=5))["type"] == "error"
            ws.send(b"\x80\x04\x95pickle")                            # a pickle is not msgpack: refused
            assert decode(ws.recv(timeout=5))["type"] == "error"
        assert link.episodes.empty()

        import threading

        def learner():                                               # answers the one episode that arrives
            ep = link.episodes.get(timeout=10)
            ep.reply = {"type": "ack", "next_seed": 8, "weights_version": 1, "weights": {}, "stop": True}
            ep.done.set()

        th = threading.Thread(target=learner)
        th.start()
        reply = actor.send_episode(7, np.zeros((4, X)), np.zeros((4, da)), np.zeros(4, bool), False, 0)
        th.join()
        assert reply["next_seed"] == 8 and reply["stop"] is True
        actor.close()
    finally:
        link.close()


def test_finetune_rlpd_with_an_actor_process_trains_resumes_and_reloads(lift_base, tmp_path):
    out = tmp_path / "rlpd"
    args = ["finetune", "rlpd", "--checkpoint", str(lift_base["run"]), "--env", "sim:lift", "--demos",
            str(lift_base["demos"]), "--out", str(out), "--eval-episodes", "1", "--warmup-steps", "10",
            "--actor-delay", "0", "--batch-size", "32", "--hidden", "32", "32", "--no-progress"]
    rc, text = _cli(*args, "--episodes", "2")
    assert rc == 0, text + "".join(p.read_text() for p in out.glob("actor*.log"))
    s = json.loads(text.strip().splitlines()[-1])
    assert s["episodes"] >= 2 and s["env_steps"] > 10 and s["critic_updates"] >= 2 * (s["env_steps"] - 10)
    assert s["demos"]["episodes"] == 3 and s["base_success_rate"] is not None and s["success_rate"] is not None
    assert len((out / "rl_log.csv").read_text().strip().splitlines()) == s["episodes"] + 1
    assert (out / "curves.png").stat().st_size > 0 and "seed 400000" in (out / "actor0.log").read_text()
    rc, text = _cli(*args, "--episodes", str(s["episodes"] + 1), "--resume")
    assert rc == 0, text
    s2 = json.loads(text.strip().splitlines()[-1])
    assert s2["episodes"] >= s["episodes"] + 1 and s2["critic_updates"] > s["critic_updates"]
    meta = json.loads((out / "policy" / "config.json").read_text())["meta"]
    lo, hi = meta["train_seed_ranges"][-1]
    assert lo == 400_000 and hi >= lo + s2["episodes"]

    code = ("import json,sys; from robot_learning.policies.checkpoint import load_policy; "
            "p = load_policy(sys.argv[1]); "
            "print(json.dumps([type(p).__name__, p.config.head, p.q is not None, p.base.sampler.temperature]))")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # learner, actor and saved policy run the base deterministically (--base-temperature 0, the default)
    assert json.loads(r.stdout.strip().splitlines()[-1]) == ["ResidualPolicy", "tanh", True, 0.0]
    assert "the base samples at temperature 0.0" in (out / "actor0.log").read_text()
    assert meta["finetune"]["base_temperature"] == 0.0
    assert main(["eval", "--checkpoint", str(out), "--episodes", "1", "--seed", str(lo)]) == 2


def test_expert_takeover_in_the_twin_flags_its_ticks_for_the_learner(tanh_policy):
    """The scripted expert plays HIL-SERL's human: InterventionSource in the runtime, its ticks flagged."""
    from robot_learning.deploy.intervention import InterventionSource
    from robot_learning.evaluation.rollout import env_config_for, rollout
    from robot_learning.rl.actor import ExpertTakeover, TransitionSink
    from robot_learning.sim.env import SimEnv

    p = tanh_policy
    env = SimEnv(env_config_for(p.observation_features, "lift", "panda"))
    try:
        human = ExpertTakeover(env, after_ticks=5, probability=1.0)
        human.start_episode(100_030)
        sink = TransitionSink(p)
        result = rollout(env, p, 100_030, sinks=(sink,), wrap_source=lambda s: InterventionSource(s, human))
    finally:
        env.close()
    x, r, iv = sink.arrays()
    assert not iv[:5].any() and iv[5:].all() and len(x) == result.length
    assert np.abs(r[5:]).max() > 0.1              # the expert's actions are not the (zero) residual's
    assert result.success                          # the expert finishes the lift the policy could not
