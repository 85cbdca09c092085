"""``train --policy FAMILY``: each family's policy config from the training flags, and its class."""

from __future__ import annotations

import importlib

from robot_learning.errors import ConfigError
from robot_learning.training.config import TrainConfig

CLASSES = {"diffusion": "robot_learning.policies.diffusion:DiffusionPolicy",
           "flow": "robot_learning.policies.diffusion:DiffusionPolicy",
           "act": "robot_learning.policies.act:ACTPolicy",
           "ar": "robot_learning.policies.autoregressive:AutoregressivePolicy",
           "carp": "robot_learning.policies.carp:CARPPolicy",
           "vla": "robot_learning.policies.vla:VLAPolicy"}
SAMPLERS = {"diffusion": ("ddpm", "ddim", "edm"), "flow": ("euler",), "act": (), "ar": ("greedy", "sample"),
            "carp": ("sample", "greedy"), "vla": ("greedy", "sample", "euler")}
# flags that shape the network: --resume refuses a change of any of them
SHAPE_KEYS = ("policy", "obs", "size", "denoiser", "obs_steps", "horizon", "action_steps", "bins", "binning",
              "tokenizer", "vla_head", "vla_trunk", "vla_vision", "vla_sentence_token", "lora_rank")


def effective_flags(flags: dict) -> dict:
    """Training flags (as saved in train_config.json) with the family defaults filled in."""
    out = dict(flags)
    if out.get("obs_steps") is None:
        out["obs_steps"] = 1 if out.get("policy") == "act" else 2
    if out.get("policy") == "vla" and out.get("vla_sentence_token") is None:
        out["vla_sentence_token"] = out.get("vla_trunk") is None
    return out


def carp_tokenizer(cfg: TrainConfig, store, action_features):
    """carp's stage-1 tokenizer: --tokenizer, the one this run trained already (resume), or a new one trained now
    into OUT/tokenizer. Returns (MultiScaleVQ, its action Normalizer)."""
    from pathlib import Path

    from robot_learning.training.tokenizer import TokenizerTrainConfig, load_tokenizer, train_tokenizer

    path = cfg.tokenizer
    if path is None:
        path = Path(cfg.out) / "tokenizer"
        if not (path / "tokenizer" / "config.json").is_file():
            print(f"carp: training its action tokenizer first ({cfg.tokenizer_steps} steps) into {path}", flush=True)
            train_tokenizer(TokenizerTrainConfig("train", Path(cfg.dataset), path, horizon=cfg.horizon,
                                                 obs_steps=cfg.obs_steps or 2, action_steps=cfg.action_steps,
                                                 steps=cfg.tokenizer_steps, seed=cfg.seed, progress=cfg.progress),
                            store=store)
    tok, normalizer, features = load_tokenizer(path)
    if features != action_features:
        raise ConfigError.expected(f"--tokenizer {path} action features", list(action_features.names),
                                   list(features.names))
    if tok.config.Tp != cfg.horizon:
        raise ConfigError.expected(f"--tokenizer {path} horizon", f"--horizon {cfg.horizon}", tok.config.Tp)
    return tok, normalizer


def policy_class(family: str):
    module, name = CLASSES[family].split(":")
    return getattr(importlib.import_module(module), name)


def _encoder(cfg: TrainConfig):
    from robot_learning.policies.nets.encoders import EncoderConfig

    return EncoderConfig(image_width=64 if cfg.size == "paper" else 32)


def policy_config(cfg: TrainConfig, has_images: bool, tokenizer=None):
    """The family's config dataclass for these flags (``tokenizer``: carp's stage-1 TokenizerConfig)."""
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

        size = dict(d_model=512, dec_layers=7, vae_layers=4, ff_dim=3200) if paper else {}
        return ACTConfig(To=cfg.obs_steps or 1, Tp=cfg.horizon, Ta=cfg.action_steps, kl_weight=cfg.kl_weight,
                         temporal_ensemble=cfg.temporal_ensemble, encoder=_encoder(cfg), **size)
    if fam == "carp":
        from robot_learning.policies.carp import CARPConfig

        size = dict(d_model=512, n_layers=8, n_heads=8) if paper else {}
        return CARPConfig(To=cfg.obs_steps or 2, Tp=cfg.horizon, Ta=cfg.action_steps, tokenizer=tokenizer,
                          decoding=cfg.sampler or "sample", encoder=_encoder(cfg), **size)
    if fam == "vla":
        from robot_learning.policies.vla import VLAConfig

        to, head = cfg.obs_steps or 1, cfg.vla_head
        if cfg.sampler is not None and (cfg.sampler == "euler") != (head == "flow"):
            raise ConfigError.expected(f"--sampler of a vla policy with --vla-head {head}",
                                       "euler" if head == "flow" else "greedy or sample", repr(cfg.sampler))
        lora = cfg.lora_rank if cfg.lora_rank is not None else (32 if cfg.vla_trunk is not None else 0)
        size = dict(trunk_hidden=256, trunk_layers=4, vision_hidden=128, vision_layers=4) if paper else {}
        return VLAConfig(To=to, Tp=cfg.horizon if head == "flow" else to - 1 + cfg.action_steps,
                         Ta=cfg.action_steps, head=head, n_bins=cfg.bins,
                         trunk_path=str(cfg.vla_trunk) if cfg.vla_trunk else None,
                         vision_path=str(cfg.vla_vision) if cfg.vla_vision else None, lora_rank=lora,
                         sentence_token=(cfg.vla_trunk is None if cfg.vla_sentence_token is None
                                         else cfg.vla_sentence_token),
                         decoding=cfg.sampler if cfg.sampler in ("greedy", "sample") else "greedy",
                         encoder=_encoder(cfg), **size)
    from robot_learning.policies.autoregressive import ARConfig

    to = cfg.obs_steps or 2
    size = dict(d_model=512, n_layers=8, n_heads=8) if paper else {}
    return ARConfig(To=to, Tp=to - 1 + cfg.action_steps, Ta=cfg.action_steps, n_bins=cfg.bins, binning=cfg.binning,
                    decoding=cfg.sampler or "greedy", encoder=_encoder(cfg), **size)
