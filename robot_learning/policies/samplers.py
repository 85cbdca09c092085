"""Noise schedules for DDPM training and the samplers that run a trained denoiser.

Training is DDPM (Ho et al.) with the squared-cosine beta schedule and epsilon prediction, as in
Diffusion Policy. One trained network can then be sampled three ways (diffusers schedulers):

- ``ddpm``: ancestral DDPM over all training steps (100): the reference, slowest;
- ``ddim``: deterministic DDIM over ``steps`` (~10) of them;
- ``edm``: few-step (~3) sampling on the Karras/EDM noise-level schedule with DPM-Solver++(2M)
  in the sigma parameterisation of the same DDPM model (x / sqrt(alpha_bar) = x0 + sigma * eps).

``Sampler.sample(denoise, shape, generator)`` starts from Gaussian noise and returns the final
(normalised) sample; ``denoise(x, t)`` maps a noisy batch and a (B,) timestep tensor to the
predicted noise.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from robot_learning.errors import ConfigError

SAMPLERS = ("ddpm", "ddim", "edm")
DEFAULT_STEPS = {"ddpm": None, "ddim": 10, "edm": 3}   # None: every training step


def _common(num_train_timesteps: int, beta_schedule: str, prediction_type: str) -> dict:
    return {"num_train_timesteps": num_train_timesteps, "beta_schedule": beta_schedule,
            "prediction_type": prediction_type}


def training_scheduler(num_train_timesteps: int = 100, beta_schedule: str = "squaredcos_cap_v2",
                       prediction_type: str = "epsilon", clip_sample: bool = True):
    from diffusers import DDPMScheduler

    return DDPMScheduler(**_common(num_train_timesteps, beta_schedule, prediction_type), clip_sample=clip_sample)


class Sampler:
    """One sampling method with its step count (see the module docstring)."""

    def __init__(self, kind: str, steps: int | None = None, *, num_train_timesteps: int = 100,
                 beta_schedule: str = "squaredcos_cap_v2", prediction_type: str = "epsilon", clip_sample: bool = True):
        if kind not in SAMPLERS:
            raise ConfigError.expected("sampler", f"one of {list(SAMPLERS)}", repr(kind))
        steps = DEFAULT_STEPS[kind] if steps is None else int(steps)
        steps = num_train_timesteps if steps is None else steps
        if not 1 <= steps <= num_train_timesteps:
            raise ConfigError.expected(f"{kind} sampling steps", f"1..{num_train_timesteps}", steps)
        self.kind, self.steps = kind, steps
        common = _common(num_train_timesteps, beta_schedule, prediction_type)
        if kind == "ddpm":
            from diffusers import DDPMScheduler

            self.scheduler = DDPMScheduler(**common, clip_sample=clip_sample)
        elif kind == "ddim":
            from diffusers import DDIMScheduler

            self.scheduler = DDIMScheduler(**common, clip_sample=clip_sample, set_alpha_to_one=True)
        else:
            from diffusers import DPMSolverMultistepScheduler

            self.scheduler = DPMSolverMultistepScheduler(**common, use_karras_sigmas=True,
                                                         algorithm_type="dpmsolver++", solver_order=2,
                                                         lower_order_final=True, final_sigmas_type="zero")
        self.scheduler.set_timesteps(steps)
        self.nfe = len(self.scheduler.timesteps)
        alphas = self.scheduler.alphas_cumprod.double().numpy()
        self._log_sigmas = np.log(np.sqrt((1.0 - alphas) / alphas))   # increasing with the timestep

    def model_timesteps(self) -> list[float]:
        """The timestep the network is told at each step. For ``edm`` the solver's noise levels
        fall between training steps: the continuous timestep with that noise level
        (interpolated in log sigma), not the scheduler's integer one."""
        sch = self.scheduler
        if self.kind != "edm":
            return [float(t) for t in sch.timesteps]
        sig = np.asarray(sch.sigmas[:len(sch.timesteps)], dtype=np.float64)
        t = np.interp(np.log(sig), self._log_sigmas, np.arange(len(self._log_sigmas)))
        return [round(float(v), 6) for v in t]

    def __repr__(self) -> str:
        return f"Sampler({self.kind}, steps={self.steps})"

    @torch.no_grad()
    def sample(self, denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
               generator: torch.Generator | None = None, device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
        sch = self.scheduler
        sch.set_timesteps(self.steps, device=device)   # resets multistep solver state
        x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        x = x * getattr(sch, "init_noise_sigma", 1.0)
        b = shape[0]
        kwargs = {"generator": generator} if self.kind == "ddpm" else {}
        for t, t_model in zip(sch.timesteps, self.model_timesteps()):
            x_in = sch.scale_model_input(x, t)
            eps = denoise(x_in, torch.full((b,), t_model, device=device, dtype=torch.float32))
            x = sch.step(eps.to(x.dtype), t, x, **kwargs).prev_sample
        return x
