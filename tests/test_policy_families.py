"""The policy families beside diffusion (flow matching, ACT, autoregressive binned tokens): each trains through the
CLI, resumes, reloads in a fresh process with identical actions for a fixed seed, evaluates, and serves as a base
for residual RL and steering; plus the pieces each family is made of, against known answers."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from robot_learning.errors import ConfigError
from support.sim_recordings import lift_observations, run_cli

FAMILIES = {"flow": ["--policy", "flow"], "act": ["--policy", "act"],
            "act-open-loop": ["--policy", "act", "--no-temporal-ensemble"],
            "ar-quantile": ["--policy", "ar", "--binning", "quantile", "--bins", "32"],
            "carp": ["--policy", "carp", "--tokenizer-steps", "30"]}

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from robot_learning.core.frame import Observation
    from robot_learning.policies.checkpoint import load_policy

    obs_path, out, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(int(sys.argv[4]))
    data = np.load(obs_path)
    result = {}
    for k, ckpt in enumerate(sys.argv[5:]):   # every family in one fresh process
        policy = load_policy(ckpt)
        feats = policy.observation_features
        policy.reset(seed)
        acts = []
        for i in range(int(data["n"])):
            t = int(data[f"t{i}"])
            obs = Observation(t, feats, {s.name: data[f"{i}_{s.name}"] for s in feats}, {s.name: t for s in feats})
            acts.append(policy.infer(obs).actions)
        result[f"acts{k}"], result[f"samples{k}"] = np.stack(acts), policy.sample_chunks(obs, 3)[0]
    np.savez(out, **result)
""")


def _play(policy, obs, seed):
    policy.reset(seed)
    acts = np.stack([policy.infer(o).actions for o in obs])
    return acts, policy.sample_chunks(obs[-1], 3)[0]


@pytest.fixture(scope="module")
def trained(lift_base, tmp_path_factory):
    """Each family trained 2 steps on the shared lift demos, then resumed to 4 (the real trainer, the CLI)."""
    d = tmp_path_factory.mktemp("families")
    runs = {}
    for name, flags in FAMILIES.items():
        run = d / name
        base = ["train", "--dataset", str(lift_base["demos"]), "--out", str(run), *flags, "--batch-size", "8",
                "--eval-episodes", "0", "--no-progress"]
        rc, out = run_cli(*base, "--steps", "2")
        assert rc == 0 and "trained 2 steps" in out, out
        rc, out = run_cli(*base, "--steps", "4", "--resume")
        assert rc == 0 and "trained 4 steps" in out, out
        runs[name] = run
    return runs


