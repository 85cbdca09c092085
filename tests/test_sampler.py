"""Window sampler, dataset statistics and the normaliser, on a tiny recorded lift dataset."""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
import zarr
from safetensors.numpy import load_file, save_file
from torch.utils.data import DataLoader

from robot_learning.datasets.recorder import Recorder, schema_for
from robot_learning.datasets.sampler import WindowDataset, WindowSampler
from robot_learning.datasets.schema import ATTR
from robot_learning.datasets.scripted import record_expert_episodes
from robot_learning.datasets.stats import (STATS_ATTR, STATS_GROUP, Normalizer, compute_stats, load_stats,
                                           stored_stats)
from robot_learning.datasets.store import EpisodeStore
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.sim.env import SimEnv, SimEnvConfig


def _stats_attr(path):
    return zarr.open_group(str(path / STATS_GROUP), mode="r").attrs[STATS_ATTR]

To, Tp, Ta = 2, 16, 8
OBS = [("front_rgb", "front_rgb"), ("robot", "joint_pos_rad"), ("object_state", "cube_pos_m")]
ACTIONS = ["joint_pos_rad", "gripper_pos"]


def _env():
    # camera at 30 Hz, ticks at 10 Hz: image rows differ from tick rows
    return SimEnv(SimEnvConfig(task="lift", cameras=("front",), image_size=40, camera_fps=30.0))


def _record(env, store, episodes, seed0=0):
    rec = Recorder(store, env.sensors)
    record_expert_episodes(env, rec, range(seed0, seed0 + episodes), keep_failures=True)
    rec.shutdown()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("sampler") / "lift.zarr"
    env = _env()
    schema = schema_for(env.robot.state_features, env.sensors, env.robot.action_features, 10.0)
    _record(env, EpisodeStore.create(path, schema), 3)
    env.close()
    return path


@pytest.fixture(scope="module")
def sampler(dataset):
    return WindowSampler(EpisodeStore.open(dataset), OBS, ACTIONS, To, Tp, Ta)


def _expected(store, ep, t):
    """The window of tick t of episode ep, built directly from the store's arrays."""
    tk = store.ticks(ep)
    L = ep.length
    obs_rel = t - To + 1 + np.arange(To)
    act_rel = t - To + 1 + np.arange(Tp)
    oi, ai = np.clip(obs_rel, 0, L - 1), np.clip(act_rel, 0, L - 1)
    out = {f"obs.{f}": store.read(s, f, tk[f"{s}.row"][oi]) for s, f in OBS}
    out["action"] = np.concatenate([tk[f"action.{a}"][ai] for a in ACTIONS], axis=1)
    out["obs_is_pad"] = obs_rel < 0
    out["action_is_pad"] = (act_rel < 0) | (act_rel >= L)
    return out


def test_index_and_shapes(sampler):
    store = sampler.store
    eps = store.episodes
    lengths = [e.length for e in eps]
    last = [L - 1 - (Tp - To) + (Ta - 1) for L in lengths]  # Diffusion Policy: pad_after = Ta - 1
    assert len(sampler) == sum(t + 1 for t in last)
    idx = sampler.index
    assert len({tuple(r) for r in idx}) == len(idx)
    for e, t_last in enumerate(last):
        assert idx[idx[:, 0] == e, 1].tolist() == list(range(t_last + 1))
    item = sampler[7]
    assert item["obs.front_rgb"].shape == (To, 40, 40, 3) and item["obs.front_rgb"].dtype == np.uint8
    assert item["obs.joint_pos_rad"].shape == (To, 7) and item["obs.cube_pos_m"].shape == (To, 3)
    assert item["action"].shape == (Tp, 8) and item["action"].dtype == np.float32
    assert item["obs_is_pad"].shape == (To,) and item["action_is_pad"].shape == (Tp,)
    every = WindowSampler(store, OBS, ACTIONS, To, Tp, Ta, pad_after=Tp - To)
    assert len(every) == sum(lengths)  # every tick of every committed episode
    with pytest.raises(IndexError):
        sampler[len(sampler)]
    with pytest.raises(ConfigError, match="window sizes"):
        WindowSampler(store, OBS, ACTIONS, To=3, Tp=2)
    with pytest.raises(SpecMismatchError, match="feature"):
        WindowSampler(store, [("robot", "nope")])
    with pytest.raises(SpecMismatchError, match="feature"):
        WindowSampler(store, OBS, ["nope"])


