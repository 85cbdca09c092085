"""Diffusion Policy's conditional 1-D temporal U-Net (Chi et al., 2023).

The network denoises an action sequence: it convolves along time, with the diffusion step and
the observation features injected into every residual block by FiLM (per-channel scale and bias).

Shape alphabet:
    B   batch
    T   action horizon (number of action steps denoised together)
    Da  action dimension
    To  observation steps
    D   per-step observation feature dimension
    C   channels of a convolution (one of ``down_dims``)
    G   global conditioning dimension (step embedding + To * D)
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from robot_learning.errors import ConfigError, SpecMismatchError

__all__ = ["ConditionalUnet1D", "SinusoidalEmbedding", "broadcast_timestep"]


def broadcast_timestep(timestep: Tensor | float | int, batch: int, device: torch.device) -> Tensor:
    """Return the diffusion step / noise level as a float tensor of shape (B,).

    Accepts a python number, a 0-d tensor, a (1,) tensor (all broadcast to B) or a (B,) tensor,
    integer (DDPM step index) or float (a continuous noise level such as EDM's c_noise).
    """
    t = torch.as_tensor(timestep, device=device)
    if t.ndim == 0 or (t.ndim == 1 and t.shape[0] == 1):
        t = t.reshape(1).expand(batch)
    if t.shape != (batch,):
        raise SpecMismatchError.expected("timestep shape", f"() or ({batch},)", tuple(t.shape))
    return t.to(torch.float32)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal embedding of a scalar per sample: (B,) -> (B, dim).

    Frequencies are geometric from 1 down to 1/10000; the first half of the output holds
    sines, the second half cosines. Works for integer step indices and continuous noise levels.
    """

    def __init__(self, dim: int):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ConfigError.expected("SinusoidalEmbedding dim", "an even integer >= 2", dim)
        self.dim = dim
        half = dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: Tensor) -> Tensor:
        """t (B,) float or int -> (B, dim) float32."""
        args = t.to(torch.float32)[:, None] * self.freqs[None, :]
        return torch.cat([args.sin(), args.cos()], dim=-1)


class Conv1dBlock(nn.Module):
    """Conv1d(k, same padding) -> GroupNorm -> Mish: (B, Cin, T) -> (B, Cout, T)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, n_groups: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, out_channels),
            nn.Mish(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.block(x)


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks with FiLM after the first, plus a (1x1 conv) residual path.

    x (B, Cin, T), cond (B, G) -> (B, Cout, T). FiLM computes (scale, bias) = Linear(Mish(cond))
    per output channel and applies ``h * (1 + scale) + bias`` (identity when the linear is zero).
    """

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int,
                 n_groups: int):
        super().__init__()
        self.out_channels = out_channels
        self.block1 = Conv1dBlock(in_channels, out_channels, kernel_size, n_groups)
        self.block2 = Conv1dBlock(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_channels))
        self.residual: nn.Module = (nn.Conv1d(in_channels, out_channels, 1)
                                    if in_channels != out_channels else nn.Identity())

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.block1(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)  # each (B, Cout, 1)
        h = h * (1.0 + scale) + bias
        h = self.block2(h)
        return h + self.residual(x)


