"""The link between RL actors and the learner: a websocket carrying the policy server's strict msgpack codec (never
pickle; arrays as ``__nd__`` maps), a bearer token when the learner listens beyond this machine.

Messages (every one a map with a str ``type``):

- actor -> ``hello`` {version, x_dim, action_dim}; learner -> ``welcome`` {residual (the residual config),
  weights {name: array}, weights_version, next_seed, gamma, base_temperature (the base's sampler temperature)};
- actor -> ``episode`` {seed, x (T, X) float32, r (T, Da) float32 (the executed action as a residual),
  intervened (T,) bool, success bool, weights_version}; learner -> ``ack`` {next_seed, weights_version, stop,
  weights (only when newer than the actor's)}.

The learner answers an episode once it has done the updates owed for the data before it (the update-to-data ratio),
so the actor plays episode k + 1 while the learner learns from episode k. Anything malformed gets an ``error`` reply
and changes nothing.
"""

from __future__ import annotations

import hmac
import queue
import threading
from dataclasses import dataclass, field

import numpy as np

from robot_learning.deploy.client import ProtocolError, decode, encode
from robot_learning.errors import ConfigError, WorkerFailedError

LINK_VERSION = 1
MAX_EPISODE_TICKS = 100_000


@dataclass
class EpisodeMsg:
    seed: int
    x: np.ndarray
    r: np.ndarray
    intervened: np.ndarray
    success: bool
    actor: str
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict | None = None


