"""SAC for a residual actor, with RLPD's choices (Ball et al. 2023): a LayerNorm Q ensemble whose target takes the
minimum over a random subset of its members, batches drawn half from demonstrations (and human interventions) and
half from online data, and several critic updates per environment step (the update-to-data ratio).

The actor is a ``ResidualPolicy`` with the ``tanh`` head: its input ``x`` is the normalised state with the base
action of the tick, its action the residual ``r`` in (-1, 1). Shapes: ``B`` batch, ``E`` ensemble members, ``X``
actor input, ``Da`` action dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robot_learning.errors import ConfigError


@dataclass(frozen=True)
class SACConfig:
    """gamma: discount per control tick. tau: Polyak rate of the target critics. ensemble / target_subset: Q members
    and how many of them the target's minimum takes (RLPD: 10 / 2). utd: critic updates per environment step; the
    actor and the temperature update once per step. alpha_init / target_entropy (None: -Da): the entropy
    temperature and its target. demo_fraction: share of each batch from demonstrations and interventions.
    actor_delay: critic updates before the actor's first (a fresh critic's gradient would move the residual away
    from the base at random). backup_entropy: add the entropy bonus to the critic's target (off as in SERL: with
    a sparse 0/1 reward and a narrow residual, -alpha * log pi per tick outweighs the reward; measured on lift,
    Q fell below 0 and the training success from 0.32 to 0.12 in 50 episodes). value_range: the critic's target is
    clipped to it (the sparse success reward's returns lie in [0, 1]; unclipped, Q overestimated to 1.3 on lift
    within 50 episodes and the actor chased it). residual_penalty: weight of the mean squared residual in the
    actor's loss (the residual leaves the base only where the critic sees a gain)."""

    gamma: float = 0.99
    tau: float = 0.005
    ensemble: int = 4
    target_subset: int = 2
    utd: int = 2
    batch_size: int = 256
    lr_actor: float = 3e-4
    lr_critic: float = 3e-4
    lr_alpha: float = 3e-4
    alpha_init: float = 0.01
    target_entropy: float | None = None
    demo_fraction: float = 0.5
    critic_hidden: tuple[int, ...] = (256, 256)
    actor_delay: int = 1000
    backup_entropy: bool = False
    value_range: tuple[float, float] | None = (0.0, 1.0)
    residual_penalty: float = 0.1

    def __post_init__(self) -> None:
        if not 0 < self.gamma <= 1 or not 0 < self.tau <= 1:
            raise ConfigError.expected("gamma / tau", "in (0, 1]", (self.gamma, self.tau))
        if not 1 <= self.target_subset <= self.ensemble:
            raise ConfigError.expected("--target-subset", f"1 .. --ensemble ({self.ensemble})", self.target_subset)
        if self.utd < 1 or self.batch_size < 2:
            raise ConfigError.expected("--utd / --batch-size", ">= 1 / >= 2", (self.utd, self.batch_size))
        if not 0 <= self.demo_fraction < 1:
            raise ConfigError.expected("--demo-fraction", "0 <= f < 1", self.demo_fraction)
        if not self.alpha_init > 0:
            raise ConfigError.expected("--alpha-init", "> 0", self.alpha_init)


