"""CARP's stage 1: a multi-scale residual VQ tokenizer of action chunks (Gong et al. 2024, after VAR).

One VQ-VAE per action dimension (grouped 1-D convolutions, a codebook per dimension): a (Tp,) chunk of one
dimension is encoded to a latent of ``latent_len`` steps x ``code_dim`` channels (``Tp / latent_len`` times
shorter, by strided convolutions). The latent is quantised coarse to fine: at each scale s of ``scales``
(CARP: 1, 2, 3, 4) the residual left by the coarser scales is area-resized to s steps, each step replaced by
its nearest code, the codes resized back to ``latent_len`` (linear) and refined by that scale's convolution,
and added to the reconstruction. The last scale is the latent's own length, so the residual can reach zero.
The decoder maps the quantised latent back to the (Tp,) chunk.

Training: reconstruction MSE of the normalised actions + codebook and commitment terms (weight ``beta``)
with the straight-through estimator; codes that go unused are re-seeded from current latents.

Shapes: ``B`` batch, ``Da`` action dims, ``C`` code_dim, ``L`` latent_len, ``K`` codebook size, ``s`` a scale.
Tokens of one scale are (B, Da, s) code indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robot_learning.errors import ConfigError, SpecMismatchError


@dataclass(frozen=True)
class TokenizerConfig:
    """Tp: chunk length; latent_len: its latent length (Tp / latent_len must be a power of 2); scales: the
    quantisation scales, increasing, the last = latent_len; codebook / code_dim: codes per dimension and their
    width (CARP: 512 x 8); hidden: channels per action dimension in the encoder / decoder; beta: commitment
    weight."""

    Tp: int = 16
    latent_len: int = 4
    scales: tuple[int, ...] = (1, 2, 3, 4)
    codebook: int = 512
    code_dim: int = 8
    hidden: int = 32
    beta: float = 0.25

    def __post_init__(self) -> None:
        r = self.Tp // max(1, self.latent_len)
        if self.latent_len < 1 or self.Tp % self.latent_len or r & (r - 1):
            raise ConfigError.expected("tokenizer Tp / latent_len", "a power of 2", f"{self.Tp} / {self.latent_len}")
        s = tuple(self.scales)
        if not s or list(s) != sorted(set(s)) or s[0] < 1 or s[-1] != self.latent_len:
            raise ConfigError.expected("tokenizer scales", f"increasing, from >= 1 up to latent_len {self.latent_len}",
                                       s)
        if min(self.codebook, self.code_dim, self.hidden) < 1 or self.beta < 0:
            raise ConfigError.expected("tokenizer sizes", "codebook, code_dim, hidden >= 1, beta >= 0",
                                       (self.codebook, self.code_dim, self.hidden, self.beta))

    def to_json(self) -> dict:
        from robot_learning.policies.chunk_policy import config_to_json

        return config_to_json(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TokenizerConfig:
        from robot_learning.policies.chunk_policy import config_from_json

        return config_from_json(cls, d)


def _resize(x: Tensor, size: int, mode: str) -> Tensor:
    """(N, C, L) -> (N, C, size)."""
    if x.shape[-1] == size:
        return x
    if mode == "area":
        return F.adaptive_avg_pool1d(x, size)
    return F.interpolate(x, size=size, mode="linear", align_corners=False)


class MultiScaleVQ(nn.Module):
    """The tokenizer (see the module docstring)."""

    def __init__(self, config: TokenizerConfig, action_dim: int):
        super().__init__()
        self.config, self.da = config, int(action_dim)
        c, d, h, cd = config, self.da, config.hidden, config.code_dim
        down = (c.Tp // c.latent_len).bit_length() - 1
        enc = [nn.Conv1d(d, d * h, 3, padding=1, groups=d), nn.GELU()]
        for _ in range(down):
            enc += [nn.Conv1d(d * h, d * h, 4, stride=2, padding=1, groups=d), nn.GELU()]
        enc += [nn.Conv1d(d * h, d * cd, 3, padding=1, groups=d)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv1d(d * cd, d * h, 3, padding=1, groups=d), nn.GELU()]
        for _ in range(down):
            dec += [nn.ConvTranspose1d(d * h, d * h, 4, stride=2, padding=1, groups=d), nn.GELU()]
        dec += [nn.Conv1d(d * h, d, 3, padding=1, groups=d)]
        self.decoder = nn.Sequential(*dec)
        self.codebooks = nn.Parameter(torch.randn(d, c.codebook, cd) * 0.1)        # (Da, K, C)
        self.refine = nn.ModuleList(nn.Conv1d(d * cd, d * cd, 3, padding=1, groups=d) for _ in c.scales)
        self.register_buffer("usage", torch.zeros(d, c.codebook))                  # running code counts
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @property
    def tokens_per_chunk(self) -> int:
        return self.da * sum(self.config.scales)

    # --- pieces ------------------------------------------------------------------------------
    def encode(self, actions_n: Tensor) -> Tensor:
        """(B, Tp, Da) normalised actions -> (B, Da, C, L) latents."""
        if actions_n.shape[1:] != (self.config.Tp, self.da):
            raise SpecMismatchError.expected("tokenizer input", ("B", self.config.Tp, self.da), tuple(actions_n.shape))
        z = self.encoder(actions_n.transpose(1, 2))
        return z.reshape(z.shape[0], self.da, self.config.code_dim, -1)

    def decode(self, f_hat: Tensor) -> Tensor:
        """(B, Da, C, L) quantised latents -> (B, Tp, Da) normalised actions."""
        return self.decoder(f_hat.flatten(1, 2)).transpose(1, 2)

    def _nearest(self, r: Tensor) -> Tensor:
        """(B, Da, C, s) -> (B, Da, s) indices of the nearest codes of each dimension's codebook."""
        x = r.permute(1, 0, 3, 2).reshape(self.da, -1, self.config.code_dim)          # (Da, B*s, C)
        idx = torch.cdist(x, self.codebooks).argmin(-1)                                # (Da, B*s)
        return idx.reshape(self.da, r.shape[0], r.shape[-1]).permute(1, 0, 2)

    def lookup(self, idx: Tensor) -> Tensor:
        """(B, Da, s) indices -> (B, Da, C, s) codes."""
        codes = self.codebooks[torch.arange(self.da, device=idx.device)[None, :, None], idx]   # (B, Da, s, C)
        return codes.permute(0, 1, 3, 2)

    def add_scale(self, f_hat: Tensor, idx: Tensor, k: int) -> Tensor:
        """The reconstruction after scale ``k``'s tokens ``idx`` (B, Da, s_k) join ``f_hat`` (B, Da, C, L)."""
        b, L = idx.shape[0], self.config.latent_len
        up = _resize(self.lookup(idx).flatten(1, 2), L, "linear")
        return f_hat + self.refine[k](up).reshape(b, self.da, self.config.code_dim, L)

    def next_input(self, f_hat: Tensor, k: int) -> Tensor:
        """What the stage-2 GPT sees for scale ``k``: the reconstruction so far resized to s_k, (B, Da, s_k, C)."""
        s = self.config.scales[k]
        x = _resize(f_hat.flatten(1, 2), s, "area").reshape(f_hat.shape[0], self.da, self.config.code_dim, s)
        return x.permute(0, 1, 3, 2)

    # --- whole chunks ------------------------------------------------------------------------
    def quantize(self, f: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Latents (B, Da, C, L) -> (quantised latents, tokens of each scale)."""
        f_hat, tokens = torch.zeros_like(f), []
        for k, s in enumerate(self.config.scales):
            r = _resize((f - f_hat).flatten(1, 2), s, "area").reshape(f.shape[0], self.da, self.config.code_dim, s)
            idx = self._nearest(r)
            tokens.append(idx)
            f_hat = self.add_scale(f_hat, idx, k)
        return f_hat, tokens

    @torch.no_grad()
    def tokenize(self, actions_n: Tensor) -> list[Tensor]:
        return self.quantize(self.encode(actions_n))[1]

    @torch.no_grad()
    def detokenize(self, tokens: list[Tensor]) -> Tensor:
        f_hat = torch.zeros(tokens[0].shape[0], self.da, self.config.code_dim, self.config.latent_len,
                            device=tokens[0].device)
        for k, idx in enumerate(tokens):
            f_hat = self.add_scale(f_hat, idx, k)
        return self.decode(f_hat)

    def loss(self, actions_n: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Training loss on (B, Tp, Da) normalised actions, and its parts."""
        f = self.encode(actions_n)
        if self.training and not bool(self.initialised):
            self._seed_codes(f, torch.ones(self.da, self.config.codebook, dtype=torch.bool, device=f.device))
            self.initialised.fill_(True)
        f_hat, tokens = self.quantize(f)
        vq = F.mse_loss(f_hat, f.detach()) + self.config.beta * F.mse_loss(f, f_hat.detach())
        recon = F.mse_loss(self.decode(f + (f_hat - f).detach()), actions_n)
        if self.training:
            with torch.no_grad():
                counts = torch.zeros_like(self.usage)
                for idx in tokens:
                    counts.scatter_add_(1, idx.permute(1, 0, 2).reshape(self.da, -1),
                                        torch.ones(self.da, idx.numel() // self.da, device=idx.device))
                self.usage.mul_(0.99).add_(counts)
        return recon + vq, {"recon": recon.item(), "vq": vq.item()}

    @torch.no_grad()
    def restart_dead_codes(self, actions_n: Tensor, min_usage: float = 1e-3) -> int:
        """Re-seed codes whose running usage fell below ``min_usage`` with latents of this batch; returns how many."""
        dead = self.usage < min_usage
        n = int(dead.sum())
        if n:
            self._seed_codes(self.encode(actions_n), dead)
            self.usage[dead] = 1.0
        return n

    def _seed_codes(self, f: Tensor, which: Tensor) -> None:
        """Set codebook rows ``which`` (Da, K) bool to latents of ``f`` (B, Da, C, L), at every scale's resolution."""
        with torch.no_grad():
            pool = torch.cat([_resize(f.flatten(1, 2), s, "area").reshape(f.shape[0], self.da, self.config.code_dim, s)
                              for s in self.config.scales], dim=-1)              # (B, Da, C, sum s)
            pool = pool.permute(1, 0, 3, 2).reshape(self.da, -1, self.config.code_dim)
            for d in range(self.da):
                rows = which[d].nonzero().squeeze(-1)
                if len(rows):
                    pick = torch.randint(0, pool.shape[1], (len(rows),), device=f.device)
                    self.codebooks.data[d, rows] = pool[d, pick] + 1e-3 * torch.randn_like(pool[d, pick])
