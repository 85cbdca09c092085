"""Noise schedules for DDPM training and the samplers that run a trained denoiser.

Training is DDPM (Ho et al.) with the squared-cosine beta schedule and epsilon prediction, as in
Diffusion Policy. One trained network can then be sampled three ways (diffusers schedulers):

- ``ddpm``: ancestral DDPM over all training steps (100): the reference, slowest;
- ``ddim``: deterministic DDIM over ``steps`` (~10) of them;
- ``edm``: few-step (~3) sampling of the same DDPM model in its sigma parameterisation
  (x / sqrt(alpha_bar) = x0 + sigma * eps): Karras/EDM noise levels (rho 7) from
  ``EDM_SIGMA_MAX`` = 10 down to ``EDM_SIGMA_MIN`` = 0.3, then the clean estimate;
  DPM-Solver++(2M) steps; the clean estimate clipped to [-1, 1] like DDPM/DDIM's
  ``clip_sample``. The noise levels fall between training steps, so the network is told the
  continuous timestep of each (interpolated in log sigma). The model's own range (~2000 down to
  0.025 for squared-cosine betas) made 3-step samples diverge on a trained lift policy (0/50);
  the range was chosen on validation seeds (200000+) of that policy, never on the evaluation
  seeds (docs/benchmarks.md). This sampler is written here, not taken from diffusers, for
  that range.

``temperature`` scales the starting noise (1: the trained distribution; 0: every draw starts from the zero
latent, so ddim / edm / euler become a deterministic function of the observation; ddpm still adds its
per-step noise). Residual RL over a frozen base uses 0 (docs/benchmarks.md: on the lift twin the base's own
sampling noise decided most episodes, which drowns the residual's signal).

``Sampler.sample(denoise, shape, generator)`` starts from Gaussian noise and returns the final
(normalised) sample; ``denoise(x, t)`` maps a noisy batch and a (B,) timestep tensor to the
predicted noise.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from robot_learning.errors import ConfigError

SAMPLERS = ("ddpm", "ddim", "edm")
DEFAULT_STEPS = {"ddpm": None, "ddim": 10, "edm": 3}   # None: every training step
EDM_SIGMA_MAX = 10.0   # noise levels of the few-step schedule, in units of the normalised actions ([-1, 1])
EDM_SIGMA_MIN = 0.3
EDM_RHO = 7.0


def _common(num_train_timesteps: int, beta_schedule: str, prediction_type: str) -> dict:
    return {"num_train_timesteps": num_train_timesteps, "beta_schedule": beta_schedule,
            "prediction_type": prediction_type}


def training_scheduler(num_train_timesteps: int = 100, beta_schedule: str = "squaredcos_cap_v2",
                       prediction_type: str = "epsilon", clip_sample: bool = True):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**_common(num_train_timesteps, beta_schedule, prediction_type), clip_sample=clip_sample)


def check_temperature(t: float) -> float:
    """The sampling temperature, refused (one line) outside [0, 1]."""
    t = float(t)
    if not 0.0 <= t <= 1.0:
        raise ConfigError.expected("sampling temperature", "0..1 (1: the trained distribution, 0: deterministic)", t)
    return t


class Sampler:
    """One sampling method with its step count (see the module docstring)."""

    def __init__(self, kind: str, steps: int | None = None, *, num_train_timesteps: int = 100,
                 beta_schedule: str = "squaredcos_cap_v2", prediction_type: str = "epsilon", clip_sample: bool = True,
                 temperature: float = 1.0):
        if kind not in SAMPLERS:
            raise ConfigError.expected("sampler", f"one of {list(SAMPLERS)}", repr(kind))
        steps = DEFAULT_STEPS[kind] if steps is None else int(steps)
        steps = num_train_timesteps if steps is None else steps
        if not 1 <= steps <= num_train_timesteps:
            raise ConfigError.expected(f"{kind} sampling steps", f"1..{num_train_timesteps}", steps)
        self.kind, self.steps, self.temperature = kind, steps, check_temperature(temperature)
        common = _common(num_train_timesteps, beta_schedule, prediction_type)
        if kind == "ddpm":
            from diffusers import DDPMScheduler

            self.scheduler = DDPMScheduler(**common, clip_sample=clip_sample)
        elif kind == "ddim":
            from diffusers import DDIMScheduler

            self.scheduler = DDIMScheduler(**common, clip_sample=clip_sample, set_alpha_to_one=True)
        else:   # the training schedule, for its noise levels; the steps are ours (sample_edm)
            self.scheduler = training_scheduler(num_train_timesteps, beta_schedule, prediction_type, clip_sample)
        self.clip_sample = clip_sample
        alphas = self.scheduler.alphas_cumprod.double().numpy()
        self._log_sigmas = np.log(np.sqrt((1.0 - alphas) / alphas))   # increasing with the timestep
        if kind == "edm":
            lo = max(EDM_SIGMA_MIN, float(np.exp(self._log_sigmas[0])))
            hi = min(EDM_SIGMA_MAX, float(np.exp(self._log_sigmas[-1])))
            ramp = np.linspace(0.0, 1.0, steps)
            sig = (hi ** (1 / EDM_RHO) + ramp * (lo ** (1 / EDM_RHO) - hi ** (1 / EDM_RHO))) ** EDM_RHO
            self.sigmas = np.append(sig, 0.0)
            self.nfe = steps
        else:
            self.scheduler.set_timesteps(steps)
            self.nfe = len(self.scheduler.timesteps)

    def model_timesteps(self) -> list[float]:
        """The timestep the network is told at each step: the scheduler's for ddpm/ddim; for
        ``edm`` the continuous timestep of each noise level (interpolated in log sigma)."""
        if self.kind != "edm":
            return [float(t) for t in self.scheduler.timesteps]
        t = np.interp(np.log(self.sigmas[:-1]), self._log_sigmas, np.arange(len(self._log_sigmas)))
        return [round(float(v), 6) for v in t]

    def __repr__(self) -> str:
        t = "" if self.temperature == 1.0 else f", temperature={self.temperature:g}"
        return f"Sampler({self.kind}, steps={self.steps}{t})"

    @torch.no_grad()
    def sample(self, denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
               generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if self.kind == "edm":
            return self._sample_edm(denoise, shape, generator, device, dtype)
        sch = self.scheduler
        sch.set_timesteps(self.steps, device=device)
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        x = x * (getattr(sch, "init_noise_sigma", 1.0) * self.temperature)
        b = shape[0]
        kwargs = {"generator": generator} if self.kind == "ddpm" else {}
        for t, t_model in zip(sch.timesteps, self.model_timesteps()):
            x_in = sch.scale_model_input(x, t)
            eps = denoise(x_in, torch.full((b,), t_model, device=device, dtype=torch.float32))
            x = sch.step(eps.to(x.dtype), t, x, **kwargs).prev_sample
        return x

    def _sample_edm(self, denoise, shape, generator, device, dtype) -> torch.Tensor:
        """DPM-Solver++(2M) over ``self.sigmas`` in the variance-exploding form x = x0 + sigma * eps
        (the network sees x / sqrt(1 + sigma^2), the variance-preserving input it was trained on)."""
        b = shape[0]
        sig = [float(v) for v in self.sigmas]
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype) * (sig[0] * self.temperature)
        prev_x0, prev_h = None, None
        for i, t_model in enumerate(self.model_timesteps()):
            s, s_next = sig[i], sig[i + 1]
            eps = denoise(x / math.sqrt(1.0 + s * s), torch.full((b,), t_model, device=device, dtype=torch.float32))
            x0 = x - s * eps.to(dtype)
            if self.clip_sample:
                x0 = x0.clamp(-1.0, 1.0)
            if s_next == 0.0:
                x = x0
                break
            h = math.log(s / s_next)                       # step in log(1 / sigma)
            d = x0
            if prev_x0 is not None:                        # second order: extrapolate the clean estimate
                r = prev_h / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * prev_x0
            x = (s_next / s) * x - math.expm1(-h) * d
            prev_x0, prev_h = x0, h
        return x


FLOW_SAMPLERS = ("euler",)
FLOW_DEFAULT_STEPS = 10


class FlowSampler:
    """Euler integration of a flow-matching velocity field from noise (t = 1) to actions (t = 0).

    Training (``DiffusionConfig.objective = "flow"``): ``x_t = t * eps + (1 - t) * a`` with t ~ U(0, 1) and the
    network regresses the velocity ``eps - a``; it is told the time as ``t * time_scale`` (the DDPM step range,
    so the same sinusoidal embedding serves both objectives). Sampling takes ``steps`` equal Euler steps
    ``x <- x - v / steps`` (``nfe`` = steps) and clips the result to [-1, 1] like DDPM's ``clip_sample``.
    """

    def __init__(self, kind: str = "euler", steps: int | None = None, *, time_scale: float = 100.0,
                 clip_sample: bool = True, temperature: float = 1.0):
        if kind not in FLOW_SAMPLERS:
            raise ConfigError.expected("flow-matching sampler", f"one of {list(FLOW_SAMPLERS)}", repr(kind))
        steps = FLOW_DEFAULT_STEPS if steps is None else int(steps)
        if not 1 <= steps <= 1000:
            raise ConfigError.expected("euler sampling steps", "1..1000", steps)
        self.kind, self.steps, self.nfe = kind, steps, steps
        self.time_scale, self.clip_sample = float(time_scale), clip_sample
        self.temperature = check_temperature(temperature)

    def __repr__(self) -> str:
        t = "" if self.temperature == 1.0 else f", temperature={self.temperature:g}"
        return f"FlowSampler({self.kind}, steps={self.steps}{t})"

    @torch.no_grad()
    def sample(self, velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
               generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype) * self.temperature
        b, dt = shape[0], 1.0 / self.steps
        for i in range(self.steps):
            t = 1.0 - i * dt
            v = velocity(x, torch.full((b,), t * self.time_scale, device=device, dtype=torch.float32))
            x = x - dt * v.to(dtype)
        return x.clamp(-1.0, 1.0) if self.clip_sample else x
