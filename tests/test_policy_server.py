"""Policy server and standalone client over a real loopback socket: spec / reset / observe / infer
equal to the local policy, health, bearer tokens, the strict codec (fuzzed, pickle never loaded),
the client file importable without robot_learning or torch, and `serve` stopped by Ctrl-C."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as raw_connect

from robot_learning.cli.deploy_configs import ServeConfig
from robot_learning.core.features import FeatureSet, FeatureSpec
from robot_learning.datasets.dense import DenseWindows
from robot_learning.datasets.store import EpisodeStore
from robot_learning.deploy import client as client_module
from robot_learning.deploy.client import (DTYPES, AuthError, InferReply, PolicyClient, PolicyConnectionError,
                                          ProtocolError, ServerError, decode, encode, health)
from robot_learning.deploy.server import PolicyServer
from robot_learning.errors import ConfigError
from robot_learning.evaluation.config import SamplingConfig
from robot_learning.policies.base import ActionChunk, Policy
from robot_learning.policies.checkpoint import load_policy
from support.policies import fake_observation, make_policy
from support.sim_recordings import record_lift

MAX_BYTES = 1 << 20        # the test servers' message limit
KNOWN_TYPES = ("spec", "reset", "observe", "infer")
WIRE_INT = st.integers(-(1 << 63), (1 << 64) - 1)      # what msgpack can carry


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A training-run folder whose policy/ is a tiny state diffusion policy trained for 2 steps."""
    root = tmp_path_factory.mktemp("serve")
    store = EpisodeStore.open(record_lift(root / "lift.zarr", seeds=(0,), cameras=(), tactile=False))
    torch.manual_seed(0)
    policy, sampler = make_policy(store, "state")
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    windows = DenseWindows(sampler)
    for step in range(2):
        loss = policy.compute_loss(windows.batch(torch.arange(step, len(sampler), 4)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.save(root / "run" / "policy", {"note": "served"})
    return root / "run"


@pytest.fixture(scope="module")
def served(run_dir):
    server = PolicyServer(load_policy(run_dir), port=0, max_message_bytes=MAX_BYTES)
    port = server.start()
    yield server, f"ws://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(scope="module")
def local(run_dir):
    return load_policy(run_dir)


def tick(obs, t_ns):
    return {"values": dict(obs.values), "t_ns": t_ns}


# --------------------------------------------------------------------------- the served policy
def test_spec_reset_and_chunks_equal_the_local_policy(served, local):
    _, url = served
    obs = [fake_observation(local.observation_features, t_ns=1_000_000_000 + i * 100_000_000, seed=i)
           for i in range(4)]
    with PolicyClient(url) as pc:
        spec = pc.spec()
        assert spec["policy"] == "diffusion" and spec["control_period_ns"] == 100_000_000
        assert FeatureSet.from_json(spec["observation_features"]) == local.observation_features
        assert FeatureSet.from_json(spec["action_features"]) == local.action_features
        assert spec["meta"]["note"] == "served" and spec["meta"]["train_seeds"]

        def remote_episode(seed):
            pc.reset(seed)
            first = pc.infer(dict(obs[0].values), obs[0].t_ns)
            pc.observe(dict(obs[1].values), obs[1].t_ns)         # a tick between chunks
            second = pc.infer(dict(obs[2].values), obs[2].t_ns, {k: obs[2].t_ns - 5 for k in obs[2].values})
            return first, second

        first, second = remote_episode(3)
        local.reset(3)
        want_first = local.infer(obs[0])
        local.observe(obs[1])
        want_second = local.infer(obs[2])
        for got, want in ((first, want_first), (second, want_second)):
            assert isinstance(got, InferReply) and got.actions.dtype == np.float32 and got.t_ns.dtype == np.int64
            np.testing.assert_allclose(got.actions, want.actions, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(got.t_ns, want.t_ns)
            assert set(got.server_timing) == {"infer_ms", "recv_to_send_ms"}
            assert 0 < got.server_timing["infer_ms"] <= got.server_timing["recv_to_send_ms"] < got.round_trip_ms
        assert not np.allclose(first.actions, second.actions)
        # the same seed gives the same chunks; an error reply keeps the connection open
        again, _ = remote_episode(3)
        np.testing.assert_array_equal(again.actions, first.actions)
        bad = {**obs[0].values, "joint_pos_rad": np.asarray(obs[0].values["joint_pos_rad"], np.float64)}
        with pytest.raises(ServerError, match="joint_pos_rad: expected shape .* float32, found .* float64"):
            pc.infer(bad, obs[0].t_ns)
        with pytest.raises(ServerError, match="non-finite"):
            pc.infer({**obs[0].values, "ee_pos_m": np.full(3, np.nan, np.float32)}, obs[0].t_ns)
        with pytest.raises(ServerError, match=r"missing \['cube_pos_m'\]"):
            pc.infer({k: v for k, v in obs[0].values.items() if k != "cube_pos_m"}, obs[0].t_ns)
        pc.reset(3)
        np.testing.assert_array_equal(pc.infer(dict(obs[0].values), obs[0].t_ns).actions, first.actions)
    # a new connection resets the policy's history (a new session)
    with PolicyClient(url) as pc:
        pc.reset(3)
        np.testing.assert_array_equal(pc.infer(dict(obs[0].values), obs[0].t_ns).actions, first.actions)


def test_health_endpoint(served):
    _, url = served
    with PolicyClient(url) as pc:
        pc.spec()
        h = health(url)
        assert h["status"] == "ok" and h["policy"] == "diffusion" and h["clients"] >= 1
        assert h["uptime_s"] > 0 and h["requests"] >= 1 and h["protocol"] == 1


def test_connection_failures_and_reconnect(local):
    server = PolicyServer(local, port=0)
    url = f"ws://127.0.0.1:{server.start()}"
    pc = PolicyClient(url, timeout_s=2.0).connect()
    assert pc.spec()["policy"] == "diffusion"
    server.stop()
    with pytest.raises(PolicyConnectionError):
        pc.spec()
    assert not pc.connected
    with pytest.raises(PolicyConnectionError, match="cannot connect"):
        pc.connect()
    with pytest.raises(PolicyConnectionError, match="not connected"):
        pc.spec()
    with pytest.raises(PolicyConnectionError):
        health(url)
    server.start()                      # the same port again
    try:
        assert pc.connect().spec()["policy"] == "diffusion"
        pc.close()
    finally:
        server.stop()


def test_token_is_required_and_checked(local, monkeypatch):
    server = PolicyServer(local, host="127.0.0.1", port=0, token="s3cret-token")
    url = f"ws://127.0.0.1:{server.start()}"
    try:
        for token in (None, "wrong", "s3cret-token-but-longer"):
            with pytest.raises(AuthError, match="401"):
                PolicyClient(url, token=token).connect()
            with pytest.raises(AuthError):
                health(url, token=token)
        with PolicyClient(url, token="s3cret-token") as pc:
            assert pc.spec()["policy"] == "diffusion"
        assert health(url, token="s3cret-token")["status"] == "ok"
    finally:
        server.stop()
    for host in ("0.0.0.0", "::", "192.168.1.20", "robot-box.local"):
        with pytest.raises(ConfigError, match=f"bound to {host} needs --token"):
            PolicyServer(local, host=host)
    with pytest.raises(ConfigError, match="non-empty"):
        PolicyServer(local, host="0.0.0.0", token=" ")
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        PolicyServer(local, host=host)        # constructing binds nothing
    PolicyServer(local, host="0.0.0.0", token="s3cret-token")
    # the CLI config: the token from the environment, never in its repr
    monkeypatch.delenv("ROBOT_LEARNING_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="needs --token"):
        ServeConfig(checkpoint="run", host="0.0.0.0")
    monkeypatch.setenv("ROBOT_LEARNING_TOKEN", "from-env")
    cfg = ServeConfig(checkpoint="run", host="0.0.0.0")
    assert cfg.token == "from-env" and "from-env" not in repr(cfg)
    with pytest.raises(ConfigError, match="--sampler"):
        ServeConfig(checkpoint="run", sampling=SamplingConfig(sampler="dpm"))
    with pytest.raises(ConfigError, match="--device: expected auto, cpu, cuda or cuda:N, found 'gpu'"):
        ServeConfig(checkpoint="run", device="gpu")
    assert ServeConfig(checkpoint="run").device == "auto"


class _InstructionPolicy(Policy):
    """A non-diffusion policy with a language feature: actions = state + len(instruction)."""

    kind = "echo"
    observation_features = FeatureSet([FeatureSpec("q", (2,), "float32", "state", "rad"),
                                       FeatureSpec("task", (), "str", "language", "1")])
    action_features = FeatureSet([FeatureSpec("cmd", (2,), "float32", "action", "rad")])

    def __init__(self):
        self.meta, self.seeds = {}, []

    def reset(self, seed=None):
        self.seeds.append(seed)

    def observe(self, obs):
        pass

    def infer(self, obs):
        if obs["task"] == "explode":
            raise RuntimeError("policy failed")
        if obs["task"] == "stall":
            time.sleep(1.0)
        a = (obs["q"] + len(obs["task"])).astype(np.float32)[None]
        return ActionChunk(a, np.asarray([obs.t_ns], np.int64), self.action_features)


def test_language_features_and_a_failing_policy():
    policy = _InstructionPolicy()
    with pytest.raises(ConfigError, match="expected a robot_learning Policy, found object"):
        PolicyServer(object(), port=0)
    with PolicyServer(policy, port=0) as server, \
            PolicyClient(f"ws://127.0.0.1:{server.port}") as pc:
        assert pc.spec()["control_period_ns"] is None
        r = pc.infer({"q": np.array([1, 2], np.float32), "task": "lift it"}, 7)
        np.testing.assert_array_equal(r.actions, [[8, 9]])
        assert r.t_ns.tolist() == [7]
        with pytest.raises(ServerError, match="RuntimeError: policy failed"):
            pc.infer({"q": np.zeros(2, np.float32), "task": "explode"}, 8)
        with pytest.raises(ServerError, match="task: expected a str"):
            pc.infer({"q": np.zeros(2, np.float32), "task": np.zeros(2, np.float32)}, 8)
        assert pc.spec()["samples"] is False                # no sample_chunks: one chunk per infer
        with pytest.raises(ServerError, match="samples one chunk per infer"):
            pc.infer({"q": np.zeros(2, np.float32), "task": ""}, 8, samples=4)
        pc.reset(seed=1)
        pc.reset()
        assert policy.seeds[-2:] == [1, None]               # every policy takes reset(seed=None)
        assert pc.infer({"q": np.zeros(2, np.float32), "task": ""}, 9).actions.tolist() == [[0, 0]]
        pc.timeout_s = 0.3          # no reply in time: the client closes; connect() again is a new session
        with pytest.raises(PolicyConnectionError, match="no reply within 0.3 s"):
            pc.infer({"q": np.zeros(2, np.float32), "task": "stall"}, 10)
        assert not pc.connected
        pc.timeout_s = 5.0
        assert pc.connect().infer({"q": np.ones(2, np.float32), "task": "a"}, 11).actions.tolist() == [[2, 2]]


# --------------------------------------------------------------------------- the codec
WIRE_DTYPES = [np.dtype(d).newbyteorder(o) for d in DTYPES for o in "<>"]


@settings(max_examples=150, deadline=None)
@given(a=hnp.arrays(st.sampled_from(WIRE_DTYPES), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)),
       step=st.integers(1, 2))
def test_codec_round_trips_arrays(a, step):
    a = a[::step] if a.ndim else a                      # non-contiguous views too
    b = decode(encode({"type": "x", "v": [a, {"w": a}], "s": "é", "n": None, "i": -(1 << 63)}))
    for got in (b["v"][0], b["v"][1]["w"]):
        assert got.dtype.name == a.dtype.name and got.dtype.isnative and got.shape == a.shape
        assert got.tobytes() == np.ascontiguousarray(a, a.dtype.newbyteorder("=")).tobytes()
        assert not got.flags.writeable
    assert b["s"] == "é" and b["n"] is None and b["i"] == -(1 << 63)


def _nd(dtype="float32", shape=(2,), data=b"\0" * 8, **extra):
    return {"__nd__": 1, "dtype": dtype, "shape": list(shape), "data": data, **extra}


@pytest.mark.parametrize("obj, match", [
    ([1, 2], "map at the top level"), (3, "map at the top level"), ({"x": 1}, "str 'type'"),
    ({"type": 1}, "str 'type'"), ({"type": "x", "a": _nd(shape=(3,))}, "needs 12 bytes"),
    ({"type": "x", "a": _nd(dtype="object")}, "array dtype"), ({"type": "x", "a": _nd(dtype="complex64")}, "dtype"),
    ({"type": "x", "a": _nd(shape=(1 << 40, 1 << 40))}, "elements"), ({"type": "x", "a": _nd(shape=(-2,))}, "non-neg"),
    ({"type": "x", "a": _nd(shape=(True, True))}, "non-negative ints"), ({"type": "x", "a": _nd(shape=[1] * 33)}, "32"),
    ({"type": "x", "a": _nd(data="text")}, "expected bytes"), ({"type": "x", "a": _nd(extra=1)}, "keys"),
    ({"type": "x", "a": {**_nd(), "__nd__": True}}, "__nd__ = 1"), ({"type": "x", "a": _nd("bool", (1,), b"\2")}, "0 or 1"),
    ({"type": "x", "a": msgpack.ExtType(3, b"xx")}, "extension"), ({"type": "x", "t": msgpack.Timestamp(1)}, "msgpack"),
    ({"type": "x", "a": {1: 2}}, "map key"), ({"type": "x", "a": [[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]}, "nested"),
])
def test_decode_rejects_with_one_line_reasons(obj, match):
    with pytest.raises(ProtocolError, match=match) as e:
        decode(msgpack.packb(obj, use_bin_type=True, strict_types=False, datetime=False))
    assert "\n" not in str(e.value)


def test_decode_limits_and_encode_errors():
    good = encode({"type": "x", "a": np.zeros(4, np.float32)})
    for data, match in ((good[:-1], "truncated"), (good + b"\0", "extra data"), (b"", "empty"), ("{}", "text"),
                        (good, "exceeds the limit")):
        with pytest.raises(ProtocolError, match=match):
            decode(data, max_bytes=len(good) - 1 if match == "exceeds the limit" else 1 << 20)
    with pytest.raises(ProtocolError, match="nested"):
        decode(b"\x91" * 5000 + b"\x00")
    for bad, match in (({"type": "x", "a": np.zeros(2, np.complex64)}, "dtype complex64"),
                       ({"type": "x", "a": object()}, "type object"), ({"type": "x", 1: 2}, "keys must be str"),
                       ({"type": "x", "a": {"__nd__": 1}}, "reserved"), ([], "map at the top level"),
                       ({"type": "x", "big": 1 << 70}, "cannot encode")):
        with pytest.raises(ProtocolError, match=match):
            encode(bad)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=600), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                    max_size=4))
def test_decode_raises_only_protocol_errors(data, flips):
    valid = bytearray(encode({"type": "infer", "id": 1, "obs": {"q": np.arange(6, dtype=np.float32)}}))
    for i, b in flips:
        valid[i % len(valid)] = b
    for payload in (data, bytes(valid)):
        try:
            assert isinstance(decode(payload), dict)
        except ProtocolError as e:
            assert str(e) and "\n" not in str(e)


# --------------------------------------------------------------------------- fuzzing the live server
class _Bomb:
    """Unpickling this creates ``path``: proof that nothing ever unpickles what it receives."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pack(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _valid_infer(obs, rid=1) -> dict:
    return {"type": "infer", "id": rid, "t_ns": int(obs.t_ns), "obs": dict(obs.values),
            "t_capture_ns": {k: int(obs.t_ns) for k in obs.values}}


def _wire(msg) -> dict:
    """``msg`` with its arrays as raw ``__nd__`` maps, for hand-made corruption."""
    return msgpack.unpackb(encode(msg), raw=False)


def _payloads(obs, marker):
    """Strategy of invalid requests (bytes, or str for a text frame)."""
    valid = encode(_valid_infer(obs))
    wire = _wire(_valid_infer(obs))
    names = sorted(obs.values)
    bomb = pickle.dumps(_Bomb(str(marker)))

    def with_obs(name, value):
        return _pack({**wire, "obs": {**wire["obs"], name: value}})

    bad_arrays = st.one_of(
        st.builds(lambda k: _nd(shape=(k,), data=b"\0" * 4), st.integers(2, 1 << 62)),            # lying shape
        st.builds(lambda d: _nd(dtype=d), st.one_of(st.sampled_from(["object", "O", "<U8", "complex64", "float128",
                                                                       "V8", "float32 ", "|O"]), st.text(max_size=8))),
        st.builds(lambda s: _nd(shape=s), st.lists(st.integers(1 << 20, 1 << 63), min_size=2, max_size=4)),   # huge
        st.builds(lambda s: _nd(shape=s), st.one_of(st.text(), st.lists(st.floats(), min_size=1), st.just([-1]))),
        st.builds(lambda d: _nd(data=d), st.one_of(st.text(max_size=8), WIRE_INT, st.just(bomb))),
        st.sampled_from([_nd(extra=0), {**_nd(), "__nd__": 2}, {"__nd__": 1}, bomb, [1.0, 2.0],
                         msgpack.ExtType(1, bomb), _nd("float64", (3,), np.zeros(3).tobytes()), 1.5,
                         _nd("float32", (7,), np.full(7, np.inf, np.float32).tobytes())]))
    top_level = st.one_of(st.lists(WIRE_INT, max_size=5), WIRE_INT, st.text(max_size=10), st.none(),
                          st.floats(), st.binary(max_size=10), st.booleans(),
                          st.dictionaries(st.text(max_size=5).filter(lambda k: k != "type"), WIRE_INT, max_size=3),
                          st.fixed_dictionaries({"type": st.one_of(WIRE_INT, st.none(), st.binary(max_size=4),
                                                                   st.text(max_size=8).filter(
                                                                       lambda t: t not in KNOWN_TYPES))}))
    field_mutations = st.one_of(
        st.builds(lambda v: _pack({**wire, "t_ns": v}), st.one_of(st.text(max_size=4), st.floats(), st.none(),
                                                                  st.just((1 << 64) - 1), st.booleans())),
        st.builds(lambda v: _pack({**wire, "id": v}), st.one_of(st.text(max_size=4), st.none(), st.floats())),
        st.builds(lambda k: _pack({k2: v for k2, v in wire.items() if k2 != k}), st.sampled_from(["id", "t_ns", "obs"])),
        st.builds(lambda k: _pack({**wire, k: 0}), st.text(min_size=1, max_size=6).filter(lambda k: k not in wire)),
        st.builds(lambda n: _pack({**wire, "obs": {k: v for k, v in wire["obs"].items() if k != n}}),
                  st.sampled_from(names)),
        st.builds(lambda n: with_obs(n, _nd("float32", (1,), b"\0" * 4)),
                  st.text(min_size=1, max_size=8).filter(lambda n: n not in names)),
        st.builds(with_obs, st.sampled_from(names), bad_arrays),
        st.builds(lambda c: _pack({**wire, "t_capture_ns": c}), st.one_of(
            st.dictionaries(st.sampled_from(names), st.integers(0, 9), max_size=len(names) - 1, min_size=1),
            st.just({**{n: 0 for n in names}, "extra": 0}), st.just({n: "0" for n in names}), st.just([0]))),
        st.builds(lambda s: _pack({"type": "reset", "seed": s}), st.one_of(st.text(max_size=3), st.floats(),
                                                                           st.booleans(), st.just((1 << 64) - 1))),
        st.builds(lambda k: _pack({"type": "spec", k: 1}), st.text(min_size=1, max_size=5).filter(lambda k: k != "type")),
        st.builds(lambda n: _pack({**wire, "obs": {"x": _nested(n)}}), st.integers(15, 80)),
        st.just(_pack({**wire, "obs": {1: 2}})), st.just(_pack({"type": "spec", "t": msgpack.Timestamp(5)})))
    categories = [
        st.binary(max_size=2048).filter(lambda b: not _locally_valid(b)),      # random bytes
        st.integers(0, len(valid) - 1).map(lambda k: valid[:k]),               # truncated valid messages
        top_level.map(_pack),                                                  # wrong types
        field_mutations,                                                       # wrong fields and values
        st.builds(with_obs, st.sampled_from(names), bad_arrays),               # lying / bad / huge arrays
        st.one_of(st.text(max_size=50),                                        # a text frame, pickles
                  st.sampled_from([bomb, pickle.dumps({"type": "spec"}), pickle.dumps(_Bomb(str(marker)), protocol=0)]))]
    return st.sampled_from(categories).flatmap(lambda strategy: strategy)     # each category equally often


def _nested(n):
    x = 0
    for _ in range(n):
        x = [x]
    return x


def _locally_valid(payload) -> bool:
    try:
        return decode(payload)["type"] in KNOWN_TYPES
    except ProtocolError:
        return False


def test_fuzzed_requests_get_error_replies_and_pickle_is_never_loaded(served, local, tmp_path):
    _, url = served
    marker, probe = tmp_path / "UNPICKLED", tmp_path / "probe"
    pickle.loads(pickle.dumps(_Bomb(str(probe)))).close()   # the payload is live: unpickling it creates a file
    assert probe.exists()
    probe.unlink()
    obs = fake_observation(local.observation_features)
    seen = {"n": 0}
    with raw_connect(url, compression=None, max_size=MAX_BYTES, open_timeout=5, proxy=None) as ws:
        def ask(payload):
            ws.send(payload)
            reply = decode(ws.recv(timeout=10))
            assert reply["type"] == "error", (payload[:80], reply)
            assert isinstance(reply["message"], str) and reply["message"] and "\n" not in reply["message"]
            seen["n"] += 1

        for payload in (pickle.dumps(_Bomb(str(marker))), pickle.dumps(_Bomb(str(marker)), protocol=0),
                        _pack({"type": "infer", "id": 1, "t_ns": 0, "obs": pickle.dumps(_Bomb(str(marker)))})):
            ask(payload)

        @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
        @given(payload=_payloads(obs, marker))
        def fuzz(payload):
            ask(payload)

        fuzz()
        ws.send(encode(_valid_infer(obs, rid=77)))        # the same connection still serves
        reply = decode(ws.recv(timeout=10))
        assert reply["type"] == "chunk" and reply["id"] == 77 and reply["actions"].shape == (4, 8)
    assert seen["n"] > 100 and not marker.exists()
    # an oversized frame closes that connection cleanly (1009); the server goes on serving
    with raw_connect(url, compression=None, max_size=MAX_BYTES, open_timeout=5, proxy=None) as ws:
        ws.send(b"\x81\xa4type\xa4spec" + b"\0" * MAX_BYTES)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with PolicyClient(url) as pc:
        assert pc.infer(dict(obs.values), obs.t_ns).actions.shape == (4, 8)
    assert not marker.exists()


# --------------------------------------------------------------------------- standalone client, CLI
CHILD = r"""
import importlib.abc, json, sys

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("robot_learning", "torch"):
            raise ImportError("blocked import of " + name)
        return None

sys.meta_path.insert(0, Block())
sys.path.insert(0, sys.argv[1])
import numpy as np
import client

with client.PolicyClient(sys.argv[2], timeout_s=10) as pc:
    spec = pc.spec()
    pc.reset(seed=1)
    values = {f["name"]: np.zeros(f["shape"], f["dtype"]) for f in spec["observation_features"]}
    reply = pc.infer(values, t_ns=5)
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in ("robot_learning", "torch"))
print(json.dumps({"policy": spec["policy"], "shape": list(reply.actions.shape), "t0": int(reply.t_ns[0]),
                  "loaded": loaded, "file": client.__file__}))
