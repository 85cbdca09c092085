"""Diffusion policy: samplers against an exact denoiser, the policy interface on a recorded sim
dataset, the strict normaliser, checkpoints loaded in a fresh process, and the chunk executor."""

import copy
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy

from robot_learning.core.clock import FakeClock
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.core.frame import Action, Observation
from robot_learning.datasets.dense import DenseWindows
from robot_learning.datasets.stats import Normalizer, load_stats
from robot_learning.datasets.store import EpisodeStore
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.evaluation.rollout import env_config_for
from robot_learning.policies.base import ActionChunk, ObservationHistory, Policy
from robot_learning.policies.checkpoint import load_policy
from robot_learning.policies.diffusion import DiffusionConfig, DiffusionPolicy, normalizer_modes
from robot_learning.policies.executor import ChunkExecutor
from robot_learning.policies.samplers import Sampler, training_scheduler
from robot_learning.sim.env import SimEnv
from support.policies import fake_observation, make_policy
from support.sim_recordings import record_lift


# --------------------------------------------------------------------------- shared dataset
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return EpisodeStore.open(record_lift(tmp_path_factory.mktemp("policy") / "lift.zarr"))


@pytest.fixture(scope="module")
def state_policy(store):
    torch.manual_seed(0)
    return make_policy(store, "state")


@pytest.fixture(scope="module")
def vision_policy(store):
    torch.manual_seed(1)
    return make_policy(store, "state,rgb,tactile")


def sim_observation(features, seed=7):
    env = SimEnv(env_config_for(features, "lift", "panda"))
    try:
        return env.reset(seed)
    finally:
        env.close()


def with_t(obs, t_ns):
    return Observation(t_ns, obs.features, dict(obs.values), {k: t_ns for k in obs.values})


# --------------------------------------------------------------------------- samplers
ABAR = training_scheduler().alphas_cumprod.double()          # the DDPM training schedule
LOG_SIGMA = 0.5 * torch.log((1 - ABAR) / ABAR)                # sigma = sqrt((1 - abar) / abar)


def abar_at(t):
    """alpha_bar at (possibly fractional) timesteps, interpolated in log-sigma as diffusers'
    ``_sigma_to_t`` maps noise levels to timesteps (exact at integer t)."""
    t = t.double()
    assert bool(((t >= 0) & (t <= len(ABAR) - 1)).all()), t
    lo = t.floor().long().clamp(max=len(ABAR) - 2)
    w = t - lo
    return torch.sigmoid(-2 * (LOG_SIGMA[lo] * (1 - w) + LOG_SIGMA[lo + 1] * w))


def exact_eps(mu, s, calls):
    """The exact noise predictor E[eps | x_t] for data x0 ~ N(mu, s^2) per element (s = 0: every
    x0 = mu): x_t = a x0 + b eps, a = sqrt(abar_t), b = sqrt(1 - abar_t)."""
    def eps(x, t):
        calls.append(t.clone())
        assert t.dtype == torch.float32 and t.shape == (x.shape[0],)
        ab = abar_at(t).view(-1, 1, 1)
        a, b = ab.sqrt(), (1 - ab).sqrt()
        return (b * (x.double() - a * mu) / (ab * s * s + b * b)).to(x.dtype)
    return eps


SAMPLER_CASES = [("ddpm", None, 100), ("ddim", 10, 10), ("edm", 3, 3)]


