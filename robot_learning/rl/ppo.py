"""PPO pieces for a residual actor (ResiP's settings): a Gaussian actor with a fixed log-std over the residual
policy's MLP, a separate value network, generalised advantage estimation, reward normalisation by the running
spread of the discounted return, and the clipped-ratio update with a KL early stop.

Shapes: ``T`` rollout steps, ``N`` envs, ``X`` actor input (normalised state + normalised base action),
``Da`` action dimension.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from robot_learning.errors import ConfigError
from robot_learning.policies.residual import mlp


@dataclass(frozen=True)
class PPOConfig:
    """gamma / gae_lambda: discount and GAE. clip: ratio clip. target_kl: an update epoch stops the update when
    the approximate KL to the rollout policy passes it. epochs / minibatches: passes over a rollout and splits
    per pass. lr_actor / lr_critic: separate Adam learning rates. max_grad_norm: gradient clip. norm_reward:
    divide rewards by the running std of the discounted return."""

    gamma: float = 0.999
    gae_lambda: float = 0.95
    clip: float = 0.2
    target_kl: float = 0.1
    epochs: int = 10
    minibatches: int = 4
    lr_actor: float = 3e-4
    lr_critic: float = 5e-3
    max_grad_norm: float = 1.0
    value_coef: float = 0.5
    norm_reward: bool = True
    critic_hidden: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        if not (0 < self.gamma <= 1 and 0 <= self.gae_lambda <= 1):
            raise ConfigError.expected("gamma / gae_lambda", "0 < gamma <= 1, 0 <= lambda <= 1",
                                       (self.gamma, self.gae_lambda))
        if self.epochs < 1 or self.minibatches < 1:
            raise ConfigError.expected("epochs / minibatches", ">= 1", (self.epochs, self.minibatches))
        if not (self.clip > 0 and self.target_kl > 0 and self.lr_actor > 0 and self.lr_critic > 0):
            raise ConfigError("clip, target_kl and learning rates must be > 0")


def gaussian_logp(x: torch.Tensor, mean: torch.Tensor, log_std: float) -> torch.Tensor:
    """Log density of a diagonal Gaussian with one fixed log-std, summed over the last dim."""
    var = math.exp(2 * log_std)
    return (-0.5 * (x - mean) ** 2 / var - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


class ReturnNormalizer:
    """Running std of the discounted return per env (as gymnasium's NormalizeReward): rewards are divided by it,
    and the result clipped to +-``clip``. With a sparse reward the return is 0 until the first success, so the
    std is floored (``min_std``) to keep that first success from weighing 10^4 times more than the next ones."""

    def __init__(self, n: int, gamma: float, clip: float = 10.0, min_std: float = 0.05):
        self.ret = np.zeros(n, dtype=np.float64)
        self.gamma, self.clip, self.min_std = float(gamma), float(clip), float(min_std)
        self.count, self.mean, self.var = 1e-4, 0.0, 1.0

    def __call__(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        self.ret = self.ret * self.gamma + reward
        self._update(self.ret)
        self.ret[done] = 0.0
        return np.clip(reward / max(math.sqrt(self.var), self.min_std), -self.clip, self.clip)

    def _update(self, x: np.ndarray) -> None:
        b_mean, b_var, b_n = float(x.mean()), float(x.var()), x.size
        delta, tot = b_mean - self.mean, self.count + b_n
        self.mean += delta * b_n / tot
        self.var = (self.var * self.count + b_var * b_n + delta ** 2 * self.count * b_n / tot) / tot
        self.count = tot

    def state(self) -> dict:
        return {"ret": self.ret.tolist(), "count": self.count, "mean": self.mean, "var": self.var}

    def load(self, d: dict) -> None:
        self.ret = np.asarray(d["ret"], dtype=np.float64)
        self.count, self.mean, self.var = float(d["count"]), float(d["mean"]), float(d["var"])


def gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
        done: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns, (T, N) each. ``values[t]`` = V(s_t); ``next_values[t]`` = V(s_{t+1}) of the same
    episode (for a truncated step: the value of its last state, so time limits bootstrap); ``terminated``:
    the episode ended in a terminal state (no bootstrap); ``done``: the episode ended (terminated or truncated),
    so the trace does not run across the reset."""
    T = rewards.shape[0]
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros(rewards.shape[1], dtype=np.float64)
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
        last = delta + gamma * lam * (1.0 - done[t]) * last
        adv[t] = last
    return adv, adv + values


class ValueNet(nn.Module):
    def __init__(self, inp: int, hidden: tuple[int, ...]):
        super().__init__()
        self.net = mlp(inp, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


@dataclass
class Batch:
    """One rollout, flattened to (T*N, ...)."""

    x: torch.Tensor            # actor input (normalised state + normalised base action)
    s: torch.Tensor            # critic input (normalised state)
    residual: torch.Tensor     # the sampled residual
    logp: torch.Tensor         # its log-prob under the rollout policy
    advantages: torch.Tensor
    returns: torch.Tensor


def ppo_update(actor: nn.Module, critic: ValueNet, opt_actor: torch.optim.Optimizer, opt_critic: torch.optim.Optimizer,
               batch: Batch, log_std: float, cfg: PPOConfig, generator: torch.Generator) -> dict:
    """The clipped PPO update over ``batch``; stops early when the approximate KL passes ``target_kl``."""
    n = batch.x.shape[0]
    mb = max(1, n // cfg.minibatches)
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "approx_kl": 0.0, "clip_frac": 0.0, "epochs": 0, "updates": 0}
    for _epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=generator)
        kls = []
        for start in range(0, n, mb):
            idx = perm[start:start + mb]
            x, st, r, old_logp = batch.x[idx], batch.s[idx], batch.residual[idx], batch.logp[idx]
            adv = batch.advantages[idx]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8) if adv.numel() > 1 else adv
            logp = gaussian_logp(r, actor(x), log_std)
            log_ratio = logp - old_logp
            ratio = log_ratio.exp()
            pg = -torch.min(ratio * adv, ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * adv).mean()
            v_loss = 0.5 * ((critic(st) - batch.returns[idx]) ** 2).mean()
            opt_actor.zero_grad(set_to_none=True)
            opt_critic.zero_grad(set_to_none=True)
            (pg + cfg.value_coef * v_loss).backward()
            nn.utils.clip_grad_norm_(actor.parameters(), cfg.max_grad_norm)
            nn.utils.clip_grad_norm_(critic.parameters(), cfg.max_grad_norm)
            opt_actor.step()
            opt_critic.step()
            with torch.no_grad():
                kl = ((ratio - 1) - log_ratio).mean().item()
                kls.append(kl)
                stats["clip_frac"] += ((ratio - 1).abs() > cfg.clip).float().mean().item()
            stats["policy_loss"] += pg.item()
            stats["value_loss"] += v_loss.item()
            stats["updates"] += 1
        stats["epochs"] += 1
        stats["approx_kl"] = float(np.mean(kls))
        if stats["approx_kl"] > cfg.target_kl:
            break
    for k in ("policy_loss", "value_loss", "clip_frac"):
        stats[k] /= max(1, stats["updates"])
    return stats
