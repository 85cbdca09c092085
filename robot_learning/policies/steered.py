"""``SteeredPolicy`` (V-GPS, Nakamoto et al. 2024): value-guided action selection over any base policy.

At each chunk the base policy, treated as a black box, samples ``samples`` = K candidate chunks for the
observation (``sample_chunks``: one batched call for a diffusion policy, one request for a policy behind a
policy server); an offline critic (``ChunkCritic``) scores each; the policy executes the chunk picked by
softmax(Q / beta), or the argmax at beta = 0. The base's weights are never touched.

On disk a steered policy holds its base in ``base/`` and its critic in ``critic/`` (``save``), so it loads,
evaluates and serves like any other policy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Observation
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.policies.base import ActionChunk, Policy


class SteeredPolicy(Policy):
    kind = "steered"

    def __init__(self, base: Policy, critic, samples: int = 16, beta: float = 0.0, meta: Mapping[str, Any] | None = None):
        if samples < 1:
            raise ConfigError.expected("--samples", ">= 1", samples)
        if beta < 0:
            raise ConfigError.expected("--beta", ">= 0", beta)
        if not base.can_sample_chunks:
            raise ConfigError(f"steering needs a base that samples several chunks at once; a {base.kind} policy "
                              "does not")
        temperature = getattr(base.sampler, "temperature", 1.0) if base.sampler is not None else 1.0
        if samples > 1 and temperature == 0.0:
            raise ConfigError("steering chooses among --samples chunks, but the base samples at temperature 0 (all "
                              "would be the same chunk); evaluate it with --sampling-temperature 1")
        if critic.action_features != base.action_features:
            raise SpecMismatchError.expected("critic action features", list(base.action_features.names),
                                             list(critic.action_features.names))
        ta = base.actions_per_chunk
        if ta is not None and int(ta) != critic.config.horizon:
            raise SpecMismatchError.expected("critic horizon (actions per chunk)", f"the base's Ta = {ta}",
                                             critic.config.horizon)
        self.base, self.critic = base, critic
        self.samples, self.beta = int(samples), float(beta)
        extra = [s for s in critic.state_features if s.name not in base.observation_features]
        self.observation_features = FeatureSet([*base.observation_features, *extra])
        self.action_features = base.action_features
        self.control_period_ns = base.control_period_ns
        self.meta = dict(meta if meta is not None else base.meta)
        self.rng = np.random.default_rng(0)
        self.last_scores: np.ndarray | None = None     # the last candidates and their scores (reports, tests)
        self.last_chunks: np.ndarray | None = None
        self.last_pick = 0
        self.last_latency_s = 0.0

    @property
    def sampler(self):
        return self.base.sampler

    @property
    def actions_per_chunk(self) -> int | None:
        return self.base.actions_per_chunk

    def set_sampler(self, kind: str, steps: int | None = None, temperature: float | None = None) -> None:
        self.base.set_sampler(kind, steps, *(() if temperature is None else (temperature,)))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.critic.parameters())

    # --- Policy interface -------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        self.base.reset(seed)
        self.rng = np.random.default_rng(seed)

    def observe(self, observation: Observation) -> None:
        self.base.observe(observation)

    def pick(self, scores: np.ndarray) -> int:
        """Index of the chunk to run: argmax at beta = 0, else a draw from softmax(scores / beta)."""
        if self.beta == 0:
            return int(np.argmax(scores))
        z = (scores - scores.max()) / self.beta
        p = np.exp(z)
        return int(self.rng.choice(len(scores), p=p / p.sum()))

    def infer(self, observation: Observation) -> ActionChunk:
        t0 = time.perf_counter()
        chunks, ticks = self.base.sample_chunks(observation, self.samples)
        chunks = np.asarray(chunks, dtype=np.float32)
        h = self.critic.config.horizon
        if chunks.ndim != 3 or chunks.shape[1] < h:
            raise SpecMismatchError.expected("sampled chunks", ("K", f">= {h}", "Da"), chunks.shape)
        values = {s.name: observation.values[s.name] for s in self.critic.state_features}
        self.last_chunks = chunks
        self.last_scores = scores = self.critic.score(values, chunks[:, :h])
        self.last_pick = i = self.pick(scores)
        self.last_latency_s = time.perf_counter() - t0
        return ActionChunk(chunks[i], np.asarray(ticks, dtype=np.int64), self.action_features)

    # --- checkpoints -----------------------------------------------------------------------------
    def save(self, path, meta: Mapping[str, Any] | None = None) -> Path:
        from robot_learning.policies.checkpoint import FORMAT, VERSION, atomic_dir, commit_dir

        path = Path(path)
        tmp = atomic_dir(path)
        self.base.save(tmp / "base")
        self.critic.save(tmp / "critic")
        doc = {"format": FORMAT, "version": VERSION, "policy": self.kind,       # no weights of its own
               "config": {"samples": self.samples, "beta": self.beta, "base": "base", "critic": "critic"},
               "meta": {**self.meta, **(meta or {})}}
        (tmp / "config.json").write_text(json.dumps(doc, indent=2))
        commit_dir(tmp, path)
        return path

    @classmethod
    def from_checkpoint(cls, doc: Mapping[str, Any], weights, normalizer, device: str = "cpu",
                        directory: Path | None = None) -> SteeredPolicy:
        from robot_learning.policies.checkpoint import load_policy
        from robot_learning.rl.critic import ChunkCritic

        if directory is None:
            raise ConfigError("a steered policy loads from its folder (base/ and critic/ inside)")
        cfg = doc.get("config", {})
        try:
            samples, beta = int(cfg["samples"]), float(cfg["beta"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"checkpoint config: steered policy needs samples and beta ({e})") from None
        d = Path(directory)
        return cls(load_policy(d / str(cfg.get("base", "base")), device=device),
                   ChunkCritic.load(d / str(cfg.get("critic", "critic"))), samples, beta, doc.get("meta"))
