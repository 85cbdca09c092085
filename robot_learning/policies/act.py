"""ACT (Zhao et al. 2023, "Learning Fine-Grained Bimanual Manipulation with Low-Cost Hardware"): a
conditional VAE over action chunks with a transformer encoder-decoder, and temporal ensembling.

Tokens. Each observation input (every camera's ResNet features, every state feature such as
``joint_pos_rad`` or ``cube_pos_m``, tactile) of each of the ``To`` steps becomes one token
(Linear to ``d_model``). ACT proper gives each camera its ResNet-18 feature map as 15 x 20 tokens;
here a camera is one token of spatial-softmax keypoints (the encoder the other families share), the
CPU-sized choice.

- CVAE encoder (training only): [CLS, state of the newest step, Tp action tokens] through
  ``vae_layers`` transformer layers; CLS -> (mu, log var) of a ``latent_dim`` latent ``z``. Padded
  actions (past the episode end) are masked out.
- Decoder: [z, observation tokens] through ``enc_layers`` encoder layers (the memory), then
  ``Tp`` learned queries through ``dec_layers`` decoder layers -> (Tp, Da) actions.
- Loss: L1 over the real (unpadded) actions + ``kl_weight`` * KL(q(z | obs, actions) || N(0, I)).
- Inference: z = 0 (the prior's mean). ``sample_chunks`` (steering) draws z ~ N(0, I).

Temporal ensembling (``temporal_ensemble``, ACT's default): ``infer`` predicts a whole chunk at every
tick and returns one action, the average of every stored prediction for this tick weighted by
``exp(-ensemble_m * i)`` (i = 0 the oldest prediction); without it the chunk's first ``Ta`` actions
play open loop like the other families.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Observation
from robot_learning.datasets.stats import Normalizer
from robot_learning.errors import ConfigError
from robot_learning.policies.base import ActionChunk
from robot_learning.policies.chunk_policy import (ChunkPolicy, check_norms, check_windows, JsonConfig)
from robot_learning.policies.nets.encoders import EncoderConfig, _module_key


@dataclass(frozen=True)
class ACTConfig(JsonConfig):
    """Architecture of an ACT policy. To / Tp / Ta: observation steps, chunk length, executed steps without
    temporal ensembling. d_model ... dropout: the transformer; the defaults are CPU-sized (0.46 s per batch of 64 on
    one core) where ACT has 512 wide, 4 encoder layers, 7 decoder layers of which only the first is used in the
    original code, 4 CVAE encoder layers, feed-forward 3200, 8 heads (``train --size paper``). kl_weight: beta of the
    CVAE (ACT: 10). ensemble_m: temporal ensembling's weight decay (ACT: 0.01)."""

    To: int = 1
    Tp: int = 16
    Ta: int = 8
    d_model: int = 256
    n_heads: int = 8
    enc_layers: int = 4
    dec_layers: int = 1
    vae_layers: int = 2
    ff_dim: int = 512
    dropout: float = 0.1
    latent_dim: int = 32
    kl_weight: float = 10.0
    temporal_ensemble: bool = True
    ensemble_m: float = 0.01
    state_norm: str = "meanstd"
    tactile_norm: str = "meanstd"
    action_norm: str = "meanstd"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        check_windows(self.To, self.Tp, self.Ta)
        check_norms(self)
        if min(self.d_model, self.n_heads, self.enc_layers, self.dec_layers, self.vae_layers, self.ff_dim,
               self.latent_dim) < 1 or self.d_model % self.n_heads:
            raise ConfigError.expected("ACT sizes", "positive, d_model a multiple of n_heads",
                                       f"d_model={self.d_model}, n_heads={self.n_heads}")
        if self.kl_weight < 0 or self.ensemble_m < 0:
            raise ConfigError.expected("kl_weight / ensemble_m", ">= 0", (self.kl_weight, self.ensemble_m))


