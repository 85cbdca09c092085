"""Observation encoders: images (ResNet-18-style, GroupNorm, spatial softmax), depth, tactile, state.

No torchvision: the ResNet is built from scratch here. ``ObservationEncoder`` holds one encoder
per input (one ResNet per camera, as in Diffusion Policy) and maps a dict of per-step
observations to one feature vector per step.

Shape alphabet:
    B   batch
    To  observation steps
    N   flattened batch (B * To) seen by the per-frame encoders
    C   channels;  H, W  image height and width;  S  crop side
    K   spatial-softmax keypoints
    D   output feature dimension (``out_dim``)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from robot_learning.errors import ConfigError, SpecMismatchError

__all__ = [
    "DepthEncoder", "EncoderConfig", "InputSpec", "ObservationEncoder", "ResNetGN",
    "SpatialSoftmax", "StateEncoder", "TactileEncoder", "center_crop", "image_to_unit",
    "random_crop",
]

INPUT_KINDS = ("rgb", "depth", "tactile", "state")


# ----------------------------------------------------------------------------- image helpers

def image_to_unit(x: Tensor) -> Tensor:
    """uint8 (..., 3, H, W) in [0, 255] -> float32 (..., 3, H, W) in [-1, 1]."""
    if x.dtype != torch.uint8:
        raise TypeError(f"image_to_unit: expected a uint8 tensor, found {x.dtype}")
    return x.to(torch.float32) * (2.0 / 255.0) - 1.0


def _check_crop(x: Tensor, size: int) -> tuple[int, int]:
    if x.ndim != 4:
        raise SpecMismatchError.expected("crop input shape", "(N, C, H, W)", tuple(x.shape))
    h, w = x.shape[-2], x.shape[-1]
    if not 1 <= size <= min(h, w):
        raise SpecMismatchError.expected("crop size", f"1 <= size <= min(H, W) = {min(h, w)}", size)
    return h, w


def center_crop(x: Tensor, size: int) -> Tensor:
    """(N, C, H, W) -> (N, C, S, S), the centred S x S window (deterministic)."""
    h, w = _check_crop(x, size)
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top:top + size, left:left + size]


def random_crop(x: Tensor, size: int, generator: torch.Generator | None = None) -> Tensor:
    """(N, C, H, W) -> (N, C, S, S) with an independent uniform random offset per sample.

    Vectorised with index grids (no loop over N). Offsets are drawn on the generator's device
    (CPU for the default generator) and moved to ``x``'s device.
    """
    h, w = _check_crop(x, size)
    n = x.shape[0]
    gen_device = generator.device if generator is not None else torch.device("cpu")
    top = torch.randint(0, h - size + 1, (n,), generator=generator, device=gen_device).to(x.device)
    left = torch.randint(0, w - size + 1, (n,), generator=generator, device=gen_device).to(x.device)
    span = torch.arange(size, device=x.device)
    rows = (top[:, None] + span)[:, None, :, None]   # (N, 1, S, 1)
    cols = (left[:, None] + span)[:, None, None, :]  # (N, 1, 1, S)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[batch, chans, rows, cols]


# ----------------------------------------------------------------------------- building blocks

def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with ~16 channels per group: the largest g <= channels // 16 dividing channels."""
    groups = max(1, channels // 16)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


class SpatialSoftmax(nn.Module):
    """Keypoints from a feature map: (N, C, H, W) -> (N, 2K), laid out [x0, y0, x1, y1, ...].

    A 1x1 conv (``keypoint_conv``) gives K maps; each is softmaxed over H*W and the expected
    image coordinates are returned, x (left -> right) and y (top -> bottom) in [-1, 1].
    """

    def __init__(self, in_channels: int, num_kp: int = 32):
        super().__init__()
        self.num_kp = num_kp
        self.out_dim = 2 * num_kp
        self.keypoint_conv = nn.Conv2d(in_channels, num_kp, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        attn = torch.softmax(self.keypoint_conv(x).flatten(2), dim=-1)       # (N, K, H*W)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=attn.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=attn.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=-1)  # (H*W, 2)
        return (attn @ grid).reshape(n, self.out_dim)                         # (N, 2K)


class BasicBlock(nn.Module):
    """ResNet basic block with GroupNorm: (N, Cin, H, W) -> (N, Cout, H/stride, W/stride)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _group_norm(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                _group_norm(out_channels))

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        return self.act(h + self.shortcut(x))


def _resnet_trunk(in_channels: int, width: int, blocks: Sequence[int]) -> nn.Sequential:
    """Stem (7x7/2 conv, GN, ReLU, 3x3/2 max-pool) + 4 stages of widths width * (1, 2, 4, 8)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
        _group_norm(width), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1)]
    cin = width
    for stage, n_blocks in enumerate(blocks):
        cout = width * 2 ** stage
        for i in range(n_blocks):
            layers.append(BasicBlock(cin, cout, stride=2 if (i == 0 and stage > 0) else 1))
            cin = cout
    return nn.Sequential(*layers)