def test_windows_equal_recorded_data_and_pad_at_episode_edges(dataset):
    store = EpisodeStore.open(dataset)
    s = WindowSampler(store, OBS, ACTIONS, To, Tp, Ta, pad_after=Tp - To)  # every tick, max padding
    eps = store.episodes
    for i in range(len(s)):
        item = s[i]
        ep = eps[item["episode_index"]]
        exp = _expected(store, ep, item["tick"])  # only rows of this episode: no boundary crossing
        for k, v in exp.items():
            np.testing.assert_array_equal(item[k], v, err_msg=f"item {i} {k}")
    for ep in eps:
        tk, L = store.ticks(ep), ep.length
        first = s[s.item_of(ep.index, 0)]
        assert first["obs_is_pad"].tolist() == [True, False]
        for k in ("obs.front_rgb", "obs.joint_pos_rad", "obs.cube_pos_m"):
            np.testing.assert_array_equal(first[k][0], first[k][1])  # first frame repeated
        np.testing.assert_array_equal(first["obs.front_rgb"][1], store.read("front_rgb", "front_rgb",
                                                                             tk["front_rgb.row"][:1])[0])
        assert first["action_is_pad"].tolist() == [True] + [False] * (Tp - 1)
        np.testing.assert_array_equal(first["action"][0], first["action"][1])
        last = s[s.item_of(ep.index, L - 1)]
        assert last["obs_is_pad"].tolist() == [False, False]
        n_pad = Tp - To
        assert last["action_is_pad"].tolist() == [False] * To + [True] * n_pad
        final = np.concatenate([tk[f"action.{a}"][-1] for a in ACTIONS])
        np.testing.assert_array_equal(last["action"][To - 1:], np.broadcast_to(final, (n_pad + 1, 8)))
        np.testing.assert_array_equal(last["action"][:To], np.concatenate(
            [tk[f"action.{a}"][-To:] for a in ACTIONS], axis=1))
    # the default sampler (pad_after = Ta - 1) returns the same windows for the ticks it indexes
    d = WindowSampler(store, OBS, ACTIONS, To, Tp, Ta)
    for i in (0, 5, len(d) - 1):
        a = d[i]
        b = s[s.item_of(a["episode_index"], a["tick"])]
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
        assert a["action_is_pad"].sum() <= Ta - 1


def test_bounded_cache_and_no_cache_return_the_same_items(sampler, dataset):
    store = EpisodeStore.open(dataset)
    chunk = 4 * 40 * 40 * 3
    small = WindowSampler(store, OBS, ACTIONS, To, Tp, Ta, cache_bytes=2 * chunk, chunk_frames=4)
    none = WindowSampler(store, OBS, ACTIONS, To, Tp, Ta, cache_bytes=0)
    order = np.random.default_rng(0).permutation(len(sampler))
    for i in order:
        ref = sampler[i]
        for other in (small, none):
            got = other[i]
            for k in ref:
                np.testing.assert_array_equal(got[k], ref[k])
        assert small.cache_info()["bytes"] <= 2 * chunk
    assert small.cache_info()["misses"] > small.cache_info()["chunks"]  # it evicted
    info = sampler.cache_info()
    assert info["hits"] > 0 and info["decoded_frames"] <= len(np.unique(np.concatenate(
        [store.ticks(e)["front_rgb.row"] for e in store.episodes])))  # each used frame decoded once


