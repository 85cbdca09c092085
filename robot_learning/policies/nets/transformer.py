"""Transformer denoiser: Diffusion Policy's time-series diffusion transformer variant.

An encoder-decoder. The memory (encoder side) is one token for the diffusion step followed by
one token per observation step; the decoder runs over the noisy action tokens with (optionally
causal) self-attention and cross-attention to the whole memory.

Shape alphabet:
    B   batch
    T   action horizon (``horizon``)
    Da  action dimension
    To  observation steps (``n_obs_steps``)
    D   per-step observation feature dimension (``obs_dim``)
    E   model width (``d_model``)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.policies.nets.unet1d import SinusoidalEmbedding, broadcast_timestep

__all__ = ["TransformerDenoiser"]


class TransformerDenoiser(nn.Module):
    """Noise/sample predictor over an action sequence, conditioned on step and observations.

    Memory: [time token (sinusoidal -> Linear), To obs tokens (Linear D -> E)] + learned positions,
    refined per token by a small MLP. Decoder: T action tokens (Linear Da -> E + learned positions),
    ``nn.TransformerDecoder`` (pre-norm, GELU); with ``causal`` action token t attends to action
    tokens <= t only. Every action token attends to the full memory. Head: LayerNorm + Linear -> Da.
    """

    def __init__(self, action_dim: int, obs_dim: int, horizon: int, n_obs_steps: int,
                 d_model: int = 256, n_heads: int = 4, n_layers: int = 6, dropout: float = 0.1,
                 causal: bool = True):
        super().__init__()
        if min(action_dim, obs_dim, horizon, n_obs_steps, d_model, n_heads, n_layers) < 1:
            raise ConfigError.expected(
                "(action_dim, obs_dim, horizon, n_obs_steps, d_model, n_heads, n_layers)",
                "all >= 1", (action_dim, obs_dim, horizon, n_obs_steps, d_model, n_heads, n_layers))
        if d_model % n_heads or d_model % 2:
            raise ConfigError.expected("d_model", f"even and divisible by n_heads={n_heads}", d_model)
        self.action_dim = action_dim
        self.obs_dim = obs_dim
        self.horizon = horizon
        self.n_obs_steps = n_obs_steps
        self.causal = causal

        self.time_embed = nn.Sequential(SinusoidalEmbedding(d_model), nn.Linear(d_model, d_model))
        self.obs_embed = nn.Linear(obs_dim, d_model)
        self.cond_pos = nn.Parameter(torch.zeros(1, 1 + n_obs_steps, d_model))
        self.cond_encoder = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.Mish(), nn.Linear(4 * d_model, d_model))

        self.action_embed = nn.Linear(action_dim, d_model)
        self.action_pos = nn.Parameter(torch.zeros(1, horizon, d_model))
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerDecoderLayer(
            d_model, n_heads, dim_feedforward=4 * d_model, dropout=dropout, activation="gelu",
            batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, n_layers)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, action_dim)
        # True marks a forbidden (query t, key s) pair: s > t.
        mask = torch.triu(torch.ones(horizon, horizon, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)
        self.apply(self._init_weights)
        nn.init.normal_(self.cond_pos, std=0.02)
        nn.init.normal_(self.action_pos, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.MultiheadAttention):
            if module.in_proj_weight is not None:
                nn.init.normal_(module.in_proj_weight, std=0.02)
            if module.in_proj_bias is not None:
                nn.init.zeros_(module.in_proj_bias)

    def forward(self, sample: Tensor, timestep: Tensor | float | int, cond: Tensor) -> Tensor:
        """sample (B, T, Da), timestep (B,) or scalar, cond (B, To, D) -> (B, T, Da)."""
        expected_sample = (self.horizon, self.action_dim)
        if sample.ndim != 3 or tuple(sample.shape[1:]) != expected_sample:
            raise SpecMismatchError.expected("sample shape", f"(B, {self.horizon}, {self.action_dim})",
                                             tuple(sample.shape))
        b = sample.shape[0]
        if cond.ndim != 3 or tuple(cond.shape) != (b, self.n_obs_steps, self.obs_dim):
            raise SpecMismatchError.expected("cond shape", f"({b}, {self.n_obs_steps}, {self.obs_dim})",
                                             tuple(cond.shape))
        steps = broadcast_timestep(timestep, b, sample.device)
        time_tok = self.time_embed(steps).unsqueeze(1)                           # (B, 1, E)
        memory = torch.cat([time_tok, self.obs_embed(cond.to(sample.dtype))], 1)  # (B, 1+To, E)
        memory = self.cond_encoder(self.drop(memory + self.cond_pos))
        x = self.drop(self.action_embed(sample) + self.action_pos)               # (B, T, E)
        x = self.decoder(x, memory, tgt_mask=self.causal_mask if self.causal else None)
        return self.head(self.norm(x))                                           # (B, T, Da)
