"""A policy family written outside robot_learning: an MLP from the newest state to the action sequence.

It plugs in through the entry point group ``robot_learning.families`` (``FAMILY`` below); the test that uses it
installs it as a distribution on ``PYTHONPATH`` and drives it through the CLI only (train, eval, serve), with no
edit inside the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from robot_learning.policies.chunk_policy import ChunkPolicy, JsonConfig, check_norms, check_windows
from robot_learning.policies.nets.encoders import EncoderConfig
from robot_learning.policies.registry import Family
from robot_learning.training.families import FamilyTraining


@dataclass(frozen=True)
class ToyConfig(JsonConfig):
    To: int = 1
    Tp: int = 8
    Ta: int = 4
    hidden: int = 32
    state_norm: str = "minmax"
    tactile_norm: str = "meanstd"
    action_norm: str = "minmax"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        check_windows(self.To, self.Tp, self.Ta)
        check_norms(self)


class ToyPolicy(ChunkPolicy):
    kind = "toy"
    config_cls = ToyConfig

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        c = self.config
        self.net = nn.Sequential(nn.Linear(c.To * self.encoder.out_dim, c.hidden), nn.ReLU(),
                                 nn.Linear(c.hidden, c.Tp * self.action_dim))

    def _predict(self, batch) -> torch.Tensor:
        feats = self.encoder(self.normalized_obs(batch))           # (B, To, D)
        return self.net(feats.flatten(1)).view(-1, self.config.Tp, self.action_dim)

    def compute_loss(self, batch) -> torch.Tensor:
        return (self._predict(batch) - self.normalized_actions(batch)).pow(2).mean()

    def _sample(self, batch, generator, sample) -> torch.Tensor:
        return self._predict(batch)


class ToyTraining(FamilyTraining):
    def config(self, cfg, has_images: bool) -> ToyConfig:
        self.check_sampler(cfg)
        return ToyConfig(To=self.obs_steps(cfg), Tp=cfg.horizon, Ta=cfg.action_steps)


FAMILY = Family("toy", "toy_family:ToyPolicy", "a two-layer MLP from the state to the action chunk (a plug-in)",
                training="toy_family:ToyTraining", obs_steps=1, lr=1e-3)
