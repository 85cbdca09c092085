import numpy as np
import pytest

from robot_learning.core import (Action, FakeClock, FeatureKind, FeatureSet, FeatureSpec, MonotonicClock,
                                 Observation, Stamped, flat_keys, flatten, unflatten)
from robot_learning.errors import ConfigError, SpecMismatchError


def test_fake_clock_moves_only_when_told():
    c = FakeClock(100)
    assert c.now_ns() == 100
    c.sleep_until_ns(50)  # in the past: no change
    assert c.now_ns() == 100
    c.sleep_until_ns(1_000)
    assert c.now_ns() == 1_000
    c.advance(5)
    assert c.now_ns() == 1_005
    with pytest.raises(ValueError):
        c.set(10)


def test_monotonic_clock_sleeps_until_absolute_deadline():
    c = MonotonicClock()
    t0 = c.now_ns()
    deadline = t0 + 3_000_000
    c.sleep_until_ns(deadline)
    assert c.now_ns() >= deadline  # never early


def test_stamped_rejects_receive_before_capture():
    s = Stamped(1, t_capture_ns=10, t_receive_ns=15)
    assert s.latency_ns == 5 and s.age_ns(30) == 20
    with pytest.raises(ValueError, match="t_receive_ns >= t_capture_ns"):
        Stamped(1, t_capture_ns=10, t_receive_ns=5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="Bad Name", shape=(3,), dtype="float32", kind="state", units="rad"), "feature name"),
    (dict(name="img", shape=(4, 4), dtype="uint8", kind="rgb", units="srgb"), r"shape \(H, W, 3\)"),
    (dict(name="d", shape=(4, 4), dtype="float32", kind="depth", units="mm"), "float32 metres"),
    (dict(name="q", shape=(3, 2), dtype="float32", kind="state", units="rad"), r"shape \(n,\)"),
    (dict(name="q", shape=(3,), dtype="float32", kind="state", units=""), "unit string"),
    (dict(name="q", shape=(3,), dtype="float32", kind="state", units="rad", names=("a", "b")), "one name"),
    (dict(name="q", shape=(3,), dtype="nope", kind="state", units="rad"), "numpy dtype"),
])
def test_feature_spec_validation_says_expected_and_found(kwargs, match):
    with pytest.raises(ConfigError, match=match) as e:
        FeatureSpec(**kwargs)
    assert "expected" in str(e.value) and "found" in str(e.value)


def test_feature_check_is_strict():
    s = FeatureSpec("q", (3,), "float32", FeatureKind.STATE, "rad")
    s.check(np.zeros(3, np.float32))
    with pytest.raises(SpecMismatchError, match=r"expected \(3,\), found \(4,\)"):
        s.check(np.zeros(4, np.float32))
    with pytest.raises(SpecMismatchError, match="dtype"):
        s.check(np.zeros(3, np.float64))
    fs = FeatureSet([s])
    with pytest.raises(SpecMismatchError, match="missing"):
        fs.check({})
    with pytest.raises(ConfigError, match="unique"):
        FeatureSet([s, s])
    assert FeatureSet.from_json(fs.to_json()) == fs


def _features():
    obs = FeatureSet([
        FeatureSpec("joint_pos_rad", (2,), "float64", FeatureKind.STATE, "rad", ("a", "b")),
        FeatureSpec("wrist", (4, 5, 3), "uint8", FeatureKind.RGB, "srgb"),
        FeatureSpec("wrist_depth", (4, 5), "float32", FeatureKind.DEPTH, "m"),
        FeatureSpec("pad", (2, 2, 3), "float32", FeatureKind.TACTILE, "N"),
        FeatureSpec("task", (), "str", FeatureKind.LANGUAGE, "text"),
    ])
    act = FeatureSet([
        FeatureSpec("joint_pos_rad", (2,), "float64", FeatureKind.ACTION, "rad"),
        FeatureSpec("gripper_pos", (1,), "float32", FeatureKind.ACTION, "1"),
    ])
    return obs, act


def _obs(obs_f, t=1000):
    rng = np.random.default_rng(0)
    values = {"joint_pos_rad": rng.normal(size=2), "wrist": rng.integers(0, 255, (4, 5, 3), dtype=np.uint8),
              "wrist_depth": rng.random((4, 5), dtype=np.float32), "pad": rng.random((2, 2, 3), dtype=np.float32),
              "task": "pick up the cube"}
    return Observation(t_ns=t, features=obs_f, values=values, t_capture_ns={k: t - 7 for k in values})


def test_observation_typed_views_and_immutability():
    obs_f, _ = _features()
    obs = _obs(obs_f)
    assert set(obs.state) == {"joint_pos_rad"} and set(obs.rgb) == {"wrist"}
    assert set(obs.depth) == {"wrist_depth"} and set(obs.tactile) == {"pad"}
    assert obs.language["task"] == "pick up the cube"
    assert obs.max_age_ns() == 7
    with pytest.raises(ValueError):
        obs.rgb["wrist"][0, 0, 0] = 1  # read-only: sinks cannot alter what was observed
    with pytest.raises(SpecMismatchError, match="missing"):
        Observation(t_ns=0, features=obs_f, values={}, t_capture_ns={})


def test_flat_layout_roundtrip_is_exact_and_strict():
    obs_f, act_f = _features()
    obs = _obs(obs_f)
    action = Action({"joint_pos_rad": np.array([0.1, -0.2]), "gripper_pos": np.array([1.0], np.float32)})
    flat = flatten(obs, action)
    assert [k for k, _, _ in flat_keys(obs_f, act_f)] == list(flat)
    assert "observation.rgb.wrist" in flat and "observation.rgb.wrist.t_capture_ns" in flat
    assert "action.gripper_pos" in flat and flat["t_ns"] == 1000
    obs2, action2 = unflatten(obs_f, act_f, flat)
    assert action2 == action
    for k in obs.values:
        if k == "task":
            assert obs2.values[k] == obs.values[k]
        else:
            np.testing.assert_array_equal(obs2.values[k], obs.values[k])
    assert dict(obs2.t_capture_ns) == dict(obs.t_capture_ns)
    broken = dict(flat)
    del broken["action.gripper_pos"]
    with pytest.raises(SpecMismatchError, match="missing"):
        unflatten(obs_f, act_f, broken)


def test_action_vector_roundtrip():
    _, act_f = _features()
    a = Action.from_vector(act_f, np.array([1.0, 2.0, 0.5]))
    assert a["gripper_pos"].dtype == np.float32
    np.testing.assert_allclose(a.vector(act_f), [1.0, 2.0, 0.5])
    with pytest.raises(SpecMismatchError, match=r"expected \(3,\)"):
        Action.from_vector(act_f, np.zeros(4))
