"""A small GPT trunk (pre-norm transformer blocks) with a key/value cache, for the autoregressive policies.

The trunk takes embeddings, not token ids: each policy builds its own inputs (observation tokens, action
tokens, positions). ``forward(x, mask, cache)``:

- ``x`` (B, T, E) the new tokens' embeddings;
- ``mask`` None (causal over the new tokens, each also sees every cached one) or a (T, T_cache + T) bool
  tensor, True where a query may attend (CARP's block-causal scales);
- ``cache`` None (no cache kept) or a ``KVCache`` that the call extends in place.

Returns (B, T, E) after the final LayerNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robot_learning.errors import ConfigError, SpecMismatchError

__all__ = ["GPT", "KVCache", "block_causal_mask"]


class KVCache:
    """Per-layer keys and values of the tokens seen so far, (B, H, T, E / H) each."""

    def __init__(self, n_layers: int):
        self.k: list[Tensor | None] = [None] * n_layers
        self.v: list[Tensor | None] = [None] * n_layers

    @property
    def length(self) -> int:
        return 0 if self.k[0] is None else int(self.k[0].shape[2])


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.h = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.drop = nn.Dropout(dropout)
        self.p = dropout

    def forward(self, x: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        b, t, e = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.h, e // self.h).permute(2, 0, 3, 1, 4)
        if cache is not None:
            if cache.k[layer] is not None:
                k = torch.cat([cache.k[layer], k], dim=2)
                v = torch.cat([cache.v[layer], v], dim=2)
            cache.k[layer], cache.v[layer] = k, v
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.p if self.training else 0.0)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, e)))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    """Decoder-only transformer trunk (see the module docstring)."""

    def __init__(self, d_model: int = 256, n_heads: int = 4, n_layers: int = 4, dropout: float = 0.1):
        super().__init__()
        if min(d_model, n_heads, n_layers) < 1 or d_model % n_heads:
            raise ConfigError.expected("GPT sizes", "positive, d_model a multiple of n_heads",
                                       f"d_model={d_model}, n_heads={n_heads}, n_layers={n_layers}")
        self.n_layers = n_layers
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, mask: Tensor | None = None, cache: KVCache | None = None) -> Tensor:
        past = cache.length if cache is not None else 0
        t = x.shape[1]
        if mask is None:
            mask = torch.ones(t, past + t, dtype=torch.bool, device=x.device).tril(past) if t > 1 else None
        elif tuple(mask.shape) != (t, past + t):
            raise SpecMismatchError.expected("attention mask shape", (t, past + t), tuple(mask.shape))
        for i, blk in enumerate(self.blocks):
            x = blk(x, mask, cache, i)
        return self.ln(x)


def block_causal_mask(sizes: list[int], device=None) -> Tensor:
    """(T, T) bool mask over consecutive blocks of ``sizes`` tokens: a token sees its own block and every block
    before it (CARP's scale-wise causality)."""
    block = torch.repeat_interleave(torch.arange(len(sizes), device=device), torch.tensor(sizes, device=device))
    return block[:, None] >= block[None, :]
