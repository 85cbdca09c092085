"""``QueuedChunkSource``: a policy (local or behind a policy server) as a control-runtime action source that never
makes the loop wait.

A worker thread owns the policy. Each tick the control thread hands it the observation and takes the action
queued for that tick. The worker passes every tick's observation to the policy in order, also those that arrived
while it was inferring (``observe``, so the policy's history is the consecutive ticks it was trained on, not a
sample of them), and asks for the next chunk (``infer``, on the newest observation) when fewer than
``refill_below`` queued actions are left, so the next chunk arrives before the queue runs dry and the robot never
waits.

Timing: every queued action carries the control tick it is meant for (``ActionChunk.t_ns``). Actions whose tick
has passed when they arrive are dropped (``stale_dropped``): a chunk that took three periods to compute starts
at its fourth action, which compensates the observation-to-action latency (``latencies_s``). A new chunk replaces
the queued actions from its first tick on.

How a new chunk joins the queue (``merge``):

- ``queue``: it replaces the queued actions from its first tick on;
- ``ensemble`` (temporal ensembling, as ACT): every prediction made for a tick is kept and the action is their
  weighted mean, weight ``exp(-ensemble_k * i)`` for the i-th oldest (the oldest weighs most); refills every tick;
- ``rtc`` (real-time chunking): the actions due while the chunk was being computed (its latency, in ticks, at
  least one) are already committed and stay fixed; over the rest of the overlap the queue blends linearly from
  the old plan to the new one, then follows the new chunk: no jump where two chunks meet.

Faults: when the policy fails (a policy server that dies or stalls past its timeout) the worker drops the queue,
so the loop gets no fresh action and the runtime's watchdog holds the robot within its periods; the worker then
reconnects every ``reconnect_s`` (``policy.reconnect()``, then ``reset``) and resumes with the next observation.
"""

from __future__ import annotations

import collections
import threading
import time

import numpy as np

from robot_learning.core.clock import Clock
from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError, DeviceError


