"""``RemotePolicy``: a policy behind a policy server, as a ``Policy`` (the same interface as a local one).

It asks the server for the policy's features once (``spec``), then sends, per control tick, the
observation values the policy reads: ``observe`` between chunks (so the server-side history has
every tick, exactly as a local policy's), ``infer`` when a chunk is needed. Chunks come back with
the tick time of each action, stamped by the server's policy. ``last_timing`` keeps the server's
own timing and the round trip of the last chunk.

Failures: a dropped or refused connection raises ``DeviceFaultError`` (the runtime holds the
robot); ``reconnect()`` opens a new connection (the server resets the policy for a new client).
"""

from __future__ import annotations

import time

import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Observation
from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.policies.base import ActionChunk, Policy


class RemotePolicy(Policy):
    """A ``Policy`` served at ``url`` (``ws://HOST:PORT``)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0):
        from robot_learning.deploy.client import PolicyClient

        if not url.startswith(("ws://", "wss://")):
            raise ConfigError.expected("policy server url", "ws://HOST:PORT or wss://HOST:PORT", repr(url))
        self.url = url
        self.client = PolicyClient(url, token=token, timeout_s=timeout_s)
        self._call(self.client.connect)
        spec = self._call(self.client.spec)
        self.kind = str(spec.get("policy", "remote"))   # the served policy's kind
        self.observation_features = FeatureSet.from_json(spec["observation_features"])
        self.action_features = FeatureSet.from_json(spec["action_features"])
        self.meta = dict(spec.get("meta") or {})
        self.control_period_ns = spec.get("control_period_ns")
        self._samples = bool(spec.get("samples"))   # the served policy samples K chunks in one request (steering)
        self.last_timing: dict = {}
        self.last_latency_s = 0.0

    def _call(self, fn, *args, **kw):
        from robot_learning.deploy.client import PolicyConnectionError, ProtocolError, ServerError

        try:
            return fn(*args, **kw)
        except PolicyConnectionError as e:
            raise DeviceFaultError(f"policy server {self.url}", f"connection lost ({e})") from None
        except (ServerError, ProtocolError) as e:
            raise DeviceFaultError(f"policy server {self.url}", f"error reply: {e}") from None

    def _values(self, observation: Observation) -> tuple[dict, dict]:
        values, t_cap = {}, {}
        for spec in self.observation_features:
            v = observation.values[spec.name]
            values[spec.name] = v if isinstance(v, str) else np.ascontiguousarray(v)
            t_cap[spec.name] = int(observation.t_capture_ns.get(spec.name, observation.t_ns))
        return values, t_cap

    # --- Policy interface --------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        self._call(self.client.reset, seed)

    def observe(self, observation: Observation) -> None:
        values, t_cap = self._values(observation)
        self._call(self.client.observe, values, int(observation.t_ns), t_cap)

    def infer(self, observation: Observation) -> ActionChunk:
        values, t_cap = self._values(observation)
        t0 = time.perf_counter()
        reply = self._call(self.client.infer, values, int(observation.t_ns), t_cap)
        self.last_latency_s = time.perf_counter() - t0
        self.last_timing = {**reply.server_timing, "round_trip_ms": reply.round_trip_ms}
        return ActionChunk(np.asarray(reply.actions, dtype=np.float32), np.asarray(reply.t_ns, dtype=np.int64),
                           self.action_features)

    @property
    def can_sample_chunks(self) -> bool:
        return self._samples

    def sample_chunks(self, observation: Observation, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not self._samples:
            return super().sample_chunks(observation, k)
        values, t_cap = self._values(observation)
        t0 = time.perf_counter()
        reply = self._call(self.client.infer, values, int(observation.t_ns), t_cap, samples=int(k))
        self.last_latency_s = time.perf_counter() - t0
        self.last_timing = {**reply.server_timing, "round_trip_ms": reply.round_trip_ms}
        return np.asarray(reply.actions, dtype=np.float32), np.asarray(reply.t_ns, dtype=np.int64)

    @property
    def can_reconnect(self) -> bool:
        return True

    def save(self, path, meta=None):
        raise ConfigError(f"the policy served at {self.url} cannot be saved from here; use its local checkpoint")

    def reconnect(self) -> None:
        self.client.close()
        self._call(self.client.connect)

    def close(self) -> None:
        self.client.close()


def open_policy(spec: str, token: str | None = None, device: str = "cpu"):
    """A local policy (a run or policy folder) or a remote one (``ws://HOST:PORT``)."""
    if spec.startswith(("ws://", "wss://")):
        return RemotePolicy(spec, token=token)
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir

    return load_policy(resolve_policy_dir(spec), device=device)