@pytest.mark.parametrize("kind, steps, nfe", SAMPLER_CASES)
def test_samplers_return_the_point_mass(kind, steps, nfe):
    c = torch.rand(1, 1, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) - 0.5
    sampler = Sampler(kind, steps)
    assert sampler.nfe == nfe
    calls = []
    x = sampler.sample(exact_eps(c, 0.0, calls), (5, 8, 3), generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 8, 3) and x.dtype == torch.float32
    assert len(calls) == nfe
    ts = torch.stack([t[0] for t in calls])
    # noisy -> clean: DDPM/DDIM end at the clean step 0, EDM's last call is at sigma 0.3 (t ~17)
    # and its clean estimate is the sample
    assert ts[0] >= 90 and bool((ts[1:] < ts[:-1]).all())
    assert ts[-1] == 0 if kind != "edm" else 10 < ts[-1] < 25
    np.testing.assert_allclose(x.numpy(), np.broadcast_to(c.numpy(), x.shape), atol=1e-5)
    # the result depends on the denoiser: a point mass elsewhere gives that point
    y = sampler.sample(exact_eps(-c, 0.0, []), (5, 8, 3), generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(y.numpy(), np.broadcast_to(-c.numpy(), y.shape), atol=1e-5)


@pytest.mark.parametrize("kind, steps, nfe", SAMPLER_CASES)
def test_samplers_are_unbiased_on_a_gaussian(kind, steps, nfe):
    """A point mass only checks the last step; a Gaussian checks the whole trajectory: every
    step must query the denoiser at the noise level the solver assumes, or the mean drifts."""
    mu = torch.tensor([-0.4, 0.1, 0.35], dtype=torch.float64).view(1, 1, 3)
    s = 0.1
    x = Sampler(kind, steps).sample(exact_eps(mu, s, []), (2000, 8, 3),
                                    generator=torch.Generator().manual_seed(0)).double()
    np.testing.assert_allclose(x.mean((0, 1)).numpy(), mu.flatten().numpy(), atol=0.01)
    std = x.std((0, 1))
    assert bool((std < 1.1 * s).all()) and bool((std > 0.15 * s).all()), std   # no collapse
    if kind == "ddpm":   # ancestral sampling over every training step: close to the data spread
        assert bool((std > 0.8 * s).all()), std


@pytest.mark.parametrize("kind, steps", [("ddim", 10), ("edm", 3)])
def test_zero_temperature_samples_the_same_chunk_whatever_the_noise(kind, steps):
    """Temperature 0 starts from the zero latent: ddim / edm become a function of the observation alone (for a
    Gaussian, its mean); temperature 1 keeps the spread."""
    mu = torch.tensor([-0.4, 0.1, 0.35], dtype=torch.float64).view(1, 1, 3)
    draw = lambda t, g: Sampler(kind, steps, temperature=t).sample(  # noqa: E731
        exact_eps(mu, 0.1, []), (64, 8, 3), generator=torch.Generator().manual_seed(g)).double()
    a, b = draw(0.0, 0), draw(0.0, 1)
    torch.testing.assert_close(a, b)
    np.testing.assert_allclose(a.numpy(), np.broadcast_to(mu.numpy(), a.shape), atol=0.01)
    assert bool((draw(1.0, 0).std((0, 1)) > 0.015).all())
    half = draw(0.5, 0).std((0, 1))
    assert bool((half < 0.7 * draw(1.0, 0).std((0, 1))).all()) and bool((half > 0).all())
    with pytest.raises(ConfigError, match="temperature"):
        Sampler(kind, steps, temperature=1.5)


def test_sampler_config_errors():
    for kind, steps in (("euler", None), ("ddim", 0), ("ddim", 101), ("edm", -1), ("ddpm", 101)):
        with pytest.raises(ConfigError):
            Sampler(kind, steps)
    assert Sampler("ddim", 100).nfe == 100 and Sampler("ddpm", 1).nfe == 1
    with pytest.raises(ConfigError, match="sampler"):
        DiffusionConfig(sampler="euler")
    with pytest.raises(ConfigError, match="window sizes"):
        DiffusionConfig(To=2, Tp=8, Ta=8)
    with pytest.raises(ConfigError, match="multiple of 4"):
        DiffusionConfig(Tp=10, Ta=4, down_dims=(8, 16, 32))


# --------------------------------------------------------------------------- chunks and history
def test_action_chunk_validates_shapes(store):
    feats = store.schema.action_features
    da = sum(s.size for s in feats)
    assert da == 8
    acts = np.arange(3 * da, dtype=np.float32).reshape(3, da)
    chunk = ActionChunk(acts, np.array([0, 100, 200], dtype=np.int64), feats)
    assert len(chunk) == 3
    a = chunk.action(2)
    assert isinstance(a, Action)
    np.testing.assert_array_equal(a["joint_pos_rad"], acts[2, :7])
    np.testing.assert_array_equal(a["gripper_pos"], acts[2, 7:])
    assert not chunk.actions.flags.writeable and not chunk.t_ns.flags.writeable
    with pytest.raises(SpecMismatchError, match="action chunk shape"):
        ActionChunk(np.zeros((3, da - 1), np.float32), np.zeros(3, np.int64), feats)
    with pytest.raises(SpecMismatchError, match="action chunk shape"):
        ActionChunk(np.zeros(da, np.float32), np.zeros(1, np.int64), feats)
    with pytest.raises(SpecMismatchError, match="t_ns"):
        ActionChunk(np.zeros((3, da), np.float32), np.zeros(2, np.int64), feats)


def _obs(features, t, **values):
    return Observation(t, features, values, {k: t for k in values})


def test_observation_history_pads_with_the_first_and_is_strict():
    feats = FeatureSet([FeatureSpec("q", (2,), "float32", "state", "rad"),
                        FeatureSpec("g", (1,), "float32", "state", "m")])
    h = ObservationHistory(feats, 3)
    with pytest.raises(RuntimeError):
        h.stacked()
    q = [np.array([k, -k], np.float32) for k in range(5)]
    g = [np.array([10.0 * k], np.float32) for k in range(5)]
    h.push(_obs(feats, 0, q=q[0], g=g[0]))
    st = h.stacked()
    assert st["q"].shape == (3, 2) and st["g"].shape == (3, 1)
    np.testing.assert_array_equal(st["q"], [q[0]] * 3)
    h.push(_obs(feats, 1, q=q[1], g=g[1]))
    np.testing.assert_array_equal(h.stacked()["q"], [q[0], q[0], q[1]])
    for k in (2, 3, 4):
        h.push(_obs(feats, k, q=q[k], g=g[k]))
    np.testing.assert_array_equal(h.stacked()["q"], q[2:])
    np.testing.assert_array_equal(h.stacked()["g"], g[2:])
    assert h.last_t_ns == 4
    h.reset()
    assert h.last_t_ns is None
    h.push(_obs(feats, 9, q=q[4], g=g[4]))   # a new episode pads with its own first observation
    np.testing.assert_array_equal(h.stacked()["q"], [q[4]] * 3)
    # an observation of another layout: a wrong shape, a missing feature
    wide = FeatureSet([FeatureSpec("q", (3,), "float32", "state", "rad"), feats["g"]])
    with pytest.raises(SpecMismatchError, match="shape"):
        h.push(_obs(wide, 10, q=np.zeros(3, np.float32), g=g[0]))
    with pytest.raises(SpecMismatchError, match="'g'|g\\b"):
        h.push(_obs(FeatureSet([feats["q"]]), 10, q=q[0]))
    np.testing.assert_array_equal(h.stacked()["q"], [q[4]] * 3)   # rejected pushes changed nothing


# --------------------------------------------------------------------------- the policy
@pytest.mark.parametrize("which", ["state_policy", "vision_policy"])
def test_policy_loss_and_inference_on_sim(which, request, store):
    policy, sampler = request.getfixturevalue(which)
    assert isinstance(policy, Policy)
    kinds = {s.kind for s in policy.observation_features}
    assert kinds == ({FeatureKind.STATE} if which == "state_policy" else
                     {FeatureKind.STATE, FeatureKind.RGB, FeatureKind.TACTILE})
    batch = DenseWindows(sampler).batch(torch.arange(0, len(sampler), 9))
    torch.manual_seed(0)
    loss = policy.compute_loss(batch)
    # the DDPM objective recomputed here from the same draws (noise, then timesteps): the noise MSE of the
    # untrained net at x_t = sqrt(abar_t) a + sqrt(1 - abar_t) noise
    torch.manual_seed(0)
    with torch.no_grad():
        actions = policy.normalized_actions(batch)
        cond = policy.encoder(policy.normalized_obs(batch))
        noise = torch.randn(actions.shape)
        t = torch.randint(0, len(ABAR), (actions.shape[0],))
        abar = ABAR[t].float()[:, None, None]
        mse = ((policy.denoiser(abar.sqrt() * actions + (1 - abar).sqrt() * noise, t, cond) - noise) ** 2).mean()
    assert loss.ndim == 0 and loss.item() == pytest.approx(mse.item(), rel=1e-6)
    if which == "state_policy":   # seeded init, recorded states (deterministic physics); images vary with the renderer
        assert loss.item() == pytest.approx(1.2171606, rel=1e-4)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in policy.denoiser.parameters())
    policy.zero_grad(set_to_none=True)

    obs = sim_observation(policy.observation_features, seed=7)
    policy.reset(0)
    chunk = policy.infer(obs)
    c = policy.config
    assert len(chunk) == c.Ta == 4 and chunk.actions.shape == (c.Ta, 8) and chunk.actions.dtype == np.float32
    assert chunk.features == store.schema.action_features
    assert chunk.t_ns.dtype == np.int64
    np.testing.assert_array_equal(chunk.t_ns, obs.t_ns + 100_000_000 * np.arange(c.Ta))
    assert np.isfinite(chunk.actions).all()
    # unnormalised: the (clipped) samples map into the recorded action range
    lo, hi = policy.normalizer.stats("action")["min"], policy.normalizer.stats("action")["max"]
    live = hi - lo > 1e-3
    assert np.all(chunk.actions[:, live] >= lo[live] - 1e-4) and np.all(chunk.actions[:, live] <= hi[live] + 1e-4)
    assert policy.last_latency_s > 0
    # the next tick's chunk starts at that tick
    nxt = policy.infer(with_t(obs, obs.t_ns + 100_000_000))
    assert nxt.t_ns[0] == obs.t_ns + 100_000_000
    # the seed makes inference reproducible; another seed gives other samples
    policy.reset(5)
    a = policy.infer(obs).actions
    policy.reset(5)
    assert np.array_equal(policy.infer(obs).actions, a)
    policy.reset(6)
    assert not np.array_equal(policy.infer(obs).actions, a)


