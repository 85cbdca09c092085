"""Demonstrations as residual transitions: the frozen base replays each recorded episode (its chunks played open
loop on the recorded observations, as in the twin), and each recorded (executed) action becomes the residual that
turns the base's action of that tick into it, limited to the residual's range.

Reward is sparse as online: 1 on the last tick of a successful episode, which is terminal; a failed episode's last
tick has no next observation and is left out. Episodes without a success label count as successful (a human
demonstration).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from robot_learning.core.features import FeatureKind
from robot_learning.core.frame import Observation
from robot_learning.errors import ConfigError, SpecMismatchError


def episode_transitions(x: np.ndarray, r: np.ndarray, intervened: np.ndarray, success: bool) -> dict[str, np.ndarray]:
    """One episode's ticks (actor inputs ``x``, residuals ``r``) as replay transitions (``Replay.add`` fields)."""
    T = int(x.shape[0])
    n = T if success else T - 1
    if n <= 0:
        return {k: np.zeros((0, *shape), np.float32) for k, shape in
                (("x", x.shape[1:]), ("r", r.shape[1:]), ("reward", ()), ("x_next", x.shape[1:]), ("done", ()),
                 ("intervened", ()))}
    nxt = np.minimum(np.arange(n) + 1, T - 1)
    reward = np.zeros(n, np.float32)
    done = np.zeros(n, np.float32)
    if success:
        reward[-1] = done[-1] = 1.0
    return {"x": x[:n], "r": r[:n], "reward": reward, "x_next": x[nxt], "done": done,
            "intervened": np.asarray(intervened[:n], np.float32)}


def demo_transitions(policy, paths: Sequence[Path], progress: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Replay transitions of every episode in ``paths`` for the residual ``policy`` (its base replays them), and
    counts {"episodes", "transitions", "clipped_fraction"}."""
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.rl.critic_data import read_aligned

    parts: list[dict[str, np.ndarray]] = []
    episodes, clipped, total = 0, 0, 0
    explore, policy.explore = policy.explore, None
    try:
        for path in paths:
            if not Path(path).exists():
                raise ConfigError(f"--demos {path}: no such dataset folder")
            store = EpisodeStore.open(path)
            if store.schema.action_features != policy.action_features:
                raise SpecMismatchError.expected(f"action features of {path}", list(policy.action_features.names),
                                                 list(store.schema.action_features.names))
            eps = store.episodes
            if progress:
                from tqdm import tqdm
                eps = tqdm(eps, desc=f"demos {Path(path).name}", unit="ep", leave=False)
            for ep in eps:
                ticks = store.ticks(ep)
                T = int(ticks["t_ns"].shape[0])
                if T < 2:
                    continue
                values = {}
                for s in policy.observation_features:
                    if s.kind is FeatureKind.LANGUAGE:
                        values[s.name] = None
                        continue
                    values[s.name] = read_aligned(store, ep, ticks, s.name)
                acts = np.concatenate([np.asarray(ticks[f"action.{a.name}"], np.float32).reshape(T, -1)
                                       for a in policy.action_features], axis=1)
                policy.reset(int(ep.seed) if getattr(ep, "seed", None) is not None else None)
                xs, rs = [], []
                for t in range(T):
                    t_ns = int(ticks["t_ns"][t])
                    obs = Observation(t_ns, policy.observation_features,
                                      {k: (ep.task or "") if v is None else v[t] for k, v in values.items()},
                                      {k: t_ns for k in values})
                    policy.infer(obs)
                    step = policy.last_step
                    a_n = policy.normalizer.normalize("action", torch.from_numpy(acts[t]).reshape(1, -1))
                    raw = (a_n[0] - torch.from_numpy(step.base_n)) / policy.config.scale
                    r = policy.residual_of(torch.from_numpy(step.base_n).reshape(1, -1), a_n)[0]
                    clipped += int((raw.abs() > r.abs() + 1e-6).sum())
                    xs.append(step.x)
                    rs.append(r.numpy())
                total += T * policy.action_dim
                ok = True if ep.success is None else bool(ep.success)
                parts.append(episode_transitions(np.stack(xs), np.stack(rs), np.ones(T, bool), ok))
                episodes += 1
    finally:
        policy.explore = explore
    if not parts:
        raise ConfigError("--demos: no episode with at least 2 ticks in the given datasets")
    data = {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in parts[0]}
    return data, {"episodes": episodes, "transitions": int(data["x"].shape[0]),
                  "clipped_fraction": round(clipped / max(1, total), 4)}
