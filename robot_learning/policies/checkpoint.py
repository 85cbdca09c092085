"""Policy checkpoints on disk: safetensors + JSON, no pickle.

A policy directory holds::

    config.json            {"format": "robot-learning-policy", "version": 1, "policy": KIND,
                            "config": {...}, "normalizer": {...}, "meta": {...}}
    model.safetensors      the weights inference uses (the EMA weights for diffusion)
    normalizer.safetensors the normaliser statistics (``Normalizer.state_dict``)

It loads in a fresh process with no training state. Writes are atomic: the files go into a
sibling temporary directory that is renamed over the old one, so a killed save leaves the
previous checkpoint intact. ``resolve_policy_dir`` accepts the policy directory itself or a
training run directory (its ``policy/``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy, save_file as save_numpy
from safetensors.torch import load_file as load_torch, save_file as save_torch

from robot_learning.datasets.stats import Normalizer
from robot_learning.errors import ConfigError, SpecMismatchError

FORMAT = "robot-learning-policy"
VERSION = 1


def atomic_dir(final: Path) -> Path:
    """A fresh temporary sibling of ``final`` to write into; ``commit_dir`` renames it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def commit_dir(tmp: Path, final: Path) -> None:
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def save_policy_dir(path: Path, kind: str, config: Mapping[str, Any], weights: Mapping[str, torch.Tensor],
                    normalizer: Normalizer, meta: Mapping[str, Any] | None = None) -> Path:
    path = Path(path)
    tmp = atomic_dir(path)
    arrays, norm_cfg = normalizer.state_dict()
    save_torch({k: v.detach().to("cpu").contiguous() for k, v in weights.items()}, str(tmp / "model.safetensors"))
    save_numpy({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp / "normalizer.safetensors"))
    doc = {"format": FORMAT, "version": VERSION, "policy": kind, "config": dict(config),
           "normalizer": norm_cfg, "meta": dict(meta or {})}
    (tmp / "config.json").write_text(json.dumps(doc, indent=2))
    commit_dir(tmp, path)
    return path


def resolve_policy_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"checkpoint {p}: no such file or directory")
    for cand in (p, p / "policy"):
        if (cand / "config.json").is_file():
            return cand
    raise ConfigError(f"checkpoint {p}: expected a policy directory (config.json, model.safetensors) "
                      f"or a training run directory with policy/; found neither")


def read_policy_dir(path: str | Path) -> tuple[dict, dict[str, torch.Tensor], Normalizer | None]:
    """(config document, weights, normaliser) of a policy directory, checked (a wrapper kind has neither)."""
    p = resolve_policy_dir(path)
    try:
        doc = json.loads((p / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"checkpoint {p}/config.json: unreadable ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError.expected(f"checkpoint {p}/config.json", f"format {FORMAT!r}",
                                   doc.get("format") if isinstance(doc, dict) else type(doc).__name__)
    if doc.get("version") != VERSION:
        raise ConfigError.expected(f"checkpoint {p} version", VERSION, doc.get("version"))
    from robot_learning.policies.registry import find_kind

    family = find_kind(doc.get("policy"))   # None: a folder of this format that is no policy (a CARP tokenizer)
    if family is not None and family.wrapper:   # no weights of its own: its parts are sub-folders
        return doc, {}, None
    for name in ("model.safetensors", "normalizer.safetensors"):
        if not (p / name).is_file():
            raise ConfigError(f"checkpoint {p}: {name} is missing")
    try:
        weights = load_torch(str(p / "model.safetensors"))
        arrays = load_numpy(str(p / "normalizer.safetensors"))
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(f"checkpoint {p}: corrupt safetensors file ({e})") from None
    normalizer = Normalizer.from_state_dict(arrays, doc.get("normalizer", {}))
    return doc, weights, normalizer


def load_policy(path: str | Path, device: str = "cpu"):
    """Load any saved policy (its class from ``config.json``, through the family registry) for inference."""
    from robot_learning.policies.registry import family_for_kind

    directory = resolve_policy_dir(path)
    doc, weights, normalizer = read_policy_dir(directory)
    cls = family_for_kind(doc.get("policy")).policy_class()
    return cls.from_checkpoint(doc, weights, normalizer, device=device, directory=directory)


def load_weights(module: torch.nn.Module, weights: Mapping[str, torch.Tensor], what: str) -> None:
    """Strict ``load_state_dict`` with a one-line error naming missing/unexpected/mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    bad = sorted(k for k in set(own) & set(weights) if tuple(own[k].shape) != tuple(weights[k].shape))
    if missing or extra or bad:
        raise SpecMismatchError.expected(f"{what} weights", "the keys and shapes of the configured network",
                                         f"missing {missing[:5]}, unexpected {extra[:5]}, mis-shaped {bad[:5]}")
    module.load_state_dict(dict(weights), strict=True)
