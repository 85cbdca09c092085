"""``robot-learning tokenizer train``: CARP's stage 1, the multi-scale residual VQ action tokenizer, trained on a
dataset's action chunks; ``train --policy carp`` takes the folder (``--tokenizer``) or trains one first.

Folder (``--out``): ``tokenizer/`` (config.json + model.safetensors + normalizer.safetensors, the action
normaliser the chunks were scaled with), ``tokenizer_log.csv``, ``summary.json`` (reconstruction error in
normalised and in action units, code usage per scale). Ctrl-C saves what was trained so far.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch

from robot_learning.errors import ConfigError, TrainingDivergedError
from robot_learning.training.config import TokenizerTrainConfig

KIND = "carp_tokenizer"


def load_tokenizer(path: str | Path):
    """(MultiScaleVQ, action Normalizer, action FeatureSet) from a tokenizer folder (or the run folder above it)."""
    from robot_learning.core.features import FeatureSet
    from robot_learning.policies.carp_tokenizer import MultiScaleVQ, TokenizerConfig
    from robot_learning.policies.checkpoint import load_weights, read_policy_dir

    p = Path(path)
    if (p / "tokenizer" / "config.json").is_file():
        p = p / "tokenizer"
    doc, weights, normalizer = read_policy_dir(p)
    if doc.get("policy") != KIND:
        raise ConfigError.expected(f"--tokenizer {path}", "a CARP tokenizer folder (robot-learning tokenizer train)",
                                   f"a {doc.get('policy')!r} checkpoint")
    try:
        cfg = TokenizerConfig.from_json(doc["config"]["tokenizer"])
        features = FeatureSet.from_json(doc["config"]["action_features"])
    except KeyError as e:
        raise ConfigError(f"tokenizer {p}: config.json misses {e}") from None
    tok = MultiScaleVQ(cfg, sum(s.size for s in features))
    load_weights(tok, weights, "CARP tokenizer")
    return tok.eval(), normalizer, features


def train_tokenizer(cfg: TokenizerTrainConfig, store=None) -> dict:
    from tqdm import tqdm

    from robot_learning.core.features import FeatureKind
    from robot_learning.datasets.dense import DenseWindows
    from robot_learning.datasets.sampler import WindowSampler
    from robot_learning.datasets.stats import Normalizer, load_stats
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.policies.carp_tokenizer import MultiScaleVQ, TokenizerConfig
    from robot_learning.policies.checkpoint import save_policy_dir
    from robot_learning.training.logs import CsvLog

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if store is None:
        if not Path(cfg.dataset).exists():
            raise ConfigError(f"--dataset {cfg.dataset}: no such dataset folder")
        store = EpisodeStore.open(cfg.dataset)
    if not store.episodes:
        raise ConfigError(f"--dataset {cfg.dataset}: no committed episodes")
    torch.manual_seed(cfg.seed)
    tcfg = TokenizerConfig(Tp=cfg.horizon, latent_len=cfg.horizon // 4, scales=tuple(range(1, cfg.horizon // 4 + 1)),
                           codebook=cfg.codebook, code_dim=cfg.code_dim)
    state = [s.name for st in store.schema.streams for s in st.features if s.kind is FeatureKind.STATE][:1]
    sampler = WindowSampler(store, state, To=cfg.obs_steps, Tp=cfg.horizon, Ta=cfg.action_steps)
    stats = sampler.output_stats(load_stats(store))
    normalizer = Normalizer({"action": "minmax"}, {"action": stats["action"]})
    data = DenseWindows(sampler)
    actions = normalizer.normalize("action", data.tables["action"][data.index["action"]])   # (N, Tp, Da)
    da = actions.shape[-1]
    tok = MultiScaleVQ(tcfg, da)
    opt = torch.optim.AdamW(tok.parameters(), lr=cfg.lr, weight_decay=0.0)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / "tokenizer_log.csv", ("step", "loss", "recon", "vq", "restarted"))
    gen = torch.Generator().manual_seed(cfg.seed)
    t0, step, interrupted = time.perf_counter(), 0, False
    bar = tqdm(total=cfg.steps, desc="train CARP tokenizer", unit="step", disable=not cfg.progress,
               dynamic_ncols=True)
    tok.train()
    try:
        while step < cfg.steps:
            idx = torch.randint(0, len(actions), (cfg.batch_size,), generator=gen)
            lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            loss, parts = tok.loss(actions[idx])
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(f"tokenizer training diverged at step {step}: loss {loss.item()} "
                                            "(lower --lr?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            restarted = tok.restart_dead_codes(actions[idx]) if step % 100 == 0 and step < 0.8 * cfg.steps else 0
            if step % 50 == 0 or step == cfg.steps:
                log.write({"step": step, "loss": round(loss.item(), 6), **{k: round(v, 6) for k, v in parts.items()},
                           "restarted": restarted})
                bar.set_postfix(recon=f"{parts['recon']:.4f}", vq=f"{parts['vq']:.4f}")
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        log.close()
    tok.eval()
    with torch.no_grad():
        sub = actions[:4096]
        tokens = tok.tokenize(sub)
        rec = tok.detokenize(tokens)
        err_n = float((rec - sub).abs().mean())
        err_units = float((normalizer.unnormalize("action", rec) - normalizer.unnormalize("action", sub)).abs().mean())
        usage = [int(sum(len(torch.unique(t[:, d])) for d in range(da))) for t in tokens]
    features = store.schema.action_features
    save_policy_dir(out / "tokenizer", KIND, {"tokenizer": tcfg.to_json(), "action_features": features.to_json(),
                                              "windows": {"To": cfg.obs_steps, "Ta": cfg.action_steps}},
                    tok.state_dict(), normalizer, {"dataset": str(cfg.dataset), "steps": step})
    summary = {"out": str(out), "tokenizer": str(out / "tokenizer"), "steps": step, "interrupted": interrupted,
               "train_time_s": round(time.perf_counter() - t0, 1), "chunks": len(actions),
               "recon_mae_normalised": round(err_n, 5), "recon_mae_action_units": round(err_units, 6),
               "codes_used_per_scale": usage, "codes_available_per_scale": [da * tcfg.codebook] * len(usage),
               "config": json.loads(json.dumps(asdict(cfg), default=str))}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