class ResNetGN(nn.Module):
    """ResNet-18-style image encoder from scratch: (N, C, H, W) float -> (N, out_dim).

    BasicBlocks [2, 2, 2, 2], BatchNorm replaced by GroupNorm (groups = channels // 16, at least 1),
    global average pooling replaced by SpatialSoftmax, then a Linear to ``out_dim``.
    ``width`` is the first stage's channels (64 = ResNet-18; 32 or 16 are CPU-sized); the stages
    have width * (1, 2, 4, 8) channels. Input is expected already scaled (e.g. to [-1, 1]).
    The trunk downsamples 32x (76 px -> 3 x 3 keypoint maps); an input whose final map is 1 x 1
    (H and W <= 32) is rejected, since its keypoints would not depend on the image.
    """

    blocks: tuple[int, ...] = (2, 2, 2, 2)

    def __init__(self, in_channels: int = 3, width: int = 64, num_kp: int = 32, out_dim: int = 64):
        super().__init__()
        if min(in_channels, width, num_kp, out_dim) < 1:
            raise ConfigError.expected("(in_channels, width, num_kp, out_dim)", "all >= 1",
                                       (in_channels, width, num_kp, out_dim))
        self.in_channels = in_channels
        self.out_dim = out_dim
        self.trunk = _resnet_trunk(in_channels, width, self.blocks)
        self.pool = SpatialSoftmax(width * 2 ** (len(self.blocks) - 1), num_kp)
        self.proj = nn.Linear(self.pool.out_dim, out_dim)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """x (N, C, H, W) float -> (N, out_dim)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise SpecMismatchError.expected(f"{type(self).__name__} input shape",
                                             f"(N, {self.in_channels}, H, W)", tuple(x.shape))
        features = self.trunk(x)  # (N, 8 * width, ceil(H / 32), ceil(W / 32))
        if features.shape[-2] * features.shape[-1] == 1:
            raise SpecMismatchError.expected(
                f"{type(self).__name__} input size (the trunk downsamples 32x; a 1x1 map makes "
                "the spatial softmax constant)", "H or W >= 33 px", tuple(x.shape[-2:]))
        return self.proj(self.pool(features))


class DepthEncoder(ResNetGN):
    """Lighter ResNetGN for depth: (N, 1, H, W) float metres -> (N, out_dim).

    One BasicBlock per stage, 16 keypoints. Non-finite depth is treated as 0 (no return); depth
    is clamped to [0, max_depth_m] and scaled to [-1, 1] internally.
    """

    blocks = (1, 1, 1, 1)

    def __init__(self, max_depth_m: float = 2.0, width: int = 16, out_dim: int = 32):
        if not max_depth_m > 0:
            raise ConfigError.expected("max_depth_m", "> 0", max_depth_m)
        super().__init__(in_channels=1, width=width, num_kp=16, out_dim=out_dim)
        self.max_depth_m = float(max_depth_m)

    def forward(self, x: Tensor) -> Tensor:
        """x (N, 1, H, W) float metres -> (N, out_dim)."""
        x = torch.nan_to_num(x.to(torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
        x = x.clamp(0.0, self.max_depth_m) * (2.0 / self.max_depth_m) - 1.0
        return super().forward(x)


class TactileEncoder(nn.Module):
    """Tactile MLP: (N, *in_shape) float (already normalised) -> (N, out_dim).

    Flatten -> Linear -> LayerNorm -> Mish -> Linear.
    """

    def __init__(self, in_shape: tuple[int, ...], hidden: int = 64, out_dim: int = 32):
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        n_in = 1
        for s in self.in_shape:
            n_in *= s
        if n_in < 1 or min(hidden, out_dim) < 1:
            raise ConfigError.expected("(in_shape, hidden, out_dim)", "non-empty shape, sizes >= 1",
                                       (self.in_shape, hidden, out_dim))
        self.out_dim = out_dim
        self.net = nn.Sequential(
            nn.Flatten(1), nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.Mish(),
            nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise SpecMismatchError.expected("tactile input shape", ("N",) + self.in_shape,
                                             tuple(x.shape))
        return self.net(x)


class StateEncoder(nn.Identity):
    """Pass-through for already-normalised proprio state: (N, d) -> (N, d)."""

    def __init__(self, dim: int):
        super().__init__()
        self.out_dim = int(dim)


# ----------------------------------------------------------------------------- multi-input encoder

@dataclass(frozen=True)
class InputSpec:
    """One observation input. ``shape`` is per sample as it arrives: rgb (3, H, W) uint8 CHW,
    depth (H, W) float metres, tactile any shape, state (d,)."""

    name: str
    kind: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the per-input encoders. ``crop_px`` None: floor(0.8 * image side) (96 -> 76)."""

    image_width: int = 32
    image_kp: int = 32
    image_out_dim: int = 64
    crop_px: int | None = None
    depth_out_dim: int = 32
    tactile_out_dim: int = 32


