"""``ChunkCritic``: Q(observation, action chunk) learned offline (IQL or Cal-QL), for value-guided steering.

Networks: an ensemble of ``n_q`` Q-heads and one V-head, MLPs with LayerNorm (as in RLPD / SERL), over the
normalised state features (mean / std from the training data, clamped to +-5) and the normalised chunk
(min / max to [-1, 1], flattened). ``score`` is the minimum over the Q-heads (the conservative estimate).

Losses (sparse success reward, terminal at the episode's end, one step = one chunk, discount ``gamma``):

- **IQL** (Kostrikov et al. 2022): V regresses an upper expectile (``expectile``, 0.7) of the target Q;
  each Q regresses ``r + gamma * (1 - done) * V(s')``; no action outside the data is ever queried.
- **Cal-QL** (Nakamoto et al. 2023): the same backup plus the conservative term
  ``alpha * (logsumexp_j Q(s, a_j) - Q(s, a_data))`` over sampled chunks ``a_j`` (uniform in the normalised
  box, and the data chunk with Gaussian noise; with no actor to sample from, these stand in for the policy's
  chunks), where each sampled Q is floored by the Monte-Carlo return of the data transition
  (``max(Q(s, a_j), G)``): the calibration that keeps Q from sinking below what the data achieved.

On disk: ``config.json`` (``robot-learning-critic``) + ``critic.safetensors`` (weights and normaliser); no pickle.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_learning.core.features import FeatureSet
from robot_learning.errors import ConfigError, SpecMismatchError

FORMAT = "robot-learning-critic"
STATE_CLIP = 5.0


@dataclass(frozen=True)
class CriticConfig:
    algo: str = "calql"
    horizon: int = 8
    gamma: float = 0.98
    hidden: tuple[int, ...] = (256, 256)
    n_q: int = 2
    expectile: float = 0.7
    cql_alpha: float = 1.0
    cql_samples: int = 8
    tau: float = 0.005

    def __post_init__(self) -> None:
        if self.algo not in ("iql", "calql"):
            raise ConfigError.expected("critic algorithm", "'iql' or 'calql'", repr(self.algo))
        if self.horizon < 1 or self.n_q < 1 or self.cql_samples < 1:
            raise ConfigError.expected("horizon / n_q / cql_samples", ">= 1", (self.horizon, self.n_q, self.cql_samples))
        if not (0 < self.gamma < 1 and 0.5 <= self.expectile < 1):
            raise ConfigError.expected("gamma / expectile", "0 < gamma < 1, 0.5 <= expectile < 1",
                                       (self.gamma, self.expectile))

    def to_json(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CriticConfig:
        extra = sorted(set(d) - set(cls.__dataclass_fields__))
        if extra:
            raise ConfigError.expected("critic config keys", sorted(cls.__dataclass_fields__), f"unexpected {extra}")
        d = dict(d)
        d["hidden"] = tuple(d.get("hidden", (256, 256)))
        return cls(**d)


def ln_mlp(inp: int, hidden: tuple[int, ...], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(inp, h), nn.LayerNorm(h), nn.ReLU()]
        inp = h
    layers.append(nn.Linear(inp, out))
    return nn.Sequential(*layers)


class ChunkCritic(nn.Module):
    def __init__(self, config: CriticConfig, state_features: FeatureSet, action_features: FeatureSet,
                 state_mean: np.ndarray, state_std: np.ndarray, action_min: np.ndarray, action_max: np.ndarray,
                 meta: Mapping[str, Any] | None = None):
        super().__init__()
        self.config, self.state_features, self.action_features = config, state_features, action_features
        self.state_dim = sum(s.size for s in state_features)
        self.action_dim = sum(s.size for s in action_features)
        self.meta = dict(meta or {})
        for name, arr, n in (("state_mean", state_mean, self.state_dim), ("state_std", state_std, self.state_dim),
                             ("action_min", action_min, self.action_dim), ("action_max", action_max, self.action_dim)):
            arr = np.asarray(arr, dtype=np.float32).reshape(-1)
            if arr.shape != (n,) or not np.all(np.isfinite(arr)):
                raise SpecMismatchError.expected(f"critic {name}", f"({n},) finite", arr.shape)
            self.register_buffer(name, torch.from_numpy(arr.copy()))
        inp = self.state_dim + config.horizon * self.action_dim
        self.qs = nn.ModuleList([ln_mlp(inp, config.hidden, 1) for _ in range(config.n_q)])
        self.v = ln_mlp(self.state_dim, config.hidden, 1)

    # --- inputs ----------------------------------------------------------------------------------
    def norm_state(self, s: torch.Tensor) -> torch.Tensor:
        return ((s - self.state_mean) / self.state_std.clamp_min(1e-6)).clamp(-STATE_CLIP, STATE_CLIP)

    def norm_chunk(self, a: torch.Tensor) -> torch.Tensor:
        """(B, H, Da) -> (B, H * Da) in [-1, 1] over the data's range."""
        span = (self.action_max - self.action_min).clamp_min(1e-6)
        return (2 * (a - self.action_min) / span - 1).reshape(a.shape[0], -1)

    def q_all(self, s_n: torch.Tensor, a_n: torch.Tensor) -> torch.Tensor:
        """(n_q, B) from normalised inputs."""
        x = torch.cat([s_n, a_n], dim=-1)
        return torch.stack([q(x).squeeze(-1) for q in self.qs])

    def value(self, s_n: torch.Tensor) -> torch.Tensor:
        return self.v(s_n).squeeze(-1)

    def state_vector(self, values: Mapping[str, Any]) -> torch.Tensor:
        """(B, S) raw state from feature name -> (B, *shape) values, in the critic's feature order."""
        missing = [s.name for s in self.state_features if s.name not in values]
        if missing:
            raise SpecMismatchError.expected("observation for the critic", list(self.state_features.names),
                                             f"missing {missing}")
        return torch.cat([torch.from_numpy(np.array(values[s.name], dtype=np.float32)).reshape(-1, s.size)
                          for s in self.state_features], dim=1)

    @torch.no_grad()
    def score(self, values: Mapping[str, Any], chunks: np.ndarray) -> np.ndarray:
        """Q (min over heads) of each of ``chunks`` (K, H, Da) unnormalised, in the state ``values`` (one
        observation: feature -> array of the feature's shape)."""
        chunks = np.asarray(chunks, dtype=np.float32)
        if chunks.ndim != 3 or chunks.shape[1:] != (self.config.horizon, self.action_dim):
            raise SpecMismatchError.expected("chunks to score", ("K", self.config.horizon, self.action_dim),
                                             chunks.shape)
        s = self.state_vector({k: np.asarray(v)[None] for k, v in values.items()})
        s_n = self.norm_state(s).expand(chunks.shape[0], -1)
        return self.q_all(s_n, self.norm_chunk(torch.tensor(chunks))).min(0).values.numpy()

    # --- losses ----------------------------------------------------------------------------------
    def losses(self, target: ChunkCritic, batch: Mapping[str, torch.Tensor], generator: torch.Generator) -> dict:
        c = self.config
        s_n, s2_n = self.norm_state(batch["state"]), self.norm_state(batch["next_state"])
        a_n = self.norm_chunk(batch["chunk"])
        with torch.no_grad():
            q_t = target.q_all(s_n, a_n).min(0).values
            backup = batch["reward"] + c.gamma * (1 - batch["done"]) * target.value(s2_n)
        v = self.value(s_n)
        diff = q_t - v
        w = torch.where(diff > 0, c.expectile, 1 - c.expectile)
        v_loss = (w * diff ** 2).mean()
        q = self.q_all(s_n, a_n)
        td_loss = ((q - backup) ** 2).mean(1).sum()
        out = {"v_loss": v_loss, "td_loss": td_loss, "q_data": q.mean().detach()}
        loss = td_loss + v_loss
        if c.algo == "calql":
            b, k = a_n.shape[0], c.cql_samples
            uni = torch.rand((b, k, a_n.shape[1]), generator=generator) * 2 - 1
            near = (a_n[:, None] + 0.1 * torch.randn((b, k, a_n.shape[1]), generator=generator)).clamp(-1, 1)
            samples = torch.cat([uni, near], dim=1)                                   # (B, 2k, A)
            s_rep = s_n[:, None].expand(-1, samples.shape[1], -1)
            q_s = self.q_all(s_rep.reshape(-1, s_n.shape[1]), samples.reshape(-1, a_n.shape[1]))
            q_s = q_s.reshape(c.n_q, b, samples.shape[1])
            q_s = torch.maximum(q_s, batch["mc_return"][None, :, None])                # calibration floor
            cat = torch.cat([q_s, q[:, :, None]], dim=2)
            gap = (torch.logsumexp(cat, dim=2) - math.log(cat.shape[2]) - q).mean(1).sum()
            loss = loss + c.cql_alpha * gap
            out["cql_gap"] = gap.detach()
        out["loss"] = loss
        return out

    # --- files -----------------------------------------------------------------------------------
    def save(self, path: Path, meta: Mapping[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        from robot_learning.policies.checkpoint import atomic_dir, commit_dir

        tmp = atomic_dir(Path(path))
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(tmp / "critic.safetensors"))
        doc = {"format": FORMAT, "version": 1, "config": self.config.to_json(),
               "state_features": self.state_features.to_json(), "action_features": self.action_features.to_json(),
               "meta": {**self.meta, **(meta or {})}}
        (tmp / "config.json").write_text(json.dumps(doc, indent=2))
        commit_dir(tmp, Path(path))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> ChunkCritic:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from robot_learning.policies.checkpoint import load_weights

        p = Path(path)
        if not (p / "config.json").is_file() and (p / "critic" / "config.json").is_file():
            p = p / "critic"          # a critic training run folder
        if not (p / "config.json").is_file():
            raise ConfigError(f"critic {p}: no config.json (train one with robot-learning critic train)")
        try:
            doc = json.loads((p / "config.json").read_text())
            weights = load_file(str(p / "critic.safetensors"))
        except (OSError, json.JSONDecodeError, SafetensorError, ValueError) as e:
            raise ConfigError(f"critic {p}: unreadable ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ConfigError.expected(f"critic {p}/config.json", f"format {FORMAT!r}",
                                       doc.get("format") if isinstance(doc, dict) else type(doc).__name__)
        try:
            sf, af = FeatureSet.from_json(doc["state_features"]), FeatureSet.from_json(doc["action_features"])
            cfg = CriticConfig.from_json(doc["config"])
        except KeyError as e:
            raise ConfigError(f"critic {p}/config.json: missing {e}") from None
        s, a = sum(x.size for x in sf), sum(x.size for x in af)
        critic = cls(cfg, sf, af, np.zeros(s), np.ones(s), -np.ones(a), np.ones(a), doc.get("meta"))
        load_weights(critic, weights, "critic")
        return critic.eval()


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)


def auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` separating ``labels`` (None when one class is missing)."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return None
    ranks = np.argsort(np.argsort(np.concatenate([pos, neg]))) + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))

