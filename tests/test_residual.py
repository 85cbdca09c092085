"""Residual policy and residual PPO: a zero residual is the base, the PPO pieces move the right way, and the
fine-tune command trains, checkpoints, resumes, reloads and evaluates."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from robot_learning.cli.main import main

from support.sim_recordings import lift_observations as _observations, run_cli as _cli


@pytest.fixture(scope="module")
def base_run(lift_base):
    return lift_base["run"]


def test_zero_initialised_residual_acts_exactly_like_its_base(base_run):
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.policies.residual import ResidualPolicy

    base = load_policy(base_run)
    obs = _observations(base)
    base.reset(5)
    want = []
    for k, o in enumerate(obs):                      # the base's chunks played open loop (8 actions each)
        if k % 8 == 0:
            chunk = base.infer(o)
        else:
            base.observe(o)
        want.append(chunk.actions[k % 8])
    res = ResidualPolicy(load_policy(base_run))
    res.reset(5)
    got = [res.infer(o).actions[0] for o in obs]     # one action per tick: the residual acts every tick
    np.testing.assert_allclose(np.stack(got), np.stack(want), atol=1e-5)
    assert res.num_parameters() > 0 and all(not p.requires_grad for p in res.base.parameters())


def test_residual_output_moves_the_action_by_scale_in_normalised_units(base_run):
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.policies.residual import ResidualConfig, ResidualPolicy

    res = ResidualPolicy(load_policy(base_run), ResidualConfig(scale=0.1))
    base_n = torch.zeros(1, res.action_dim)
    shifted = res.combine(base_n, torch.ones(1, res.action_dim))
    centre = res.combine(base_n, torch.zeros(1, res.action_dim))
    back = res.normalizer.normalize("action", shifted) - res.normalizer.normalize("action", centre)
    np.testing.assert_allclose(back.numpy(), 0.1, atol=1e-5)


def test_gae_bootstraps_truncated_episodes_but_not_terminated_ones():
    from robot_learning.rl.ppo import gae

    rewards = np.array([[0.0, 0.0], [1.0, 0.0]])
    values = np.array([[0.5, 0.5], [0.5, 0.5]])
    next_values = np.array([[0.5, 0.5], [9.0, 2.0]])
    terminated = np.array([[0, 0], [1, 0]], dtype=float)   # env 0 succeeds at t=1; env 1 hits its time limit
    done = np.array([[0, 0], [1, 1]], dtype=float)
    adv, ret = gae(rewards, values, next_values, terminated, done, gamma=0.9, lam=1.0)
    assert adv[1, 0] == pytest.approx(1.0 - 0.5)                 # no bootstrap past a success
    assert adv[1, 1] == pytest.approx(0.9 * 2.0 - 0.5)           # the time limit bootstraps V(last state)
    assert adv[0, 0] == pytest.approx(0.9 * 0.5 - 0.5 + 0.9 * adv[1, 0])
    np.testing.assert_allclose(ret, adv + values)


def test_ppo_update_moves_the_residual_towards_better_actions_and_stops_on_kl():
    from robot_learning.policies.residual import mlp
    from robot_learning.rl.ppo import Batch, PPOConfig, ValueNet, gaussian_logp, ppo_update

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    actor, critic = mlp(4, (32,), 2, zero_last=True), ValueNet(4, (32,))
    x = torch.randn(512, 4)
    log_std = -1.0
    r = actor(x).detach() + np.exp(log_std) * torch.randn(512, 2, generator=gen)
    target = torch.tensor([0.3, -0.2])
    adv = -((r - target) ** 2).sum(1)                          # residuals nearer the target were better
    batch = Batch(x, x, r, gaussian_logp(r, actor(x).detach(), log_std), adv, adv)
    cfg = PPOConfig(epochs=20, minibatches=4, target_kl=0.5)
    opt_a = torch.optim.Adam(actor.parameters(), lr=3e-3)
    opt_c = torch.optim.Adam(critic.parameters(), lr=5e-3)
    v0 = ((critic(x) - adv) ** 2).mean().item()
    stats = ppo_update(actor, critic, opt_a, opt_c, batch, log_std, cfg, gen)
    mean = actor(x).detach().mean(0)
    # towards the target (the clipped ratio bounds how far one update goes with std 0.37)
    assert torch.dot(mean, target) / torch.dot(target, target) > 0.1
    assert torch.nn.functional.cosine_similarity(mean, target, dim=0) > 0.95
    assert ((critic(x) - adv) ** 2).mean().item() < v0
    tight = ppo_update(actor, critic, opt_a, opt_c, batch, log_std, PPOConfig(epochs=20, target_kl=1e-6), gen)
    assert tight["epochs"] == 1 and stats["epochs"] >= 1


def test_finetune_residual_trains_checkpoints_resumes_and_reloads(base_run, tmp_path):
    out = tmp_path / "ft"
    args = ["finetune", "residual", "--checkpoint", str(base_run), "--env", "sim:lift", "--out", str(out),
            "--num-envs", "2", "--rollout-steps", "12", "--eval-episodes", "1", "--no-progress"]
    rc, text = _cli(*args, "--iterations", "2")
    assert rc == 0, text
    s = json.loads(text.strip().splitlines()[-1])
    assert s["iterations"] == 2 and s["env_steps"] == 2 * 2 * 12
    assert s["base_success_rate"] is not None and s["success_rate"] is not None
    rows = (out / "rl_log.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and (out / "curves.png").stat().st_size > 0
    assert (out / "policy" / "base" / "config.json").is_file()
    assert _cli(*args, "--iterations", "2")[0] == 2            # the folder holds a run: --resume or a new one
    rc, text = _cli(*args, "--iterations", "3", "--resume")
    assert rc == 0, text
    assert json.loads(text.strip().splitlines()[-1])["iterations"] == 3
    meta = json.loads((out / "policy" / "config.json").read_text())["meta"]
    lo, hi = meta["train_seed_ranges"][-1]
    assert lo == 300_000 and hi > lo and meta["train_seeds"]

    # A fresh process loads the residual policy (its base inside), and eval runs it and refuses the RL seeds.
    code = ("import json,sys; from robot_learning.policies.checkpoint import load_policy; "
            "p = load_policy(sys.argv[1]); "
            "print(json.dumps([type(p).__name__, type(p.base).__name__, p.base.sampler.temperature]))")
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # the base keeps the sampler it was fine-tuned with: temperature 0 (deterministic), the default
    assert json.loads(r.stdout.strip().splitlines()[-1]) == ["ResidualPolicy", "DiffusionPolicy", 0.0]
    rc, text = _cli("eval", "--checkpoint", str(out), "--episodes", "1", "--json")
    assert rc == 0, text
    assert json.loads(text.strip().splitlines()[-1])["episodes"] == 1
    assert main(["eval", "--checkpoint", str(out), "--episodes", "1", "--seed", str(lo)]) == 2


def test_shaped_reward_is_the_sparse_one_plus_the_change_in_task_progress(base_run):
    """--reward shaped: r = success + gamma * phi(s') - phi(s); with gamma 1 it sums over an episode's ticks to
    phi(last) - phi(first) (plus the success), so it rewards progress without changing what is optimal."""
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.policies.residual import ResidualConfig, ResidualPolicy
    from robot_learning.rig import parse_robot
    from robot_learning.rl.residual_ppo import Rollouts

    base = load_policy(base_run)
    policy = ResidualPolicy(base, ResidualConfig(log_std=-1.0), dict(base.meta))
    _, task, robot = parse_robot("sim:lift")
    envs = Rollouts(policy, task, robot, 2, first_seed=300_000, seed=0)
    try:
        phi0 = envs.phi.copy()
        assert np.all((0 <= phi0) & (phi0 < 1)) and phi0[0] != phi0[1]       # two cube placements
        gen = torch.Generator().manual_seed(0)
        *_, rew, term, done, finished = envs.collect(12, policy.actor, -1.0, gen, None, shaping_gamma=1.0)
        assert not finished and not done.any()                              # 12 ticks: no episode ended
        np.testing.assert_allclose(rew.sum(0), envs.phi - phi0, atol=1e-9)
        assert np.abs(rew).max() > 1e-4                                     # the arm moved: progress changed
        *_, rew, term, done, finished = envs.collect(12, policy.actor, -1.0, gen, None)
        assert not rew.any()                                                # sparse: 0 until a success
    finally:
        envs.close()


def test_residual_policy_through_the_server_equals_local(base_run, tmp_path):
    from robot_learning.deploy.server import PolicyServer
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.policies.residual import ResidualPolicy

    res = ResidualPolicy(load_policy(base_run))
    torch.manual_seed(3)
    with torch.no_grad():                                     # a non-zero residual, so it matters
        for p in res.actor.parameters():
            p.add_(0.05 * torch.randn_like(p))
    res.save(tmp_path / "res")
    args = ["--robot", "sim:lift", "--episodes", "1", "--seed", "100000", "--json"]
    local = json.loads(_cli("deploy", "--policy", str(tmp_path / "res"), *args)[1].strip().splitlines()[-1])
    server = PolicyServer(load_policy(tmp_path / "res"), port=0)
    port = server.start()
    try:
        remote = json.loads(_cli("deploy", "--policy", f"ws://127.0.0.1:{port}", *args)[1].strip().splitlines()[-1])
    finally:
        server.stop()
    assert local["mean_episode_length"] == remote["mean_episode_length"]
    assert local["mean_max_reward"] == pytest.approx(remote["mean_max_reward"], abs=1e-6)
    assert local["chunks"] == remote["chunks"] == local["mean_episode_length"]   # one chunk per tick


def test_batched_base_samples_all_envs_together_and_keeps_each_history(base_run):
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.rl.vec_base import BatchedBase

    base = load_policy(base_run)
    obs = _observations(base, n=17)
    vb = BatchedBase(base, 4, seed=0)
    acts = [vb.actions([obs[t]] * 4) for t in range(16)]
    assert vb.inferences == 2                                   # one batched call per 8-step chunk, not one per env
    assert acts[0].shape == (4, base.action_dim)
    assert not np.allclose(acts[0][0], acts[0][1])              # each env samples its own chunk
    for t in range(2):
        vb.actions([obs[t]] * 4)                                # step 16 starts the third common chunk
    assert vb.inferences == 3
    vb.reset(2)                                                 # env 2 starts an episode mid-chunk
    vb.actions([obs[0]] * 4)
    assert vb.inferences == 4                                   # its first chunk, at once; the others keep theirs
    for t in range(5):
        vb.actions([obs[t]] * 4)
    assert vb.inferences == 4                                   # ... until the next common step (24)
    vb.actions([obs[5]] * 4)
    assert vb.inferences == 5
    assert [len(h._buf) for h in vb.histories] == [2, 2, 2, 2]


def test_worker_processes_collect_the_batch_one_process_would(base_run, tmp_path):
    """--workers: one worker reproduces the in-process batch exactly (same seeds, same noise); two split the envs
    between processes, concatenated in order, with distinct reset seeds and next_seed past all of them."""
    from robot_learning.rig import parse_robot
    from robot_learning.rl.config import FinetuneResidualConfig, RLRunConfig
    from robot_learning.rl.residual_ppo import Rollouts, build_residual_policy
    from robot_learning.rl.rollout_workers import ParallelRollouts

    cfg = FinetuneResidualConfig(checkpoint=base_run, env="sim:lift", run=RLRunConfig(tmp_path / "unused"),
                                 num_envs=3, workers=1, log_std=-1.0)
    _, task, robot = parse_robot(cfg.env)
    policy = build_residual_policy(cfg, task)
    with torch.no_grad():                                     # a non-zero residual, so the weights must travel
        for p in policy.actor.parameters():
            p.add_(0.05 * torch.randn_like(p))
    par = ParallelRollouts(cfg, first_seed=300_000, seed=0)
    try:
        got = par.collect(10, policy.actor, -1.0, torch.Generator().manual_seed(1), None)
        assert par.next_seed == 300_003
    finally:
        par.close()
    noise_seed = int(torch.randint(0, 2 ** 62, (1,), generator=torch.Generator().manual_seed(1)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # as in the worker: another thread count rounds the base's convolutions otherwise
    local = Rollouts(policy, task, robot, 3, first_seed=300_000, seed=0)
    try:
        want = local.collect(10, policy.actor, -1.0, torch.Generator().manual_seed(noise_seed), None)
    finally:
        local.close()
        torch.set_num_threads(threads)
    for g, w in zip(got[:8], want[:8]):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-6)
    assert got[8] == want[8]

    two = ParallelRollouts(dataclasses.replace(cfg, workers=2), first_seed=500, seed=0)
    try:
        x, *_, rew, term, done, finished = two.collect(20, policy.actor, -1.0, torch.Generator().manual_seed(2), None)
        assert x.shape[:2] == (20, 3) and rew.shape == (20, 3) and two.counts == [2, 1]
        assert len(finished) == int(done.sum())
        assert not np.allclose(x[:, 0].numpy(), x[:, 2].numpy())          # each env its own episode
        # worker 0 (envs 0, 1) resets with 500, 502, 504, ...; worker 1 (env 2) with 501, 503, ...
        e0, e1 = int(done[:, :2].sum()), int(done[:, 2].sum())
        assert two._next == [504 + 2 * e0, 503 + 2 * e1] and two.next_seed == max(two._next)
    finally:
        procs = list(two.procs)
        two.close()
    assert len(procs) == 2 and not any(p.is_alive() for p in procs) and not two.procs


def test_a_failing_worker_is_a_one_line_error(base_run, tmp_path):
    from robot_learning.errors import ConfigError
    from robot_learning.rl.config import FinetuneResidualConfig, RLRunConfig
    from robot_learning.rl.rollout_workers import ParallelRollouts

    cfg = FinetuneResidualConfig(checkpoint=tmp_path / "missing", env="sim:lift", run=RLRunConfig(tmp_path / "o"),
                                 num_envs=2, workers=2)
    with pytest.raises(ConfigError, match="rollout worker 0 failed"):   # a config the worker refused stays one
        ParallelRollouts(cfg, first_seed=0, seed=0)
    with pytest.raises(ConfigError, match="--workers"):
        FinetuneResidualConfig(checkpoint=base_run, env="sim:lift", run=RLRunConfig(tmp_path / "o"), num_envs=2,
                               workers=3)


def test_a_worker_failing_at_run_time_is_a_worker_error_not_a_config_error():
    """A worker's crash (or its death) is a WorkerFailedError (exit 1), never a ConfigError (exit 2)."""
    import multiprocessing as mp

    from robot_learning.errors import ConfigError, WorkerFailedError
    from robot_learning.rl.rollout_workers import ParallelRollouts

    par = ParallelRollouts.__new__(ParallelRollouts)
    parent, child = mp.Pipe()
    par.conns, par.procs = [parent], []
    child.send(("error", "RuntimeError: boom", False))
    with pytest.raises(WorkerFailedError, match="rollout worker 0 failed: RuntimeError: boom") as e:
        par._recv(0, "batch")
    assert not isinstance(e.value, ConfigError)
    child.send(("ready", 10))
    with pytest.raises(WorkerFailedError, match="answered 'ready', expected 'batch'"):
        par._recv(0, "batch")
    parent.close()
    child.close()


def _children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> str:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"


def _running(pid: int) -> bool:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_with_worker_processes_saves_a_checkpoint_and_leaves_no_worker(base_run, tmp_path):
    import os
    import signal
    import time

    out = tmp_path / "ft"
    args = [sys.executable, "-m", "robot_learning", "finetune", "residual", "--checkpoint", str(base_run), "--env",
            "sim:lift", "--out", str(out), "--num-envs", "2", "--workers", "2", "--rollout-steps", "12",
            "--eval-episodes", "0", "--iterations", "100000", "--threads", "1", "--no-progress"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", MUJOCO_GL="egl", OMP_NUM_THREADS="1")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = out / "rl_log.csv"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (log.exists() and len(log.read_text().strip().splitlines()) >= 3):
        time.sleep(0.2)
    workers = _children(proc.pid)
    names = {p: _cmdline(p) for p in workers}
    assert sum("multiprocessing.spawn" in n for n in names.values()) == 2, (names, proc.communicate(timeout=10))
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume continues" in stdout
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["iteration"] >= 2 and state["env_steps"] == state["iteration"] * 2 * 12
    deadline = time.monotonic() + 15                                     # the resource tracker exits after it
    while time.monotonic() < deadline and any(_running(p) for p in workers):
        time.sleep(0.2)
    assert not [names[p] for p in workers if _running(p)]               # every worker stopped with it