def check_episode(msg: dict, x_dim: int, action_dim: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray, bool]:
    """(seed, x, r, intervened, success) of an ``episode`` message; ProtocolError with one line otherwise."""
    need = {"type", "seed", "x", "r", "intervened", "success", "weights_version"}
    if set(msg) != need:
        raise ProtocolError(f"episode: expected fields {sorted(need)}, found {sorted(msg)}")
    seed, success = msg["seed"], msg["success"]
    if type(seed) is not int or not 0 <= seed < 1 << 62:
        raise ProtocolError(f"episode seed: expected a non-negative int, found {seed!r:.40}")
    if type(success) is not bool:
        raise ProtocolError(f"episode success: expected a bool, found {type(success).__name__}")
    x, r, iv = msg["x"], msg["r"], msg["intervened"]
    for name, a, dt in (("x", x, "float32"), ("r", r, "float32"), ("intervened", iv, "bool")):
        if not isinstance(a, np.ndarray) or a.dtype.name != dt:
            raise ProtocolError(f"episode {name}: expected a {dt} array")
    T = x.shape[0] if x.ndim == 2 else -1
    if not (x.shape == (T, x_dim) and r.shape == (T, action_dim) and iv.shape == (T,) and 1 <= T <= MAX_EPISODE_TICKS):
        raise ProtocolError(f"episode arrays: expected x (T, {x_dim}), r (T, {action_dim}), intervened (T,) with "
                            f"1 <= T <= {MAX_EPISODE_TICKS}; found {x.shape}, {r.shape}, {iv.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(r))):
        raise ProtocolError("episode: non-finite values in x or r")
    if np.any(np.abs(r) > 1.0):
        raise ProtocolError("episode r: residuals must lie in [-1, 1]")
    return int(seed), np.array(x), np.array(r), np.array(iv), bool(success)


class LearnerLink:
    """The learner's side: a websocket server in a thread. Episodes land in ``episodes`` (a queue); the handler
    waits for the learner to ``answer`` each one. ``welcome`` is a callable returning the welcome message."""

    def __init__(self, welcome, x_dim: int, action_dim: int, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None):
        from robot_learning.deploy.server import check_bind

        check_bind(host, token)
        self.welcome, self.x_dim, self.action_dim = welcome, int(x_dim), int(action_dim)
        self.host, self.port, self.token = host, int(port), token
        self.episodes: queue.Queue[EpisodeMsg] = queue.Queue()
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.connections = 0
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> LearnerLink:
        from websockets.sync.server import serve

        try:
            self._server = serve(self._handle, self.host, self.port, max_size=64 << 20,
                                 process_request=self._process_request)
        except OSError as e:   # a port in use, an address not of this machine: the fix is another --host / --port
            raise ConfigError(f"learner: cannot listen on {self.host}:{self.port} ({e.strerror or e})") from None
        self.port = int(self._server.socket.getsockname()[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="learner-link", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _process_request(self, connection, request):
        if not self.token:
            return None
        values = request.headers.get_all("Authorization")
        if len(values) == 1 and hmac.compare_digest(values[0].strip().encode(), f"Bearer {self.token}".encode()):
            return None
        import http

        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "missing or wrong bearer token\n")

    def _send_error(self, ws, message: str) -> None:
        self.errors.append(message)
        ws.send(encode({"type": "error", "message": message}))

    def _handle(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        self.connections += 1
        name = f"actor{self.connections}"
        try:
            for data in ws:
                try:
                    msg = decode(data)
                    kind = msg["type"]
                    if kind == "hello":
                        if msg.get("version") != LINK_VERSION:
                            raise ProtocolError(f"hello: link version {msg.get('version')!r:.20}, this learner "
                                                f"speaks {LINK_VERSION}")
                        if (msg.get("x_dim"), msg.get("action_dim")) != (self.x_dim, self.action_dim):
                            raise ProtocolError(f"hello: the actor's policy has input / action sizes "
                                                f"{msg.get('x_dim')!r:.20} / {msg.get('action_dim')!r:.20}, the "
                                                f"learner's {self.x_dim} / {self.action_dim} (another base policy?)")
                        ws.send(encode(self.welcome()))
                    elif kind == "episode":
                        seed, x, r, iv, ok = check_episode(msg, self.x_dim, self.action_dim)
                        ep = EpisodeMsg(seed, x, r, iv, ok, name)
                        self.episodes.put(ep)
                        while not ep.done.wait(0.2):
                            if self.stopping.is_set():
                                ep.reply = {"type": "ack", "stop": True}
                                break
                        reply = dict(ep.reply or {"type": "ack", "stop": True})
                        if "weights" in reply and reply.get("weights_version") == msg["weights_version"]:
                            reply.pop("weights")
                        ws.send(encode(reply))
                    else:
                        raise ProtocolError(f"unknown message type {kind!r:.40} (expected hello or episode)")
                except ProtocolError as e:
                    self._send_error(ws, str(e))
        except ConnectionClosed:
            pass


class ActorLink:
    """The actor's side: ``hello()`` once, then ``send_episode(...)`` per episode."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 600.0):
        import inspect

        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        kwargs: dict = {"max_size": 64 << 20, "open_timeout": 10, "compression": None}
        if token:
            kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
        if "proxy" in inspect.signature(connect).parameters:
            kwargs["proxy"] = None      # straight to the learner, whatever HTTP(S)_PROXY says
        try:
            self.ws = connect(url, **kwargs).__enter__()
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as e:
            raise ConfigError(f"--learner {url}: cannot connect ({e})") from None
        self.timeout_s = float(timeout_s)

    def _ask(self, msg: dict, refused: type[Exception] = WorkerFailedError) -> dict:
        self.ws.send(encode(msg))
        reply = decode(self.ws.recv(timeout=self.timeout_s))
        if reply["type"] == "error":
            raise refused(f"learner refused: {reply.get('message')}")
        return reply

    def hello(self, x_dim: int, action_dim: int) -> dict:
        """The learner's welcome; a refusal (another base policy than the learner's, another link version) is a
        ``ConfigError``: the actor was started with the wrong --checkpoint or install. A refused episode later is a
        failure of the actor (``WorkerFailedError``)."""
        return self._ask({"type": "hello", "version": LINK_VERSION, "x_dim": int(x_dim), "action_dim": int(action_dim)},
                         refused=ConfigError)

    def send_episode(self, seed: int, x: np.ndarray, r: np.ndarray, intervened: np.ndarray, success: bool,
                     weights_version: int) -> dict:
        return self._ask({"type": "episode", "seed": int(seed), "x": np.asarray(x, np.float32),
                          "r": np.asarray(r, np.float32), "intervened": np.asarray(intervened, bool),
                          "success": bool(success), "weights_version": int(weights_version)})

    def close(self) -> None:
        self.ws.__exit__(None, None, None)
