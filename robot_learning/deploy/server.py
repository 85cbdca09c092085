"""Serve one policy over a websocket: strict msgpack messages in, action chunks out, never pickle.

The wire protocol (message types, array encoding, limits, auth, health) is specified in
docs/deploy_protocol.md; the codec lives in ``robot_learning.deploy.client`` so that the
standalone client and this server share it exactly.

One policy instance serves every client, one request at a time (a lock): the server is meant
for one controller at a time, and each new connection resets the policy (a new session starts
a new episode). Inference runs in a worker thread, so the event loop keeps answering health
checks, pings and other clients while the policy computes. Anything malformed gets an error
reply and the connection stays open; a message over ``max_message_bytes`` closes the connection
(websocket close code 1009). The server never unpickles, evaluates or imports what it receives.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import ipaddress
import json
import logging
import threading
import time

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from robot_learning.core.features import FeatureKind
from robot_learning.core.frame import Observation
from robot_learning.deploy.client import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, ProtocolError, decode, encode
from robot_learning.errors import ConfigError
from robot_learning.policies.base import Policy

logger = logging.getLogger(__name__)

_INT64 = (-(1 << 63), (1 << 63) - 1)
MAX_SAMPLES = 256          # chunks one infer may ask for (value-guided steering samples K of them)
_FIELDS = {"spec": ({"type"}, set()), "reset": ({"type"}, {"seed"}),
           "infer": ({"type", "id", "t_ns", "obs"}, {"t_capture_ns", "samples"}),
           "observe": ({"type", "id", "t_ns", "obs"}, {"t_capture_ns"})}   # (required, optional)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or "localhost") is reachable only from this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """ConfigError unless ``host`` is loopback or a token protects the port."""
    if token is not None and not token.strip():
        raise ConfigError("--token: expected a non-empty token, found an empty string")
    if not token and not is_loopback(host):
        raise ConfigError(f"a policy server bound to {host} needs --token "
                          "(anyone who reaches the port could drive the robot)")


def _log(line: str) -> None:
    logger.info("policy server: %s", line)


def _int64(x: object, what: str) -> int:
    if type(x) is not int or not _INT64[0] <= x <= _INT64[1]:
        raise ProtocolError(f"{what}: expected an int64, found {x!r:.40}")
    return x


class PolicyServer:
    """Serves ``policy`` (a ``Policy``) at ``ws://host:port``. ``token``: bearer token
    every client must send (required unless ``host`` is loopback). ``max_message_bytes``: the
    largest request accepted (bytes); larger ones close the connection."""

    def __init__(self, policy: Policy, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES):
        check_bind(host, token)
        if not 0 <= int(port) <= 65535:
            raise ConfigError.expected("port", "0..65535", port)
        if not 1024 <= int(max_message_bytes) <= MAX_MESSAGE_BYTES:
            raise ConfigError.expected("max_message_bytes", f"1024..{MAX_MESSAGE_BYTES}", max_message_bytes)
        if not isinstance(policy, Policy):
            raise ConfigError.expected("policy to serve", "a robot_learning Policy", type(policy).__name__)
        self.policy, self.token = policy, token
        self.host = "127.0.0.1" if host.strip().lower() == "localhost" else host
        self.port, self.max_message_bytes = int(port), int(max_message_bytes)
        self.kind = policy.kind
        self._lock = threading.Lock()             # one request at a time on the one policy
        self._started = time.monotonic()
        self.requests = 0                          # requests answered (errors included)
        self.clients = 0                           # open websocket connections
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> int:
        """Serve in a background thread; returns the bound port (``port=0`` picks a free one)."""
        if self._thread is not None and self._thread.is_alive():
            return self.port
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name="policy-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise ConfigError(f"policy server cannot listen on {self.host}:{self.port}: {self._error}")
        return self.port

    def stop(self) -> None:
        """Close every connection and stop serving (returns when the server thread has ended)."""
        thread, loop, stop = self._thread, self._loop, self._stop
        if thread is None:
            return
        if loop is not None and stop is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:   # the loop already closed
                pass
        thread.join()
        self._thread = None

    def serve_forever(self) -> None:
        """Serve until ``stop()`` or Ctrl-C (which stops cleanly)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.25)
        except KeyboardInterrupt:
            _log("Ctrl-C: stopping")
        finally:
            self.stop()

    def __enter__(self) -> PolicyServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:   # reported by start(); never a traceback from the thread
            if self._ready.is_set():
                _log(f"stopped by {type(e).__name__}: {e}")
            self._error = e
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            server = await serve(self._handle, self.host, self.port, process_request=self._process_request,
                                 max_size=self.max_message_bytes, compression=None, max_queue=4)
        except OSError as e:
            self._error = e
            return
        self.port = int(server.sockets[0].getsockname()[1])
        self._started = time.monotonic()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            await server.wait_closed()

    # --- HTTP: auth and health ---------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        if not self.token:
            return True
        values = request.headers.get_all("Authorization")
        expected = f"Bearer {self.token}".encode()
        return len(values) == 1 and hmac.compare_digest(values[0].strip().encode(), expected)

    def health(self) -> dict:
        """{"status": "ok", "policy": kind, "uptime_s", "requests", "clients", "protocol"}."""
        return {"status": "ok", "policy": self.kind, "uptime_s": round(time.monotonic() - self._started, 3),
                "requests": self.requests, "clients": self.clients, "protocol": PROTOCOL_VERSION}

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not self._authorized(request):
            _log(f"refused {self._peer(connection)}: missing or wrong bearer token")
            response = connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
        if request.path.split("?", 1)[0] == "/health":
            response = connection.respond(http.HTTPStatus.OK, json.dumps(self.health()) + "\n")
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        return None

    @staticmethod
    def _peer(connection: ServerConnection) -> str:
        addr = connection.remote_address
        return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)

    # --- websocket sessions ------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        peer, t0, served, reason = self._peer(ws), time.monotonic(), 0, "closed"
        self.clients += 1
        try:
            try:
                await asyncio.to_thread(self._locked, self._reset, None)
            except Exception as e:   # the session still opens; its requests will report the failure
                _log(f"client {peer}: resetting the policy failed ({type(e).__name__}: {e})")
            while True:
                try:
                    data = await ws.recv()
                except ConnectionClosed as e:
                    reason = f"closed ({e})"
                    break
                t_recv = time.perf_counter()
                reply = await asyncio.to_thread(self._respond, data, t_recv)
                served += 1
                self.requests += 1
                try:
                    await ws.send(reply)
                except ConnectionClosed as e:
                    reason = f"closed before the reply ({e})"
                    break
        finally:
            self.clients -= 1
            _log(f"client {peer}: {served} requests in {time.monotonic() - t0:.1f} s, {reason}")

    def _locked(self, fn, *args):
        with self._lock:
            return fn(*args)

    def _respond(self, data: bytes | str, t_recv: float) -> bytes:
        """The encoded reply to one request; every failure becomes an error reply."""
        rid = None
        try:
            msg = decode(data, max_bytes=self.max_message_bytes)
            kind = msg["type"]
            if kind not in _FIELDS:
                raise ProtocolError(f"unknown message type {kind!r:.40}: expected spec, reset, observe or infer")
            required, optional = _FIELDS[kind]
            missing, extra = sorted(required - set(msg)), sorted(set(msg) - required - optional)
            if missing or extra:
                raise ProtocolError(f"{kind} message: missing fields {missing}, unexpected fields {extra}")
            if kind == "observe":
                rid = _int64(msg["id"], "observe id")
                self._locked(self.policy.observe, self._observation(msg))
                return encode({"type": "observed", "id": rid})
            if kind == "infer":
                rid = _int64(msg["id"], "infer id")
                obs = self._observation(msg)
                k = msg.get("samples")
                if k is not None:
                    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_SAMPLES:
                        raise ProtocolError(f"infer samples: expected an int in 1..{MAX_SAMPLES}, found {k!r:.20}")
                    if not self.policy.can_sample_chunks:
                        raise ProtocolError(f"infer samples: this {self.kind} policy samples one chunk per infer")
                with self._lock:
                    t0 = time.perf_counter()
                    if k is None:
                        chunk = self.policy.infer(obs)
                        actions, ticks = chunk.actions, chunk.t_ns
                    else:
                        actions, ticks = self.policy.sample_chunks(obs, k)
                    infer_ms = (time.perf_counter() - t0) * 1e3
                actions = np.asarray(actions, dtype=np.float32)
                ticks = np.asarray(ticks, dtype=np.int64)
                timing = {"infer_ms": infer_ms, "recv_to_send_ms": (time.perf_counter() - t_recv) * 1e3}
                return encode({"type": "chunk", "id": rid, "actions": actions, "t_ns": ticks, "timing": timing})
            if kind == "reset":
                seed = msg.get("seed")
                if seed is not None:
                    _int64(seed, "reset seed")
                self._locked(self._reset, seed)
                return encode({"type": "reset"})
            return encode(self._spec())
        except Exception as e:   # malformed input or a failing policy: reply, never crash
            text = " ".join(str(e).split()) or type(e).__name__
            if not isinstance(e, (ProtocolError, ValueError)):
                text = f"{type(e).__name__}: {text}"
            err = {"type": "error", "message": text[:500]}
            if rid is not None:
                err["id"] = rid
            return encode(err)

    def _reset(self, seed: int | None) -> None:
        self.policy.reset(seed=seed)

    def _spec(self) -> dict:
        period = self.policy.control_period_ns
        return {"type": "spec", "policy": self.kind, "protocol": PROTOCOL_VERSION,
                "observation_features": self.policy.observation_features.to_json(),
                "action_features": self.policy.action_features.to_json(),
                "meta": dict(self.policy.meta),
                "control_period_ns": None if period is None else int(period),
                "samples": self.policy.can_sample_chunks}

    def _observation(self, msg: dict) -> Observation:
        features = self.policy.observation_features
        what = msg["type"]
        t_ns = _int64(msg["t_ns"], f"{what} t_ns")
        values = msg["obs"]
        if not isinstance(values, dict):
            raise ProtocolError(f"{what} obs: expected a map, found {type(values).__name__}")
        missing = [n for n in features.names if n not in values]
        extra = sorted(k for k in values if k not in features)
        if missing or extra:
            raise ProtocolError(f"{what} obs: expected keys {list(features.names)}, missing {missing}, "
                                f"unexpected {extra}")
        for spec in features:
            v = values[spec.name]
            if spec.kind is FeatureKind.LANGUAGE:
                if not isinstance(v, str):
                    raise ProtocolError(f"obs {spec.name}: expected a str, found {type(v).__name__}")
                continue
            if not isinstance(v, np.ndarray):
                raise ProtocolError(f"obs {spec.name}: expected an array, found {type(v).__name__}")
            if v.shape != spec.shape or v.dtype != np.dtype(spec.dtype):
                raise ProtocolError(f"obs {spec.name}: expected shape {list(spec.shape)} {spec.dtype}, "
                                    f"found {list(v.shape)} {v.dtype}")
            if v.dtype.kind == "f" and not np.isfinite(v).all():
                raise ProtocolError(f"obs {spec.name}: non-finite values (nan or inf)")
        caps = msg.get("t_capture_ns")
        caps = {} if caps is None else caps
        if not isinstance(caps, dict):
            raise ProtocolError(f"{what} t_capture_ns: expected a map, found {type(caps).__name__}")
        if caps and set(caps) != set(values):
            raise ProtocolError(f"{what} t_capture_ns: expected the obs keys {sorted(values)}, found {sorted(caps)}")
        caps = {k: _int64(caps[k], f"t_capture_ns {k}") if caps else t_ns for k in values}
        return Observation(t_ns, features, values, caps)
