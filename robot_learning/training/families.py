"""``train --policy FAMILY``: each family's policy config from the training flags, and its class."""

from __future__ import annotations

import importlib

from robot_learning.errors import ConfigError
from robot_learning.training.config import TrainConfig

CLASSES = {"diffusion": "robot_learning.policies.diffusion:DiffusionPolicy",
           "flow": "robot_learning.policies.diffusion:DiffusionPolicy",
           "act": "robot_learning.policies.act:ACTPolicy",
           "ar": "robot_learning.policies.autoregressive:AutoregressivePolicy"}
SAMPLERS = {"diffusion": ("ddpm", "ddim", "edm"), "flow": ("euler",), "act": (), "ar": ("greedy", "sample")}
# flags that shape the network: --resume refuses a change of any of them
SHAPE_KEYS = ("policy", "obs", "size", "denoiser", "obs_steps", "horizon", "action_steps", "bins", "binning")


def effective_flags(flags: dict) -> dict:
    """Training flags (as saved in train_config.json) with the family defaults filled in."""
    out = dict(flags)
    if out.get("obs_steps") is None:
        out["obs_steps"] = 1 if out.get("policy") == "act" else 2
    return out


def policy_class(family: str):
    module, name = CLASSES[family].split(":")
    return getattr(importlib.import_module(module), name)


def _encoder(cfg: TrainConfig):
    from robot_learning.policies.nets.encoders import EncoderConfig

    return EncoderConfig(image_width=64 if cfg.size == "paper" else 32)


def policy_config(cfg: TrainConfig, has_images: bool):
    """The family's config dataclass for these flags."""
    fam = cfg.policy
    if cfg.sampler is not None and cfg.sampler not in SAMPLERS[fam]:
        ok = ", ".join(SAMPLERS[fam]) or "none (it has no sampler)"
        raise ConfigError.expected(f"--sampler of a {fam} policy", ok, repr(cfg.sampler))
    paper = cfg.size == "paper"
    if fam in ("diffusion", "flow"):
        from robot_learning.policies.diffusion import DiffusionConfig

        dims = ((512, 1024, 2048) if has_images else (256, 512, 1024)) if paper else (64, 128, 256)
        return DiffusionConfig(To=cfg.obs_steps or 2, Tp=cfg.horizon, Ta=cfg.action_steps, denoiser=cfg.denoiser,
                               down_dims=dims, objective="flow" if fam == "flow" else "ddpm",
                               sampler=cfg.sampler or ("euler" if fam == "flow" else "ddim"), encoder=_encoder(cfg))
    if fam == "act":
        from robot_learning.policies.act import ACTConfig

        size = dict(d_model=512, dec_layers=7, ff_dim=3200) if paper else {}
        return ACTConfig(To=cfg.obs_steps or 1, Tp=cfg.horizon, Ta=cfg.action_steps, kl_weight=cfg.kl_weight,
                         temporal_ensemble=cfg.temporal_ensemble, encoder=_encoder(cfg), **size)
    from robot_learning.policies.autoregressive import ARConfig

    to = cfg.obs_steps or 2
    size = dict(d_model=512, n_layers=8, n_heads=8) if paper else {}
    return ARConfig(To=to, Tp=to - 1 + cfg.action_steps, Ta=cfg.action_steps, n_bins=cfg.bins, binning=cfg.binning,
                    decoding=cfg.sampler or "greedy", encoder=_encoder(cfg), **size)
