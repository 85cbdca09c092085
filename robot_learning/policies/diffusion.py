"""Diffusion Policy (Chi et al. 2023): DDPM over an action sequence conditioned on the last ``To``
observations.

Shapes (see ``policies.base``): a training batch holds ``obs.<feature>`` (B, To, ...) (images
uint8 (B, To, 3, H, W), depth (B, To, H, W), numeric float (B, To, *shape)) and ``action``
(B, Tp, Da). The observation encoder maps the (normalised) observations to (B, To, D); the
denoiser (1-D U-Net with FiLM, or a transformer) predicts the noise of a (B, Tp, Da) sequence.
At inference the actions ``[To-1, To-1+Ta)`` of the sampled sequence are executed: the first one
at the tick of the newest observation.

The normaliser (numeric observations and the concatenated action) lives in the policy and ships
with its weights; it is strict (a missing key or a shape mismatch is an error).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.core.frame import Observation
from robot_learning.datasets.stats import OBS_PREFIX, Normalizer
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.policies.base import ActionChunk, ObservationHistory
from robot_learning.policies.nets.encoders import EncoderConfig, InputSpec, ObservationEncoder
from robot_learning.policies.samplers import SAMPLERS, Sampler, training_scheduler

NORM_MODES = ("minmax", "meanstd", "quantile")


@dataclass(frozen=True)
class DiffusionConfig:
    """Architecture and sampling of a diffusion policy (the training loop has its own config).

    To / Tp / Ta: observation steps, predicted horizon, executed steps (Ta <= Tp - To + 1).
    denoiser: "unet" (1-D conditional U-Net, FiLM) or "transformer". down_dims: U-Net widths
    ((64, 128, 256) ~4M parameters, CPU-sized; (256, 512, 1024) is the paper's ~66M).
    sampler / sampling_steps: inference default (ddpm, ddim or edm; None = that sampler's default).
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
    clip_sample: bool = True
    sampler: str = "ddim"
    sampling_steps: int | None = None
    state_norm: str = "minmax"
    tactile_norm: str = "meanstd"
    action_norm: str = "minmax"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        if not (self.To >= 1 and self.Tp >= self.To and 1 <= self.Ta <= self.Tp - self.To + 1):
            raise ConfigError.expected("window sizes", "To >= 1, Tp >= To, 1 <= Ta <= Tp - To + 1",
                                       f"To={self.To}, Tp={self.Tp}, Ta={self.Ta}")
        if self.denoiser not in ("unet", "transformer"):
            raise ConfigError.expected("denoiser", "'unet' or 'transformer'", repr(self.denoiser))
        if self.denoiser == "unet" and self.Tp % (2 ** (len(self.down_dims) - 1)):
            raise ConfigError.expected("Tp for the U-Net", f"a multiple of {2 ** (len(self.down_dims) - 1)}", self.Tp)
        if self.sampler not in SAMPLERS:
            raise ConfigError.expected("sampler", f"one of {list(SAMPLERS)}", repr(self.sampler))
        for name in ("state_norm", "tactile_norm", "action_norm"):
            if getattr(self, name) not in NORM_MODES:
                raise ConfigError.expected(name, f"one of {list(NORM_MODES)}", repr(getattr(self, name)))

    def to_json(self) -> dict:
        d = asdict(self)
        d["down_dims"] = list(self.down_dims)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DiffusionConfig:
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(d) - known)
        if extra:
            raise ConfigError.expected("diffusion config keys", sorted(known), f"unexpected {extra}")
        d = dict(d)
        if "down_dims" in d:
            d["down_dims"] = tuple(d["down_dims"])
        if "encoder" in d:
            d["encoder"] = EncoderConfig(**d["encoder"])
        return cls(**d)


def encoder_inputs(features: FeatureSet) -> list[InputSpec]:
    """The encoder's inputs for observation features (images become CHW)."""
    out = []
    for s in features:
        if s.kind is FeatureKind.RGB:
            out.append(InputSpec(OBS_PREFIX + s.name, "rgb", (3, s.shape[0], s.shape[1])))
        elif s.kind is FeatureKind.DEPTH:
            out.append(InputSpec(OBS_PREFIX + s.name, "depth", tuple(s.shape)))
        elif s.kind is FeatureKind.TACTILE:
            out.append(InputSpec(OBS_PREFIX + s.name, "tactile", tuple(s.shape)))
        elif s.kind is FeatureKind.STATE:
            out.append(InputSpec(OBS_PREFIX + s.name, "state", (s.size,)))
        else:
            raise ConfigError.expected(f"policy observation {s.name}", "rgb, depth, tactile or state", s.kind.value)
    return out


def normalizer_modes(config: DiffusionConfig, features: FeatureSet) -> dict[str, str]:
    modes = {"action": config.action_norm}
    for s in features:
        if s.kind is FeatureKind.STATE:
            modes[OBS_PREFIX + s.name] = config.state_norm
        elif s.kind is FeatureKind.TACTILE:
            modes[OBS_PREFIX + s.name] = config.tactile_norm
    return modes


class DiffusionPolicy(nn.Module):
    """Diffusion policy: training loss, sampling and the ``Policy`` inference interface."""

    kind = "diffusion"

    def __init__(self, config: DiffusionConfig, observation_features: FeatureSet, action_features: FeatureSet,
                 normalizer: Normalizer, control_period_ns: int, meta: Mapping[str, Any] | None = None):
        super().__init__()
        self.config = config
        self.observation_features, self.action_features = observation_features, action_features
        self.control_period_ns = int(control_period_ns)
        self.meta = dict(meta or {})
        self.action_dim = sum(s.size for s in action_features)
        want = normalizer_modes(config, observation_features)
        if dict(normalizer.modes) != want:
            raise SpecMismatchError.expected("normalizer keys and modes", want, dict(normalizer.modes))
        if normalizer.shape("action") != (self.action_dim,):
            raise SpecMismatchError.expected("action statistics shape", (self.action_dim,), normalizer.shape("action"))
        self.normalizer = normalizer
        self.encoder_inputs = encoder_inputs(observation_features)
        self.encoder = ObservationEncoder(self.encoder_inputs, config.encoder)
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
        self.sampler = self.make_sampler(config.sampler, config.sampling_steps)
        self.history = ObservationHistory(observation_features, config.To)
        self.generator = torch.Generator().manual_seed(0)
        self.last_latency_s = 0.0

    # --- construction ------------------------------------------------------------------------
    def make_sampler(self, kind: str, steps: int | None = None) -> Sampler:
        c = self.config
        return Sampler(kind, steps, num_train_timesteps=c.num_train_timesteps, beta_schedule=c.beta_schedule,
                       prediction_type=c.prediction_type, clip_sample=c.clip_sample)

    def set_sampler(self, kind: str, steps: int | None = None) -> None:
        self.sampler = self.make_sampler(kind, steps)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # --- training ----------------------------------------------------------------------------
    def normalized_obs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for spec in self.encoder_inputs:
            if spec.name not in batch:
                raise SpecMismatchError.expected("policy batch", f"key {spec.name!r}", f"keys {sorted(batch)}")
            x = batch[spec.name]
            out[spec.name] = self.normalizer.normalize(spec.name, x) if spec.name in self.normalizer.modes else x
        return out

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """DDPM epsilon-prediction MSE on a batch (see the module docstring for its keys)."""
        if "action" not in batch:
            raise SpecMismatchError.expected("training batch", "an 'action' key", f"keys {sorted(batch)}")
        actions = self.normalizer.normalize("action", batch["action"])
        if actions.shape[1:] != (self.config.Tp, self.action_dim):
            raise SpecMismatchError.expected("batch action shape", ("B", self.config.Tp, self.action_dim),
                                             tuple(actions.shape))
        cond = self.encoder(self.normalized_obs(batch))
        noise = torch.randn_like(actions)
        t = torch.randint(0, self.config.num_train_timesteps, (actions.shape[0],), device=actions.device)
        noisy = self.noise_scheduler.add_noise(actions, noise, t)
        pred = self.denoiser(noisy, t, cond)
        target = noise if self.config.prediction_type == "epsilon" else actions
        return F.mse_loss(pred, target)

    # --- sampling ----------------------------------------------------------------------------
    @torch.no_grad()
    def predict_actions(self, batch: Mapping[str, torch.Tensor], sampler: Sampler | None = None,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, Tp, Da) unnormalised action sequences for a batch of observation windows."""
        cond = self.encoder(self.normalized_obs(batch))
        b = cond.shape[0]
        x = (sampler or self.sampler).sample(lambda x, t: self.denoiser(x, t, cond), (b, self.config.Tp, self.action_dim),
                                             generator=generator, device=cond.device)
        return self.normalizer.unnormalize("action", x.float())

    # --- Policy interface --------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        self.history.reset()
        if seed is not None:
            self.generator.manual_seed(int(seed))

    def observe(self, observation: Observation) -> None:
        self.history.push(observation)

    def window(self, history: ObservationHistory | None = None) -> dict[str, torch.Tensor]:
        """The observation history (this policy's, or ``history``) as a batch of one (images HWC -> CHW)."""
        dev = self.device
        out = {}
        stacked = (history or self.history).stacked()
        for s in self.observation_features:
            x = torch.from_numpy(np.ascontiguousarray(stacked[s.name]))
            if s.kind is FeatureKind.RGB:
                x = x.permute(0, 3, 1, 2)
            elif x.dtype != torch.uint8:
                x = x.float()
            out[OBS_PREFIX + s.name] = x.unsqueeze(0).to(dev)
        return out

    @torch.no_grad()
    def infer(self, observation: Observation) -> ActionChunk:
        t0 = time.perf_counter()
        self.observe(observation)
        was_training = self.training
        self.eval()
        try:
            gen = self.generator if self.device.type == "cpu" else None
            seq = self.predict_actions(self.window(), generator=gen)[0].cpu().numpy()
        finally:
            self.train(was_training)
        c = self.config
        acts = seq[c.To - 1:c.To - 1 + c.Ta].astype(np.float32)
        if not np.all(np.isfinite(acts)):
            raise SpecMismatchError("diffusion policy produced a non-finite action; the checkpoint is broken")
        t_ns = int(observation.t_ns) + self.control_period_ns * np.arange(len(acts), dtype=np.int64)
        self.last_latency_s = time.perf_counter() - t0
        return ActionChunk(acts, t_ns, self.action_features)

    @torch.no_grad()
    def sample_chunks(self, observation: Observation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` independent chunks for one observation in one batched sampling call (value-guided steering):
        actions (k, Ta, Da) and their ticks (Ta,). The observation joins the history once, as with ``infer``."""
        t0 = time.perf_counter()
        self.observe(observation)
        was_training = self.training
        self.eval()
        try:
            batch = {name: v.expand(int(k), *v.shape[1:]) for name, v in self.window().items()}
            gen = self.generator if self.device.type == "cpu" else None
            seq = self.predict_actions(batch, generator=gen).cpu().numpy()
        finally:
            self.train(was_training)
        c = self.config
        acts = seq[:, c.To - 1:c.To - 1 + c.Ta].astype(np.float32)
        if not np.all(np.isfinite(acts)):
            raise SpecMismatchError("diffusion policy produced a non-finite action; the checkpoint is broken")
        self.last_latency_s = time.perf_counter() - t0
        return acts, int(observation.t_ns) + self.control_period_ns * np.arange(c.Ta, dtype=np.int64)

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint_config(self) -> dict:
        return {"diffusion": self.config.to_json(), "observation_features": self.observation_features.to_json(),
                "action_features": self.action_features.to_json(), "control_period_ns": self.control_period_ns}

    def save(self, path, meta: Mapping[str, Any] | None = None):
        from robot_learning.policies.checkpoint import save_policy_dir

        return save_policy_dir(path, self.kind, self.checkpoint_config(), self.state_dict(), self.normalizer,
                               {**self.meta, **(meta or {})})

    @classmethod
    def from_checkpoint(cls, doc: Mapping[str, Any], weights: Mapping[str, torch.Tensor], normalizer: Normalizer,
                        device: str = "cpu", directory=None) -> DiffusionPolicy:
        from robot_learning.policies.checkpoint import load_weights

        cfg = doc.get("config", {})
        try:
            policy = cls(DiffusionConfig.from_json(cfg["diffusion"]), FeatureSet.from_json(cfg["observation_features"]),
                         FeatureSet.from_json(cfg["action_features"]), normalizer, int(cfg["control_period_ns"]),
                         doc.get("meta"))
        except KeyError as e:
            raise ConfigError(f"checkpoint config: missing {e}") from None
        load_weights(policy, weights, "diffusion policy")
        return policy.to(device).eval()

    @classmethod
    def load(cls, path, device: str = "cpu") -> DiffusionPolicy:
        from robot_learning.policies.checkpoint import load_policy

        policy = load_policy(path, device)
        if not isinstance(policy, cls):
            raise ConfigError.expected(f"checkpoint {path}", "a diffusion policy", type(policy).__name__)
        return policy