"""


def test_client_file_runs_without_robot_learning_or_torch(served, tmp_path):
    _, url = served
    shutil.copy(client_module.__file__, tmp_path / "client.py")
    r = subprocess.run([sys.executable, "-I", "-c", CHILD, str(tmp_path), url], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"policy": "diffusion", "shape": [4, 8], "t0": 5, "loaded": [], "file": str(tmp_path / "client.py")}


def test_serve_command_runs_until_ctrl_c(run_dir):
    env = {k: v for k, v in os.environ.items() if k != "ROBOT_LEARNING_TOKEN"}
    # through the CLI's main, which shows the server's log lines (on stderr)
    code = ("import sys; from robot_learning.cli.main import main; "
            "sys.exit(main(['serve', '--checkpoint', sys.argv[1], '--port', '0', '--sampling-steps', '2']))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stderr=subprocess.PIPE, text=True, env=env)
    guard = threading.Timer(60, proc.kill)
    guard.start()
    try:
        line = proc.stderr.readline()
        while line and not line.startswith("serving"):
            line = proc.stderr.readline()
        assert line.startswith(f"serving diffusion policy {run_dir / 'policy'} on ws://127.0.0.1:"), line
        url = line.split(" on ")[1].split()[0]
        assert line.rstrip().endswith(f"(health: http{url[2:]}/health)")
        assert health(url)["policy"] == "diffusion"
        with PolicyClient(url) as pc:
            assert pc.infer({f["name"]: np.zeros(f["shape"], f["dtype"]) for f in pc.spec()["observation_features"]},
                            0).actions.shape == (4, 8)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        rest = proc.stderr.read()
        assert "Ctrl-C: stopping" in rest and "Traceback" not in rest
    finally:
        guard.cancel()
        proc.kill()
        proc.stderr.close()
