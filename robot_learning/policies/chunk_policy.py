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

The policy is the stateless model (an ``nn.Module``: network and normaliser); an episode's observation history
and RNG live in a ``ChunkSession`` (``policies.chunk_session``). The policy keeps one default session, so it plays
one episode through the ``Policy`` interface as it is; ``new_session`` opens more on the same weights and
``predict_chunks`` infers for several in one batched call. A family with per-episode state of its own keeps it in
``session.state`` (``reset_session`` / ``infer_session``).

Each family's config is a frozen dataclass with ``To``, ``Tp``, ``Ta``, ``state_norm``,
``tactile_norm``, ``action_norm`` and ``encoder`` fields, ``to_json`` and ``from_json``; the
checkpoint stores it under the family's ``kind``.
"""

from __future__ import annotations

from dataclasses import asdict, fields, is_dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.core.frame import Observation
from robot_learning.datasets.stats import OBS_PREFIX, Normalizer
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.policies.base import ActionChunk, ObservationHistory, Policy
from robot_learning.policies.chunk_session import ChunkSession
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


class ChunkPolicy(nn.Module, Policy):
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
        self.session = ChunkSession(self)   # the episode the Policy interface plays (reset / observe / infer)

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

    def window(self, history: ObservationHistory | None = None) -> dict[str, torch.Tensor]:
        """An observation history (the default session's, or ``history``) as a batch of one (images HWC -> CHW)."""
        dev = self.device
        out = {}
        stacked = (history or self.session.history).stacked()
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

    def sequences(self, batch: Mapping[str, torch.Tensor], generator: torch.Generator | None, sample: bool,
                  n: int | None = None) -> np.ndarray:
        """(B, n, Da) actions from the newest observation's tick on (``n`` default Ta), checked finite.
        ``generator`` (a CPU generator) is used on a CPU model only."""
        was_training = self.training
        self.eval()
        try:
            gen = generator if self.device.type == "cpu" else None
            seq = self.predict_actions(batch, generator=gen, sample=sample).cpu().numpy()
        finally:
            self.train(was_training)
        c = self.config
        acts = seq[:, c.To - 1:c.To - 1 + (c.Ta if n is None else n)].astype(np.float32)
        if not np.all(np.isfinite(acts)):
            raise SpecMismatchError(f"{self.kind} policy produced a non-finite action; the checkpoint is broken")
        return acts

    def ticks(self, observation: Observation, n: int) -> np.ndarray:
        """The control ticks of ``n`` actions from the observation's tick on."""
        return int(observation.t_ns) + self.control_period_ns * np.arange(n, dtype=np.int64)

    @property
    def actions_per_chunk(self) -> int:
        return int(self.config.Ta)

    # --- episodes (sessions) ------------------------------------------------------------------
    def reset_session(self, session: ChunkSession) -> None:
        """A family's per-episode state at the start of an episode (``session.state``)."""

    def infer_session(self, session: ChunkSession, observation: Observation) -> ActionChunk:
        """The chunk for ``session`` whose history has just received ``observation``: Ta actions open loop."""
        acts = self.sequences(self.window(session.history), session.generator, sample=False)[0]
        return ActionChunk(acts, self.ticks(observation, len(acts)), self.action_features)

    @property
    def can_open_sessions(self) -> bool:
        return True

    @property
    def can_batch(self) -> bool:
        """Whether ``predict_chunks`` serves this family (open-loop chunks)."""
        return True

    def new_session(self, seed: int | None = None) -> ChunkSession:
        return ChunkSession(self, seed)

    @torch.no_grad()
    def predict_chunks(self, sessions: Sequence[ChunkSession], generator: torch.Generator | None = None
                       ) -> np.ndarray:
        """(N, Ta, Da): one chunk for each session's current history in one batched call (no observation is
        added). ``generator`` draws for the whole batch (default: the first session's)."""
        if not self.can_batch:
            raise NotImplementedError(f"a {self.kind} policy with these settings infers one episode at a time")
        if not sessions:
            return np.zeros((0, self.config.Ta, self.action_dim), np.float32)
        batch: dict[str, list[torch.Tensor]] = {}
        for sess in sessions:
            for k, v in self.window(sess.history).items():
                batch.setdefault(k, []).append(v)
        gen = generator if generator is not None else sessions[0].generator
        return self.sequences({k: torch.cat(v) for k, v in batch.items()}, gen, sample=False)

    # --- the Policy interface on the default session ------------------------------------------
    @property
    def history(self) -> ObservationHistory:
        return self.session.history

    @property
    def generator(self) -> torch.Generator:
        return self.session.generator

    @property
    def last_latency_s(self) -> float:
        return self.session.last_latency_s

    def reset(self, seed: int | None = None) -> None:
        self.session.reset(seed)

    def observe(self, observation: Observation) -> None:
        self.session.observe(observation)

    def infer(self, observation: Observation) -> ActionChunk:
        return self.session.infer(observation)

    @property
    def can_sample_chunks(self) -> bool:
        return True

    def sample_chunks(self, observation: Observation, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``k`` independent chunks for one observation in one batched call (``ChunkSession.sample_chunks``)."""
        return self.session.sample_chunks(observation, k)

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
