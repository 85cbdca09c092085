"""What every learned action-chunk policy shares (diffusion / flow, ACT, autoregressive, CARP): features,
the strict normaliser that ships with the weights, the per-input observation encoder (an instruction, a
``language`` feature, enters as its frozen sentence embedding: ``policies.text``), the observation history,
the ``Policy`` interface and checkpoints.

A family subclasses ``ChunkPolicy`` and provides ``compute_loss(batch)`` (training) and
``_sample(batch, generator, sample)`` ((B, Tp, Da) normalised action sequences). The sequence
starts at the oldest observation's tick, as the dataset windows do; ``infer`` executes
``[To-1, To-1+Ta)``. ``sample=True`` asks for a draw from the policy's distribution (value-guided
steering scores several); ``False`` for its usual inference (a family that is deterministic at
inference, like ACT with its prior mean, differs between the two).

Each family's config is a frozen dataclass with ``To``, ``Tp``, ``Ta``, ``state_norm``,
``tactile_norm``, ``action_norm`` and ``encoder`` fields, ``to_json`` and ``from_json``; the
checkpoint stores it under the family's ``kind``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, fields, is_dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.core.frame import Observation
from robot_learning.datasets.stats import OBS_PREFIX, Normalizer
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.policies.base import ActionChunk, ObservationHistory
from robot_learning.policies.nets.encoders import EncoderConfig, InputSpec, ObservationEncoder

NORM_MODES = ("minmax", "meanstd", "quantile")


def check_windows(To: int, Tp: int, Ta: int) -> None:
    if not (To >= 1 and Tp >= To and 1 <= Ta <= Tp - To + 1):
        raise ConfigError.expected("window sizes", "To >= 1, Tp >= To, 1 <= Ta <= Tp - To + 1",
                                   f"To={To}, Tp={Tp}, Ta={Ta}")


def check_norms(config) -> None:
    for name in ("state_norm", "tactile_norm", "action_norm"):
        if getattr(config, name) not in NORM_MODES:
            raise ConfigError.expected(name, f"one of {list(NORM_MODES)}", repr(getattr(config, name)))


def config_to_json(config) -> dict:
    """A config dataclass as JSON (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}


def config_from_json(cls, d: Mapping[str, Any]):
    """``cls`` from its JSON: unknown keys are an error; tuples and the encoder config restored."""
    known = {f.name: f for f in fields(cls)}
    extra = sorted(set(d) - set(known))
    if extra:
        raise ConfigError.expected(f"{cls.__name__} keys", sorted(known), f"unexpected {extra}")
    out = {}
    for k, v in d.items():
        if k == "encoder":
            v = EncoderConfig(**v)
        elif isinstance(v, list):
            v = tuple(v)
        out[k] = v
    return cls(**out)


class JsonConfig:
    """``to_json`` / ``from_json`` of a family's frozen config dataclass (unknown keys are an error)."""

    def to_json(self) -> dict:
        return config_to_json(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]):
        return config_from_json(cls, d)


def encoder_inputs(features: FeatureSet, text_dim: int | None = None) -> list[InputSpec]:
    """The encoder's inputs for observation features (images become CHW; an instruction is its sentence embedding,
    ``text_dim`` wide, a state-like input)."""
    out = []
    for s in features:
        if s.kind is FeatureKind.LANGUAGE:
            if text_dim is None:
                raise ConfigError(f"policy observation {s.name}: language needs a text encoder")
            out.append(InputSpec(OBS_PREFIX + s.name, "state", (int(text_dim),)))
            continue
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


def normalizer_modes(config, features: FeatureSet) -> dict[str, str]:
    """Normaliser key -> mode for a family config and its observation features."""
    modes = {"action": config.action_norm}
    for s in features:
        if s.kind is FeatureKind.STATE:
            modes[OBS_PREFIX + s.name] = config.state_norm
        elif s.kind is FeatureKind.TACTILE:
            modes[OBS_PREFIX + s.name] = config.tactile_norm
    return modes