class EnsembleLinear(nn.Module):
    def __init__(self, n: int, inp: int, out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(inp)
        self.weight = nn.Parameter(torch.empty(n, inp, out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:      # (E, B, inp) -> (E, B, out)
        return torch.baddbmm(self.bias, x, self.weight)


class QEnsemble(nn.Module):
    """``E`` independent Q(x, r) MLPs (Linear -> LayerNorm -> ReLU per hidden layer), evaluated in one batched pass."""

    def __init__(self, x_dim: int, action_dim: int, hidden: tuple[int, ...] = (256, 256), n: int = 4):
        super().__init__()
        self.n = int(n)
        layers: list[nn.Module] = []
        inp = x_dim + action_dim
        for h in hidden:
            layers += [EnsembleLinear(self.n, inp, h), nn.LayerNorm(h), nn.ReLU()]
            inp = h
        layers.append(EnsembleLinear(self.n, inp, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """(E, B) values."""
        z = torch.cat([x, r], dim=-1).unsqueeze(0).expand(self.n, -1, -1)
        return self.net(z).squeeze(-1)


class Replay:
    """A ring buffer of residual transitions (numpy, float32): x, r, reward, x_next, done, intervened."""

    FIELDS = ("x", "r", "reward", "x_next", "done", "intervened")

    def __init__(self, x_dim: int, action_dim: int, capacity: int = 1_000_000):
        if capacity < 1:
            raise ConfigError.expected("replay capacity", ">= 1", capacity)
        self.capacity = int(capacity)
        shapes = {"x": (x_dim,), "r": (action_dim,), "reward": (), "x_next": (x_dim,), "done": (), "intervened": ()}
        self.data = {k: np.zeros((self.capacity, *s), np.float32) for k, s in shapes.items()}
        self.size = 0
        self.pos = 0
        self.added = 0

    def __len__(self) -> int:
        return self.size

    def add(self, **arrays: np.ndarray) -> None:
        if set(arrays) != set(self.FIELDS):
            raise ConfigError.expected("transition fields", sorted(self.FIELDS), sorted(arrays))
        n = int(np.shape(arrays["x"])[0])
        for k, v in arrays.items():
            v = np.asarray(v, np.float32)
            if v.shape[0] != n or v.shape[1:] != self.data[k].shape[1:]:
                raise ConfigError.expected(f"transition {k} shape", (n, *self.data[k].shape[1:]), v.shape)
            if not np.all(np.isfinite(v)):
                raise ConfigError(f"transition {k}: non-finite values; refused")
        for start in range(0, n, self.capacity):
            m = min(n - start, self.capacity)
            idx = (self.pos + np.arange(m)) % self.capacity
            for k, v in arrays.items():
                self.data[k][idx] = np.asarray(v, np.float32)[start:start + m]
            self.pos = int((self.pos + m) % self.capacity)
            self.size = min(self.capacity, self.size + m)
        self.added += n

    def sample(self, n: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=n)
        return {k: torch.from_numpy(v[idx]) for k, v in self.data.items()}

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v[:self.size] for k, v in self.data.items()}


def mixed_batch(online: Replay, demos: Replay, cfg: SACConfig, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """RLPD's symmetric sampling: ``demo_fraction`` of the batch from ``demos``, the rest from ``online`` (all from
    whichever one is empty of the two)."""
    n_demo = int(round(cfg.batch_size * cfg.demo_fraction)) if len(demos) else 0
    if not len(online):
        n_demo = cfg.batch_size
    parts = [b.sample(n, rng) for b, n in ((online, cfg.batch_size - n_demo), (demos, n_demo)) if n]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class SAC:
    """The learner's state: actor (a ``ResidualPolicy``), Q ensemble and its target, temperature, optimisers."""

    def __init__(self, policy, cfg: SACConfig, seed: int = 0):
        if policy.config.head != "tanh":
            raise ConfigError("SAC needs a residual policy with the tanh head (ResidualConfig(head='tanh'))")
        self.policy, self.cfg = policy, cfg
        x_dim, da = policy.state_dim + policy.action_dim, policy.action_dim
        if policy.q is not None:       # EXPO: the policy acts with the learner's critic
            if (policy.q.n, tuple(policy.config.critic_hidden)) != (cfg.ensemble, tuple(cfg.critic_hidden)):
                raise ConfigError.expected("the residual policy's critic (ensemble, widths)",
                                           (cfg.ensemble, tuple(cfg.critic_hidden)),
                                           (policy.q.n, tuple(policy.config.critic_hidden)))
            self.q = policy.q
        else:
            self.q = QEnsemble(x_dim, da, tuple(cfg.critic_hidden), cfg.ensemble)
        self.q_target = QEnsemble(x_dim, da, tuple(cfg.critic_hidden), cfg.ensemble)
        self.q_target.load_state_dict(self.q.state_dict())
        for p in self.q_target.parameters():
            p.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(cfg.alpha_init), requires_grad=True)
        self.target_entropy = float(cfg.target_entropy if cfg.target_entropy is not None else -da)
        self.opt_actor = torch.optim.Adam(policy.actor.parameters(), lr=cfg.lr_actor)
        self.opt_q = torch.optim.Adam(self.q.parameters(), lr=cfg.lr_critic)
        self.opt_alpha = torch.optim.Adam([self.log_alpha], lr=cfg.lr_alpha)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.rng = np.random.default_rng(int(seed))
        self.critic_updates = 0
        self.actor_updates = 0

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def critic_update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.cfg
        with torch.no_grad():
            r_next, logp_next = self.policy.sample_residual(b["x_next"], self.generator)
            members = torch.randperm(cfg.ensemble, generator=self.generator)[:cfg.target_subset]
            q_next = self.q_target(b["x_next"], r_next)[members].min(0).values
            if self.policy.q is not None:    # EXPO: bootstrap with the better of the edit and the base action
                q_base = self.q_target(b["x_next"], torch.zeros_like(r_next))[members].min(0).values
                q_next = torch.maximum(q_next, q_base)
            if cfg.backup_entropy:
                q_next = q_next - self.alpha * logp_next
            target = b["reward"] + cfg.gamma * (1.0 - b["done"]) * q_next
            if cfg.value_range is not None:
                target = target.clamp(*cfg.value_range)
        q = self.q(b["x"], b["r"])
        loss = ((q - target.unsqueeze(0)) ** 2).mean(1).sum()
        self.opt_q.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_q.step()
        with torch.no_grad():
            for p, pt in zip(self.q.parameters(), self.q_target.parameters()):
                pt.lerp_(p, cfg.tau)
        self.critic_updates += 1
        return {"q_loss": float(loss.detach()) / cfg.ensemble, "q_mean": float(q.detach().mean()),
                "target_mean": float(target.mean())}

    def actor_update(self, b: dict[str, torch.Tensor]) -> dict[str, float]:
        for p in self.q.parameters():
            p.requires_grad_(False)
        try:
            r, logp = self.policy.sample_residual(b["x"], self.generator)
            q = self.q(b["x"], r).mean(0)
            loss = (self.alpha * logp - q).mean() + self.cfg.residual_penalty * (r ** 2).mean()
            self.opt_actor.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_actor.step()
        finally:
            for p in self.q.parameters():
                p.requires_grad_(True)
        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.opt_alpha.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.opt_alpha.step()
        self.actor_updates += 1
        return {"actor_loss": float(loss.detach()), "entropy": float(-logp.detach().mean()), "alpha": self.alpha}

    def step(self, online: Replay, demos: Replay) -> dict[str, float]:
        """One environment step's worth of learning: ``utd`` critic updates, then one actor and temperature update."""
        stats: dict[str, float] = {}
        for _ in range(self.cfg.utd):
            b = mixed_batch(online, demos, self.cfg, self.rng)
            stats.update(self.critic_update(b))
        if self.critic_updates > self.cfg.actor_delay:
            stats.update(self.actor_update(b))
        else:
            self.actor_updates += 1        # counts the env step's learning, the actor waits for the critic
        return stats

    # --- checkpoints --------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"actor": self.policy.actor, "q": self.q, "q_target": self.q_target}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_actor": self.opt_actor, "opt_q": self.opt_q, "opt_alpha": self.opt_alpha}
