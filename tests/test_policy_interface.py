"""The policy interface: an abstract base with explicit capabilities, N episodes as sessions on one model, and
no attribute probing of policies anywhere in the package."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from robot_learning.errors import ConfigError
from robot_learning.policies.base import ActionChunk, Policy
from support.sim_recordings import lift_observations

ROOT = Path(__file__).resolve().parents[1]


class _Half(Policy):
    """Declares reset and observe but not infer."""

    def reset(self, seed=None):
        pass

    def observe(self, observation):
        pass


class _Echo(_Half):
    kind = "mirror"

    def __init__(self, features):
        self.observation_features = self.action_features = features
        self.meta = {}

    def infer(self, observation):
        v = observation.values[self.action_features.names[0]]
        return ActionChunk(np.asarray(v, np.float32)[None], np.array([observation.t_ns]), self.action_features)


def test_policy_is_abstract_and_capabilities_default_to_absent(lift_base):
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.policies.steered import SteeredPolicy
    from robot_learning.rl.vec_base import BatchedBase

    with pytest.raises(TypeError, match="abstract method infer"):
        _Half()
    base = load_policy(lift_base["run"])
    echo = _Echo(base.action_features)
    assert (echo.can_sample_chunks, echo.can_open_sessions, echo.can_batch, echo.can_reconnect) == (False,) * 4
    assert echo.sampler is None and echo.actions_per_chunk is None and dict(echo.last_timing) == {}
    with pytest.raises(NotImplementedError, match="a mirror policy samples one chunk per infer"):
        echo.sample_chunks(None, 4)
    with pytest.raises(ConfigError, match="a mirror policy has no sampler to choose"):
        echo.set_sampler("ddim")
    with pytest.raises(ConfigError, match="a mirror policy cannot be saved"):
        echo.save("/nonexistent")
    with pytest.raises(ConfigError, match="steering needs a base that samples several chunks at once; a mirror"):
        SteeredPolicy(echo, critic=None)
    with pytest.raises(ConfigError, match="a mirror policy runs one episode at a time"):
        BatchedBase(echo, 2)
    assert (base.can_sample_chunks, base.can_open_sessions, base.can_batch) == (True, True, True)
    assert base.actions_per_chunk == base.config.Ta == 8


def test_sessions_share_the_model_and_keep_their_own_episode(lift_base):
    """Two episodes interleaved on one model give exactly what each gives alone; no weights are copied."""
    from robot_learning.policies.checkpoint import load_policy

    model = load_policy(lift_base["run"])
    a_obs = lift_observations(model, n=9, seed=100_000)
    b_obs = lift_observations(model, n=9, seed=100_001)

    def alone(observations, seed):
        model.reset(seed)
        return [model.infer(o).actions if i % 8 == 0 else model.observe(o) for i, o in enumerate(observations)]

    want_a, want_b = alone(a_obs, 5), alone(b_obs, 6)
    sa, sb = model.new_session(5), model.new_session(6)
    assert sa.model is sb.model is model and sa.history is not sb.history
    got_a, got_b = [], []
    for i, (oa, ob) in enumerate(zip(a_obs, b_obs)):
        got_a.append(sa.infer(oa).actions if i % 8 == 0 else sa.observe(oa))
        got_b.append(sb.infer(ob).actions if i % 8 == 0 else sb.observe(ob))
    for w, g in zip(want_a + want_b, got_a + got_b):
        if w is None:
            assert g is None
        else:
            np.testing.assert_array_equal(w, g)
    assert sa.history.last_t_ns == int(a_obs[-1].t_ns) and sb.history.last_t_ns == int(b_obs[-1].t_ns)
    chunks = model.predict_chunks([sa, sb])   # one batched call over both histories
    assert chunks.shape == (2, 8, model.action_dim) and np.all(np.isfinite(chunks))


def test_the_package_does_not_probe_policies():
    """The interface is the type: no getattr / hasattr / inspect.signature on a policy object."""
    probe = re.compile(r"(getattr|hasattr)\([^)]*polic|inspect\.signature\([^)]*polic")
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
             for d in ("robot_learning", "hardware", "sim", "datasets") for p in sorted((ROOT / d).rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if probe.search(line)]
    assert found == []