def _encoder(d: int, heads: int, ff: int, dropout: float, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d, heads, ff, dropout, activation="gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ObservationTokens(nn.Module):
    """The shared per-input encoder's output (B, To, D) split per input -> (B, To * inputs, E) tokens with learned
    (step, input) embeddings."""

    def __init__(self, encoder, To: int, d_model: int):
        super().__init__()
        self.dims = [encoder.encoders[_module_key(s.name)].out_dim for s in encoder.inputs]
        self.proj = nn.ModuleList(nn.Linear(d, d_model) for d in self.dims)
        self.pos = nn.Parameter(torch.zeros(1, To * len(self.dims), d_model))
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        parts = torch.split(feats, self.dims, dim=-1)                       # each (B, To, d_i)
        tok = torch.stack([p(x) for p, x in zip(self.proj, parts)], dim=2)  # (B, To, inputs, E)
        return tok.flatten(1, 2) + self.pos


class ACTPolicy(ChunkPolicy):
    """ACT: CVAE training loss, chunk prediction, temporal ensembling (see the module docstring)."""

    kind = "act"
    config_cls = ACTConfig

    def __init__(self, config: ACTConfig, observation_features: FeatureSet, action_features: FeatureSet,
                 normalizer: Normalizer, control_period_ns: int, meta: Mapping[str, Any] | None = None):
        super().__init__(config, observation_features, action_features, normalizer, control_period_ns, meta)
        c, e = config, config.d_model
        self.obs_tokens = ObservationTokens(self.encoder, c.To, e)
        self.state_inputs = [s.name for s in self.encoder_inputs if s.kind == "state"]
        state_dim = sum(s.shape[0] for s in self.encoder_inputs if s.kind == "state")
        # CVAE encoder
        self.cls = nn.Parameter(torch.zeros(1, 1, e))
        self.vae_state = nn.Linear(state_dim, e) if state_dim else None
        self.vae_action = nn.Linear(self.action_dim, e)
        self.vae_pos = nn.Parameter(torch.zeros(1, 2 + c.Tp, e))
        self.vae = _encoder(e, c.n_heads, c.ff_dim, c.dropout, c.vae_layers)
        self.vae_out = nn.Linear(e, 2 * c.latent_dim)
        # decoder side
        self.latent_in = nn.Linear(c.latent_dim, e)
        self.latent_pos = nn.Parameter(torch.zeros(1, 1, e))
        self.memory = _encoder(e, c.n_heads, c.ff_dim, c.dropout, c.enc_layers)
        self.queries = nn.Parameter(torch.zeros(1, c.Tp, e))
        layer = nn.TransformerDecoderLayer(e, c.n_heads, c.ff_dim, c.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, c.dec_layers)
        self.head = nn.Sequential(nn.LayerNorm(e), nn.Linear(e, self.action_dim))
        for p in (self.cls, self.vae_pos, self.latent_pos, self.queries):
            nn.init.normal_(p, std=0.02)

    @property
    def can_batch(self) -> bool:
        """Open-loop chunks only (temporal ensembling infers every tick): vectorised RL batches the base then."""
        return not self.config.temporal_ensemble

    # --- the network -------------------------------------------------------------------------
    def _decode(self, obs_n: Mapping[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """Normalised observations and latents (B, latent) -> (B, Tp, Da) normalised actions."""
        tokens = self.obs_tokens(self.encoder(obs_n))
        lat = (self.latent_in(z) + self.latent_pos[:, 0]).unsqueeze(1)
        memory = self.memory(torch.cat([lat, tokens], dim=1))
        q = self.queries.expand(z.shape[0], -1, -1)
        return self.head(self.decoder(q, memory))

    def _posterior(self, obs_n: Mapping[str, torch.Tensor], actions: torch.Tensor,
                   pad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        b = actions.shape[0]
        seq = [self.cls.expand(b, -1, -1)]
        if self.vae_state is not None:
            state = torch.cat([obs_n[n][:, -1] for n in self.state_inputs], dim=-1)
            seq.append(self.vae_state(state).unsqueeze(1))
        else:
            seq.append(torch.zeros_like(seq[0]))
        seq.append(self.vae_action(actions))
        x = torch.cat(seq, dim=1) + self.vae_pos
        mask = None
        if pad is not None:
            mask = torch.cat([torch.zeros(b, 2, dtype=torch.bool, device=pad.device), pad.bool()], dim=1)
        out = self.vae_out(self.vae(x, src_key_padding_mask=mask)[:, 0])
        mu, logvar = out.chunk(2, dim=-1)
        return mu, logvar.clamp(-10.0, 10.0)

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """L1 over the real actions + kl_weight * KL (see the module docstring)."""
        actions = self.normalized_actions(batch)
        obs_n = self.normalized_obs(batch)
        pad = batch.get("action_is_pad")
        mu, logvar = self._posterior(obs_n, actions, pad)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        pred = self._decode(obs_n, z)
        l1 = (pred - actions).abs()
        if pad is not None:
            keep = (~pad.bool()).unsqueeze(-1).to(l1.dtype)
            l1 = (l1 * keep).sum() / (keep.sum() * self.action_dim).clamp_min(1.0)
        else:
            l1 = l1.mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        return l1 + self.config.kl_weight * kl

    def _sample(self, batch, generator, sample) -> torch.Tensor:
        obs_n = self.normalized_obs(batch)
        b = next(iter(obs_n.values())).shape[0]
        shape = (b, self.config.latent_dim)
        dev = self.device
        z = torch.randn(shape, generator=generator, device=dev) if sample else torch.zeros(shape, device=dev)
        return self._decode(obs_n, z)

    # --- temporal ensembling (per episode: the session's state) ------------------------------
    def reset_session(self, session) -> None:
        session.state["ensemble"] = []     # (tick of the prediction, its (Tp - To + 1, Da) actions), oldest first
        session.state["t0_ns"] = None

    def infer_session(self, session, observation: Observation) -> ActionChunk:
        if not self.config.temporal_ensemble:
            return super().infer_session(session, observation)
        c, st = self.config, session.state
        future = self.sequences(self.window(session.history), session.generator, sample=False,
                                n=c.Tp - c.To + 1)[0].astype(np.float64)   # from now on
        if st["t0_ns"] is None:
            st["t0_ns"] = int(observation.t_ns)
        tick = int(round((int(observation.t_ns) - st["t0_ns"]) / self.control_period_ns))
        st["ensemble"] = [(s, a) for s, a in st["ensemble"] if tick - s < len(a)]
        st["ensemble"].append((tick, future))
        preds = np.stack([a[tick - s] for s, a in st["ensemble"]])  # oldest first
        w = np.exp(-c.ensemble_m * np.arange(len(preds)))
        act = (w[:, None] * preds).sum(0) / w.sum()
        return ActionChunk(act[None].astype(np.float32), np.array([int(observation.t_ns)], np.int64),
                           self.action_features)
