"""``ResidualPolicy`` (ResiP, Ankile et al. 2024): a frozen base policy plus a small residual network that corrects
each of its actions.

The base (any saved policy: diffusion now, later autoregressive or VLA, or one behind a policy server) plays its
chunks open loop, as it would alone. Every control tick the residual MLP sees the base's normalised state
features (clamped to +-``state_clip``) and the base action for this tick (normalised), and outputs a correction:

    a = unnormalise(normalise(a_base) + scale * residual(state, a_base))

The residual's output layer starts at zero, so a fresh ``ResidualPolicy`` acts exactly like its base. ``infer``
returns a one-action chunk: the residual acts every tick. Two heads: ``gaussian`` (PPO) outputs the mean of a Gaussian
with a fixed log-std (``log_std``); ``tanh`` (SAC / RLPD) outputs a mean and a log-std offset (from ``log_std``) of a
Gaussian squashed by tanh, so the residual stays in (-1, 1). Inference uses the mean (its tanh for ``tanh``); with
``explore`` set to a ``torch.Generator``, ``infer`` samples instead (the RL actor). After every ``infer`` the actor's
input and the normalised base action of that tick stay in ``last_step`` (what the RL actor records).

On disk a residual policy is self-contained: its folder holds the base policy in ``base/`` next to its own weights,
so it loads, evaluates and serves like any other (``load_policy``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.core.frame import Observation
from robot_learning.datasets.stats import OBS_PREFIX
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.policies.base import ActionChunk, Policy


HEADS = ("gaussian", "tanh")
LOG_STD_MIN = -5.0               # the tanh head's log-std lies in [LOG_STD_MIN, log_std]


@dataclass(frozen=True)
class ResidualConfig:
    """hidden: MLP widths. scale: residual step in normalised action units. log_std: the exploration noise
    of PPO (fixed, in residual units), or the initial one of the tanh head. state_clip: the normalised state is
    clamped to +-state_clip. head: gaussian (PPO) or tanh (SAC / RLPD). select (EXPO): the policy carries its Q
    ensemble (``ensemble`` members of ``critic_hidden`` widths) and each tick executes whichever of the base action
    (a zero residual) and the residual's action the critic values more."""

    hidden: tuple[int, ...] = (256, 256)
    scale: float = 0.1
    log_std: float = -2.0
    state_clip: float = 3.0
    head: str = "gaussian"
    select: bool = False
    ensemble: int = 4
    critic_hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ConfigError.expected("residual hidden widths", "one or more positive ints", self.hidden)
        if not self.scale > 0:
            raise ConfigError.expected("residual scale", "> 0", self.scale)
        if not self.state_clip > 0:
            raise ConfigError.expected("state_clip", "> 0", self.state_clip)
        if self.head not in HEADS:
            raise ConfigError.expected("residual head", " or ".join(HEADS), repr(self.head))

    def to_json(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        d["critic_hidden"] = list(self.critic_hidden)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ResidualConfig:
        extra = sorted(set(d) - set(cls.__dataclass_fields__))
        if extra:
            raise ConfigError.expected("residual config keys", sorted(cls.__dataclass_fields__), f"unexpected {extra}")
        d = dict(d)
        for k in ("hidden", "critic_hidden"):
            if k in d:
                d[k] = tuple(int(h) for h in d[k])
        return cls(**d)


RESIDUAL_LIMIT = 0.999           # |residual| of the tanh head (executed actions beyond it are clipped to it)


@dataclass(frozen=True)
class ResidualStep:
    """One ``infer`` of a residual policy: the tick, the actor's input, the normalised base action."""

    t_ns: int
    x: np.ndarray
    base_n: np.ndarray


def mlp(inp: int, hidden: tuple[int, ...], out: int, zero_last: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), nn.Tanh()]
        inp = h
    last = nn.Linear(inp, out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


def state_features(features: FeatureSet) -> FeatureSet:
    """The numeric state features among a policy's observation features (what the residual sees)."""
    return FeatureSet([s for s in features if s.kind is FeatureKind.STATE])


class ResidualPolicy(nn.Module, Policy):
    kind = "residual"

    def __init__(self, base: Policy, config: ResidualConfig = ResidualConfig(), meta: Mapping[str, Any] | None = None):
        from robot_learning.policies.chunk_policy import ChunkPolicy

        super().__init__()
        if not isinstance(base, ChunkPolicy):
            raise ConfigError("a residual needs a learned base policy with its normaliser (a saved policy folder); "
                              f"a {base.kind} policy has none")
        normalizer = base.normalizer
        self.config = config
        self.base = base
        self.observation_features, self.action_features = base.observation_features, base.action_features
        self.control_period_ns = int(base.control_period_ns)
        self.normalizer = normalizer
        self.state_feats = state_features(base.observation_features)
        if not len(self.state_feats):
            raise SpecMismatchError.expected("base policy observation", "at least one state feature",
                                             list(base.observation_features.names))
        self.state_dim = sum(s.size for s in self.state_feats)
        self.action_dim = sum(s.size for s in self.action_features)
        outputs = self.action_dim * (2 if config.head == "tanh" else 1)
        self.actor = mlp(self.state_dim + self.action_dim, config.hidden, outputs, zero_last=True)
        self.q = None
        if config.select:
            from robot_learning.rl.sac import QEnsemble

            self.q = QEnsemble(self.state_dim + self.action_dim, self.action_dim, tuple(config.critic_hidden),
                               config.ensemble)
        self.meta = dict(meta if meta is not None else base.meta)
        self.last_latency_s = 0.0
        self.explore: torch.Generator | None = None
        self.last_step: ResidualStep | None = None
        self._chunk: ActionChunk | None = None
        for p in self.base_parameters():
            p.requires_grad_(False)

    @property
    def sampler(self):
        """The base's sampler (``eval --sampler`` sets it)."""
        return self.base.sampler

    def set_sampler(self, kind: str, steps: int | None = None, temperature: float | None = None) -> None:
        self.base.set_sampler(kind, steps, *(() if temperature is None else (temperature,)))

    def base_parameters(self):
        return self.base.parameters()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.actor.parameters())

    # --- the residual's inputs and outputs (batched, torch) -------------------------------------
    def state_input(self, values: Mapping[str, Any]) -> torch.Tensor:
        """(B, state_dim) normalised, clamped state from ``values`` (feature name -> (B, *shape))."""
        parts = []
        for s in self.state_feats:
            x = torch.from_numpy(np.array(values[s.name], dtype=np.float32)).reshape(-1, s.size)
            key = OBS_PREFIX + s.name
            if key in self.normalizer.modes:
                x = self.normalizer.normalize(key, x)
            parts.append(x)
        c = self.config.state_clip
        return torch.cat(parts, dim=1).clamp(-c, c)

    def actor_input(self, state_n: torch.Tensor, base_n: torch.Tensor) -> torch.Tensor:
        return torch.cat([state_n, base_n], dim=1)

    def distribution(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the residual's Gaussian before any squashing, each (B, Da)."""
        out = self.actor(x)
        da = self.action_dim
        if self.config.head == "gaussian":
            return out, torch.full_like(out, self.config.log_std)
        # the tanh head's noise only shrinks from ``log_std`` (the exploration the base was measured to tolerate)
        return out[:, :da], (self.config.log_std + out[:, da:]).clamp(LOG_STD_MIN, self.config.log_std)

    def residual_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic residual (what inference executes)."""
        mean, _ = self.distribution(x)
        return torch.tanh(mean) if self.config.head == "tanh" else mean

    def sample_residual(self, x: torch.Tensor, generator: torch.Generator | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual, log-prob) sampled with the reparameterisation trick (gradients flow through both). The tanh
        head's log-prob includes the squashing correction."""
        mean, log_std = self.distribution(x)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
        u = mean + log_std.exp() * eps
        logp = (-0.5 * eps ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        if self.config.head == "gaussian":
            return u, logp
        # log(1 - tanh(u)^2), computed stably
        logp = logp - (2 * (math.log(2.0) - u - torch.nn.functional.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), logp

    def select(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """EXPO's choice per row: ``r``, or the zero residual (the base action) where the critic (mean over its
        ensemble) values that more."""
        with torch.no_grad():
            q_edit, q_base = self.q(x, r).mean(0), self.q(x, torch.zeros_like(r)).mean(0)
        return torch.where((q_base > q_edit).unsqueeze(-1), torch.zeros_like(r), r)

    def residual_of(self, base_n: torch.Tensor, action_n: torch.Tensor) -> torch.Tensor:
        """The residual that turns the normalised base action into the normalised ``action_n`` (an executed or a
        human action), limited to the tanh head's range."""
        r = (action_n - base_n) / self.config.scale
        return r.clamp(-RESIDUAL_LIMIT, RESIDUAL_LIMIT) if self.config.head == "tanh" else r

    def combine(self, base_n: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Unnormalised action from the normalised base action and a residual sample."""
        return self.normalizer.unnormalize("action", base_n + self.config.scale * residual)

    # --- Policy interface -----------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        self.base.reset(seed)
        self._chunk = None
        self.last_step = None

    def _base_action(self, observation: Observation) -> np.ndarray:
        """The base chunk's action for this tick (a new chunk when the current one has run out)."""
        t = int(observation.t_ns)
        ch = self._chunk
        i = None if ch is None else int(round((t - int(ch.t_ns[0])) / self.control_period_ns))
        if ch is None or i is None or not 0 <= i < len(ch):
            ch = self._chunk = self.base.infer(observation)
            i = 0
        else:
            self.base.observe(observation)
        return np.array(ch.actions[i], dtype=np.float32)   # a copy: chunks are read-only

    def observe(self, observation: Observation) -> None:
        self._base_action(observation)

    @torch.no_grad()
    def infer(self, observation: Observation) -> ActionChunk:
        t0 = time.perf_counter()
        a_base = self._base_action(observation)
        base_n = self.normalizer.normalize("action", torch.from_numpy(a_base).reshape(1, -1))
        state_n = self.state_input({s.name: observation.values[s.name][None] for s in self.state_feats})
        x = self.actor_input(state_n, base_n)
        r = self.residual_mean(x) if self.explore is None else self.sample_residual(x, self.explore)[0]
        if self.q is not None:
            r = self.select(x, r)
        action = self.combine(base_n, r)[0].numpy().astype(np.float32)
        if not np.all(np.isfinite(action)):
            raise SpecMismatchError("residual policy produced a non-finite action; the checkpoint is broken")
        self.last_latency_s = time.perf_counter() - t0
        self.last_step = ResidualStep(int(observation.t_ns), x[0].numpy(), base_n[0].numpy())
        return ActionChunk(action[None], np.array([int(observation.t_ns)], dtype=np.int64), self.action_features)

    # --- checkpoints ----------------------------------------------------------------------------
    def weights(self) -> dict[str, torch.Tensor]:
        """The residual's own weights: the actor's (its keys as they are) and, with ``select``, the critic's
        (keys prefixed ``q.``)."""
        w = {k: v.detach().cpu().contiguous() for k, v in self.actor.state_dict().items()}
        if self.q is not None:
            w.update({f"q.{k}": v.detach().cpu().contiguous() for k, v in self.q.state_dict().items()})
        return w

    def load_weights(self, weights: Mapping[str, torch.Tensor]) -> None:
        from robot_learning.policies.checkpoint import load_weights

        load_weights(self.actor, {k: v for k, v in weights.items() if not k.startswith("q.")}, "residual policy")
        if self.q is not None:
            load_weights(self.q, {k[2:]: v for k, v in weights.items() if k.startswith("q.")}, "residual critic")
    def save(self, path, meta: Mapping[str, Any] | None = None) -> Path:
        """``path/`` = config.json + model.safetensors (the residual) + normalizer.safetensors + base/ (the base)."""
        import json

        from safetensors.numpy import save_file as save_numpy
        from safetensors.torch import save_file as save_torch

        from robot_learning.policies.checkpoint import FORMAT, VERSION, atomic_dir, commit_dir

        path = Path(path)
        tmp = atomic_dir(path)
        self.base.save(tmp / "base")
        save_torch(self.weights(), str(tmp / "model.safetensors"))
        arrays, norm_cfg = self.normalizer.state_dict()
        save_numpy({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / "normalizer.safetensors"))
        doc = {"format": FORMAT, "version": VERSION, "policy": self.kind,
               "config": {"residual": self.config.to_json(), "base": "base"},
               "normalizer": norm_cfg, "meta": {**self.meta, **(meta or {})}}
        (tmp / "config.json").write_text(json.dumps(doc, indent=2))
        commit_dir(tmp, path)
        return path

    @classmethod
    def from_checkpoint(cls, doc: Mapping[str, Any], weights: Mapping[str, torch.Tensor], normalizer,
                        device: str = "cpu", directory: Path | None = None) -> ResidualPolicy:
        from robot_learning.policies.checkpoint import load_policy

        if directory is None:
            raise ConfigError("a residual policy loads from its folder (its base is in base/)")
        cfg = doc.get("config", {})
        if "residual" not in cfg:
            raise ConfigError("checkpoint config: missing 'residual'")
        base = load_policy(Path(directory) / str(cfg.get("base", "base")), device=device)
        policy = cls(base, ResidualConfig.from_json(cfg["residual"]), doc.get("meta"))
        policy.load_weights(weights)
        return policy.eval()