class QueuedChunkSource:
    MERGES = ("queue", "ensemble", "rtc")

    def __init__(self, policy, clock: Clock, period_ns: int, refill_below: int = 3, reconnect_s: float = 0.5,
                 seed: int | None = None, merge: str = "queue", ensemble_k: float = 0.01):
        if refill_below < 1:
            raise ConfigError.expected("refill_below", ">= 1", refill_below)
        if merge not in self.MERGES:
            raise ConfigError.expected("chunk merge mode", f"one of {', '.join(self.MERGES)}", repr(merge))
        self.merge, self.ensemble_k = merge, float(ensemble_k)
        if merge == "ensemble":
            refill_below = 1 << 30   # a new prediction every tick
        self.policy, self.clock, self.period_ns = policy, clock, int(period_ns)
        self.refill_below, self.reconnect_s, self.seed = int(refill_below), float(reconnect_s), seed
        self.action_features = policy.action_features
        self.latencies_s: list[float] = []
        self.stale_dropped = 0
        self.handled = 0   # observations the worker has passed on (observe / infer), their chunk queued
        self.faults = 0
        self.reconnects = 0
        self.last_error: str | None = None
        self._queue: collections.deque[tuple[int, np.ndarray]] = collections.deque()   # (tick, action vector)
        self._predictions: dict[int, list[np.ndarray]] = {}                               # ensemble: per tick
        self._cv = threading.Condition()
        self._pending: collections.deque[Observation] = collections.deque(maxlen=256)   # ticks not yet passed on
        self._stop = False
        self._thread: threading.Thread | None = None

    # --- control thread ------------------------------------------------------------------------
    def reset(self) -> None:
        self.close()
        self.policy.reset(self.seed)
        with self._cv:
            self._queue.clear()
            self._predictions.clear()
            self._pending.clear()
            self._stop = False
        self._thread = threading.Thread(target=self._work, name="policy-worker", daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def next_action(self, observation: Observation) -> Stamped[Action] | None:
        t, half = int(observation.t_ns), self.period_ns // 2
        with self._cv:
            self._pending.append(observation)
            self._cv.notify_all()
            while self._queue and self._queue[0][0] < t - half:
                self._queue.popleft()
                self.stale_dropped += 1
            if not self._queue or self._queue[0][0] > t + half:
                return None
            tq, vec = self._queue.popleft()
            self._predictions.pop(tq, None)
        action = Action.from_vector(self.action_features, vec)
        return Stamped(action, t_capture_ns=t, t_receive_ns=max(t, self.clock.now_ns()))

    @property
    def queued(self) -> int:
        with self._cv:
            return len(self._queue)

    def wait_handled(self, n: int, timeout_s: float) -> bool:
        """Wait until the worker has passed ``n`` observations on to the policy (``handled``) and queued the
        chunk it asked for; False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: self.handled >= n, timeout=timeout_s)

    # --- worker --------------------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._stop or bool(self._pending))
                if self._stop:
                    return
                ticks = list(self._pending)
                self._pending.clear()
                obs = ticks[-1]
                left = sum(1 for tq, _ in self._queue if tq >= obs.t_ns)
            try:
                for earlier in ticks[:-1]:      # ticks that came while the worker was busy: history only
                    self.policy.observe(earlier)
                if left < self.refill_below:
                    w0 = time.perf_counter()
                    chunk = self.policy.infer(obs)
                    self.latencies_s.append(time.perf_counter() - w0)
                    self._enqueue(chunk, self.latencies_s[-1])
                else:
                    self.policy.observe(obs)
            except DeviceError as e:
                self._fault(str(e))
                if not self._recover():
                    return
            finally:
                with self._cv:
                    self.handled += len(ticks)
                    self._cv.notify_all()

    def _enqueue(self, chunk, latency_s: float = 0.0) -> None:
        new = [(int(tq), np.asarray(chunk.actions[i], dtype=np.float64)) for i, tq in enumerate(chunk.t_ns)]
        with self._cv:
            self._queue = collections.deque(self.merged(list(self._queue), new, latency_s))

    def merged(self, old: list[tuple[int, np.ndarray]], new: list[tuple[int, np.ndarray]],
               latency_s: float = 0.0) -> list[tuple[int, np.ndarray]]:
        """The queue after ``new`` (a chunk as (tick, vector) pairs) arrives on top of ``old`` (see ``merge``)."""
        first = new[0][0]
        if self.merge == "queue":
            return [e for e in old if e[0] < first] + new
        if self.merge == "ensemble":
            for tq, v in new:
                self._predictions.setdefault(tq, []).append(v)
            out = [e for e in old if e[0] < first]
            for tq, _ in new:
                preds = self._predictions[tq]
                w = np.exp(-self.ensemble_k * np.arange(len(preds)))
                out.append((tq, np.average(np.stack(preds), axis=0, weights=w)))
            return out
        # rtc: actions due during the inference are committed; then a linear blend over the rest of the overlap
        commit_ticks = max(1, int(np.ceil(latency_s * 1e9 / self.period_ns)))
        committed_until = first + commit_ticks * self.period_ns
        old_map = dict(old)
        overlap = [tq for tq, _ in new if tq >= committed_until and tq in old_map]
        out = [e for e in old if e[0] < committed_until]
        for tq, v in new:
            if tq < committed_until and tq in old_map:
                continue                           # committed: the old plan stays
            if tq in overlap:
                w = (overlap.index(tq) + 1) / (len(overlap) + 1)
                v = (1 - w) * old_map[tq] + w * v
            out.append((tq, v))
        return sorted(out, key=lambda e: e[0])

    def _fault(self, message: str) -> None:
        with self._cv:
            self._queue.clear()           # no fresh action: the watchdog holds the robot
            self._predictions.clear()
            self.faults += 1
            self.last_error = message

    def _recover(self) -> bool:
        """Reconnect until it works or the source is closed; False when closed."""
        while True:
            with self._cv:
                if self._cv.wait_for(lambda: self._stop, timeout=self.reconnect_s):
                    return False
            if not self.policy.can_reconnect:
                return True           # a local policy that failed: try again with the next observation
            try:
                self.policy.reconnect()
                self.policy.reset(self.seed)
                self.reconnects += 1
                with self._cv:                  # a fresh history starts from the newest tick
                    while len(self._pending) > 1:
                        self._pending.popleft()
                return True
            except DeviceError as e:
                self.last_error = str(e)
