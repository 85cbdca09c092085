"""Standalone client of the robot-learning policy server, and the wire codec both sides use.

This file is self-contained: it imports only the standard library, numpy, msgpack (>= 1.0) and
websockets (>= 11), never ``robot_learning`` or torch, and runs on Python >= 3.8. Copy it into any
environment (an old simulator benchmark, a robot's onboard computer) to drive a served policy::

    from client import PolicyClient
    with PolicyClient("ws://gpu-box:8765", token="...") as pc:
        spec = pc.spec()                       # features, meta, control period
        pc.reset(seed=0)                       # a new episode
        reply = pc.infer({"joint_pos_rad": q}, t_ns=time.monotonic_ns())
        reply.actions                          # (Ta, Da) float32, reply.t_ns (Ta,) int64

Wire format (docs/deploy_protocol.md): one msgpack map per binary websocket message, with a str
``"type"``; numpy arrays travel as ``{"__nd__": 1, "dtype", "shape", "data"}`` maps (C order,
little-endian raw bytes). Decoding is strict and never unpickles or executes anything: whatever
is not a valid message raises ``ProtocolError`` with a one-line reason.
"""

from __future__ import annotations

import inspect
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import connect as _ws_connect

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 << 20      # bytes per message, either direction
MAX_DEPTH = 16                    # nesting of maps/lists (the top-level map is depth 1)
MAX_ARRAY_ELEMENTS = 1 << 26      # elements of one array
MAX_NDIM = 32                     # dimensions of one array
MAX_LIST_LEN = 1 << 20            # entries of one msgpack array
MAX_MAP_LEN = 1 << 16             # entries of one msgpack map
DTYPES = ("bool", "uint8", "uint16", "int16", "int32", "int64", "float16", "float32", "float64")
_ND_KEYS = frozenset(("__nd__", "dtype", "shape", "data"))
_CONNECT_PARAMS = frozenset(inspect.signature(_ws_connect).parameters)


class ProtocolError(ValueError):
    """Bytes that are not a valid protocol message (or a value that cannot be encoded)."""


class PolicyConnectionError(ConnectionError):
    """The server could not be reached, refused the connection, dropped it or did not answer in
    time. The connection is closed; call ``connect()`` again to retry (a new session)."""


class AuthError(PolicyConnectionError):
    """The server refused the bearer token (HTTP 401)."""


