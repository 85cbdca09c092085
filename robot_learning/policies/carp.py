"""CARP (Gong et al. 2024, "Visuomotor Policy Learning via Coarse-to-Fine Autoregressive Prediction"), stage 2:
a GPT that predicts a whole scale of action tokens per pass, coarse to fine.

The action chunk (Tp steps, the dataset windows' layout) is tokenized by the frozen stage-1 tokenizer
(``carp_tokenizer.MultiScaleVQ``: per action dimension, tokens at scales 1, 2, 3, 4 of a 4-step latent). The
GPT's input for scale k is the reconstruction of the coarser scales resized to that scale (VAR's
next-scale prediction), one token per (dimension, step) with learned dimension / scale / step embeddings;
attention is block-causal over scales; the observations (encoded as in every family, flattened) condition
every block through adaptive layer norm (adaLN-Zero). Training: cross-entropy of every scale's tokens under
teacher forcing. Inference: as many passes as scales (a key/value cache keeps the coarser scales), each
scale's tokens drawn at once with top-k sampling (CARP: k = 10) or greedily, then the tokenizer's decoder.

The tokenizer's weights ship inside the policy's checkpoint, and its action normaliser is the policy's.
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
from robot_learning.policies.autoregressive import Decoding, choose_tokens
from robot_learning.policies.carp_tokenizer import MultiScaleVQ, TokenizerConfig
from robot_learning.policies.chunk_policy import (ChunkPolicy, check_norms, check_windows, config_from_json,
                                                  config_to_json)
from robot_learning.policies.nets.encoders import EncoderConfig
from robot_learning.policies.nets.gpt import GPT, KVCache, block_causal_mask

DECODINGS = ("sample", "greedy")


@dataclass(frozen=True)
class CARPConfig:
    """Architecture and decoding of a CARP policy. tokenizer: the stage-1 tokenizer's config (its Tp is this
    policy's). top_k: candidates per token when sampling (CARP: 10). The GPT's defaults are CPU-sized (``train
    --size paper``: 512 wide, 8 layers)."""

    To: int = 2
    Tp: int = 16
    Ta: int = 8
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    dropout: float = 0.1
    decoding: str = "sample"
    top_k: int = 10
    temperature: float = 1.0
    state_norm: str = "minmax"
    tactile_norm: str = "meanstd"
    action_norm: str = "minmax"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        check_windows(self.To, self.Tp, self.Ta)
        check_norms(self)
        if self.tokenizer.Tp != self.Tp:
            raise ConfigError.expected("CARP tokenizer horizon", f"the policy's Tp {self.Tp}", self.tokenizer.Tp)
        if self.decoding not in DECODINGS:
            raise ConfigError.expected("decoding", f"one of {list(DECODINGS)}", repr(self.decoding))
        if self.top_k < 1 or not self.temperature > 0:
            raise ConfigError.expected("top_k / temperature", ">= 1 / > 0", (self.top_k, self.temperature))

    def to_json(self) -> dict:
        d = config_to_json(self)
        d["tokenizer"] = self.tokenizer.to_json()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CARPConfig:
        d = dict(d)
        if "tokenizer" in d:
            d["tokenizer"] = TokenizerConfig.from_json(d["tokenizer"])
        return config_from_json(cls, d)


class CARPPolicy(ChunkPolicy):
    """Coarse-to-fine autoregressive policy (see the module docstring)."""

    kind = "carp"
    config_cls = CARPConfig

    def __init__(self, config: CARPConfig, observation_features: FeatureSet, action_features: FeatureSet,
                 normalizer: Normalizer, control_period_ns: int, meta: Mapping[str, Any] | None = None):
        super().__init__(config, observation_features, action_features, normalizer, control_period_ns, meta)
        c, e, da = config, config.d_model, self.action_dim
        self.tokenizer = MultiScaleVQ(c.tokenizer, da)
        for p in self.tokenizer.parameters():
            p.requires_grad_(False)
        self.scales = tuple(c.tokenizer.scales)
        sizes = [da * s for s in self.scales]
        self.cond = nn.Sequential(nn.Linear(c.To * self.encoder.out_dim, e), nn.SiLU(), nn.Linear(e, e))
        self.inp = nn.Linear(c.tokenizer.code_dim, e)
        self.dim_emb = nn.Parameter(torch.zeros(1, da, 1, e))
        self.scale_emb = nn.Parameter(torch.zeros(len(self.scales), e))
        self.step_emb = nn.Parameter(torch.zeros(sum(self.scales), e))      # one per (scale, step)
        self.start = nn.Parameter(torch.zeros(1, da, 1, e))
        for p in (self.dim_emb, self.scale_emb, self.step_emb, self.start):
            nn.init.normal_(p, std=0.02)
        self.gpt = GPT(e, c.n_heads, c.n_layers, c.dropout, cond_dim=e)
        self.head = nn.Linear(e, c.tokenizer.codebook)
        self.register_buffer("mask", block_causal_mask(sizes), persistent=False)
        self.sizes = sizes
        self.decoding = Decoding(c.decoding)

    def train(self, mode: bool = True):
        super().train(mode)
        self.tokenizer.eval()   # frozen: never updates its code usage
        return self

    # --- inputs ------------------------------------------------------------------------------
    def _embed(self, f_hat: torch.Tensor, k: int) -> torch.Tensor:
        """Scale ``k``'s input tokens from the reconstruction so far: (B, Da * s_k, E), dimension-major."""
        x = self.inp(self.tokenizer.next_input(f_hat, k))                           # (B, Da, s, E)
        off = sum(self.scales[:k])
        x = x + self.dim_emb + self.scale_emb[k] + self.step_emb[off:off + self.scales[k]]
        if k == 0:
            x = x + self.start
        return x.flatten(1, 2)

    def _condition(self, batch) -> torch.Tensor:
        return self.cond(self.encoder(self.normalized_obs(batch)).flatten(1))

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        actions = self.normalized_actions(batch)
        with torch.no_grad():
            tokens = self.tokenizer.tokenize(actions)                                # per scale (B, Da, s)
            tc = self.config.tokenizer
            f_hat = actions.new_zeros(actions.shape[0], self.action_dim, tc.code_dim, tc.latent_len)
            inputs = []
            for k, idx in enumerate(tokens):
                inputs.append(f_hat)
                f_hat = self.tokenizer.add_scale(f_hat, idx, k)
        x = torch.cat([self._embed(f, k) for k, f in enumerate(inputs)], dim=1)
        h = self.gpt(x, mask=self.mask, cond=self._condition(batch))
        target = torch.cat([t.flatten(1) for t in tokens], dim=1)                    # (B, total)
        return F.cross_entropy(self.head(h).flatten(0, 1), target.flatten())

    # --- decoding ----------------------------------------------------------------------------
    @property
    def sampler(self) -> Decoding:
        return self.decoding

    def set_sampler(self, kind: str, steps: int | None = None) -> None:
        self.decoding = Decoding.choose(kind, steps, "a CARP policy")

    def _sample(self, batch, generator, sample) -> torch.Tensor:
        sample = sample or self.decoding.kind == "sample"
        cond = self._condition(batch)
        b, da = cond.shape[0], self.action_dim
        tc = self.config.tokenizer
        f_hat = torch.zeros(b, da, tc.code_dim, tc.latent_len, device=cond.device)
        cache = KVCache(self.gpt.n_layers)
        for k, s in enumerate(self.scales):                                          # one pass per scale
            x = self._embed(f_hat, k)
            mask = torch.ones(x.shape[1], cache.length + x.shape[1], dtype=torch.bool, device=x.device)
            h = self.gpt(x, mask=mask, cache=cache, cond=cond)
            idx = choose_tokens(self.head(h), sample, generator, self.config.temperature, self.config.top_k)
            idx = idx.reshape(b, da, s)
            f_hat = self.tokenizer.add_scale(f_hat, idx, k)
        return self.tokenizer.decode(f_hat).clamp(-1.0, 1.0)