def test_missing_aligned_rows_are_filled_and_short_episodes_skipped(tmp_path):
    from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
    from robot_learning.datasets.schema import DatasetSchema, StreamSchema

    schema = DatasetSchema((StreamSchema("robot", FeatureSet([FeatureSpec("q", (2,), "float32", "state", "rad")])),
                            StreamSchema("cam", FeatureSet([FeatureSpec("img", (8, 8, 3), "uint8", FeatureKind.RGB,
                                                                        "srgb")]))),
                           FeatureSet([FeatureSpec("a", (1,), "float32", "action", "1")]), 10.0, image_codec="png")
    store = EpisodeStore.create(tmp_path / "s.zarr", schema)
    for L, cam_rows in ((5, [-1, -1, 0, -1, 1]), (2, [0, 0])):
        start = store.lengths()
        r0, c0 = start[1]["robot"], start[1]["cam"]
        n_img = max(cam_rows) + 1
        imgs = np.stack([np.full((8, 8, 3), 40 * (c0 + k), np.uint8) for k in range(n_img)])
        store.append_stream("robot", {"q": np.arange(2 * L, dtype=np.float32).reshape(L, 2)}, np.arange(L),
                            np.arange(L))
        store.append_stream("cam", {"img": imgs}, np.arange(n_img), np.arange(n_img))
        store.append_ticks(start[0] + np.arange(L), {"a": np.arange(L, dtype=np.float32)[:, None]},
                           np.zeros(L, bool), np.zeros(L, bool),
                           {"robot": r0 + np.arange(L), "cam": [c0 + r if r >= 0 else -1 for r in cam_rows]})
        store.commit_episode(start)
    s = WindowSampler(EpisodeStore.open(tmp_path / "s.zarr"), ["img", "q"], None, To=2, Tp=4, Ta=2)
    assert s.filled_rows == {"cam": 3, "robot": 0}
    # last indexed tick: L-1-(Tp-To)+pad_after: episode 0 (L=5): 3; episode 1 (L=2): 0
    assert s.index.tolist() == [[0, 0], [0, 1], [0, 2], [0, 3], [1, 0]]
    img = [s[i]["obs.img"][:, 0, 0, 0].tolist() for i in range(5)]
    assert img == [[0, 0], [0, 0], [0, 0], [0, 0], [80, 80]]  # leading -1: first aligned frame; -1: held
    wide = WindowSampler(s.store, ["img"], None, To=2, Tp=4, Ta=2, pad_after=2)
    assert wide[wide.item_of(0, 4)]["obs.img"][:, 0, 0, 0].tolist() == [0, 40]
    assert len(WindowSampler(s.store, ["q"], None, To=2, Tp=6, Ta=1)) == 1  # L=2 episode too short


def test_stats_stored_and_recomputed_after_more_episodes(dataset, tmp_path):
    path = tmp_path / "copy.zarr"
    shutil.copytree(dataset, path)
    store = EpisodeStore.open(path)
    assert stored_stats(store) is None
    stats = compute_stats(store, path_for_writing=path)  # read-only handle: written via a fresh one
    acts = np.concatenate([store.ticks(e)["action.joint_pos_rad"] for e in store.episodes])
    np.testing.assert_allclose(stats["action.joint_pos_rad"]["min"], acts.min(0))
    np.testing.assert_allclose(stats["action.joint_pos_rad"]["max"], acts.max(0))
    np.testing.assert_allclose(stats["action.joint_pos_rad"]["mean"], acts.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stats["action.joint_pos_rad"]["q99"], np.quantile(acts.astype(np.float64), 0.99, 0))
    rows = np.concatenate([store.ticks(e)["object_state.row"] for e in store.episodes])
    cube = store.read("object_state", "cube_pos_m", rows)
    np.testing.assert_allclose(stats["obs.cube_pos_m"]["std"], cube.astype(np.float64).std(0), rtol=1e-6)
    assert "obs.front_rgb" not in stats and set(stats["obs.ee_quat_wxyz"]) == {"min", "max", "mean", "std",
                                                                               "q01", "q99"}
    raw = _stats_attr(path)
    assert raw["episode_count"] == 3 and raw["features"]["action.gripper_pos"]["count"] == len(acts)
    json.dumps(raw)
    again = stored_stats(EpisodeStore.open(path))
    assert again is not None and np.array_equal(again["obs.cube_pos_m"]["q01"], stats["obs.cube_pos_m"]["q01"])

    env = _env()
    appender = EpisodeStore.open(path, mode="a")
    _record(env, appender, 1, seed0=10)
    env.close()
    reader = EpisodeStore.open(path)
    assert len(reader.episodes) == 4 and stored_stats(reader) is None  # stale: episode count changed
    fresh = load_stats(reader, path_for_writing=path)
    acts4 = np.concatenate([reader.ticks(e)["action.joint_pos_rad"] for e in reader.episodes])
    np.testing.assert_allclose(fresh["action.joint_pos_rad"]["max"], acts4.max(0))
    assert _stats_attr(path)["episode_count"] == 4
    assert stored_stats(EpisodeStore.open(path)) is not None
    # stats live outside the root metadata: an episode commit never drops them, and a stats
    # write never drops a committed episode
    compute_stats(appender, path_for_writing=path)
    assert stored_stats(appender) is not None and len(EpisodeStore.open(path).root.attrs[ATTR]["episodes"]) == 4