@pytest.fixture(scope="module")
def fresh_process(trained, tmp_path_factory):
    """Every trained family loaded and played in one fresh process: {name: (actions, samples)}."""
    from robot_learning.policies.checkpoint import load_policy

    d = tmp_path_factory.mktemp("fresh")
    obs = lift_observations(load_policy(trained["flow"]), n=10)   # every family reads the same state features
    np.savez(d / "obs.npz", n=len(obs), **{f"t{i}": o.t_ns for i, o in enumerate(obs)},
             **{f"{i}_{k}": np.asarray(v) for i, o in enumerate(obs) for k, v in o.values.items()})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl"}
    names = list(trained)
    r = subprocess.run([sys.executable, "-c", CHILD, str(d / "obs.npz"), str(d / "child.npz"), "7",
                        str(torch.get_num_threads()), *(str(trained[n]) for n in names)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    child = np.load(d / "child.npz")
    return obs, {n: (child[f"acts{k}"], child[f"samples{k}"]) for k, n in enumerate(names)}


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_reloads_in_a_fresh_process_with_identical_actions(trained, fresh_process, name):
    from robot_learning.policies.checkpoint import load_policy

    run = trained[name]
    doc = json.loads((run / "policy/config.json").read_text())
    assert doc["meta"]["train_step"] == 4
    assert json.loads((run / "checkpoint/state.json").read_text())["step"] == 4
    policy = load_policy(run)
    assert policy.kind == {"flow": "diffusion"}.get(name, name.split("-")[0]) and not policy.training
    obs, child = fresh_process
    acts, samples = _play(policy, obs, 7)
    assert np.array_equal(child[name][0], acts) and np.array_equal(child[name][1], samples)
    ta = 1 if name == "act" else 8                       # ACT's temporal ensembling: one action per tick
    assert acts.shape == (10, ta, 8) and samples.shape == (3, 8, 8) and np.all(np.isfinite(acts))
    assert not np.array_equal(samples[0], samples[1])   # steering gets distinct candidates


@pytest.mark.parametrize("name", ["act", "ar-quantile", "carp"])
def test_family_evaluates_and_is_a_base_for_residuals(trained, name, tmp_path):
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.policies.residual import ResidualPolicy
    from robot_learning.rl.vec_base import BatchedBase

    rc, out = run_cli("eval", "--checkpoint", str(trained[name]), "--episodes", "1", "--videos", "0",
                      "--out", str(tmp_path / "eval"))
    assert rc == 0 and "success" in out and "held-out episodes" in out, out
    base = load_policy(trained[name])
    obs = lift_observations(base, n=10)
    base.reset(3)
    want, chunk, chunk_i = [], None, 0
    for o in obs:   # the base's own schedule: a chunk per Ta ticks, or one action per tick (ACT)
        if chunk is None or chunk_i >= len(chunk):
            chunk, chunk_i = base.infer(o).actions, 0
        else:
            base.observe(o)
        want.append(chunk[chunk_i])
        chunk_i += 1
    res = ResidualPolicy(load_policy(trained[name]))
    res.reset(3)
    got = [res.infer(o).actions[0] for o in obs]
    np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=1e-5, atol=1e-5)   # through (un)normalise
    vec = BatchedBase(load_policy(trained[name]), 2, seed=3)   # vectorised RL: batched, or copies for ACT
    assert vec.batched == (name != "act")
    acts = np.stack([vec.actions([o, o]) for o in obs[:4]])
    assert acts.shape == (4, 2, 8) and np.all(np.isfinite(acts))


def test_family_flag_errors_are_one_line(lift_base, tmp_path, capsys):
    from robot_learning.cli.main import main

    base = ["train", "--dataset", str(lift_base["demos"]), "--out", str(tmp_path / "r"), "--steps", "1",
            "--eval-episodes", "0", "--no-progress"]
    assert main([*base, "--policy", "act", "--sampler", "ddim"]) == 2
    assert "--sampler of a act policy" in capsys.readouterr().err
    assert main([*base, "--policy", "flow", "--sampler", "ddim"]) == 2
    assert "--sampler of a flow policy: expected euler, found 'ddim'" in capsys.readouterr().err
    run = lift_base["run"]   # a diffusion policy: euler is not one of its samplers
    assert main(["eval", "--checkpoint", str(run), "--episodes", "1", "--sampler", "euler",
                 "--out", str(tmp_path / "e")]) == 2
    assert "sampler of a diffusion policy" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(run), "--episodes", "1", "--sampling-temperature", "2",
                 "--out", str(tmp_path / "e")]) == 2
    assert "sampling temperature: expected 0..1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- pieces, against known answers
def test_flow_sampler_integrates_an_exact_velocity_to_its_target():
    from robot_learning.policies.samplers import FlowSampler

    target = torch.tensor([0.3, -0.7])
    for steps in (1, 4, 10):   # x_t = t eps + (1 - t) a is a straight line: Euler is exact, even in one step
        eps_of = {}

        def velocity(x, t):   # the true velocity eps - a, with eps recovered from x_t
            tt = t[:, None] / 100.0
            eps = (x - (1 - tt) * target) / tt
            eps_of[float(t[0])] = eps
            return eps - target
        x = FlowSampler("euler", steps, clip_sample=False).sample(velocity, (3, 2), torch.Generator().manual_seed(0))
        torch.testing.assert_close(x, target.expand(3, 2), atol=1e-5, rtol=0)
        assert len(eps_of) == steps
    with pytest.raises(ConfigError, match="euler"):
        FlowSampler("ddim")