def test_policy_normalizer_is_strict(store, state_policy):
    policy, sampler = state_policy
    stats = sampler.output_stats(load_stats(store))
    modes = normalizer_modes(policy.config, policy.observation_features)
    args = (policy.config, policy.observation_features, store.schema.action_features)
    lacking = {k: m for k, m in modes.items() if k != "obs.cube_pos_m"}
    with pytest.raises(SpecMismatchError, match="normalizer keys"):
        DiffusionPolicy(*args, Normalizer(lacking, stats), 100_000_000)
    with pytest.raises(SpecMismatchError, match="normalizer keys"):
        DiffusionPolicy(*args, Normalizer({**modes, "obs.cube_pos_m": "quantile"}, stats), 100_000_000)
    short = {**stats, "action": {k: v[:7] for k, v in stats["action"].items()}}
    with pytest.raises(SpecMismatchError, match="action statistics shape"):
        DiffusionPolicy(*args, Normalizer(modes, short), 100_000_000)

    batch = dict(DenseWindows(sampler).batch(torch.arange(4)))
    missing = {k: v for k, v in batch.items() if k != "obs.cube_pos_m"}
    with pytest.raises(SpecMismatchError, match="obs.cube_pos_m"):
        policy.compute_loss(missing)
    with pytest.raises(SpecMismatchError, match="shape"):
        policy.compute_loss({**batch, "obs.cube_pos_m": batch["obs.cube_pos_m"][..., :2]})
    with pytest.raises(SpecMismatchError, match="shape"):
        policy.compute_loss({**batch, "action": batch["action"][..., :7]})
    with pytest.raises(SpecMismatchError, match="batch action shape"):
        policy.compute_loss({**batch, "action": batch["action"][:, :4]})
    with pytest.raises(SpecMismatchError, match="'action' key"):
        policy.compute_loss({k: v for k, v in batch.items() if k != "action"})

    obs = fake_observation(policy.observation_features)
    without = FeatureSet(s for s in obs.features if s.name != "cube_pos_m")
    policy.reset(0)
    with pytest.raises(SpecMismatchError, match="cube_pos_m"):
        policy.infer(Observation(obs.t_ns, without, {s.name: obs.values[s.name] for s in without},
                                 {s.name: obs.t_ns for s in without}))
    other = FeatureSet(FeatureSpec("cube_pos_m", (4,), "float32", "state", "m") if s.name == "cube_pos_m" else s
                       for s in obs.features)
    vals = {**obs.values, "cube_pos_m": np.zeros(4, np.float32)}
    with pytest.raises(SpecMismatchError, match="cube_pos_m shape"):
        policy.infer(Observation(obs.t_ns, other, vals, {k: obs.t_ns for k in vals}))


