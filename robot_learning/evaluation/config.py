"""Flags that several commands share, each group one frozen dataclass nested in the command configs.

- ``HeldOutEvalConfig`` (``--eval-episodes``, ``--eval-seed``): the held-out evaluations of a learning run (``train``,
  ``finetune residual``, ``finetune rlpd``).
- ``SamplingConfig`` (``--sampler``, ``--sampling-steps``, ``--sampling-temperature``): how a loaded policy samples
  (``eval``, ``serve``).

Nest one with ``Annotated[..., FLAT]``: its flags keep their names, without a prefix (``--eval-seed``, not
``--evaluation.eval-seed``), and join the command's own options in ``--help``.
"""

from __future__ import annotations

from dataclasses import dataclass

import tyro

from robot_learning.errors import ConfigError

FLAT = tyro.conf.arg(name="")
"""A nested config's flags without its field's name as prefix."""


@dataclass(frozen=True)
class HeldOutEvalConfig:
    """Held-out evaluation of a learning run in the sim twin."""

    eval_episodes: int = 50
    """Held-out episodes per evaluation (0: none), one per seed from --eval-seed."""
    eval_seed: int = 100_000
    """First evaluation seed; seeds the policy was trained on are refused."""

    def __post_init__(self) -> None:
        if self.eval_episodes < 0:
            raise ConfigError.expected("--eval-episodes", ">= 0", self.eval_episodes)
        if self.eval_seed < 0:
            raise ConfigError.expected("--eval-seed", ">= 0", self.eval_seed)

    def seeds(self, seen, n: int | None = None) -> list[int]:
        """The first ``n`` (default ``eval_episodes``) evaluation seeds, refused (``ConfigError``) if any is in
        ``seen`` (the seeds the policy was trained on)."""
        from robot_learning.evaluation.rollout import held_out_seeds

        return held_out_seeds(self.eval_seed, self.eval_episodes if n is None else n, seen, "--eval-seed")


@dataclass(frozen=True)
class SamplingConfig:
    """How a diffusion / flow / autoregressive policy samples (default: as it was saved)."""

    sampler: str | None = None
    """diffusion: ddpm, ddim or edm; flow: euler; ar: greedy or sample (default: the policy's)."""
    sampling_steps: int | None = None
    """Denoising / integration steps (default: the sampler's: ddpm 100, ddim 10, edm 3, euler 10)."""
    sampling_temperature: float | None = None
    """diffusion / flow: scale of the starting noise, 0..1 (1: the trained distribution; 0: deterministic, the
    zero latent). Default: the policy's (a residual policy's base keeps the one it was fine-tuned with)."""

    def __post_init__(self) -> None:
        from robot_learning.policies.registry import sampler_names

        names = sampler_names()
        if self.sampler is not None and self.sampler not in names:
            raise ConfigError.expected("--sampler", f"one of {list(names)}", repr(self.sampler))
        if self.sampling_steps is not None and self.sampling_steps < 1:
            raise ConfigError.expected("--sampling-steps", ">= 1", self.sampling_steps)

    def apply(self, policy) -> None:
        """Set these flags on a loaded policy (steps and temperature alone keep the policy's sampler kind; a new
        kind starts from its default steps). Raises ``ConfigError`` for a policy or sampler without them."""
        kind, steps, temperature = self.sampler, self.sampling_steps, self.sampling_temperature
        if kind is None and steps is None and temperature is None:
            return
        sampler = policy.sampler
        if sampler is None:
            raise ConfigError(f"--sampler/--sampling-steps/--sampling-temperature: a {policy.kind} policy has no "
                              "sampler")
        if steps is None and kind in (None, sampler.kind):
            steps = sampler.steps
        if temperature is None:
            policy.set_sampler(kind or sampler.kind, steps)
        elif hasattr(sampler, "temperature"):
            policy.set_sampler(kind or sampler.kind, steps, temperature)
        else:
            raise ConfigError(f"--sampling-temperature: the {sampler!r} of this policy has no temperature")