def _tiny_ar(binning="uniform", n_bins=16, To=1, Ta=2):
    from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
    from robot_learning.datasets.stats import Normalizer
    from robot_learning.policies.autoregressive import ARConfig, AutoregressivePolicy

    obs = FeatureSet([FeatureSpec("x", (3,), "float32", FeatureKind.STATE, "1")])
    act = FeatureSet([FeatureSpec("a", (2,), "float32", FeatureKind.ACTION, "1")])
    stats = {"obs.x": {k: np.full(3, v, np.float32) for k, v in
                       dict(min=-1, max=1, mean=0, std=1, q01=-1, q99=1).items()},
             "action": {k: np.full(2, v, np.float32) for k, v in
                        dict(min=-2, max=2, mean=0, std=1, q01=-2, q99=2).items()}}
    cfg = ARConfig(To=To, Tp=To - 1 + Ta, Ta=Ta, n_bins=n_bins, binning=binning, d_model=32, n_layers=2,
                   dropout=0.0)
    norm = Normalizer({"obs.x": "minmax", "action": "quantile"}, stats)
    return AutoregressivePolicy(cfg, obs, act, norm, 100_000_000)


def test_ar_bins_uniform_and_equal_probability():
    pol = _tiny_ar("uniform", n_bins=16)
    x = torch.linspace(-1, 1, 101).reshape(1, -1, 1).expand(1, 101, 2)
    err = (pol.detokenize(pol.tokenize(x)) - x).abs().max()
    assert err <= 1 / 16 + 1e-6                         # half a bin width (2 / 16 / 2)
    q = _tiny_ar("quantile", n_bins=8)
    raw = torch.randn(4000, 2) ** 3                      # skewed, heavy tailed: uniform bins would waste most

    class Data:
        tables = {"action": raw}
    q.fit_data(Data)
    counts = torch.stack([torch.bincount(q.tokenize(q.normalizer.normalize("action", raw)[None])[0, :, d],
                                         minlength=8) for d in range(2)])
    assert counts.min() >= 0.9 * 4000 / 8 and counts.max() <= 1.1 * 4000 / 8   # equal probability
    assert torch.all(q.edges[:, 1:] > q.edges[:, :-1])


def test_ar_kv_cache_decoding_equals_full_recomputation():
    pol = _tiny_ar(Ta=3).eval()
    batch = {"obs.x": torch.randn(4, 1, 3)}
    with torch.no_grad():
        fast = pol._sample(batch, None, sample=False)               # cached, one token per pass
        prefix = pol._prefix(batch)
        toks = []
        for _ in range(pol.n_tokens):                               # every pass from scratch
            emb = [pol.token_emb(t) + pol.pos[0, j] for j, t in enumerate(toks)]
            x = torch.cat([prefix, *(e.unsqueeze(1) for e in emb)], dim=1)
            toks.append(pol.head(pol.gpt(x)[:, -1]).argmax(-1))
        slow = pol.detokenize(torch.stack(toks, 1).reshape(4, 3, 2))
    torch.testing.assert_close(fast, slow)


def test_ar_teacher_forcing_learns_a_state_dependent_action():
    torch.manual_seed(0)
    pol = _tiny_ar(n_bins=16, Ta=2)
    opt = torch.optim.Adam(pol.parameters(), lr=3e-3)
    x = torch.rand(64, 1, 3) * 2 - 1
    batch = {"obs.x": x, "action": (x[:, :, :2] * 1.5).expand(64, 2, 2).clone()}
    first = pol.compute_loss(batch).item()
    for _ in range(100):
        loss = pol.compute_loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first and pol.eval().token_accuracy(batch) > 0.8
    with torch.no_grad():
        pred = pol.predict_actions(batch)
    assert (pred - batch["action"]).abs().mean() < 0.2            # greedy decoding recovers the actions