def test_normalizer_round_trip_ranges_and_strict_errors(sampler, tmp_path):
    store = sampler.store
    stats = sampler.output_stats(compute_stats(store))
    modes = {"action": "minmax", "obs.joint_pos_rad": "meanstd", "obs.cube_pos_m": "quantile"}
    norm = Normalizer(modes, stats)
    ticks = [store.ticks(e) for e in store.episodes]
    acts = np.concatenate([np.concatenate([t[f"action.{a}"] for a in ACTIONS], axis=1) for t in ticks])
    y = norm.normalize("action", acts)
    assert y.dtype == np.float32 and y.min() >= -1 - 1e-6 and y.max() <= 1 + 1e-6
    const = (stats["action"]["max"] - stats["action"]["min"]) <= 1e-4
    live = ~const
    np.testing.assert_allclose(y[:, live].min(0), -1, atol=1e-6)   # min -> -1, max -> +1
    np.testing.assert_allclose(y[:, live].max(0), 1, atol=1e-6)
    np.testing.assert_allclose(norm.unnormalize("action", y), acts, atol=1e-5)
    q = store.read("robot", "joint_pos_rad", np.concatenate([t["robot.row"] for t in ticks]))
    np.testing.assert_allclose(norm.unnormalize("obs.joint_pos_rad", norm.normalize("obs.joint_pos_rad", q)), q,
                               atol=1e-5)
    c = store.read("object_state", "cube_pos_m", np.concatenate([t["object_state.row"] for t in ticks]))
    yc = norm.normalize("obs.cube_pos_m", c)
    assert yc.min() >= -1 and yc.max() <= 1  # quantile mode clips
    lo, hi = stats["obs.cube_pos_m"]["q01"], stats["obs.cube_pos_m"]["q99"]
    inside = np.all((c >= lo) & (c <= hi), axis=1)
    np.testing.assert_allclose(norm.unnormalize("obs.cube_pos_m", yc[inside]), c[inside], atol=1e-5)
    # batched torch tensors, float32 and float64
    for dt in (torch.float32, torch.float64):
        t = torch.as_tensor(sampler[3]["action"], dtype=dt)[None].repeat(4, 1, 1)
        out = norm.normalize("action", t)
        assert out.dtype == dt and out.shape == (4, Tp, 8)
        torch.testing.assert_close(norm.unnormalize("action", out), t, atol=1e-5, rtol=0)
        np.testing.assert_allclose(out.numpy(), norm.normalize("action", t.numpy()), atol=1e-6)
    # constant dimensions map to 0 without dividing by zero, and stay invertible
    k = Normalizer({"x": "minmax", "z": "meanstd"}, {"x": {"min": [1.0, 0.0], "max": [1.0, 2.0]},
                                                     "z": {"mean": [3.0], "std": [0.0]}})
    np.testing.assert_array_equal(k.normalize("x", np.array([1.0, 2.0])), [0.0, 1.0])
    np.testing.assert_array_equal(k.normalize("z", np.array([[3.0]])), [[0.0]])
    np.testing.assert_array_equal(k.unnormalize("x", k.normalize("x", np.array([1.5, 0.5]))), [1.5, 0.5])
    # strict
    with pytest.raises(SpecMismatchError, match="normalizer key"):
        norm.normalize("obs.gripper_pos", np.zeros(1))
    with pytest.raises(SpecMismatchError, match="shape"):
        norm.normalize("action", np.zeros((Tp, 7)))
    with pytest.raises(SpecMismatchError, match="shape"):
        norm.unnormalize("action", torch.zeros(8, 1))
    with pytest.raises(SpecMismatchError, match="an entry for 'obs.nope'"):
        Normalizer({"obs.nope": "minmax"}, stats)
    with pytest.raises(ConfigError, match="mode"):
        Normalizer({"action": "zscore"}, stats)
    with pytest.raises(SpecMismatchError, match="missing"):
        Normalizer({"x": "quantile"}, {"x": {"min": [0.0], "max": [1.0]}})
    # persistence: safetensors arrays + JSON config, strict on load
    arrays, config = norm.state_dict()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    save_file(arrays, str(tmp_path / "norm.safetensors"), metadata={"normalizer": json.dumps(config)})
    back = Normalizer.from_state_dict(load_file(str(tmp_path / "norm.safetensors")), json.loads(json.dumps(config)))
    assert back.modes == norm.modes
    for key, x in (("action", acts), ("obs.cube_pos_m", c)):
        np.testing.assert_array_equal(back.normalize(key, x), norm.normalize(key, x))
    with pytest.raises(SpecMismatchError, match="missing"):
        Normalizer.from_state_dict({k: v for k, v in arrays.items() if k != "action.max"}, config)
    with pytest.raises(SpecMismatchError, match="unexpected"):
        Normalizer.from_state_dict({**arrays, "obs.extra.min": np.zeros(1)}, config)
    with pytest.raises(SpecMismatchError, match="shape"):
        Normalizer.from_state_dict({**arrays, "action.min": np.zeros(7)}, config)


