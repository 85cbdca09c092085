"""How QueuedChunkSource merges a new action chunk into its queue (queue / ensemble / rtc), and its worker."""

from __future__ import annotations

import time

import numpy as np
import pytest

from robot_learning.core import FakeClock, FeatureKind, FeatureSet, FeatureSpec, Observation
from robot_learning.deploy.chunk_queue import QueuedChunkSource
from robot_learning.errors import ConfigError
from robot_learning.policies.base import ActionChunk

P = 100_000_000  # 10 Hz
ACT = FeatureSet([FeatureSpec("joint_pos_rad", (1,), "float32", FeatureKind.ACTION, "rad", ("j",))])
OBS = FeatureSet([FeatureSpec("joint_pos_rad", (1,), "float32", FeatureKind.STATE, "rad", ("j",))])


class RampPolicy:
    """Chunk k (from 0) predicts 10 * k + i for its step i: plans that disagree by a known amount."""

    observation_features, action_features = OBS, ACT

    def __init__(self, ta=8, delay_s=0.0):
        self.ta, self.delay_s, self.calls, self.observed = ta, delay_s, 0, 0

    def reset(self, seed=None):
        self.calls = 0

    def observe(self, obs):
        self.observed += 1

    def infer(self, obs):
        time.sleep(self.delay_s)
        k, self.calls = self.calls, self.calls + 1
        acts = (10.0 * k + np.arange(self.ta, dtype=np.float32)).reshape(-1, 1)
        return ActionChunk(acts, int(obs.t_ns) + P * np.arange(self.ta, dtype=np.int64), ACT)


def pairs(first_tick, values):
    return [((first_tick + i) * P, np.array([float(v)])) for i, v in enumerate(values)]


def src(merge, **kw):
    return QueuedChunkSource(RampPolicy(), FakeClock(), P, merge=merge, **kw)


def test_queue_replaces_from_the_new_chunks_first_tick():
    out = src("queue").merged(pairs(0, range(8)), pairs(3, [100] * 8))
    assert [t // P for t, _ in out] == list(range(11))
    assert [v[0] for _, v in out] == [0, 1, 2] + [100] * 8


def test_ensemble_is_the_weighted_mean_oldest_first():
    s = src("ensemble", ensemble_k=0.5)
    q = s.merged([], pairs(0, [0] * 4))
    q = s.merged(q, pairs(1, [10] * 4))
    w = np.exp(-0.5 * np.arange(2))
    expect = (w[0] * 0 + w[1] * 10) / w.sum()
    assert [t // P for t, _ in q] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([v[0] for _, v in q], [0, expect, expect, expect, 10])


def test_rtc_keeps_committed_actions_and_blends_the_rest_without_a_jump():
    s = src("rtc")
    old = pairs(0, [0] * 8)                         # the plan being executed: ticks 0..7 at 0
    new = pairs(2, [10] * 8)                        # a new plan from tick 2 on, computed in 1.5 periods
    out = dict((t // P, v[0]) for t, v in s.merged(old, new, latency_s=0.15))
    assert out[0] == out[1] == 0
    assert out[2] == 0 and out[3] == 0               # committed: due while the new chunk was computed
    blend = [out[t] for t in range(4, 8)]            # the rest of the overlap ramps from old to new
    assert all(0 < b < 10 for b in blend) and blend == sorted(blend)
    assert out[8] == out[9] == 10                    # then the new plan
    steps = np.diff([out[t] for t in range(10)])
    assert steps.max() <= 10 / 5 + 1e-9              # no jump where the plans meet (queue mode jumps by 10)


def test_unknown_merge_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="chunk merge mode"):
        src("bogus")


@pytest.mark.parametrize("merge", ["queue", "ensemble", "rtc"])
def test_worker_fills_the_queue_and_drops_actions_whose_tick_passed(merge):
    """A policy that answers within the period (20 ms of inference, then the next tick): every tick after the
    first has its action. The test waits for the worker, not for the clock, so a busy host changes nothing."""
    clock = FakeClock()
    policy = RampPolicy(delay_s=0.02)
    s = QueuedChunkSource(policy, clock, P, merge=merge)
    s.reset()
    try:
        got = []
        for k in range(30):
            obs = Observation(k * P, OBS, {"joint_pos_rad": np.zeros(1, np.float32)}, {"joint_pos_rad": k * P})
            a = s.next_action(obs)
            got.append(None if a is None else float(a.value["joint_pos_rad"][0]))
            assert s.wait_handled(k + 1, timeout_s=30)   # the worker answers within the "period"
        assert got[0] is None                    # the first chunk is not there yet: nothing to execute
        assert all(g is not None for g in got[1:]), got
        assert s.stale_dropped >= 1              # the first chunk's tick-0 action arrived after tick 0
        assert policy.calls >= (29 if merge == "ensemble" else 2)
        if merge != "ensemble":
            assert policy.observed > 0           # between chunks the policy still sees every tick
    finally:
        s.close()


class HistoryPolicy(RampPolicy):
    """Records the tick of every observation it is given, observe or infer."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.seen: list[int] = []

    def observe(self, obs):
        super().observe(obs)
        self.seen.append(int(obs.t_ns) // P)

    def infer(self, obs):
        self.seen.append(int(obs.t_ns) // P)
        return super().infer(obs)


@pytest.mark.parametrize("merge", ["queue", "ensemble"])
def test_a_slow_policy_still_sees_every_tick_in_order(merge):
    """Inference takes 2.5 periods: the ticks that arrive meanwhile reach the policy's history afterwards, in order
    (a history with gaps is not what the policy was trained on)."""
    policy = HistoryPolicy(delay_s=0.05)
    s = QueuedChunkSource(policy, FakeClock(), P, merge=merge)
    s.reset()
    try:
        for k in range(40):
            s.next_action(Observation(k * P, OBS, {"joint_pos_rad": np.zeros(1, np.float32)}, {"joint_pos_rad": k * P}))
            time.sleep(0.02)
        assert s.wait_handled(40, timeout_s=60)
    finally:
        s.close()
    assert policy.seen == list(range(40))
    assert policy.calls >= 2