class ServerError(RuntimeError):
    """The server answered a request with an error reply; ``message`` says why. The connection
    stays open."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------- codec
def _kind(x: object) -> str:
    return "nil" if x is None else type(x).__name__


def _pack_array(a: np.ndarray) -> dict:
    name = a.dtype.name
    if name not in DTYPES:
        raise ProtocolError(f"cannot encode an array of dtype {a.dtype}: expected one of {', '.join(DTYPES)}")
    le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return {"__nd__": 1, "dtype": name, "shape": list(a.shape), "data": le.tobytes()}


def _to_wire(x: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ProtocolError(f"cannot encode: nested deeper than {MAX_DEPTH} levels")
    if isinstance(x, (np.ndarray, np.generic)):
        return _pack_array(np.asarray(x))
    if x is None or isinstance(x, (bool, int, float, str, bytes)):
        return x
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    if isinstance(x, Mapping):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise ProtocolError(f"cannot encode a map key of type {_kind(k)}: keys must be str")
            if k == "__nd__":
                raise ProtocolError("cannot encode a map with the reserved key '__nd__'")
            out[k] = _to_wire(v, depth + 1)
        return out
    if isinstance(x, (list, tuple)):
        return [_to_wire(v, depth + 1) for v in x]
    raise ProtocolError(f"cannot encode a value of type {_kind(x)}")


def _check_top(msg: object) -> None:
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a map at the top level, found {_kind(msg)}")
    if not isinstance(msg.get("type"), str):
        raise ProtocolError(f"expected a str 'type' field, found {_kind(msg.get('type'))}")


def encode(msg: dict) -> bytes:
    """One protocol message (a dict with a str ``"type"``) as msgpack bytes; numpy arrays of the
    whitelisted dtypes become ``__nd__`` maps."""
    _check_top(msg)
    try:
        return msgpack.packb(_to_wire(msg, 1), use_bin_type=True)
    except (OverflowError, TypeError, ValueError) as e:
        if isinstance(e, ProtocolError):
            raise
        raise ProtocolError(f"cannot encode message: {e}") from None


def _reject_ext(code: int, data: bytes) -> Any:
    raise ProtocolError(f"msgpack extension type {code} is not allowed")


def _unpack_array(m: dict) -> np.ndarray:
    if set(m) != _ND_KEYS:
        raise ProtocolError(f"array map: expected keys {sorted(_ND_KEYS)}, found {sorted(map(str, m))}")
    if type(m["__nd__"]) is not int or m["__nd__"] != 1:
        raise ProtocolError(f"array map: expected __nd__ = 1, found {m['__nd__']!r:.40}")
    name, shape, data = m["dtype"], m["shape"], m["data"]
    if not isinstance(name, str) or name not in DTYPES:
        raise ProtocolError(f"array dtype: expected one of {', '.join(DTYPES)}, found {name!r:.40}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM:
        length = f" of length {len(shape)}" if isinstance(shape, list) else ""
        raise ProtocolError(f"array shape: expected a list of at most {MAX_NDIM} ints, found {_kind(shape)}{length}")
    count = 1
    for s in shape:
        if type(s) is not int or s < 0:
            raise ProtocolError(f"array shape: expected non-negative ints, found {s!r:.40}")
        count *= s
        if count > MAX_ARRAY_ELEMENTS:
            raise ProtocolError(f"array shape {shape!r:.80}: more than {MAX_ARRAY_ELEMENTS} elements")
    if not isinstance(data, bytes):
        raise ProtocolError(f"array data: expected bytes, found {_kind(data)}")
    dtype = np.dtype(name).newbyteorder("<")
    if len(data) != count * dtype.itemsize:
        raise ProtocolError(f"array data: shape {shape} {name} needs {count * dtype.itemsize} bytes, "
                            f"found {len(data)}")
    if count == 0:
        arr = np.empty(shape, dtype=dtype)
        arr.setflags(write=False)
        return arr
    arr = np.frombuffer(data, dtype=dtype).reshape(shape)
    if name == "bool" and np.frombuffer(data, dtype=np.uint8).max() > 1:
        raise ProtocolError("array data: bool bytes must be 0 or 1")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
        arr.setflags(write=False)
    return arr


def _from_wire(x: Any, depth: int, max_depth: int) -> Any:
    if depth > max_depth:
        raise ProtocolError(f"message nested deeper than {max_depth} levels")
    if isinstance(x, dict):
        if "__nd__" in x:
            return _unpack_array(x)
        for k in x:
            if not isinstance(k, str):
                raise ProtocolError(f"map key of type {_kind(k)}: keys must be str")
        return {k: _from_wire(v, depth + 1, max_depth) for k, v in x.items()}
    if isinstance(x, list):
        return [_from_wire(v, depth + 1, max_depth) for v in x]
    if x is None or isinstance(x, (bool, int, float, str, bytes)):
        return x
    raise ProtocolError(f"unsupported value of type {_kind(x)}")


def decode(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH) -> dict:
    """The message in ``data`` (msgpack bytes, at most ``max_bytes``), arrays as read-only numpy
    arrays. Raises ``ProtocolError`` for anything that is not a valid message."""
    if isinstance(data, str):
        raise ProtocolError("expected a binary message, found text")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected bytes, found {_kind(data)}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds the limit of {max_bytes} bytes")
    if not data:
        raise ProtocolError("empty message")
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, ext_hook=_reject_ext, use_list=True,
                                max_buffer_size=max(len(data), 1), max_str_len=max_bytes,
                                max_bin_len=max_bytes, max_array_len=MAX_LIST_LEN, max_map_len=MAX_MAP_LEN,
                                max_ext_len=0)
    try:
        unpacker.feed(data)
        obj = unpacker.unpack()
    except ProtocolError:
        raise
    except msgpack.OutOfData:
        raise ProtocolError("truncated message (incomplete msgpack data)") from None
    except msgpack.StackError:
        raise ProtocolError("message nested too deeply for msgpack") from None
    except Exception as e:  # FormatError, ValueError (limits, keys), UnicodeDecodeError, ...
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        if "max_ext_len" in reason:
            raise ProtocolError("msgpack extension types are not allowed") from None
        raise ProtocolError(f"not a valid msgpack message ({reason})") from None
    if unpacker.tell() != len(data):
        raise ProtocolError(f"{len(data) - unpacker.tell()} bytes of extra data after the message")
    _check_top(obj)
    return _from_wire(obj, 1, max_depth)


# --------------------------------------------------------------------------- client
@dataclass(frozen=True)
class InferReply:
    """One action chunk from the server."""

    actions: np.ndarray        # (Ta, Da) float32, unnormalised, in the order of the spec's action features
    t_ns: np.ndarray           # (Ta,) int64: the control tick each action is meant for (ns, the caller's clock)
    server_timing: dict        # {"infer_ms": policy inference, "recv_to_send_ms": request received -> reply sent}
    round_trip_ms: float       # encode + send + server + receive + decode, measured here (ms)


def _http_url(url: str, path: str) -> str:
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https", "http": "http", "https": "https"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"policy server url: expected ws://HOST:PORT, found {url!r}")
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))


class PolicyClient:
    """A connection to a policy server. Every call waits at most ``timeout_s`` seconds for its
    reply; a refused, dropped or timed-out connection raises ``PolicyConnectionError`` and is
    closed (``connect()`` again opens a new one; the server resets the policy for each new
    connection). Error replies raise ``ServerError`` and keep the connection open. Not
    thread-safe: one caller thread per client."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0):
        if urllib.parse.urlsplit(url).scheme not in ("ws", "wss"):
            raise ValueError(f"policy server url: expected ws://HOST:PORT or wss://HOST:PORT, found {url!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s: expected > 0, found {timeout_s}")
        self.url, self.token, self.timeout_s = url, token, float(timeout_s)
        self._ws: Any = None
        self._next_id = 1

    # --- connection --------------------------------------------------------------------------
    def connect(self) -> PolicyClient:
        """Open a new connection (closing any previous one)."""
        self.close()
        kwargs: dict = {"open_timeout": self.timeout_s, "close_timeout": self.timeout_s,
                        "max_size": MAX_MESSAGE_BYTES, "compression": None}
        if self.token:
            kwargs["additional_headers"] = {"Authorization": f"Bearer {self.token}"}
        if "proxy" in _CONNECT_PARAMS:
            kwargs["proxy"] = None     # straight to the server, whatever HTTP(S)_PROXY says
        try:
            # entered as a context manager: the one form every websockets >= 11 accepts without warnings
            self._ws = _ws_connect(self.url, **kwargs).__enter__()
        except InvalidURI as e:
            raise ValueError(f"policy server url {self.url!r}: {e}") from None
        except InvalidHandshake as e:
            status = getattr(getattr(e, "response", None), "status_code", None)
            if status == 401:
                raise AuthError(f"policy server {self.url} refused the token (HTTP 401): "
                                "pass the token the server was started with") from None
            raise PolicyConnectionError(f"policy server {self.url}: handshake failed ({e})") from None
        except (OSError, TimeoutError) as e:
            raise PolicyConnectionError(f"cannot connect to policy server {self.url}: "
                                        f"{e or type(e).__name__}") from None
        return self

    def close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def __enter__(self) -> PolicyClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, msg: dict, expect: str) -> dict:
        if self._ws is None:
            raise PolicyConnectionError(f"policy server {self.url}: not connected (call connect())")
        data = encode(msg)
        try:
            self._ws.send(data)
            raw = self._ws.recv(timeout=self.timeout_s)
        except TimeoutError:
            self.close()
            raise PolicyConnectionError(f"policy server {self.url}: no reply within {self.timeout_s} s; "
                                        "connection closed (call connect() again)") from None
        except ConnectionClosed as e:
            self.close()
            raise PolicyConnectionError(f"policy server {self.url} closed the connection ({e})") from None
        except OSError as e:
            self.close()
            raise PolicyConnectionError(f"policy server {self.url}: connection lost ({e})") from None
        try:
            reply = decode(raw)
        except ProtocolError as e:
            self.close()
            raise ProtocolError(f"policy server {self.url} sent an invalid reply: {e}") from None
        if reply["type"] == "error":
            raise ServerError(str(reply.get("message", "error reply without a message")))
        if reply["type"] != expect:
            self.close()
            raise ProtocolError(f"policy server reply: expected type {expect!r}, found {reply['type']!r}")
        return reply

    # --- requests ----------------------------------------------------------------------------
    def spec(self) -> dict:
        """{"policy": kind, "observation_features": [FeatureSpec JSON...], "action_features": [...],
        "meta": {...}, "control_period_ns": int or None, "protocol": 1}."""
        reply = self._request({"type": "spec"}, "spec")
        return {k: v for k, v in reply.items() if k != "type"}

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode: the policy forgets its observation history (``seed`` reseeds its
        sampler, for reproducible chunks)."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed: expected an int or None, found {_kind(seed)}")
        self._request({"type": "reset", "seed": None if seed is None else int(seed)}, "reset")

    def _obs_msg(self, kind: str, values: Mapping[str, Any], t_ns: int,
                 t_capture_ns: Mapping[str, int] | None) -> dict:
        obs = {k: v if isinstance(v, (str, np.ndarray)) else np.asarray(v) for k, v in values.items()}
        t = int(t_ns)
        caps = {k: t for k in obs} if t_capture_ns is None else {k: int(v) for k, v in t_capture_ns.items()}
        rid, self._next_id = self._next_id, self._next_id + 1
        return {"type": kind, "id": rid, "t_ns": t, "obs": obs, "t_capture_ns": caps}

    def observe(self, values: Mapping[str, np.ndarray | str], t_ns: int,
                t_capture_ns: Mapping[str, int] | None = None) -> None:
        """Add one observation to the policy's history without inferring (a tick between
        chunks); arguments as ``infer``."""
        msg = self._obs_msg("observe", values, t_ns, t_capture_ns)
        reply = self._request(msg, "observed")
        if reply.get("id") != msg["id"]:
            self.close()
            raise ProtocolError(f"policy server reply to observe {msg['id']}: found id {reply.get('id')!r:.20}")

    def infer(self, values: Mapping[str, np.ndarray | str], t_ns: int,
              t_capture_ns: Mapping[str, int] | None = None, samples: int | None = None) -> InferReply:
        """The action chunk for one observation: ``values`` one array (of the spec's shape and
        dtype) or str (language features) per observation feature, ``t_ns`` the control tick
        (ns), ``t_capture_ns`` each value's capture time (ns; default ``t_ns``). ``samples`` = K
        asks for K independent chunks at once (``actions`` (K, Ta, Da); policies whose spec says
        ``samples``: true), for value-guided steering."""
        t0 = time.perf_counter()
        msg = self._obs_msg("infer", values, t_ns, t_capture_ns)
        if samples is not None:
            msg["samples"] = int(samples)
        rid = msg["id"]
        reply = self._request(msg, "chunk")
        actions, ticks, timing = reply.get("actions"), reply.get("t_ns"), reply.get("timing")
        round_trip_ms = (time.perf_counter() - t0) * 1e3
        dims = 2 if samples is None else 3
        ok = (reply.get("id") == rid and isinstance(actions, np.ndarray) and actions.ndim == dims
              and actions.dtype == np.float32 and isinstance(ticks, np.ndarray) and ticks.dtype == np.int64
              and ticks.shape == (actions.shape[-2],) and isinstance(timing, dict)
              and (samples is None or actions.shape[0] == int(samples)))
        if not ok:
            self.close()
            want = "(Ta, Da)" if samples is None else f"({samples}, Ta, Da)"
            raise ProtocolError(f"policy server reply to infer {rid}: expected id {rid}, actions {want} float32, "
                                "t_ns (Ta,) int64 and timing; found something else")
        return InferReply(actions, ticks, {k: float(v) for k, v in timing.items()}, round_trip_ms)


def health(url: str, token: str | None = None, timeout_s: float = 2.0) -> dict:
    """GET ``/health`` on the server's host:port: {"status": "ok", "policy", "uptime_s",
    "requests", "clients", "protocol"}. Raises ``PolicyConnectionError`` if unreachable."""
    target = _http_url(url, "/health")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(target, headers=headers), timeout=timeout_s) as r:
            body = r.read(1 << 20)
    except urllib.error.HTTPError as e:
        if e.code == 401:
            raise AuthError(f"policy server {target} refused the token (HTTP 401)") from None
        raise PolicyConnectionError(f"policy server {target}: HTTP {e.code}") from None
    except (urllib.error.URLError, OSError) as e:
        raise PolicyConnectionError(f"cannot reach policy server {target}: {getattr(e, 'reason', e)}") from None
    try:
        doc = json.loads(body)
    except ValueError:
        raise ProtocolError(f"policy server {target}: health reply is not JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError(f"policy server {target}: health reply is not a JSON object")
    return doc