def _batches(ds, order, workers, context=None):
    return list(DataLoader(ds, batch_size=8, sampler=list(order), num_workers=workers,
                           multiprocessing_context=context))


def test_dataloader_workers_yield_the_same_items(dataset):
    s = WindowSampler(EpisodeStore.open(dataset), OBS, ACTIONS, To, Tp, Ta)
    clone = pickle.loads(pickle.dumps(s))  # what a spawned worker receives: no zarr handle
    assert clone._store is None and not clone._cache
    np.testing.assert_array_equal(clone[4]["obs.front_rgb"], s[4]["obs.front_rgb"])
    ds = WindowDataset(s)
    order = np.random.default_rng(1).permutation(len(s))
    a, b = _batches(ds, order, 0), _batches(ds, order, 2)  # workers forked (Linux default)
    c = _batches(ds, order[:16], 1, "spawn")  # a spawned worker gets the pickled sampler
    assert len(a) == len(b) == -(-len(s) // 8)
    for x, y in [*zip(a, b), *zip(a, c)]:
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), k
    first = a[0]
    assert first["obs.front_rgb"].shape == (8, To, 3, 40, 40) and first["obs.front_rgb"].dtype == torch.uint8
    np.testing.assert_array_equal(first["obs.front_rgb"][0].permute(0, 2, 3, 1).numpy(),
                                  s[order[0]]["obs.front_rgb"])
    assert first["action"].dtype == torch.float32 and first["action_is_pad"].dtype == torch.bool
    assert first["tick"].tolist() == [s[i]["tick"] for i in order[:8]]
    hwc = WindowDataset(s, image_layout="hwc")[0]["obs.front_rgb"]
    assert hwc.shape == (To, 40, 40, 3)
