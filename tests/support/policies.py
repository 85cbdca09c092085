"""Tiny diffusion policies on a recorded dataset, built the way the trainer builds them, and arbitrary
observations to feed them."""

import numpy as np

from robot_learning.core.features import FeatureSet
from robot_learning.core.frame import Observation
from robot_learning.datasets.sampler import WindowSampler
from robot_learning.datasets.scripted import LIFT_SEEDS
from robot_learning.datasets.stats import Normalizer, load_stats
from robot_learning.policies.diffusion import DiffusionConfig, DiffusionPolicy, normalizer_modes
from robot_learning.policies.nets.encoders import EncoderConfig
from robot_learning.training.config import select_features

# CPU-test sized networks: a 2-level U-Net and a 16-wide ResNet per camera
TINY = dict(Tp=8, Ta=4, down_dims=(16, 32), step_embed_dim=16,
            encoder=EncoderConfig(image_width=16, image_kp=8, image_out_dim=16, tactile_out_dim=8))


def make_policy(store, obs="state", **overrides):
    """A tiny diffusion policy on ``store``, built the way ``trainer.prepare`` builds one, and its window
    sampler."""
    available = FeatureSet(s for st in store.schema.streams for s in st.features)
    features = select_features(obs, available)
    cfg = DiffusionConfig(**{**TINY, **overrides})
    sampler = WindowSampler(store, list(features.names), To=cfg.To, Tp=cfg.Tp, Ta=cfg.Ta)
    normalizer = Normalizer(normalizer_modes(cfg, features), sampler.output_stats(load_stats(store)))
    period_ns = int(round(1e9 / store.schema.control_rate_hz))
    meta = {"robot": dict(store.schema.robot), "train_seeds": list(LIFT_SEEDS)}
    return DiffusionPolicy(cfg, features, store.schema.action_features, normalizer, period_ns, meta), sampler


def fake_observation(features, t_ns=123_000_000, seed=0):
    """Fixed arbitrary values for ``features`` (numpy arrays of their dtypes)."""
    rng = np.random.default_rng(seed)
    values = {}
    for s in features:
        if np.dtype(s.dtype) == np.uint8:
            values[s.name] = rng.integers(0, 256, s.shape, dtype=np.uint8)
        else:
            values[s.name] = rng.uniform(-1, 1, s.shape).astype(s.dtype)
    return Observation(t_ns, features, values, {k: t_ns for k in values})
