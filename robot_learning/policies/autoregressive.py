"""Autoregressive policy over binned action tokens (RT-1 / OpenVLA style), with a small GPT.

Tokens. Actions are normalised with the ``quantile`` mode (the 1st-99th percentile of each dimension ->
[-1, 1], clipped), then each dimension is cut into ``n_bins`` bins:

- ``uniform``: equal widths over [-1, 1], i.e. over the 1st-99th percentile (RT-1, OpenVLA);
- ``quantile``: adaptive equal-probability bins, their edges the training actions' quantiles of that
  dimension (fitted once from the dataset by ``fit_data``, saved with the weights).

A token decodes to its bin's centre (uniform) or its median training value (quantile).

Sequence: the observation tokens (each input of each of the ``To`` steps, as in ACT), a start token,
then the ``Ta`` executed actions' tokens, time-major (step 0 dim 0, step 0 dim 1, ...). The GPT is
trained with teacher forcing (cross-entropy; padded actions past an episode's end carry no loss) and
decodes ``Ta * Da`` tokens with a key/value cache: ``greedy`` (argmax) or ``sample`` (softmax at
``temperature``). ``sample_chunks`` (steering) always samples.

The predicted sequence covers ``Tp = To - 1 + Ta`` steps like the dataset windows; the ``To - 1`` past
steps are not predicted (filled with the first action, never executed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from robot_learning.core.features import FeatureSet
from robot_learning.datasets.stats import Normalizer
from robot_learning.errors import ConfigError
from robot_learning.policies.act import ObservationTokens
from robot_learning.policies.chunk_policy import (ChunkPolicy, check_norms, check_windows, JsonConfig)
from robot_learning.policies.nets.encoders import EncoderConfig
from robot_learning.policies.nets.gpt import GPT, KVCache

BINNINGS = ("uniform", "quantile")
DECODINGS = ("greedy", "sample")


@dataclass(frozen=True)
class Decoding:
    """How the autoregressive policy decodes (shown by eval as its sampler)."""

    kind: str
    steps: int | None = None

    @classmethod
    def choose(cls, kind: str, steps: int | None, policy: str) -> "Decoding":
        """``--sampler`` / ``--sampling-steps`` for a token-decoding ``policy``: greedy or sample, no steps."""
        if kind not in DECODINGS or steps is not None:
            raise ConfigError.expected(f"decoding of {policy} (--sampler)",
                                       f"one of {list(DECODINGS)}, no --sampling-steps", (kind, steps))
        return cls(kind)


def choose_tokens(logits: torch.Tensor, sample: bool, generator: torch.Generator | None, temperature: float = 1.0,
                  top_k: int | None = None) -> torch.Tensor:
    """Token ids (logits' shape without the last axis): argmax, or a draw from softmax(logits / temperature) over
    the ``top_k`` most likely (all when None)."""
    if not sample:
        return logits.argmax(-1)
    logits = logits.float()
    idx = None
    if top_k is not None and top_k < logits.shape[-1]:
        logits, idx = logits.topk(top_k, dim=-1)
    probs = F.softmax(logits / temperature, dim=-1)
    choice = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator).reshape(probs.shape[:-1])
    return choice if idx is None else idx.gather(-1, choice.unsqueeze(-1)).squeeze(-1)


@dataclass(frozen=True)
class ARConfig(JsonConfig):
    """Architecture and decoding of a binned-token autoregressive policy. Tp must be To - 1 + Ta (the tokens
    cover the executed steps). n_bins: bins per action dimension (OpenVLA: 256). binning: uniform | quantile.
    decoding: greedy | sample (temperature). The GPT's defaults are CPU-sized (0.9M parameters; ``train --size
    paper``: 512 wide, 8 layers)."""

    To: int = 2
    Tp: int = 9
    Ta: int = 8
    n_bins: int = 256
    binning: str = "uniform"
    decoding: str = "greedy"
    temperature: float = 1.0
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    dropout: float = 0.1
    state_norm: str = "minmax"
    tactile_norm: str = "meanstd"
    action_norm: str = "quantile"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        check_windows(self.To, self.Tp, self.Ta)
        if self.Tp != self.To - 1 + self.Ta:
            raise ConfigError.expected("autoregressive Tp", f"To - 1 + Ta = {self.To - 1 + self.Ta}", self.Tp)
        check_norms(self)
        if self.action_norm != "quantile":
            raise ConfigError.expected("autoregressive action_norm", "'quantile' (bins over the 1st-99th percentile)",
                                       repr(self.action_norm))
        if not 2 <= self.n_bins <= 4096:
            raise ConfigError.expected("n_bins", "2..4096", self.n_bins)
        if self.binning not in BINNINGS:
            raise ConfigError.expected("binning", f"one of {list(BINNINGS)}", repr(self.binning))
        if self.decoding not in DECODINGS:
            raise ConfigError.expected("decoding", f"one of {list(DECODINGS)}", repr(self.decoding))
        if not self.temperature > 0:
            raise ConfigError.expected("temperature", "> 0", self.temperature)


class AutoregressivePolicy(ChunkPolicy):
    """Binned-token GPT policy (see the module docstring)."""

    kind = "ar"
    config_cls = ARConfig

    def __init__(self, config: ARConfig, observation_features: FeatureSet, action_features: FeatureSet,
                 normalizer: Normalizer, control_period_ns: int, meta: Mapping[str, Any] | None = None):
        super().__init__(config, observation_features, action_features, normalizer, control_period_ns, meta)
        c, e, da = config, config.d_model, self.action_dim
        self.n_tokens = c.Ta * da
        self.obs_tokens = ObservationTokens(self.encoder, c.To, e)
        self.n_prefix = self.obs_tokens.pos.shape[1] + 1              # observation tokens + start token
        self.start = nn.Parameter(torch.zeros(1, 1, e))
        self.token_emb = nn.Embedding(c.n_bins, e)
        self.pos = nn.Parameter(torch.zeros(1, self.n_tokens, e))      # position of each action token
        self.gpt = GPT(e, c.n_heads, c.n_layers, c.dropout)
        self.head = nn.Linear(e, c.n_bins)
        for p in (self.start, self.pos):
            nn.init.normal_(p, std=0.02)
        edges = torch.linspace(-1.0, 1.0, c.n_bins + 1).repeat(da, 1)
        self.register_buffer("edges", edges)                           # (Da, n_bins + 1), normalised units
        self.register_buffer("centers", 0.5 * (edges[:, 1:] + edges[:, :-1]))
        self.decoding = Decoding(c.decoding)

    # --- bins --------------------------------------------------------------------------------
    def fit_data(self, data) -> None:
        """Quantile binning: edges and centres from the training actions (``DenseWindows``); uniform: nothing."""
        if self.config.binning != "quantile":
            return
        a = self.normalizer.normalize("action", data.tables["action"].float().cpu()).clamp(-1, 1).double()
        n = self.config.n_bins
        edges = torch.quantile(a, torch.linspace(0, 1, n + 1, dtype=torch.float64), dim=0).T   # (Da, n + 1)
        edges[:, 0], edges[:, -1] = -1.0, 1.0
        edges = edges + 1e-6 * torch.arange(n + 1, dtype=torch.float64)   # strictly increasing where values repeat
        centers = torch.quantile(a, (torch.arange(n, dtype=torch.float64) + 0.5) / n, dim=0).T
        self.edges.copy_(edges.float())
        self.centers.copy_(torch.minimum(torch.maximum(centers, edges[:, :-1]), edges[:, 1:]).float())

    def tokenize(self, actions_n: torch.Tensor) -> torch.Tensor:
        """(B, T, Da) normalised actions -> (B, T, Da) bin indices."""
        x = actions_n.clamp(-1.0, 1.0).transpose(0, 2).contiguous()                   # (Da, T, B)
        idx = torch.searchsorted(self.edges[:, 1:-1].contiguous(), x.reshape(x.shape[0], -1), right=True)
        return idx.reshape(x.shape).transpose(0, 2)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, Da) bin indices -> (B, T, Da) normalised actions."""
        da = self.action_dim
        return self.centers[torch.arange(da, device=tokens.device), tokens]

    # --- training ----------------------------------------------------------------------------
    def _prefix(self, batch) -> torch.Tensor:
        obs = self.obs_tokens(self.encoder(self.normalized_obs(batch)))
        return torch.cat([obs, self.start.expand(obs.shape[0], -1, -1)], dim=1)

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        actions = self.normalized_actions(batch)[:, c.To - 1:]
        target = self.tokenize(actions).reshape(actions.shape[0], -1)                   # (B, N)
        x = torch.cat([self._prefix(batch), self.token_emb(target[:, :-1]) + self.pos[:, :-1]], dim=1)
        logits = self.head(self.gpt(x)[:, self.n_prefix - 1:])                          # (B, N, bins)
        loss = F.cross_entropy(logits.reshape(-1, c.n_bins), target.reshape(-1), reduction="none")
        pad = batch.get("action_is_pad")
        if pad is None:
            return loss.mean()
        keep = (~pad[:, c.To - 1:].bool()).repeat_interleave(self.action_dim, dim=1).reshape(-1).to(loss.dtype)
        return (loss * keep).sum() / keep.sum().clamp_min(1.0)

    # --- decoding ----------------------------------------------------------------------------
    @property
    def sampler(self) -> Decoding:
        return self.decoding

    def set_sampler(self, kind: str, steps: int | None = None) -> None:
        self.decoding = Decoding.choose(kind, steps, "an autoregressive policy")

    def _sample(self, batch, generator, sample) -> torch.Tensor:
        c = self.config
        sample = sample or self.decoding.kind == "sample"
        cache = KVCache(self.gpt.n_layers)
        h = self.gpt(self._prefix(batch), cache=cache)[:, -1]
        tokens = []
        for j in range(self.n_tokens):
            tok = choose_tokens(self.head(h), sample, generator, self.config.temperature)
            tokens.append(tok)
            if j + 1 < self.n_tokens:
                h = self.gpt((self.token_emb(tok) + self.pos[0, j]).unsqueeze(1), cache=cache)[:, -1]
        tok = torch.stack(tokens, dim=1).reshape(-1, c.Ta, self.action_dim)
        acts = self.detokenize(tok)
        if c.To > 1:
            acts = torch.cat([acts[:, :1].expand(-1, c.To - 1, -1), acts], dim=1)
        return acts

    @torch.no_grad()
    def token_accuracy(self, batch: Mapping[str, torch.Tensor]) -> float:
        """Greedy next-token accuracy under teacher forcing (a training diagnostic)."""
        c = self.config
        actions = self.normalized_actions(batch)[:, c.To - 1:]
        target = self.tokenize(actions).reshape(actions.shape[0], -1)
        x = torch.cat([self._prefix(batch), self.token_emb(target[:, :-1]) + self.pos[:, :-1]], dim=1)
        pred = self.head(self.gpt(x)[:, self.n_prefix - 1:]).argmax(-1)
        return float((pred == target).float().mean())
