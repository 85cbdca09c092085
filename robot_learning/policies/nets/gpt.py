"""A small GPT trunk (pre-norm transformer blocks) with a key/value cache, for the autoregressive policies.

The trunk takes embeddings, not token ids: each policy builds its own inputs (observation tokens, action
tokens, positions). ``forward(x, mask, cache)``:

- ``x`` (B, T, E) the new tokens' embeddings;
- ``mask`` None (causal over the new tokens, each also sees every cached one) or a (T, T_cache + T) bool
  tensor, True where a query may attend (CARP's block-causal scales);
- ``cache`` None (no cache kept) or a ``KVCache`` that the call extends in place.

Returns (B, T, E) after the final LayerNorm. With ``cond_dim`` the trunk is conditioned by adaptive layer norm
(adaLN-Zero, as in DiT and CARP): ``forward(..., cond=(B, cond_dim))`` sets each block's LayerNorm shift / scale and
a gate on its attention and MLP branches; the gates start at zero, so a fresh block is the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robot_learning.errors import ConfigError, SpecMismatchError

__all__ = ["GPT", "KVCache", "block_causal_mask"]


class KVCache:
    """Per-layer keys and values of the tokens seen so far, (B, H, T, E / H) each. A cache belongs to one
    sequence and its condition: a conditioned trunk computes each block's adaLN modulation on the first pass and
    keeps it here for the later ones (CARP's scale passes)."""

    def __init__(self, n_layers: int):
        self.k: list[Tensor | None] = [None] * n_layers
        self.v: list[Tensor | None] = [None] * n_layers
        self.modulation: list[tuple[Tensor, ...] | None] = [None] * n_layers

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else int(self.k[0].shape[2])


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float, cond_dim: int | None = None):
        super().__init__()
        self.h = n_heads
        affine = cond_dim is None
        self.ln1 = nn.LayerNorm(d_model, elementwise_affine=affine)
        self.ln2 = nn.LayerNorm(d_model, elementwise_affine=affine)
        self.ada = None
        if cond_dim is not None:   # shift1, scale1, gate1, shift2, scale2, gate2
            self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * d_model))
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def forward(self, x: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int,
                cond: Tensor | None = None) -> Tensor:
        b, t, e = x.shape
        if self.ada is not None:
            mod = None if cache is None else cache.modulation[layer]
            if mod is None:
                mod = self.ada(cond).unsqueeze(1).chunk(6, dim=-1)
                if cache is not None:
                    cache.modulation[layer] = mod
            sh1, sc1, g1, sh2, sc2, g2 = mod
            h = self.ln1(x) * (1 + sc1) + sh1
        else:
            h, g1, g2 = self.ln1(x), 1.0, 1.0
        q, k, v = self.qkv(h).view(b, t, 3, self.h, e // self.h).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache.k[layer] is not None:
                k = torch.cat([cache.k[layer], k], dim=2)
                v = torch.cat([cache.v[layer], v], dim=2)
            cache.k[layer], cache.v[layer] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        x = x + g1 * self.drop(self.proj(y.transpose(1, 2).reshape(b, t, e)))
        h = self.ln2(x) * (1 + sc2) + sh2 if self.ada is not None else self.ln2(x)
        return x + g2 * self.drop(self.mlp(h))


class GPT(nn.Module):
    """Decoder-only transformer trunk (see the module docstring)."""

    def __init__(self, d_model: int = 256, n_heads: int = 4, n_layers: int = 4, dropout: float = 0.1,
                 cond_dim: int | None = None):
        super().__init__()
        if min(d_model, n_heads, n_layers) < 1 or d_model % n_heads:
            raise ConfigError.expected("GPT sizes", "positive, d_model a multiple of n_heads",
                                       f"d_model={d_model}, n_heads={n_heads}, n_layers={n_layers}")
        self.n_layers = n_layers
        self.cond_dim = cond_dim
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout, cond_dim) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.apply(self._init)
        for blk in self.blocks:   # adaLN-Zero: every gate and modulation starts at zero
            if blk.ada is not None:
                nn.init.zeros_(blk.ada[1].weight)
                nn.init.zeros_(blk.ada[1].bias)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, cache: KVCache | None = None,
                cond: Tensor | None = None) -> Tensor:
        if (cond is None) != (self.cond_dim is None):
            raise SpecMismatchError.expected("GPT condition", f"a (B, {self.cond_dim}) tensor" if self.cond_dim
                                             else "none (built without cond_dim)", None if cond is None else
                                             tuple(cond.shape))
        past = cache.length if cache is not None else 0
        t = x.shape[1]
        if mask is None:
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past) if t > 1 else None
        elif tuple(mask.shape) != (t, past + t):
            raise SpecMismatchError.expected("attention mask shape", (t, past + t), tuple(mask.shape))
        for i, blk in enumerate(self.blocks):
            x = blk(x, mask, cache, i, cond)
        return self.ln(x)


def block_causal_mask(sizes: list[int], device=None) -> Tensor:
    """(T, T) bool mask over consecutive blocks of ``sizes`` tokens: a token sees its own block and every block
    before it (CARP's scale-wise causality)."""
    block = torch.repeat_interleave(torch.arange(len(sizes), device=device), torch.tensor(sizes, device=device))
    return block[:, None] >= block[None, :]