def test_act_temporal_ensembling_weights_and_padding(lift_base):
    from robot_learning.policies.act import ACTPolicy
    from robot_learning.policies.checkpoint import load_policy

    rc, _ = run_cli("train", "--dataset", str(lift_base["demos"]), "--out", str(lift_base["dir"] / "act-te"),
                    "--policy", "act", "--steps", "1", "--batch-size", "4", "--eval-episodes", "0", "--no-progress",
                    "--horizon", "4", "--action-steps", "4")
    assert rc == 0
    pol = load_policy(lift_base["dir"] / "act-te")
    assert isinstance(pol, ACTPolicy)
    preds = [np.arange(4 * 8, dtype=np.float64).reshape(4, 8) * (k + 1) for k in range(3)]
    calls = iter(preds)
    pol.predict_actions = lambda batch, **kw: torch.from_numpy(next(calls))[None]   # known chunks
    obs = lift_observations(pol, n=3)
    pol.reset(0)
    got = [pol.infer(o).actions[0] for o in obs]
    w = np.exp(-0.01 * np.arange(3))
    np.testing.assert_allclose(got[0], preds[0][0], rtol=1e-6)
    np.testing.assert_allclose(got[2], (w[0] * preds[0][2] + w[1] * preds[1][1] + w[2] * preds[2][0]) / w.sum(),
                               rtol=1e-6)
    del pol.predict_actions
    # actions past the episode end (padding) carry no loss: changing them changes nothing
    pol.train()
    b = {"obs." + s.name: torch.tensor(np.asarray(obs[0].values[s.name]))[None, None].float()
         for s in pol.observation_features}
    b["action"] = torch.zeros(1, 4, 8)
    b["action_is_pad"] = torch.tensor([[False, False, True, True]])
    torch.manual_seed(1)
    l1 = pol.compute_loss(b)
    b2 = dict(b, action=b["action"].clone())
    b2["action"][0, 2:] = 5.0
    torch.manual_seed(1)
    assert abs(pol.compute_loss(b2).item() - l1.item()) < 1e-2 * abs(l1.item()) + 1e-3


# ----------------------------------------------------------------------------- CARP
def _smooth_chunks(n, tp=16, da=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, tp)[None, :, None]
    a, f, ph = (torch.rand(n, 1, da, generator=g) for _ in range(3))
    return (0.8 * a * torch.sin(2 * torch.pi * (0.5 + f) * t + 6 * ph)).float()   # smooth, in [-0.8, 0.8]


def test_carp_tokenizer_reconstructs_coarse_to_fine():
    from robot_learning.policies.carp_tokenizer import MultiScaleVQ, TokenizerConfig

    torch.manual_seed(0)
    tok = MultiScaleVQ(TokenizerConfig(codebook=64, code_dim=4, hidden=16), 3)
    data = _smooth_chunks(2048)
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    tok.train()
    for step in range(300):
        loss, parts = tok.loss(data[torch.randint(0, 2048, (64,))])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 99:
            tok.restart_dead_codes(data[:256])
    tok.eval()
    test = _smooth_chunks(256, seed=1)
    tokens = tok.tokenize(test)
    assert [tuple(t.shape) for t in tokens] == [(256, 3, s) for s in (1, 2, 3, 4)] and tok.tokens_per_chunk == 30
    err = (tok.detokenize(tokens) - test).abs().mean().item()
    assert err < 0.08 < test.abs().mean().item()                        # held-out chunks, well under the signal
    errs = []
    for k in range(1, 5):   # each finer scale lowers the error: coarse to fine
        f_hat = torch.zeros(256, 3, 4, 4)
        for j, idx in enumerate(tokens[:k]):
            f_hat = tok.add_scale(f_hat, idx, j)
        errs.append((tok.decode(f_hat) - test).abs().mean().item())
    assert errs == sorted(errs, reverse=True) and errs[-1] == pytest.approx(err, rel=1e-4)