# --------------------------------------------------------------------------- checkpoints
CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    from robot_learning.core.frame import Observation
    from robot_learning.policies.checkpoint import load_policy

    ckpt, obs_path, out, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(int(sys.argv[5]))   # as the parent: same kernels, same sums
    policy = load_policy(ckpt)
    data = np.load(obs_path)
    t = int(data["t_ns"])
    feats = policy.observation_features
    obs = Observation(t, feats, {s.name: data[s.name] for s in feats}, {s.name: t for s in feats})
    policy.reset(seed)
    first = policy.infer(obs)
    second = policy.infer(obs)
    np.save(out, np.stack([first.actions, second.actions]))
""")


def _infer_twice(policy, obs, seed):
    policy.reset(seed)
    return np.stack([policy.infer(obs).actions, policy.infer(obs).actions])


def test_checkpoint_round_trip_in_a_fresh_process(vision_policy, tmp_path):
    policy = copy.deepcopy(vision_policy[0])
    with torch.no_grad():   # weights no fresh construction would reproduce
        g = torch.Generator().manual_seed(11)
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    ckpt = policy.save(tmp_path / "policy", {"note": "test"})
    assert sorted(x.name for x in ckpt.iterdir()) == ["config.json", "model.safetensors", "normalizer.safetensors"]
    doc = json.loads((ckpt / "config.json").read_text())
    assert doc["policy"] == "diffusion" and doc["meta"]["note"] == "test"

    obs = fake_observation(policy.observation_features)
    np.savez(tmp_path / "obs.npz", t_ns=obs.t_ns, **{k: np.asarray(v) for k, v in obs.values.items()})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": "egl"}
    r = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(tmp_path / "obs.npz"),
                        str(tmp_path / "child.npy"), "7", str(torch.get_num_threads())],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    child = np.load(tmp_path / "child.npy")

    loaded = load_policy(tmp_path)   # a run folder resolves to its policy/
    assert isinstance(loaded, DiffusionPolicy) and not loaded.training
    assert loaded.observation_features == policy.observation_features and loaded.config == policy.config
    for k, v in policy.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    here = _infer_twice(loaded, obs, 7)
    assert child.shape == (2, 4, 8)
    assert np.array_equal(child, here)
    assert np.array_equal(_infer_twice(policy, obs, 7), here)   # the saved policy itself
    assert not np.array_equal(child[0], child[1])               # the sampler's generator advances
    assert not np.array_equal(_infer_twice(loaded, obs, 8), here)


def test_broken_checkpoints_give_one_line_errors(state_policy, tmp_path):
    policy, _ = state_policy
    good = policy.save(tmp_path / "good")
    assert isinstance(load_policy(good), DiffusionPolicy)

    def clone(name):
        d = tmp_path / name
        shutil.copytree(good, d)
        return d

    def one_line_error(path, exc=ConfigError, match=None):
        with pytest.raises(exc, match=match) as e:
            load_policy(path)
        assert "\n" not in str(e.value) and str(e.value)
        return str(e.value)

    trunc = clone("truncated")
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[:len(data) // 2])
    one_line_error(trunc, ConfigError, "corrupt")
    no_cfg = clone("no_config")
    (no_cfg / "config.json").unlink()
    one_line_error(no_cfg, ConfigError, "config.json")
    no_model = clone("no_model")
    (no_model / "model.safetensors").unlink()
    one_line_error(no_model, ConfigError, "model.safetensors is missing")
    bad_json = clone("bad_json")
    (bad_json / "config.json").write_text("{not json")
    one_line_error(bad_json, ConfigError, "unreadable")
    one_line_error(tmp_path / "nowhere", ConfigError, "no such file")
    norm = clone("norm_lacks_key")
    arrays = load_numpy(str(norm / "normalizer.safetensors"))
    assert "obs.cube_pos_m.min" in arrays
    del arrays["obs.cube_pos_m.min"]
    save_numpy(arrays, str(norm / "normalizer.safetensors"))
    one_line_error(norm, SpecMismatchError, "missing.*obs.cube_pos_m.min")
    weights = clone("weights_lack_key")
    w = load_numpy(str(weights / "model.safetensors"))
    del w[sorted(w)[0]]
    save_numpy(w, str(weights / "model.safetensors"))
    one_line_error(weights, SpecMismatchError, "missing")


# --------------------------------------------------------------------------- executor
class CountingPolicy:
    """Wraps a policy, recording which ticks ``infer`` and ``observe`` were called at."""

    def __init__(self, policy):
        self.policy = policy
        self.observation_features, self.action_features = policy.observation_features, policy.action_features
        self.inferred, self.observed, self.chunks, self.resets = [], [], [], []

    def reset(self, seed=None):
        self.resets.append(seed)
        self.policy.reset(seed)

    def observe(self, observation):
        self.observed.append(observation.t_ns)
        self.policy.observe(observation)

    def infer(self, observation):
        self.inferred.append(observation.t_ns)
        chunk = self.policy.infer(observation)
        self.chunks.append(chunk)
        return chunk


@pytest.mark.parametrize("replan_every, infer_ticks", [(None, [0, 4, 8]), (3, [0, 3, 6, 9])])
def test_chunk_executor_infers_once_per_chunk(state_policy, replan_every, infer_ticks):
    policy, _ = state_policy
    assert policy.config.Ta == 4
    period = policy.control_period_ns
    base = sim_observation(policy.observation_features)
    wrapped = CountingPolicy(policy)
    clock = FakeClock()
    ex = ChunkExecutor(wrapped, clock, replan_every=replan_every, seed=3)
    ex.reset()
    assert wrapped.resets == [3]
    out = []
    for k in range(10):
        clock.set(k * period + 1000)
        out.append(ex.next_action(with_t(base, k * period)))
    assert wrapped.inferred == [k * period for k in infer_ticks]
    assert wrapped.observed == [k * period for k in range(10) if k not in infer_ticks]
    assert len(ex.latencies_s) == len(infer_ticks)
    assert policy.history.last_t_ns == 9 * period   # the history saw every tick
    for k, st in enumerate(out):
        start = max(i for i in infer_ticks if i <= k)
        chunk = wrapped.chunks[infer_ticks.index(start)]
        assert st.value == chunk.action(k - start)
        assert chunk.t_ns[k - start] == k * period == st.t_capture_ns
        assert st.t_receive_ns == k * period + 1000
    with pytest.raises(ConfigError):
        ChunkExecutor(wrapped, clock, replan_every=0)


def test_paired_difference_counts_discordant_seeds_and_its_interval_shrinks_with_pairs():
    from robot_learning.evaluation.metrics import paired_difference

    a = [True, False, False, True] * 25
    b = [True, True, False, False] * 25 + []
    d = paired_difference(a, b)
    assert d["difference"] == 0 and d["only_b"] == 25 and d["only_a"] == 25 and d["pairs"] == 100
    b2 = [True, True, False, True] * 25                    # b wins 25 more seeds, loses none
    d2 = paired_difference(a, b2)
    assert d2["difference"] == 0.25 and d2["ci95"][0] > 0.15
    d4 = paired_difference(a * 4, b2 * 4)
    assert d4["ci95"][1] - d4["ci95"][0] < d2["ci95"][1] - d2["ci95"][0]
