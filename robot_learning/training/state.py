"""The resumable training state in ``RUN/checkpoint/``: safetensors + JSON, no pickle.

Files: ``model.safetensors`` (the trained weights), ``ema.safetensors`` (the averaged weights),
``optimizer.safetensors`` (per-parameter AdamW moments and step counts, ``state.<i>.<name>``),
``rng.safetensors`` (torch CPU generator states) and ``state.json`` (step, budget, timers, EMA
step, optimizer param groups, the training config). Written atomically like policy checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from robot_learning.errors import ConfigError
from robot_learning.policies.checkpoint import atomic_dir, commit_dir


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for name, v in st.items():
            tensors[f"state.{idx}.{name}"] = (v if torch.is_tensor(v) else torch.tensor(v)).detach().cpu().contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, groups


def _unflatten_optimizer(tensors: Mapping[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    return {"state": state, "param_groups": [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g)
                                             for g in groups]}


def save_train_state(path: Path, model: torch.nn.Module, ema_model: torch.nn.Module, opt: torch.optim.Optimizer,
                     generator: torch.Generator, info: Mapping[str, Any]) -> None:
    tmp = atomic_dir(Path(path))
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    save_file({k: v.detach().cpu().contiguous() for k, v in ema_model.state_dict().items()},
              str(tmp / "ema.safetensors"))
    tensors, groups = _flatten_optimizer(opt)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    save_file({"torch_cpu": torch.get_rng_state(), "batch_generator": generator.get_state()},
              str(tmp / "rng.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**info, "optimizer_param_groups": groups}, indent=2))
    commit_dir(tmp, Path(path))


def load_train_state(path: Path) -> tuple[dict, dict[str, dict[str, torch.Tensor]]]:
    """(state.json contents, {"model", "ema", "optimizer", "rng"} tensors)."""
    path = Path(path)
    if not (path / "state.json").is_file():
        raise ConfigError(f"--resume: no checkpoint in {path} (state.json missing); train without --resume first")
    try:
        info = json.loads((path / "state.json").read_text())
        tensors = {name: load_file(str(path / f"{name}.safetensors")) for name in ("model", "ema", "optimizer", "rng")}
    except (OSError, json.JSONDecodeError, SafetensorError, ValueError) as e:
        raise ConfigError(f"--resume: checkpoint {path} is unreadable ({e})") from None
    return info, tensors


def restore_optimizer(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], groups: list[dict]) -> None:
    try:
        opt.load_state_dict(_unflatten_optimizer(tensors, groups))
    except (ValueError, KeyError) as e:
        raise ConfigError(f"--resume: optimizer state does not match the network ({e})") from None
