"""Exponential moving average of a network's weights, with the warm-up Diffusion Policy uses.

The decay grows with the optimisation step ``n`` (after ``update_after_step``):
``decay = 1 - (1 + n / inv_gamma) ** -power``, clamped to ``[min_decay, max_decay]`` and 0 for
the first update, so early averages follow the fast-moving weights and later ones smooth them
(power 0.75 reaches 0.999 after ~10k steps, 0.9999 after ~215k).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, power: float = 0.75, max_decay: float = 0.9999, min_decay: float = 0.0,
                 inv_gamma: float = 1.0, update_after_step: int = 0):
        self.averaged = copy.deepcopy(model).eval().requires_grad_(False)
        self.power, self.max_decay, self.min_decay = float(power), float(max_decay), float(min_decay)
        self.inv_gamma, self.update_after_step = float(inv_gamma), int(update_after_step)
        self.step = 0

    def decay(self, step: int | None = None) -> float:
        n = (self.step if step is None else step) - self.update_after_step - 1
        if n <= 0:
            return 0.0
        value = 1.0 - (1.0 + n / self.inv_gamma) ** -self.power
        return max(self.min_decay, min(value, self.max_decay))

    @torch.no_grad()
    def update(self, model: nn.Module) -> float:
        d = self.decay()
        avg = list(self.averaged.parameters())
        cur = [p.detach() for p in model.parameters()]
        if d == 0.0:
            torch._foreach_copy_(avg, cur)
        else:
            torch._foreach_lerp_(avg, cur, 1.0 - d)
        for b_avg, b in zip(self.averaged.buffers(), model.buffers()):
            b_avg.copy_(b)
        self.step += 1
        return d
