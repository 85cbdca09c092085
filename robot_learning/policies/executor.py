"""``ChunkExecutor``: a policy as a control-runtime action source, executing its chunks open loop.

Each tick it hands the observation to the policy: ``infer`` when the current chunk is used up
(or ``replan_every`` ticks have passed), ``observe`` otherwise (so the policy's observation
history has every tick). The action returned is the chunk's step for this tick, stamped with the
tick the observation was aligned to. Inference latencies are kept for reports.
"""

from __future__ import annotations

import time

from robot_learning.core.clock import Clock
from robot_learning.core.frame import Action, Observation
from robot_learning.core.stamped import Stamped
from robot_learning.errors import ConfigError
from robot_learning.policies.base import ActionChunk, Policy


class ChunkExecutor:
    def __init__(self, policy: Policy, clock: Clock, replan_every: int | None = None, seed: int | None = None):
        if replan_every is not None and replan_every < 1:
            raise ConfigError.expected("replan_every", ">= 1", replan_every)
        self.policy, self.clock, self.replan_every = policy, clock, replan_every
        self.action_features = policy.action_features
        self.seed = seed
        self.latencies_s: list[float] = []
        self._chunk: ActionChunk | None = None
        self._i = 0

    def reset(self) -> None:
        self.policy.reset(self.seed)
        self._chunk, self._i = None, 0

    def next_action(self, observation: Observation) -> Stamped[Action] | None:
        limit = len(self._chunk) if self._chunk is not None else 0
        if self.replan_every is not None:
            limit = min(limit, self.replan_every)
        if self._chunk is None or self._i >= limit:
            w0 = time.perf_counter()   # wall time: a sim clock does not advance during inference
            self._chunk, self._i = self.policy.infer(observation), 0
            self.latencies_s.append(time.perf_counter() - w0)
        else:
            self.policy.observe(observation)
        action = self._chunk.action(self._i)
        self._i += 1
        return Stamped(action, t_capture_ns=int(observation.t_ns), t_receive_ns=max(int(observation.t_ns),
                                                                                    self.clock.now_ns()))
