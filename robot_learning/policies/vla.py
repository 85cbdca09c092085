"""Vision-language-action policy: a vision encoder and a language-model trunk (transformers classes), the instruction
in, actions out through token bins (OpenVLA) or a flow-matching action expert (SmolVLA / pi0).

Sequence into the trunk: each camera's patch embeddings (the vision encoder's last hidden state, projected to the
trunk's width, plus a learned camera embedding) of the newest observation, its pixels normalised with the vision
folder's image-processor mean / std (SigLIP's 0.5 / 0.5 by default) and resized to its image size; one token of
the normalised robot / object state (all ``To`` steps); with ``sentence_token`` one token of the instruction's frozen
sentence embedding (``policies.text``, centred and scaled by the training instructions' like every family's: a
randomly initialised trunk learns little grounding from a few demos' byte tokens, so it is on by default for a trunk
built from a config); then the instruction's tokens (the trunk folder's tokenizer, or UTF-8 bytes for a trunk built
from a config), padded to ``max_text_tokens`` (padding masked out).

- ``head="bins"``: actions normalised by the 1st-99th percentile to [-1, 1] and cut into ``n_bins`` uniform bins per
  dimension, mapped onto the last ``n_bins`` ids of the trunk's vocabulary (OpenVLA); the trunk predicts the ``Ta``
  executed actions' tokens autoregressively (teacher forcing; greedy or sampled decoding with the trunk's
  key/value cache).
- ``head="flow"``: the trunk runs once over the prefix; a small transformer (the action expert) cross-attends to its
  last hidden states and regresses a flow-matching velocity over the whole (Tp, Da) chunk; ``flow_steps`` Euler
  steps at inference.

Weights. ``trunk_path`` / ``vision_path``: local transformers folders (real pretrained weights: Qwen2, Llama, SmolLM
...; SigLIP, ViT, DINOv2); without them small random-initialised models are built from configs (``trunk_*``,
``vision_*``). ``lora_rank > 0`` wraps the trunk with peft LoRA (all linear layers; the base is frozen); a trunk or
vision encoder loaded from a folder is frozen except for its adapters. The checkpoint holds every weight that is
not a frozen copy of such a folder (the folder must be on the machine that loads it), and ``adapter/`` holds the
LoRA adapter in peft's own format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.datasets.stats import OBS_PREFIX, Normalizer
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.policies.autoregressive import Decoding, choose_tokens
from robot_learning.policies.chunk_policy import (ChunkPolicy, check_norms, check_windows, JsonConfig)
from robot_learning.policies.nets.encoders import EncoderConfig, ObservationEncoder
from robot_learning.policies.nets.vla_parts import BYTE_VOCAB, ActionExpert, build_trunk, build_vision, image_stats
from robot_learning.policies.samplers import FlowSampler

HEADS = ("bins", "flow")


@dataclass(frozen=True)
class VLAConfig(JsonConfig):
    """See the module docstring. For ``bins`` Tp must be To - 1 + Ta (tokens cover the executed steps)."""

    To: int = 1
    Tp: int = 8
    Ta: int = 8
    head: str = "bins"
    trunk_path: str | None = None
    vision_path: str | None = None
    trunk_hidden: int = 128
    trunk_layers: int = 2
    trunk_heads: int = 4
    vision_hidden: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    patch: int = 16
    max_text_tokens: int = 32
    n_bins: int = 256
    sentence_token: bool = False
    lora_rank: int = 0
    lora_alpha: int = 16
    expert_hidden: int = 128
    expert_layers: int = 2
    flow_steps: int = 10
    decoding: str = "greedy"
    state_norm: str = "minmax"
    tactile_norm: str = "meanstd"
    action_norm: str = "quantile"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)

    def __post_init__(self) -> None:
        check_windows(self.To, self.Tp, self.Ta)
        check_norms(self)
        if self.head not in HEADS:
            raise ConfigError.expected("VLA head", f"one of {list(HEADS)}", repr(self.head))
        if self.head == "bins" and self.Tp != self.To - 1 + self.Ta:
            raise ConfigError.expected("VLA (bins) Tp", f"To - 1 + Ta = {self.To - 1 + self.Ta}", self.Tp)
        if self.decoding not in ("greedy", "sample"):
            raise ConfigError.expected("VLA decoding", "greedy or sample", repr(self.decoding))
        if self.lora_rank < 0 or not 2 <= self.n_bins <= 1024 or self.max_text_tokens < 1:
            raise ConfigError.expected("lora_rank / n_bins / max_text_tokens", ">= 0 / 2..1024 / >= 1",
                                       (self.lora_rank, self.n_bins, self.max_text_tokens))


class VLAPolicy(ChunkPolicy):
    """Vision-language-action policy (see the module docstring)."""

    kind = "vla"
    config_cls = VLAConfig
    embeds_text = False   # the trunk reads the instruction's tokens

    def __init__(self, config: VLAConfig, observation_features: FeatureSet, action_features: FeatureSet,
                 normalizer: Normalizer, control_period_ns: int, meta: Mapping[str, Any] | None = None):
        if not any(s.kind is FeatureKind.LANGUAGE for s in observation_features):
            raise SpecMismatchError.expected("VLA observation features", "an instruction (a language feature)",
                                             list(observation_features.names))
        super().__init__(config, observation_features, action_features, normalizer, control_period_ns, meta)
        c = config
        vocab = BYTE_VOCAB + c.n_bins
        self.trunk, self.tokenizer = build_trunk(c.trunk_path, vocab, c.trunk_hidden, c.trunk_layers, c.trunk_heads,
                                                 max_len=1024)
        tcfg = self.trunk.config
        h = int(tcfg.hidden_size)
        self.vocab = int(tcfg.vocab_size)
        if self.vocab < c.n_bins + 3:
            raise ConfigError.expected("trunk vocabulary", f">= n_bins + 3 = {c.n_bins + 3}", self.vocab)
        self.frozen_prefixes: list[str] = []
        if c.trunk_path is not None:
            self.trunk.requires_grad_(False)
            self.frozen_prefixes.append("trunk.")
        self.cameras = [s.name for s in observation_features if s.kind is FeatureKind.RGB]
        self.vision = None
        if self.cameras:
            side = observation_features[self.cameras[0]].shape[0]
            self.vision, self.image_size, vh = build_vision(c.vision_path, side, c.vision_hidden, c.vision_layers,
                                                            c.vision_heads, c.patch)
            if c.vision_path is not None:
                self.vision.requires_grad_(False)
                self.frozen_prefixes.append("vision.")
            mean, std = image_stats(c.vision_path)   # the folder's image processor statistics
            self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
            self.vision_proj = nn.Linear(vh, h)
            self.camera_emb = nn.Parameter(torch.zeros(len(self.cameras), 1, h))
        self.state_proj = nn.Linear(c.To * self.encoder.out_dim, h) if self.encoder is not None else None
        self.sentence_proj = nn.Linear(self.text_mean.numel(), h) if c.sentence_token else None
        if c.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            self.trunk = get_peft_model(self.trunk, LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha,
                                                               target_modules="all-linear", lora_dropout=0.0))
        if c.head == "flow":
            self.expert = ActionExpert(self.action_dim, c.Tp, h, c.expert_hidden, c.expert_layers)
            self.flow = FlowSampler("euler", c.flow_steps)
        self.decoding = Decoding(c.decoding)

    def _build_encoder(self) -> nn.Module | None:
        state = [s for s in self.encoder_inputs if s.kind in ("state", "tactile")]   # cameras: the vision tower
        return ObservationEncoder(state, self.config.encoder) if state else None

    # --- inputs ------------------------------------------------------------------------------
    def _reads_sentence_embedding(self) -> bool:
        return bool(self.config.sentence_token)

    def text_features(self, texts) -> dict[str, torch.Tensor]:
        """Instruction token ids (N, max_text_tokens), padded; with ``sentence_token`` also ``.embedding`` (N, D)."""
        out = {"": self.tokenizer(list(texts), self.config.max_text_tokens)}
        if self.config.sentence_token:
            out[".embedding"] = self._sentence_embeddings(texts)
        return out

    def _prefix(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs_embeds (B, P, H), attention mask (B, P) of 1 / 0)."""
        parts, masks = [], []
        emb = self.trunk.get_input_embeddings()
        ids = batch[OBS_PREFIX + self.language[0]]
        b = ids.shape[0]
        for k, cam in enumerate(self.cameras):
            x = batch[OBS_PREFIX + cam][:, -1]
            x = x.float() / 255.0 if x.dtype == torch.uint8 else (x.float() + 1) / 2   # [0, 1]
            x = (x - self.pixel_mean) / self.pixel_std
            if x.shape[-1] != self.image_size:
                x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            p = self.vision_proj(self.vision(pixel_values=x).last_hidden_state) + self.camera_emb[k]
            parts.append(p)
            masks.append(torch.ones(b, p.shape[1], dtype=torch.int64, device=p.device))
        if self.state_proj is not None:
            obs = self.normalized_obs(batch)
            st = self.encoder({s.name: obs[s.name] for s in self.encoder.inputs})
            parts.append(self.state_proj(st.flatten(1))[:, None])
            masks.append(torch.ones(b, 1, dtype=torch.int64, device=ids.device))
        if self.sentence_proj is not None:
            e = batch[OBS_PREFIX + self.language[0] + ".embedding"]
            parts.append(self.sentence_proj(self._normalized_text(e.float()))[:, None])
            masks.append(torch.ones(b, 1, dtype=torch.int64, device=ids.device))
        parts.append(emb(ids))
        masks.append((ids != self.tokenizer.pad_token_id).long())
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)

    def _hidden(self, embeds, mask) -> torch.Tensor:
        return self.trunk(inputs_embeds=embeds, attention_mask=mask, output_hidden_states=True).hidden_states[-1]

    # --- bins ----------------------------------------------------------------------------------
    def _tokens(self, actions_n: torch.Tensor) -> torch.Tensor:
        n = self.config.n_bins
        return ((actions_n.clamp(-1, 1) + 1) / 2 * n).long().clamp(0, n - 1)

    def _bin_values(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens.float() + 0.5) / self.config.n_bins * 2 - 1

    def _action_ids(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + (self.vocab - self.config.n_bins)

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        actions = self.normalized_actions(batch)
        prefix, mask = self._prefix(batch)
        if c.head == "flow":
            memory = self._hidden(prefix, mask)
            noise = torch.randn_like(actions)
            t = torch.rand(actions.shape[0], device=actions.device)
            x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * actions
            v = self.expert(x_t, t * 100.0, memory, mask == 0)
            return F.mse_loss(v, noise - actions)
        target = self._tokens(actions[:, c.To - 1:]).reshape(actions.shape[0], -1)      # (B, N)
        emb = self.trunk.get_input_embeddings()(self._action_ids(target[:, :-1]))
        x = torch.cat([prefix, emb], dim=1)
        m = torch.cat([mask, torch.ones_like(target[:, :-1])], dim=1)
        logits = self.trunk(inputs_embeds=x, attention_mask=m).logits[:, prefix.shape[1] - 1:, -c.n_bins:]
        loss = F.cross_entropy(logits.reshape(-1, c.n_bins).float(), target.reshape(-1), reduction="none")
        pad = batch.get("action_is_pad")
        if pad is None:
            return loss.mean()
        keep = (~pad[:, c.To - 1:].bool()).repeat_interleave(self.action_dim, dim=1).reshape(-1).to(loss.dtype)
        return (loss * keep).sum() / keep.sum().clamp_min(1.0)

    # --- inference -----------------------------------------------------------------------------
    @property
    def sampler(self):
        return self.flow if self.config.head == "flow" else self.decoding

    def set_sampler(self, kind: str, steps: int | None = None) -> None:
        if self.config.head == "flow":
            self.flow = FlowSampler(kind, steps)
            return
        self.decoding = Decoding.choose(kind, steps, "a VLA with bins")

    def _sample(self, batch, generator, sample) -> torch.Tensor:
        c = self.config
        prefix, mask = self._prefix(batch)
        b = prefix.shape[0]
        if c.head == "flow":
            memory = self._hidden(prefix, mask)
            return self.flow.sample(lambda x, t: self.expert(x, t, memory, mask == 0), (b, c.Tp, self.action_dim),
                                    generator=generator, device=prefix.device)
        sample = sample or self.decoding.kind == "sample"
        n = c.Ta * self.action_dim
        out = self.trunk(inputs_embeds=prefix, attention_mask=mask, use_cache=True)
        cache, logits, toks = out.cache, out.logits[:, -1, -c.n_bins:], []
        for j in range(n):
            tok = choose_tokens(logits, sample, generator)
            toks.append(tok)
            if j + 1 < n:
                mask = torch.cat([mask, torch.ones(b, 1, dtype=mask.dtype, device=mask.device)], dim=1)
                e = self.trunk.get_input_embeddings()(self._action_ids(tok))[:, None]
                out = self.trunk(inputs_embeds=e, attention_mask=mask, cache=cache, use_cache=True)
                cache, logits = out.cache, out.logits[:, -1, -c.n_bins:]
        acts = self._bin_values(torch.stack(toks, 1).reshape(b, c.Ta, self.action_dim))
        if c.To > 1:
            acts = torch.cat([acts[:, :1].expand(-1, c.To - 1, -1), acts], dim=1)
        return acts

    # --- checkpoints -----------------------------------------------------------------------------
    def _saved_keys(self) -> list[str]:
        frozen = tuple(self.frozen_prefixes)
        return [k for k, p in self.state_dict().items()
                if not (k.startswith(frozen) and "lora_" not in k)]

    def save(self, path, meta: Mapping[str, Any] | None = None):
        from robot_learning.policies.checkpoint import save_policy_dir

        sd = self.state_dict()
        weights = {k: sd[k] for k in self._saved_keys()}
        out = save_policy_dir(path, self.kind, self.checkpoint_config(), weights, self.normalizer,
                              {**self.meta, **(meta or {})})
        if self.config.lora_rank > 0:   # the adapter in peft's format too, beside the policy's files
            self.trunk.save_pretrained(str(Path(out) / "adapter"))
        return out

    @classmethod
    def from_checkpoint(cls, doc, weights, normalizer, device: str = "cpu", directory=None):
        cfg = doc.get("config", {})
        try:
            policy = cls(VLAConfig.from_json(cfg["vla"]), FeatureSet.from_json(cfg["observation_features"]),
                         FeatureSet.from_json(cfg["action_features"]), normalizer, int(cfg["control_period_ns"]),
                         doc.get("meta"))
        except KeyError as e:
            raise ConfigError(f"checkpoint config: missing {e}") from None
        want = set(policy._saved_keys())
        missing, extra = sorted(want - set(weights)), sorted(set(weights) - want)
        if missing or extra:
            raise SpecMismatchError.expected("VLA weights", "the keys of the configured network",
                                             f"missing {missing[:5]}, unexpected {extra[:5]}")
        policy.load_state_dict(dict(weights), strict=False)
        return policy.to(device).eval()