class Downsample1d(nn.Module):
    """Strided conv halving the length: (B, C, T) -> (B, C, T/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample1d(nn.Module):
    """Transposed conv doubling the length: (B, C, T) -> (B, C, 2T)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(channels, channels, 4, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class ConditionalUnet1D(nn.Module):
    """Conditional temporal U-Net noise/sample predictor of Diffusion Policy.

    Args:
        action_dim: Da, channels of the denoised sequence.
        cond_dim: flattened observation conditioning size, To * D.
        down_dims: channels per resolution level; the horizon is halved between levels, so T
            must be divisible by ``2 ** (len(down_dims) - 1)``.
        kernel_size: odd temporal kernel of every conv block.
        n_groups: GroupNorm groups; must divide every entry of ``down_dims``.
        step_embed_dim: size of the diffusion-step embedding (sinusoidal -> 4x -> Mish -> dim).

    Down path: per level two residual blocks, then a stride-2 downsample except at the deepest
    level. Mid: two residual blocks. Up path, for each level but the first, from the deepest:
    concatenate that level's skip, two residual blocks, upsample. Head: conv block + 1x1 conv.
    """

    def __init__(self, action_dim: int, cond_dim: int, down_dims: Sequence[int] = (64, 128, 256),
                 kernel_size: int = 5, n_groups: int = 8, step_embed_dim: int = 128):
        super().__init__()
        dims = [int(d) for d in down_dims]
        if action_dim < 1 or cond_dim < 0:
            raise ConfigError.expected("(action_dim, cond_dim)", "action_dim >= 1, cond_dim >= 0",
                                       (action_dim, cond_dim))
        if not dims or any(d < 1 or d % n_groups for d in dims):
            raise ConfigError.expected("down_dims", f"non-empty, each divisible by n_groups={n_groups}",
                                       tuple(dims))
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError.expected("kernel_size", "an odd integer >= 1", kernel_size)
        self.action_dim = action_dim
        self.cond_dim = cond_dim
        self.down_dims = tuple(dims)
        self.horizon_multiple = 2 ** (len(dims) - 1)

        self.step_encoder = nn.Sequential(
            SinusoidalEmbedding(step_embed_dim),
            nn.Linear(step_embed_dim, 4 * step_embed_dim),
            nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim),
        )
        g = step_embed_dim + cond_dim

        def res(cin: int, cout: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(cin, cout, g, kernel_size, n_groups)

        n_levels = len(dims)
        self.down = nn.ModuleList()
        for i, (cin, cout) in enumerate(zip([action_dim] + dims[:-1], dims)):
            last = i == n_levels - 1
            self.down.append(nn.ModuleList([
                res(cin, cout), res(cout, cout), nn.Identity() if last else Downsample1d(cout)]))
        self.mid = nn.ModuleList([res(dims[-1], dims[-1]), res(dims[-1], dims[-1])])
        self.up = nn.ModuleList()
        for i in range(n_levels - 1, 0, -1):  # deepest level first; level 0's skip is not used
            cin, cout = dims[i], dims[i - 1]
            self.up.append(nn.ModuleList([res(2 * cin, cout), res(cout, cout), Upsample1d(cout)]))
        self.head = nn.Sequential(
            Conv1dBlock(dims[0], dims[0], kernel_size, n_groups),
            nn.Conv1d(dims[0], action_dim, 1),
        )

    def forward(self, sample: Tensor, timestep: Tensor | float | int, cond: Tensor) -> Tensor:
        """sample (B, T, Da), timestep (B,) or scalar, cond (B, To, D) -> (B, T, Da)."""
        if sample.ndim != 3 or sample.shape[-1] != self.action_dim:
            raise SpecMismatchError.expected("sample shape", f"(B, T, {self.action_dim})",
                                             tuple(sample.shape))
        b, t = sample.shape[0], sample.shape[1]
        if t % self.horizon_multiple:
            raise SpecMismatchError.expected(
                "horizon T", f"a multiple of {self.horizon_multiple} "
                f"(2 ** (len(down_dims) - 1) with down_dims={self.down_dims})", t)
        if cond.shape[0] != b or cond[0].numel() != self.cond_dim:
            raise SpecMismatchError.expected("cond shape", f"({b}, To, D) with To * D = {self.cond_dim}",
                                             tuple(cond.shape))
        steps = broadcast_timestep(timestep, b, sample.device)
        global_cond = torch.cat([self.step_encoder(steps), cond.reshape(b, -1).to(sample.dtype)], dim=-1)

        x = sample.transpose(1, 2)  # (B, Da, T)
        skips: list[Tensor] = []
        for i, (res1, res2, down) in enumerate(self.down):
            x = res2(res1(x, global_cond), global_cond)
            if i > 0:  # the up path consumes the skips of levels 1..L-1
                skips.append(x)
            x = down(x)
        for block in self.mid:
            x = block(x, global_cond)
        for res1, res2, up in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = up(res2(res1(x, global_cond), global_cond))
        return self.head(x).transpose(1, 2)  # (B, T, Da)
