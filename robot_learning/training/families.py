"""What ``train`` asks of a policy family (``FamilyTraining``), and the built-in families' answers.

The family records themselves (name, policy class, samplers, help) are in ``robot_learning.policies.registry``;
each names its ``FamilyTraining`` subclass here. ``train`` makes one per run and calls, in order:
``prepare`` (anything to do before the policy exists: CARP trains its action tokenizer), ``config`` (the family's
config dataclass from the training flags), ``action_stats`` (statistics replacing the dataset's for the action,
or None) and ``init_policy`` (after the policy is built).
"""

from __future__ import annotations

import logging

from robot_learning.errors import ConfigError
from robot_learning.policies.registry import Family, get_family
from robot_learning.training.config import TrainConfig

logger = logging.getLogger(__name__)

# flags that shape the network: --resume refuses a change of any of them
SHAPE_KEYS = ("policy", "obs", "size", "denoiser", "obs_steps", "horizon", "action_steps", "bins", "binning",
              "tokenizer", "vla_head", "vla_trunk", "vla_vision", "vla_sentence_token", "lora_rank")


def effective_flags(flags: dict) -> dict:
    """Training flags (as saved in train_config.json) with the family defaults filled in."""
    out = dict(flags)
    if out.get("obs_steps") is None:
        out["obs_steps"] = get_family(out.get("policy", "diffusion")).obs_steps
    if out.get("policy") == "vla" and out.get("vla_sentence_token") is None:
        out["vla_sentence_token"] = out.get("vla_trunk") is None
    return out


def encoder_config(cfg: TrainConfig):
    """The observation encoder's config for ``--size``."""
    from robot_learning.policies.nets.encoders import EncoderConfig

    return EncoderConfig(image_width=64 if cfg.size == "paper" else 32)


class FamilyTraining:
    """A family's part of one ``train`` run (see the module docstring). Subclass it for a family of your own."""

    def __init__(self, family: Family):
        self.family = family

    def obs_steps(self, cfg: TrainConfig) -> int:
        return cfg.obs_steps or self.family.obs_steps

    def check_sampler(self, cfg: TrainConfig) -> None:
        if cfg.sampler is not None and cfg.sampler not in self.family.samplers:
            ok = ", ".join(self.family.samplers) or "none (it has no sampler)"
            raise ConfigError.expected(f"--sampler of a {self.family.name} policy", ok, repr(cfg.sampler))

    def prepare(self, cfg: TrainConfig, store, action_features) -> None:
        """Work before the policy exists (default: none)."""

    def config(self, cfg: TrainConfig, has_images: bool):
        """The family's config dataclass for these flags."""
        raise NotImplementedError

    def action_stats(self):
        """Action statistics replacing the dataset's (default: None, the dataset's)."""
        return None

    def init_policy(self, policy) -> None:
        """Anything set on the new policy before training (default: nothing)."""


class DiffusionTraining(FamilyTraining):
    objective = "ddpm"

    def config(self, cfg: TrainConfig, has_images: bool):
        from robot_learning.policies.diffusion import DiffusionConfig

        self.check_sampler(cfg)
        paper = cfg.size == "paper"
        dims = ((512, 1024, 2048) if has_images else (256, 512, 1024)) if paper else (64, 128, 256)
        return DiffusionConfig(To=self.obs_steps(cfg), Tp=cfg.horizon, Ta=cfg.action_steps, denoiser=cfg.denoiser,
                               down_dims=dims, objective=self.objective,
                               sampler=cfg.sampler or self.family.samplers[0], encoder=encoder_config(cfg))


class FlowTraining(DiffusionTraining):
    objective = "flow"


class ACTTraining(FamilyTraining):
    def config(self, cfg: TrainConfig, has_images: bool):
        from robot_learning.policies.act import ACTConfig

        self.check_sampler(cfg)
        size = dict(d_model=512, dec_layers=7, vae_layers=4, ff_dim=3200) if cfg.size == "paper" else {}
        return ACTConfig(To=self.obs_steps(cfg), Tp=cfg.horizon, Ta=cfg.action_steps, kl_weight=cfg.kl_weight,
                         temporal_ensemble=cfg.temporal_ensemble, encoder=encoder_config(cfg), **size)


