"""The RL actor: plays a residual policy with exploration through the control runtime and streams its episodes to
the learner (``robot_learning.rl.link``), taking newer weights from each reply.

``robot-learning finetune actor --learner ws://HOST:PORT --checkpoint BASE --env sim:TASK`` runs one; ``finetune
rlpd`` starts its own on this machine. Each episode is ``rollout`` (the deploy loop: safety filter, watchdog, the
executed action to every sink) with a ``TransitionSink`` that turns every tick into (actor input, executed action
as a residual, intervention flag). A human takeover (an ``InterventionSource`` in the runtime) shows up in the
intervention flag and its executed actions become residuals like any other: the learner keeps those ticks with the
demonstrations too (HIL-SERL).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from robot_learning.errors import ConfigError, WorkerFailedError
from robot_learning.runtime.control import TickRecord

log = logging.getLogger(__name__)


class TransitionSink:
    """Runtime sink: per tick, the residual policy's input, the residual of the executed action and whether a human
    drove. A tick where the policy did not infer (a held or stale tick) is skipped and counted."""

    def __init__(self, policy):
        self.policy = policy
        self.x: list[np.ndarray] = []
        self.r: list[np.ndarray] = []
        self.intervened: list[bool] = []
        self.skipped = 0

    def on_tick(self, tick: TickRecord) -> None:
        step = self.policy.last_step
        if tick.observation is None or tick.held or step is None or step.t_ns != int(tick.t_ns):
            self.skipped += 1
            return
        p = self.policy
        executed = torch.from_numpy(tick.executed.vector(p.action_features).astype(np.float32)).reshape(1, -1)
        r = p.residual_of(torch.from_numpy(step.base_n).reshape(1, -1), p.normalizer.normalize("action", executed))
        self.x.append(step.x)
        self.r.append(r[0].numpy())
        self.intervened.append(bool(tick.intervention))

    def close(self) -> None:
        pass

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p = self.policy
        if not self.x:
            return (np.zeros((0, p.state_dim + p.action_dim), np.float32), np.zeros((0, p.action_dim), np.float32),
                    np.zeros(0, bool))
        return np.stack(self.x).astype(np.float32), np.stack(self.r).astype(np.float32), np.array(self.intervened)


class ExpertTakeover:
    """The human of HIL-SERL, played in the twin by the task's scripted expert: in a share ``probability`` of the
    episodes it takes over at tick ``after_ticks`` (the policy has not succeeded by then) and drives to the end,
    replanning from where the policy left the arm. A teleop device for ``InterventionSource``."""

    name = "scripted expert"

    def __init__(self, env, after_ticks: int, probability: float, seed: int = 0):
        from robot_learning.sim.experts import make_expert

        if after_ticks < 0 or not 0 <= probability <= 1:
            raise ConfigError.expected("takeover after / probability", ">= 0 / 0..1", (after_ticks, probability))
        self.expert, self.clock = make_expert(env), env.world.clock
        self.action_features = env.robot.action_features
        self.after, self.probability = int(after_ticks), float(probability)
        self.rng = np.random.default_rng(seed)
        self.seed, self._tick, self._armed, self._active = 0, 0, False, False

    def start_episode(self, seed: int) -> None:
        self.seed, self._tick, self._active = int(seed), 0, False
        self._armed = bool(self.rng.random() < self.probability)

    @property
    def intervention(self) -> bool:
        return self._active

    def poll_events(self) -> list:
        return []

    def get_action(self, observation):
        from robot_learning.core.stamped import Stamped

        self._tick += 1
        if self._armed and not self._active and self._tick > self.after:
            self.expert.reset(observation, self.seed)
            self._active = True
        if not self._active:
            return None
        now = self.clock.now_ns()
        return Stamped(self.expert.act(observation), t_capture_ns=now, t_receive_ns=now)


def load_actor_weights(policy, weights: dict) -> None:
    policy.load_weights({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})


def actor_weights(policy) -> dict[str, np.ndarray]:
    """What the actor needs from the learner: the residual's weights (and its critic's, with ``select``)."""
    return {k: v.numpy().copy() for k, v in policy.weights().items()}


def run_actor(cfg) -> dict:
    """Play episodes for the learner at ``cfg.learner`` until it says stop (or ``cfg.episodes`` are done)."""
    from robot_learning.core.device import resolve_device
    from robot_learning.evaluation.rollout import env_config_for, rollout
    from robot_learning.policies.checkpoint import load_policy
    from robot_learning.policies.residual import ResidualConfig, ResidualPolicy, state_features
    from robot_learning.rig import parse_robot
    from robot_learning.rl.link import ActorLink
    from robot_learning.rl.run_common import set_base_temperature
    from robot_learning.sim.env import SimEnv

    kind, task, robot = parse_robot(cfg.env)
    if kind != "sim":
        raise ConfigError.expected("--env", "sim:TASK[:MODEL] (the actor drives the twin)", repr(cfg.env))
    torch.set_num_threads(max(1, int(cfg.threads)))
    base = load_policy(cfg.checkpoint, device=resolve_device(cfg.device))
    x_dim = sum(s.size for s in state_features(base.observation_features)) + sum(s.size for s in base.action_features)
    link = ActorLink(cfg.learner, cfg.token)
    env = None
    played, wins, t0 = 0, 0, time.perf_counter()
    try:
        welcome = link.hello(x_dim, sum(s.size for s in base.action_features))
        if welcome.get("base_temperature") is not None:     # the learner's base samples so: play the same base
            set_base_temperature(base, float(welcome["base_temperature"]))
            if cfg.progress:
                log.info("actor: the base samples at temperature %s", float(welcome["base_temperature"]))
        policy = ResidualPolicy(base, ResidualConfig.from_json(welcome["residual"]))
        load_actor_weights(policy, welcome["weights"])
        version = int(welcome["weights_version"])
        policy.eval()
        policy.explore = torch.Generator().manual_seed(int(cfg.seed))
        env = SimEnv(env_config_for(base.observation_features, task, robot))
        wrap = None
        if cfg.takeover_after_ticks is not None:
            from robot_learning.deploy.intervention import InterventionSource

            human = ExpertTakeover(env, cfg.takeover_after_ticks, cfg.takeover_probability, cfg.seed)
            wrap = lambda source: InterventionSource(source, human)   # noqa: E731
        seed = int(welcome["next_seed"])
        while cfg.episodes is None or played < cfg.episodes:
            sink = TransitionSink(policy)
            if wrap is not None:
                human.start_episode(seed)
            result = rollout(env, policy, seed, sinks=(sink,), wrap_source=wrap)
            x, r, iv = sink.arrays()
            played += 1
            wins += int(result.success)
            if not len(x):
                raise WorkerFailedError(f"actor: episode seed {seed}: no tick reached the policy (every tick held)")
            reply = link.send_episode(seed, x, r, iv, result.success, version)
            if "weights" in reply:
                load_actor_weights(policy, reply["weights"])
                version = int(reply["weights_version"])
            if cfg.progress:
                log.info("actor: episode %d seed %d %s (%d ticks, %d driven by the expert), weights v%d", played, seed,
                         "success" if result.success else "fail", len(x), int(iv.sum()), version)
            if reply.get("stop"):
                break
            seed = int(reply["next_seed"])
    finally:
        if env is not None:
            env.close()
        link.close()
    return {"episodes": played, "successes": wins, "wall_s": round(time.perf_counter() - t0, 1)}