def test_block_causal_mask_and_adaln_identity():
    from robot_learning.policies.nets.gpt import GPT, block_causal_mask

    m = block_causal_mask([1, 2, 3])
    assert m.shape == (6, 6) and m[0].tolist() == [True] + [False] * 5 and m[1].tolist() == [True, True, True] + \
        [False] * 3 and m[5].all()
    gpt = GPT(16, 2, 2, 0.0, cond_dim=8).eval()
    x = torch.randn(2, 6, 16)
    out = gpt(x, mask=m, cond=torch.randn(2, 8))
    torch.testing.assert_close(out, gpt.ln(x))                          # adaLN-Zero: a fresh trunk is the identity
    with pytest.raises(Exception, match="GPT condition"):
        gpt(x, mask=m)


def test_carp_cli_tokenizer_then_policy_and_cached_decoding_equals_full(lift_base, tmp_path):
    from robot_learning.policies.checkpoint import load_policy

    rc, out = run_cli("tokenizer", "train", "--dataset", str(lift_base["demos"]), "--out", str(tmp_path / "tok"),
                      "--steps", "20", "--batch-size", "32", "--no-progress")
    assert rc == 0 and "codes used per scale" in out, out
    summary = json.loads((tmp_path / "tok/summary.json").read_text())
    assert summary["steps"] == 20 and summary["recon_mae_normalised"] > 0
    rc, out = run_cli("train", "--dataset", str(lift_base["demos"]), "--out", str(tmp_path / "run"), "--policy", "carp",
                      "--tokenizer", str(tmp_path / "tok"), "--steps", "2", "--batch-size", "8", "--eval-episodes", "0",
                      "--no-progress")
    assert rc == 0 and not (tmp_path / "run/tokenizer").exists()        # given, not trained again
    pol = load_policy(tmp_path / "run")
    tok = pol.tokenizer
    from robot_learning.training.tokenizer import load_tokenizer
    given, _, _ = load_tokenizer(tmp_path / "tok")
    for k, v in given.state_dict().items():                             # the policy ships the tokenizer's weights
        assert torch.equal(tok.state_dict()[k], v), k
    rc, _ = run_cli("train", "--dataset", str(lift_base["demos"]), "--out", str(tmp_path / "bad"), "--policy", "carp",
                    "--tokenizer", str(tmp_path / "tok"), "--horizon", "32", "--steps", "1", "--eval-episodes", "0",
                    "--no-progress")
    assert rc == 2                                                       # its horizon is 16
    obs = lift_observations(pol, n=2)
    pol.observe(obs[0])
    w = pol.window()
    pol.set_sampler("greedy")   # CARP samples top-k by default
    cached = []
    add = pol.tokenizer.add_scale
    pol.tokenizer.add_scale = lambda f, idx, k: (cached.append(idx), add(f, idx, k))[1]
    with torch.no_grad():   # cached passes, scale by scale == one full block-causal pass over the chosen tokens
        seq = pol._sample(w, None, sample=False)
        del pol.tokenizer.add_scale
        cond = pol._condition(w)
        f_hat = torch.zeros(1, pol.action_dim, 8, 4)
        xs, chosen = [], []
        for k, s in enumerate(pol.scales):
            xs.append(pol._embed(f_hat, k))
            x = torch.cat(xs, dim=1)
            n = x.shape[1]
            h = pol.gpt(x, mask=pol.mask[:n, :n], cond=cond)[:, -pol.action_dim * s:]
            idx = pol.head(h).argmax(-1).reshape(1, pol.action_dim, s)
            chosen.append(idx)
            f_hat = pol.tokenizer.add_scale(f_hat, idx, k)
        full = pol.tokenizer.decode(f_hat).clamp(-1, 1)
    assert [torch.equal(a, b) for a, b in zip(cached, chosen)] == [True] * 4
    torch.testing.assert_close(seq, full)
