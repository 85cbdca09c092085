"""``robot-learning critic train``: an offline ``ChunkCritic`` (IQL or Cal-QL) from recorded episodes."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from robot_learning.rl.config import CriticTrainConfig, set_torch_threads

LOG_FIELDS = ("step", "loss", "td_loss", "v_loss", "cql_gap", "q_data", "val_auc", "train_time_s")


def train_critic(cfg: CriticTrainConfig) -> dict:
    from robot_learning.errors import InsufficientDataError
    from robot_learning.rl.critic import ChunkCritic, CriticConfig, auc, soft_update
    from robot_learning.rl.critic_data import load_transitions
    from robot_learning.training.logs import CsvLog

    ccfg = CriticConfig(algo=cfg.algo, horizon=cfg.horizon, gamma=cfg.gamma, hidden=tuple(cfg.hidden),
                        expectile=cfg.expectile, cql_alpha=cfg.cql_alpha)
    set_torch_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data = load_transitions(cfg.dataset, cfg.horizon, cfg.gamma, cfg.features)
    episodes = np.unique(data.episode)
    rng = np.random.default_rng(cfg.seed)
    n_val = int(round(cfg.val_fraction * len(episodes)))
    val_eps = set(rng.choice(episodes, size=n_val, replace=False).tolist()) if n_val else set()
    is_val = np.isin(data.episode, list(val_eps))
    train, val = data.subset(~is_val), data.subset(is_val)
    if not len(train):
        raise InsufficientDataError("critic train: no training transitions left after the validation split")
    succ = int(np.unique(train.episode[train.success]).size)
    fail = int(np.unique(train.episode[~train.success]).size)
    if not succ or not fail:
        raise InsufficientDataError(f"critic train: the training episodes need successes and failures (have "
                                    f"{succ} successful, {fail} failed); add policy rollouts with `eval --record`")
    flat_a = train.chunk.reshape(-1, train.chunk.shape[-1])
    critic = ChunkCritic(ccfg, data.state_features, data.action_features, train.state.mean(0), train.state.std(0),
                         flat_a.min(0), flat_a.max(0),
                         meta={"datasets": [str(p) for p in cfg.dataset], "transitions": len(train),
                               "episodes": {"train_success": succ, "train_failure": fail, "val": n_val}})
    target = copy.deepcopy(critic).requires_grad_(False)
    opt = torch.optim.Adam(critic.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    tensors = {k: torch.from_numpy(getattr(train, k)) for k in ("state", "chunk", "next_state", "reward", "done",
                                                                 "mc_return")}
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / "train_log.csv", LOG_FIELDS)

    def val_auc() -> float | None:
        if not len(val):
            return None
        with torch.no_grad():
            q = critic.q_all(critic.norm_state(torch.from_numpy(val.state)),
                             critic.norm_chunk(torch.from_numpy(val.chunk))).min(0).values.numpy()
        return auc(q, val.success)

    bar = None
    if cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.steps, desc=f"critic {cfg.algo}", unit="step")
    t0, step, interrupted, last = time.perf_counter(), 0, False, {}
    try:
        while step < cfg.steps and (cfg.minutes is None or time.perf_counter() - t0 < cfg.minutes * 60):
            idx = torch.randint(0, len(train), (cfg.batch_size,), generator=gen)
            batch = {k: v[idx] for k, v in tensors.items()}
            losses = critic.losses(target, batch, gen)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            torch.nn.utils.clip_grad_norm_(critic.parameters(), 10.0)
            opt.step()
            soft_update(target, critic, ccfg.tau)
            step += 1
            if step % 500 == 0 or step == cfg.steps:
                last = {k: round(float(v.detach()), 5) for k, v in losses.items()}
                last.update(step=step, val_auc=val_auc(), train_time_s=round(time.perf_counter() - t0, 1))
                log.write(last)
                if bar is not None:
                    bar.set_postfix(td=last["td_loss"], auc=last["val_auc"])
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
        log.close()
    final_auc = val_auc()
    critic.save(out / "critic", meta={"steps": step, "val_auc": final_auc})
    summary = {"critic": str(out / "critic"), "algo": cfg.algo, "steps": step, "transitions": len(train),
               "train_episodes": {"success": succ, "failure": fail}, "val_episodes": n_val, "val_auc": final_auc,
               "train_time_s": round(time.perf_counter() - t0, 1), "interrupted": interrupted}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