def _module_key(name: str) -> str:
    return "in_" + re.sub(r"[^0-9A-Za-z_]", "_", name)


class ObservationEncoder(nn.Module):
    """One encoder per input (one ResNetGN per camera, as in Diffusion Policy), outputs
    concatenated in the order of ``inputs``; state inputs pass through unchanged.

    forward: obs[name] (B, To, *shape) -> (B, To, out_dim). RGB may be uint8 (converted with
    ``image_to_unit``) or float already in [-1, 1]. RGB and depth are randomly cropped (each
    frame independently) in training mode and centre-cropped in eval mode.
    """

    def __init__(self, inputs: Sequence[InputSpec], config: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.inputs = tuple(InputSpec(s.name, s.kind, tuple(int(d) for d in s.shape)) for s in inputs)
        self.config = config
        if not self.inputs:
            raise ConfigError("ObservationEncoder: expected at least one input, found none")
        self.encoders = nn.ModuleDict()
        self.crop_sizes: dict[str, int] = {}
        seen: dict[str, str] = {}
        out_dim = 0
        for spec in self.inputs:
            key = _module_key(spec.name)
            if key in seen:
                raise ConfigError.expected("input names (distinct after sanitising)",
                                           "unique", f"{seen[key]!r} and {spec.name!r}")
            seen[key] = spec.name
            encoder = self._build(spec, config)
            self.encoders[key] = encoder
            out_dim += encoder.out_dim
        self.out_dim = out_dim

    def _build(self, spec: InputSpec, cfg: EncoderConfig) -> nn.Module:
        kind, shape = spec.kind, spec.shape
        if kind not in INPUT_KINDS:
            raise ConfigError.expected(f"kind of input {spec.name!r}", " | ".join(INPUT_KINDS), kind)
        expected_ndim = {"rgb": 3, "depth": 2, "state": 1}.get(kind)
        if (expected_ndim is not None and len(shape) != expected_ndim) or \
                (kind == "rgb" and shape[0] != 3) or not shape or min(shape) < 1:
            want = {"rgb": "(3, H, W)", "depth": "(H, W)", "state": "(d,)"}.get(kind, "non-empty")
            raise ConfigError.expected(f"shape of {kind} input {spec.name!r}", want, shape)
        if kind in ("rgb", "depth"):
            side = min(shape[-2:])
            crop = cfg.crop_px if cfg.crop_px is not None else int(0.8 * side)
            if not 1 <= crop <= side:
                raise ConfigError.expected(f"crop_px for input {spec.name!r}", f"1..{side}", crop)
            self.crop_sizes[spec.name] = crop
            if kind == "rgb":
                return ResNetGN(3, cfg.image_width, cfg.image_kp, cfg.image_out_dim)
            return DepthEncoder(out_dim=cfg.depth_out_dim)
        if kind == "tactile":
            return TactileEncoder(shape, out_dim=cfg.tactile_out_dim)
        return StateEncoder(shape[0])

    def forward(self, obs: Mapping[str, Tensor]) -> Tensor:
        """obs[name] (B, To, *shape) for every input -> (B, To, out_dim)."""
        missing = [s.name for s in self.inputs if s.name not in obs]
        if missing:
            raise KeyError(f"ObservationEncoder: missing input(s) {missing}; given keys {sorted(obs)}")
        lead: tuple[int, int] | None = None
        features: list[Tensor] = []
        for spec in self.inputs:
            x = obs[spec.name]
            if x.ndim != 2 + len(spec.shape) or tuple(x.shape[2:]) != spec.shape:
                raise SpecMismatchError.expected(f"shape of input {spec.name!r}",
                                                 ("B", "To") + spec.shape, tuple(x.shape))
            if lead is None:
                lead = (x.shape[0], x.shape[1])
            elif (x.shape[0], x.shape[1]) != lead:
                raise SpecMismatchError.expected(f"(B, To) of input {spec.name!r}", lead,
                                                 tuple(x.shape[:2]))
            features.append(self._encode(spec, x.reshape(-1, *spec.shape)))
        assert lead is not None
        return torch.cat(features, dim=-1).reshape(lead[0], lead[1], self.out_dim)

    def _encode(self, spec: InputSpec, x: Tensor) -> Tensor:
        """x (N, *shape) -> (N, that input's out_dim)."""
        encoder = self.encoders[_module_key(spec.name)]
        if spec.kind in ("rgb", "depth"):
            if spec.kind == "depth":
                x = x.unsqueeze(1)  # (N, 1, H, W)
            size = self.crop_sizes[spec.name]  # crop first: uint8 is cheaper to index
            x = random_crop(x, size) if self.training else center_crop(x, size)
            if spec.kind == "rgb":
                x = image_to_unit(x) if x.dtype == torch.uint8 else x.to(torch.float32)
            return encoder(x)
        return encoder(x.to(torch.float32))  # tactile, state