class ChunkPolicy(nn.Module):
    """Base of the learned chunk policies (see the module docstring)."""

    kind = "chunk"
    config_cls: type = object
    embeds_text = True   # an instruction enters as a sentence embedding (the VLA reads tokens instead)

    def __init__(self, config, observation_features: FeatureSet, action_features: FeatureSet,
                 normalizer: Normalizer, control_period_ns: int, meta: Mapping[str, Any] | None = None):
        super().__init__()
        if not (is_dataclass(config) and isinstance(config, self.config_cls)):
            raise ConfigError.expected(f"{type(self).__name__} config", self.config_cls.__name__, type(config).__name__)
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
        self.language = [s.name for s in observation_features if s.kind is FeatureKind.LANGUAGE]
        if self.language and self._reads_sentence_embedding():
            from robot_learning.policies.text import DEFAULT_TEXT_ENCODER, text_dim

            self.meta.setdefault("text_encoder", DEFAULT_TEXT_ENCODER)
            dim = text_dim(self.meta["text_encoder"])
            # instruction embeddings are centred and scaled by the training instructions' (fit_text); saved
            self.register_buffer("text_mean", torch.zeros(dim))
            self.register_buffer("text_scale", torch.ones(()))
        self.encoder_inputs = encoder_inputs(
            observation_features if self.embeds_text else
            FeatureSet(s for s in observation_features if s.kind is not FeatureKind.LANGUAGE),
            dim if self.language and self.embeds_text else None)
        self._text_inputs = {OBS_PREFIX + n for n in self.language} if self.embeds_text else set()
        self.encoder = self._build_encoder()
        self.history = ObservationHistory(observation_features, config.To)
        self.generator = torch.Generator().manual_seed(0)
        self.last_latency_s = 0.0

    # --- for the families --------------------------------------------------------------------
    def _build_encoder(self) -> nn.Module | None:
        return ObservationEncoder(self.encoder_inputs, self.config.encoder)

    def _reads_sentence_embedding(self) -> bool:
        """Whether an instruction reaches this policy as a sentence embedding (``text_mean`` / ``text_scale``)."""
        return self.embeds_text

    def text_features(self, texts) -> dict[str, torch.Tensor]:
        """What the policy reads of each instruction, as batch keys ``obs.<language feature><suffix>`` by suffix:
        here ``""``: (N, To, D) sentence embeddings (the same at every step)."""
        return {"": self._sentence_embeddings(texts)[:, None].expand(-1, self.config.To, -1).contiguous()}

    def _sentence_embeddings(self, texts) -> torch.Tensor:
        from robot_learning.policies.text import embed

        return torch.from_numpy(embed(list(texts), self.meta["text_encoder"]))

    def _normalized_text(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.text_mean) * self.text_scale

    def fit_text(self, texts) -> None:
        """Centre the sentence embeddings on the training instructions' mean and scale them to unit RMS per
        dimension. Instructions of one task often differ in one word ("pick up the red / green cube"): raw, they are
        nearly parallel unit vectors (cosine 0.82-0.84, 0.015 apart per dimension), a signal the network would first
        have to amplify 60-fold. One scale for all dimensions keeps their geometry, so an unseen instruction lands
        as far from the training ones as it is. Fewer than two distinct instructions: identity."""
        if not hasattr(self, "text_mean"):
            return
        e = self._sentence_embeddings(sorted(set(map(str, texts))))
        mean, scale = torch.zeros(e.shape[1]), torch.ones(())
        if len(e) >= 2:
            mean = e.mean(0)
            scale = (e - mean).pow(2).mean().rsqrt()
        self.text_mean.copy_(mean)
        self.text_scale.copy_(scale)

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def fit_data(self, data) -> None:
        """Anything a family fits to the training data before the first step (the AR policy's quantile bins)."""

    def _sample(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None,
                sample: bool) -> torch.Tensor:
        """(B, Tp, Da) normalised action sequences for a batch of observation windows."""
        raise NotImplementedError

    def set_sampler(self, kind: str, steps: int | None = None) -> None:
        raise ConfigError(f"a {self.kind} policy has no sampler to choose (--sampler / --sampling-steps)")

    @property
    def sampler(self):
        return None

    # --- shared ------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def normalized_obs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for spec in self.encoder_inputs:
            if spec.name not in batch:
                raise SpecMismatchError.expected("policy batch", f"key {spec.name!r}", f"keys {sorted(batch)}")
            x = batch[spec.name]
            if spec.name in self.normalizer.modes:
                x = self.normalizer.normalize(spec.name, x)
            elif spec.name in self._text_inputs:
                x = self._normalized_text(x)
            out[spec.name] = x
        return out

    def normalized_actions(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The batch's (B, Tp, Da) action sequences, normalised and shape-checked."""
        if "action" not in batch:
            raise SpecMismatchError.expected("training batch", "an 'action' key", f"keys {sorted(batch)}")
        actions = self.normalizer.normalize("action", batch["action"])
        if actions.shape[1:] != (self.config.Tp, self.action_dim):
            raise SpecMismatchError.expected("batch action shape", ("B", self.config.Tp, self.action_dim),
                                             tuple(actions.shape))
        return actions

    @torch.no_grad()
    def predict_actions(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None = None,
                        sample: bool = False) -> torch.Tensor:
        """(B, Tp, Da) unnormalised action sequences for a batch of observation windows."""
        return self.normalizer.unnormalize("action", self._sample(batch, generator, sample).float())

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
            if s.kind is FeatureKind.LANGUAGE:   # the newest instruction, as the policy reads text
                for suffix, t in self.text_features([str(stacked[s.name][-1])]).items():
                    out[OBS_PREFIX + s.name + suffix] = t.to(dev)
                continue
            x = torch.from_numpy(np.ascontiguousarray(stacked[s.name]))
            if s.kind is FeatureKind.RGB:
                x = x.permute(0, 3, 1, 2)
            elif x.dtype != torch.uint8:
                x = x.float()
            out[OBS_PREFIX + s.name] = x.unsqueeze(0).to(dev)
        return out

    def _sequences(self, batch: Mapping[str, torch.Tensor], sample: bool, n: int | None = None) -> np.ndarray:
        """(B, n, Da) actions from this tick on (``n`` default Ta), checked finite."""
        was_training = self.training
        self.eval()
        try:
            gen = self.generator if self.device.type == "cpu" else None
            seq = self.predict_actions(batch, generator=gen, sample=sample).cpu().numpy()
        finally:
            self.train(was_training)
        c = self.config
        acts = seq[:, c.To - 1:c.To - 1 + (c.Ta if n is None else n)].astype(np.float32)
        if not np.all(np.isfinite(acts)):
            raise SpecMismatchError(f"{self.kind} policy produced a non-finite action; the checkpoint is broken")
        return acts

    @torch.no_grad()
    def infer(self, observation: Observation) -> ActionChunk:
        t0 = time.perf_counter()
        self.observe(observation)
        acts = self._sequences(self.window(), sample=False)[0]
        t_ns = int(observation.t_ns) + self.control_period_ns * np.arange(len(acts), dtype=np.int64)
        self.last_latency_s = time.perf_counter() - t0
        return ActionChunk(acts, t_ns, self.action_features)

    @torch.no_grad()
    def sample_chunks(self, observation: Observation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` independent chunks for one observation in one batched call (value-guided steering):
        actions (k, Ta, Da) and their ticks (Ta,). The observation joins the history once, as with ``infer``."""
        t0 = time.perf_counter()
        self.observe(observation)
        batch = {name: v.expand(int(k), *v.shape[1:]) for name, v in self.window().items()}
        acts = self._sequences(batch, sample=True)
        self.last_latency_s = time.perf_counter() - t0
        return acts, int(observation.t_ns) + self.control_period_ns * np.arange(self.config.Ta, dtype=np.int64)

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint_config(self) -> dict:
        return {self.kind: self.config.to_json(), "observation_features": self.observation_features.to_json(),
                "action_features": self.action_features.to_json(), "control_period_ns": self.control_period_ns}

    def save(self, path, meta: Mapping[str, Any] | None = None):
        from robot_learning.policies.checkpoint import save_policy_dir

        return save_policy_dir(path, self.kind, self.checkpoint_config(), self.state_dict(), self.normalizer,
                               {**self.meta, **(meta or {})})

    @classmethod
    def from_checkpoint(cls, doc: Mapping[str, Any], weights: Mapping[str, torch.Tensor], normalizer: Normalizer,
                        device: str = "cpu", directory=None):
        from robot_learning.policies.checkpoint import load_weights

        cfg = doc.get("config", {})
        try:
            policy = cls(cls.config_cls.from_json(cfg[cls.kind]), FeatureSet.from_json(cfg["observation_features"]),
                         FeatureSet.from_json(cfg["action_features"]), normalizer, int(cfg["control_period_ns"]),
                         doc.get("meta"))
        except KeyError as e:
            raise ConfigError(f"checkpoint config: missing {e}") from None
        load_weights(policy, weights, f"{cls.kind} policy")
        return policy.to(device).eval()

    @classmethod
    def load(cls, path, device: str = "cpu"):
        from robot_learning.policies.checkpoint import load_policy

        policy = load_policy(path, device)
        if not isinstance(policy, cls):
            raise ConfigError.expected(f"checkpoint {path}", f"a {cls.kind} policy", type(policy).__name__)
        return policy