class ARTraining(FamilyTraining):
    def config(self, cfg: TrainConfig, has_images: bool):
        from robot_learning.policies.autoregressive import ARConfig

        self.check_sampler(cfg)
        to = self.obs_steps(cfg)
        size = dict(d_model=512, n_layers=8, n_heads=8) if cfg.size == "paper" else {}
        return ARConfig(To=to, Tp=to - 1 + cfg.action_steps, Ta=cfg.action_steps, n_bins=cfg.bins,
                        binning=cfg.binning, decoding=cfg.sampler or self.family.samplers[0],
                        encoder=encoder_config(cfg), **size)


class CARPTraining(FamilyTraining):
    """CARP's stage 1 first: ``--tokenizer``, the one this run trained already (resume), or a new one trained now
    into OUT/tokenizer; its action statistics and weights go into the policy."""

    tokenizer = None
    tokenizer_normalizer = None

    def prepare(self, cfg: TrainConfig, store, action_features) -> None:
        from pathlib import Path

        from robot_learning.training.tokenizer import TokenizerTrainConfig, load_tokenizer, train_tokenizer

        path = cfg.tokenizer
        if path is None:
            path = Path(cfg.out) / "tokenizer"
            if not (path / "tokenizer" / "config.json").is_file():
                logger.info("carp: training its action tokenizer first (%d steps) into %s", cfg.tokenizer_steps, path)
                train_tokenizer(TokenizerTrainConfig("train", Path(cfg.dataset), path, horizon=cfg.horizon,
                                                     obs_steps=self.obs_steps(cfg), action_steps=cfg.action_steps,
                                                     steps=cfg.tokenizer_steps, seed=cfg.seed,
                                                     progress=cfg.progress),
                                store=store)
        tok, normalizer, features = load_tokenizer(path)
        if features != action_features:
            raise ConfigError.expected(f"--tokenizer {path} action features", list(action_features.names),
                                       list(features.names))
        if tok.config.Tp != cfg.horizon:
            raise ConfigError.expected(f"--tokenizer {path} horizon", f"--horizon {cfg.horizon}", tok.config.Tp)
        self.tokenizer, self.tokenizer_normalizer = tok, normalizer

    def config(self, cfg: TrainConfig, has_images: bool):
        from robot_learning.policies.carp import CARPConfig

        self.check_sampler(cfg)
        size = dict(d_model=512, n_layers=8, n_heads=8) if cfg.size == "paper" else {}
        return CARPConfig(To=self.obs_steps(cfg), Tp=cfg.horizon, Ta=cfg.action_steps, tokenizer=self.tokenizer.config,
                          decoding=cfg.sampler or self.family.samplers[0], encoder=encoder_config(cfg), **size)

    def action_stats(self):   # actions scaled as the tokenizer was trained
        return self.tokenizer_normalizer.stats("action")

    def init_policy(self, policy) -> None:
        policy.tokenizer.load_state_dict(self.tokenizer.state_dict())


class VLATraining(FamilyTraining):
    def config(self, cfg: TrainConfig, has_images: bool):
        from robot_learning.policies.vla import VLAConfig

        to, head = self.obs_steps(cfg), cfg.vla_head
        self.check_sampler(cfg)
        if cfg.sampler is not None and (cfg.sampler == "euler") != (head == "flow"):
            raise ConfigError.expected(f"--sampler of a vla policy with --vla-head {head}",
                                       "euler" if head == "flow" else "greedy or sample", repr(cfg.sampler))
        lora = cfg.lora_rank if cfg.lora_rank is not None else (32 if cfg.vla_trunk is not None else 0)
        size = dict(trunk_hidden=256, trunk_layers=4, vision_hidden=128, vision_layers=4) if cfg.size == "paper" else {}
        return VLAConfig(To=to, Tp=cfg.horizon if head == "flow" else to - 1 + cfg.action_steps,
                         Ta=cfg.action_steps, head=head, n_bins=cfg.bins,
                         trunk_path=str(cfg.vla_trunk) if cfg.vla_trunk else None,
                         vision_path=str(cfg.vla_vision) if cfg.vla_vision else None, lora_rank=lora,
                         sentence_token=(cfg.vla_trunk is None if cfg.vla_sentence_token is None
                                         else cfg.vla_sentence_token),
                         decoding=cfg.sampler if cfg.sampler in ("greedy", "sample") else "greedy",
                         encoder=encoder_config(cfg), **size)
