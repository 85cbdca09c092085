"""Diffusion Policy (Chi et al. 2023): DDPM over an action sequence conditioned on the last ``To``
observations, or its flow-matching variant (``objective="flow"``: a velocity field integrated in a few
Euler steps, as in pi0's action expert).

Shapes (see ``policies.base``): a training batch holds ``obs.<feature>`` (B, To, ...) (images
uint8 (B, To, 3, H, W), depth (B, To, H, W), numeric float (B, To, *shape)) and ``action``
(B, Tp, Da). The observation encoder maps the (normalised) observations to (B, To, D); the
denoiser (1-D U-Net with FiLM, or a transformer) predicts the noise (DDPM) or the velocity (flow)
of a (B, Tp, Da) sequence. At inference the actions ``[To-1, To-1+Ta)`` of the sampled sequence are
executed: the first one at the tick of the newest observation.

The normaliser (numeric observations and the concatenated action) lives in the policy and ships
with its weights; it is strict (a missing key or a shape mismatch is an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from robot_learning.core.features import FeatureSet
from robot_learning.datasets.stats import Normalizer
from robot_learning.errors import ConfigError
from robot_learning.policies.chunk_policy import (NORM_MODES, ChunkPolicy, check_norms, check_windows,
                                                  JsonConfig, encoder_inputs,
                                                  normalizer_modes)
from robot_learning.policies.nets.encoders import EncoderConfig
from robot_learning.policies.samplers import (FLOW_SAMPLERS, SAMPLERS, FlowSampler, Sampler, check_temperature,
                                             training_scheduler)

__all__ = ["NORM_MODES", "OBJECTIVES", "DiffusionConfig", "DiffusionPolicy", "encoder_inputs", "normalizer_modes"]

OBJECTIVES = ("ddpm", "flow")


@dataclass(frozen=True)
class DiffusionConfig(JsonConfig):
    """Architecture and sampling of a diffusion policy (the training loop has its own config).

    To / Tp / Ta: observation steps, predicted horizon, executed steps (Ta <= Tp - To + 1).
    denoiser: "unet" (1-D conditional U-Net, FiLM) or "transformer". down_dims: U-Net widths
    ((64, 128, 256) ~4M parameters, CPU-sized; (256, 512, 1024) is the paper's ~66M).
    objective: "ddpm" (epsilon or sample prediction over ``num_train_timesteps`` noise levels) or "flow" (flow
    matching: velocity regression, sampled with ``euler`` steps).
    sampler / sampling_steps: inference default (ddpm, ddim or edm for ddpm; euler for flow; None = that
    sampler's default: ddim 10, edm 3, euler 10). sampling_temperature: scale of the starting noise (1: the
    trained distribution, 0: deterministic; ``samplers`` module docstring).
    """

    To: int = 2
    Tp: int = 16
    Ta: int = 8
    denoiser: str = "unet"
    down_dims: tuple[int, ...] = (64, 128, 256)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 6
    dropout: float = 0.1
    num_train_timesteps: int = 100
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    objective: str = "ddpm"
    clip_sample: bool = True
    sampler: str = "ddim"
    sampling_steps: int | None = None
    sampling_temperature: float = 1.0
    state_norm: str = "minmax"
    tactile_norm: str = "meanstd"
    action_norm: str = "minmax"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        check_windows(self.To, self.Tp, self.Ta)
        if self.denoiser not in ("unet", "transformer"):
            raise ConfigError.expected("denoiser", "'unet' or 'transformer'", repr(self.denoiser))
        if self.denoiser == "unet" and self.Tp % (2 ** (len(self.down_dims) - 1)):
            raise ConfigError.expected("Tp for the U-Net", f"a multiple of {2 ** (len(self.down_dims) - 1)}", self.Tp)
        if self.objective not in OBJECTIVES:
            raise ConfigError.expected("objective", f"one of {list(OBJECTIVES)}", repr(self.objective))
        ok = FLOW_SAMPLERS if self.objective == "flow" else SAMPLERS
        if self.sampler not in ok:
            raise ConfigError.expected(f"sampler of a {self.objective} policy", f"one of {list(ok)}",
                                       repr(self.sampler))
        check_temperature(self.sampling_temperature)
        check_norms(self)


class DiffusionPolicy(ChunkPolicy):
    """Diffusion (or flow-matching) policy: training loss, sampling and the ``Policy`` interface."""

    kind = "diffusion"
    config_cls = DiffusionConfig

    def __init__(self, config: DiffusionConfig, observation_features: FeatureSet, action_features: FeatureSet,
                 normalizer: Normalizer, control_period_ns: int, meta: Mapping[str, Any] | None = None):
        super().__init__(config, observation_features, action_features, normalizer, control_period_ns, meta)
        if config.denoiser == "unet":
            from robot_learning.policies.nets.unet1d import ConditionalUnet1D

            self.denoiser = ConditionalUnet1D(self.action_dim, config.To * self.encoder.out_dim, config.down_dims,
                                              config.kernel_size, config.n_groups, config.step_embed_dim)
        else:
            from robot_learning.policies.nets.transformer import TransformerDenoiser

            self.denoiser = TransformerDenoiser(self.action_dim, self.encoder.out_dim, config.Tp, config.To,
                                                config.d_model, config.n_heads, config.n_layers, config.dropout)
        self.noise_scheduler = training_scheduler(config.num_train_timesteps, config.beta_schedule,
                                                  config.prediction_type, config.clip_sample)
        self._sampler = self.make_sampler(config.sampler, config.sampling_steps, config.sampling_temperature)

    # --- construction ------------------------------------------------------------------------
    def make_sampler(self, kind: str, steps: int | None = None, temperature: float = 1.0) -> Sampler | FlowSampler:
        c = self.config
        if c.objective == "flow":
            if kind not in FLOW_SAMPLERS:
                raise ConfigError.expected("sampler of a flow-matching policy", f"one of {list(FLOW_SAMPLERS)}",
                                           repr(kind))
            return FlowSampler(kind, steps, time_scale=c.num_train_timesteps, clip_sample=c.clip_sample,
                               temperature=temperature)
        if kind not in SAMPLERS:
            raise ConfigError.expected("sampler of a diffusion policy", f"one of {list(SAMPLERS)}", repr(kind))
        return Sampler(kind, steps, num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule,
                       prediction_type=c.prediction_type, clip_sample=c.clip_sample, temperature=temperature)

    @property
    def sampler(self):
        return self._sampler

    @sampler.setter
    def sampler(self, value) -> None:
        self._sampler = value

    def set_sampler(self, kind: str, steps: int | None = None, temperature: float | None = None) -> None:
        """Sample this network another way from now on; the choice is saved with the policy (a residual policy's
        base keeps the sampler it was fine-tuned with)."""
        t = self.config.sampling_temperature if temperature is None else float(temperature)
        self._sampler = self.make_sampler(kind, steps, t)
        self.config = replace(self.config, sampler=kind, sampling_steps=steps, sampling_temperature=t)

    # --- training ----------------------------------------------------------------------------
    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """DDPM epsilon- (or sample-) prediction MSE, or flow matching's velocity MSE, on a batch."""
        actions = self.normalized_actions(batch)
        cond = self.encoder(self.normalized_obs(batch))
        noise = torch.randn_like(actions)
        b = actions.shape[0]
        if self.config.objective == "flow":
            t = torch.rand(b, device=actions.device)
            x_t = t[:, None, None] * noise + (1.0 - t[:, None, None]) * actions
            pred = self.denoiser(x_t, t * self.config.num_train_timesteps, cond)
            return F.mse_loss(pred, noise - actions)
        t = torch.randint(0, self.config.num_train_timesteps, (b,), device=actions.device)
        noisy = self.noise_scheduler.add_noise(actions, noise, t)
        pred = self.denoiser(noisy, t, cond)
        target = noise if self.config.prediction_type == "epsilon" else actions
        return F.mse_loss(pred, target)

    # --- sampling ----------------------------------------------------------------------------
    def _sample(self, batch, generator, sample, sampler=None) -> torch.Tensor:
        cond = self.encoder(self.normalized_obs(batch))
        b = cond.shape[0]
        return (sampler or self._sampler).sample(lambda x, t: self.denoiser(x, t, cond),
                                                 (b, self.config.Tp, self.action_dim), generator=generator,
                                                 device=cond.device)

    @torch.no_grad()
    def predict_actions(self, batch: Mapping[str, torch.Tensor], sampler: Sampler | FlowSampler | None = None,
                        generator: torch.Generator | None = None, sample: bool = True) -> torch.Tensor:
        """(B, Tp, Da) unnormalised action sequences for a batch of observation windows (``sampler``: another
        way to sample this network; every draw is a sample of the policy's distribution)."""
        return self.normalizer.unnormalize("action", self._sample(batch, generator, sample, sampler).float())
