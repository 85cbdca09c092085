"""Parts of the vision-language-action policy: its language trunk and vision encoder (transformers model classes,
built from small configs or loaded from a local folder), the byte-level tokenizer of a trunk that has none, and the
flow-matching action expert.

Nothing here downloads: a path is a local folder (``local_files_only``); set ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from robot_learning.errors import ConfigError
from robot_learning.policies.nets.unet1d import SinusoidalEmbedding

PAD, BOS = 0, 1
BYTE_OFFSET = 3            # ids 0..2: pad, bos, eos; 3..258: the 256 byte values
BYTE_VOCAB = BYTE_OFFSET + 256


class ByteTokenizer:
    """UTF-8 bytes as tokens (for a trunk built from a config, which has no vocabulary of its own)."""

    pad_token_id = PAD

    def __call__(self, texts, max_length: int) -> Tensor:
        out = torch.full((len(texts), max_length), PAD, dtype=torch.int64)
        for i, t in enumerate(texts):
            ids = [BOS] + [b + BYTE_OFFSET for b in str(t).encode("utf-8")]
            ids = ids[:max_length]
            out[i, :len(ids)] = torch.tensor(ids)
        return out


class HFTokenizer:
    """A trunk folder's own tokenizer, padded / truncated to ``max_length``."""

    def __init__(self, path: Path):
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.tok.eos_token_id
        self.pad_token_id = int(pad if pad is not None else 0)

    def __call__(self, texts, max_length: int) -> Tensor:
        ids = self.tok(list(map(str, texts)), add_special_tokens=True, truncation=True,
                       max_length=max_length)["input_ids"]
        out = torch.full((len(ids), max_length), self.pad_token_id, dtype=torch.int64)
        for i, row in enumerate(ids):
            out[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
        return out


def _local(path: str | Path, what: str) -> Path:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"{what} {p}: expected a local transformers folder (config.json + weights); found none")
    return p


def has_tokenizer(path: Path) -> bool:
    return any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt"))


def build_trunk(path: str | None, vocab: int, hidden: int, layers: int, heads: int, max_len: int):
    """(causal LM, tokenizer): the local folder's (its tokenizer when it has one, else bytes), or a Llama-style
    model built from a small config with random weights and the byte tokenizer."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if path is not None:
        p = _local(path, "--vla-trunk")
        try:
            model = AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--vla-trunk {p}: cannot load a causal language model ({e})") from None
        return model, (HFTokenizer(p) if has_tokenizer(p) else ByteTokenizer())
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_len,
                      pad_token_id=PAD, bos_token_id=BOS, eos_token_id=2, tie_word_embeddings=False)
    return LlamaForCausalLM(cfg), ByteTokenizer()


def image_stats(path: Path | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel mean / std a vision folder's image processor normalises with (preprocessor_config.json);
    SigLIP's (0.5, 0.5: pixels to [-1, 1]) for a tower built from a config or a folder without one."""
    import json

    f = None if path is None else Path(path) / "preprocessor_config.json"
    if f is not None and f.is_file():
        d = json.loads(f.read_text())
        mean, std = d.get("image_mean"), d.get("image_std")
        if isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == 3:
            return tuple(map(float, mean)), tuple(map(float, std))
    return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def build_vision(path: str | None, image_size: int, hidden: int, layers: int, heads: int, patch: int):
    """(vision model returning last_hidden_state, its image size, its hidden width): a local folder (SigLIP, ViT,
    DINOv2 or a CLIP/SigLIP whose vision tower is taken), or a SigLIP vision tower built from a small config."""
    from transformers import AutoModel, SiglipVisionConfig, SiglipVisionModel

    if path is not None:
        p = _local(path, "--vla-vision")
        try:
            model = AutoModel.from_pretrained(str(p), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ConfigError(f"--vla-vision {p}: cannot load a vision model ({e})") from None
        model = getattr(model, "vision_model", model)
        cfg = getattr(model.config, "vision_config", model.config)
        return model, int(cfg.image_size), int(cfg.hidden_size)
    cfg = SiglipVisionConfig(image_size=image_size, patch_size=patch, hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, intermediate_size=2 * hidden)
    return SiglipVisionModel(cfg), image_size, hidden


class ActionExpert(nn.Module):
    """Flow-matching action expert (SmolVLA / pi0 style): the noisy (Tp, Da) chunk as tokens, plus the flow time,
    through a transformer decoder that cross-attends to the trunk's hidden states; predicts the velocity."""

    def __init__(self, action_dim: int, horizon: int, memory_dim: int, hidden: int, layers: int, heads: int = 4):
        super().__init__()
        self.inp = nn.Linear(action_dim, hidden)
        self.pos = nn.Parameter(torch.zeros(1, horizon, hidden))
        nn.init.normal_(self.pos, std=0.02)
        self.time = nn.Sequential(SinusoidalEmbedding(hidden), nn.Linear(hidden, hidden), nn.SiLU(),
                                  nn.Linear(hidden, hidden))
        self.mem = nn.Linear(memory_dim, hidden)
        layer = nn.TransformerDecoderLayer(hidden, heads, 2 * hidden, 0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, action_dim))

    def forward(self, x: Tensor, t: Tensor, memory: Tensor, memory_pad: Tensor | None) -> Tensor:
        h = self.inp(x) + self.pos + self.time(t)[:, None]
        return self.out(self.decoder(h, self.mem(memory), memory_key_padding_mask=memory_pad))
