"""Normalisation statistics of a dataset, and the ``Normalizer`` that applies them.

Statistics
----------
``compute_stats`` computes, once per dataset and over the committed episodes only, per-dimension
``min``, ``max``, ``mean``, ``std``, ``q01``, ``q99`` (and the sample ``count``) of every numeric
feature a policy trains on:

- ``obs.<feature>``: every numeric stream feature (state, taxel arrays) that is not an image or a
  depth map, taken at the rows the control ticks were aligned to (``ticks/<stream>.row``), i.e.
  weighted like the windows the sampler draws; ticks without an aligned sample (-1) are skipped;
- ``action.<name>``: every executed action feature, one value per tick.

Each statistic has the feature's shape (``(n,)`` for state and actions). They are stored in the
attributes of the ``stats`` group (``stats/zarr.json``) under ``robot_learning_stats``::

    {"version": 1, "episode_count": E, "num_ticks": T,
     "features": {"obs.joint_pos_rad": {"min": [...], "max": [...], "mean": [...], "std": [...],
                                        "q01": [...], "q99": [...], "count": N}, ...}}

``load_stats`` returns them while the episode count (and tick count) still match the store and
recomputes them otherwise (more episodes were committed since). A recorder commits an episode
by rewriting the root attributes from its own in-memory copy, which drops this key; the stats
are then recomputed on the next ``load_stats``, which is what a changed dataset needs anyway.
Do not write statistics into a dataset while a recorder appends to it from another process:
both rewrite ``zarr.json`` (``compute_stats`` re-reads the metadata right before writing and
skips the write if the episode count moved, which narrows but cannot close that window).

Normalizer
----------
``Normalizer(modes, stats)`` maps each configured key with its mode:

- ``"minmax"``:   per dimension [min, max] -> [-1, 1];
- ``"meanstd"``:  (x - mean) / std;
- ``"quantile"``: [q01, q99] -> [-1, 1], clipped to [-1, 1] (``clip_quantile``; VLA-style).

Dimensions whose range (max - min, q99 - q01) or std is below ``range_eps`` are constant: they
map to 0 (x - centre, scale 1, so the map stays invertible and never divides by zero).
Strict: an unknown key, a stats entry missing, or a value whose trailing shape differs from the
statistics is an error, never a silent pass-through. ``normalize`` / ``unnormalize`` accept
numpy arrays and torch tensors with any leading batch dimensions.

``state_dict()`` returns ``(arrays, config)``: a flat dict of numpy arrays (``"<key>.<stat>"``,
what safetensors stores) and a JSON-serialisable config; ``Normalizer.from_state_dict(arrays,
config)`` rebuilds it and rejects missing, extra or mis-shaped arrays.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np
import zarr

from robot_learning.core.features import FeatureKind
from robot_learning.datasets.store import EpisodeStore, _is_image
from robot_learning.errors import ConfigError, SpecMismatchError

STATS_ATTR = "robot_learning_stats"
STATS_GROUP = "stats"
STATS_VERSION = 1
STAT_NAMES = ("min", "max", "mean", "std", "q01", "q99")
OBS_PREFIX = "obs."
ACTION_PREFIX = "action."

Stats = dict[str, dict[str, np.ndarray]]


# --- statistics ------------------------------------------------------------------------------
def stats_features(store: EpisodeStore) -> dict[str, tuple[str, str]]:
    """The keys statistics are computed for: ``obs.<feature>`` -> (stream, feature) for numeric
    stream features (not images, not depth maps), ``action.<name>`` -> ("ticks", name)."""
    out: dict[str, tuple[str, str]] = {}
    for s in store.schema.streams:
        for f in s.features:
            if _is_image(f) or f.kind in (FeatureKind.DEPTH, FeatureKind.LANGUAGE, FeatureKind.RGB):
                continue
            out[OBS_PREFIX + f.name] = (s.name, f.name)
    for a in store.schema.action_features:
        out[ACTION_PREFIX + a.name] = ("ticks", a.name)
    return out


def _summarise(values: np.ndarray) -> dict[str, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] == 0:
        raise ConfigError("no samples to compute statistics from")
    if not np.all(np.isfinite(v)):
        raise SpecMismatchError("non-finite values in the data statistics are computed from")
    q01, q99 = np.quantile(v, [0.01, 0.99], axis=0)
    return {"min": v.min(axis=0), "max": v.max(axis=0), "mean": v.mean(axis=0), "std": v.std(axis=0),
            "q01": q01, "q99": q99}


def compute_stats(store: EpisodeStore, path_for_writing: str | Path | None = None) -> Stats:
    """Statistics of every ``stats_features`` key over the committed episodes. With
    ``path_for_writing`` (the dataset's path), also store them in its root attributes."""
    eps = store.episodes
    if not eps:
        raise ConfigError.expected("dataset for statistics", "at least one committed episode", "none")
    t_end = eps[-1].ticks[1]
    ticks = store.root["ticks"]
    stats: Stats = {}
    counts: dict[str, int] = {}
    for key, (stream, feature) in stats_features(store).items():
        if stream == "ticks":
            values = np.asarray(ticks[f"action.{feature}"][0:t_end])
        else:
            rows = np.asarray(ticks[f"{stream}.row"][0:t_end])
            rows = rows[rows >= 0]
            if rows.size == 0:
                continue  # a stream never aligned to a tick: nothing a policy could train on
            lo, hi = int(rows.min()), int(rows.max()) + 1
            block = np.asarray(store.root[f"streams/{stream}/{feature}"][lo:hi])
            values = block[rows - lo]
        stats[key] = _summarise(values)
        counts[key] = int(values.shape[0])
    if path_for_writing is not None:
        _write(store, Path(path_for_writing), stats, counts, len(eps), t_end)
    return stats


def _payload(stats: Stats, counts: Mapping[str, int], episode_count: int, num_ticks: int) -> dict:
    return {"version": STATS_VERSION, "episode_count": episode_count, "num_ticks": num_ticks,
            "features": {k: {**{n: np.asarray(v[n]).tolist() for n in STAT_NAMES}, "count": counts[k]}
                         for k, v in stats.items()}}


def _stats_group(path: str | Path, mode: str) -> zarr.Group:
    """Statistics live in their own group (``stats/zarr.json``), never in the root metadata that
    episode commits rewrite: a stats write and a recorder's commit cannot overwrite each other."""
    return zarr.open_group(str(Path(path) / STATS_GROUP), mode=mode, zarr_format=3)


def _write(store: EpisodeStore, path: Path, stats: Stats, counts: Mapping[str, int], episode_count: int,
           num_ticks: int) -> bool:
    _stats_group(path, "a").attrs[STATS_ATTR] = _payload(stats, counts, episode_count, num_ticks)
    return True


def stored_stats(store: EpisodeStore) -> Stats | None:
    """The statistics stored in the dataset if they are current (same episode and tick count as
    the committed episodes), else None."""
    try:
        raw = _stats_group(store.path, "r").attrs.get(STATS_ATTR)
    except (FileNotFoundError, KeyError, ValueError):  # zarr raises these for a missing group
        return None
    if not isinstance(raw, Mapping) or raw.get("version") != STATS_VERSION:
        return None
    eps = store.episodes
    if raw.get("episode_count") != len(eps) or raw.get("num_ticks") != (eps[-1].ticks[1] if eps else 0):
        return None
    try:
        return {k: {n: np.asarray(v[n], dtype=np.float64) for n in STAT_NAMES} for k, v in raw["features"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"{store.path}: malformed {STATS_ATTR} attribute ({type(e).__name__}: {e})") from None


def load_stats(store: EpisodeStore, path_for_writing: str | Path | None = None) -> Stats:
    """Stored statistics when current; otherwise recomputed (and stored with ``path_for_writing``)."""
    s = stored_stats(store)
    return s if s is not None else compute_stats(store, path_for_writing)


def concat_stats(stats: Mapping[str, Mapping[str, np.ndarray]], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Statistics of the concatenation of 1-D features ``keys`` (per dimension, so they stack),
    e.g. the sampler's ``action`` vector from its ``action.<name>`` parts."""
    missing = [k for k in keys if k not in stats]
    if missing:
        raise SpecMismatchError.expected("statistics", f"keys {list(keys)}", f"missing {missing}")
    for k in keys:
        if np.asarray(stats[k]["min"]).ndim != 1:
            raise SpecMismatchError.expected(f"statistics of {k}", "1-D (to concatenate)",
                                             np.asarray(stats[k]["min"]).shape)
    return {n: np.concatenate([np.asarray(stats[k][n], dtype=np.float64) for k in keys]) for n in STAT_NAMES}


# --- normalizer ------------------------------------------------------------------------------
MODES = {"minmax": ("min", "max"), "meanstd": ("mean", "std"), "quantile": ("q01", "q99")}


def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class Normalizer:
    """Per-key affine normalisation with a frozen config (see the module docstring)."""

    def __init__(self, modes: Mapping[str, str], stats: Mapping[str, Mapping[str, Any]], *,
                 range_eps: float = 1e-4, clip_quantile: bool = True):
        if not modes:
            raise ConfigError.expected("normalizer modes", "at least one key", "none")
        for k, m in modes.items():
            if m not in MODES:
                raise ConfigError.expected(f"normalizer mode of {k!r}", f"one of {list(MODES)}", repr(m))
        if not range_eps >= 0:
            raise ConfigError.expected("range_eps", ">= 0", range_eps)
        self._modes = MappingProxyType(dict(modes))
        self.range_eps = float(range_eps)
        self.clip_quantile = bool(clip_quantile)
        self._stats: dict[str, dict[str, np.ndarray]] = {}
        self._affine: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._torch_cache: dict[tuple, tuple] = {}
        for key, mode in self._modes.items():
            if key not in stats:
                raise SpecMismatchError.expected("normalizer statistics", f"an entry for {key!r}",
                                                 f"keys {sorted(stats)}")
            a_name, b_name = MODES[mode]
            entry = stats[key]
            missing = [n for n in (a_name, b_name) if n not in entry]
            if missing:
                raise SpecMismatchError.expected(f"statistics of {key!r} (mode {mode})", f"{a_name} and {b_name}",
                                                 f"missing {missing}")
            a = np.array(entry[a_name], dtype=np.float64)
            b = np.array(entry[b_name], dtype=np.float64)
            if a.shape != b.shape:
                raise SpecMismatchError.expected(f"statistics of {key!r}", f"{a_name} and {b_name} of one shape",
                                                 f"{a.shape} and {b.shape}")
            if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
                raise SpecMismatchError(f"statistics of {key!r}: non-finite values")
            if mode == "meanstd" and np.any(b < 0):
                raise SpecMismatchError(f"statistics of {key!r}: negative std")
            if mode != "meanstd" and np.any(b < a):
                raise SpecMismatchError(f"statistics of {key!r}: {b_name} < {a_name}")
            for arr in (a, b):
                arr.setflags(write=False)
            self._stats[key] = {a_name: a, b_name: b}
            self._affine[key] = self._make_affine(mode, a, b)

    def _make_affine(self, mode: str, a: np.ndarray, b: np.ndarray):
        """y = x * scale + offset; x = y * inv_scale + inv_offset."""
        if mode == "meanstd":
            centre, half = a, b            # (x - mean) / std
        else:
            centre, half = (a + b) / 2, (b - a) / 2   # [lo, hi] -> [-1, 1]
        const = half * (2 if mode != "meanstd" else 1) <= self.range_eps
        half = np.where(const, 1.0, half)  # constant dimension: x - centre (-> 0), invertible
        scale = 1.0 / half
        offset = -centre * scale
        out = (scale, offset, half, centre)
        for arr in out:
            arr.setflags(write=False)
        return out

    def __deepcopy__(self, memo: dict) -> Normalizer:
        return self   # immutable (the torch cache only memoises its own arrays): copies may share it

    # --- config ------------------------------------------------------------------------------
    @property
    def modes(self) -> Mapping[str, str]:
        return self._modes

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self._modes)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._entry(key)[0].shape

    @property
    def config(self) -> dict:
        return {"version": 1, "modes": dict(self._modes), "range_eps": self.range_eps,
                "clip_quantile": self.clip_quantile,
                "shapes": {k: list(self.shape(k)) for k in self._modes}}

    def stats(self, key: str) -> dict[str, np.ndarray]:
        self._entry(key)
        return dict(self._stats[key])

    def __repr__(self) -> str:
        return f"Normalizer({dict(self._modes)})"

    # --- apply -------------------------------------------------------------------------------
    def _entry(self, key: str):
        try:
            return self._affine[key]
        except KeyError:
            raise SpecMismatchError.expected("normalizer key", f"one of {sorted(self._affine)}", repr(key)) from None

    def _check_shape(self, key: str, shape: tuple[int, ...], feat: tuple[int, ...]) -> None:
        n = len(feat)
        if len(shape) < n or tuple(shape[len(shape) - n:]) != feat:
            raise SpecMismatchError.expected(f"{key} shape", f"(..., {', '.join(map(str, feat))})", tuple(shape))

    def _params(self, key: str, x: Any, idx: tuple[int, int]):
        params = self._entry(key)
        self._check_shape(key, tuple(x.shape), params[0].shape)
        if _is_torch(x):
            import torch
            dtype = x.dtype if x.is_floating_point() else torch.float32
            ck = (key, idx, x.device, dtype)
            cached = self._torch_cache.get(ck)
            if cached is None:
                cached = tuple(torch.tensor(params[i], dtype=dtype, device=x.device) for i in idx)
                self._torch_cache[ck] = cached
            return x.to(dtype), cached
        x = np.asarray(x)
        dtype = x.dtype if x.dtype in (np.float32, np.float64, np.float16) else np.dtype(np.float32)
        return x.astype(dtype, copy=False), tuple(params[i].astype(dtype) for i in idx)

    def normalize(self, key: str, x: Any) -> Any:
        x, (scale, offset) = self._params(key, x, (0, 1))
        y = x * scale + offset
        if self.clip_quantile and self._modes[key] == "quantile":
            y = y.clamp(-1.0, 1.0) if _is_torch(y) else np.clip(y, -1.0, 1.0)
        return y

    def unnormalize(self, key: str, y: Any) -> Any:
        y, (half, centre) = self._params(key, y, (2, 3))
        return y * half + centre

    def normalize_dict(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Normalise every configured key of ``values``; other keys pass through unchanged."""
        return {k: (self.normalize(k, v) if k in self._affine else v) for k, v in values.items()}

    # --- persistence -------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, config): ``arrays`` maps ``"<key>.<stat>"`` to float64 numpy arrays (for
        safetensors); ``config`` is JSON-serialisable (modes, shapes, options)."""
        arrays = {f"{k}.{n}": np.array(v) for k, st in self._stats.items() for n, v in st.items()}
        return arrays, self.config

    @classmethod
    def from_state_dict(cls, arrays: Mapping[str, Any], config: Mapping) -> Normalizer:
        if not isinstance(config, Mapping) or config.get("version") != 1 or "modes" not in config:
            raise ConfigError.expected("normalizer config", "a dict with version 1 and modes", config)
        modes = dict(config["modes"])
        shapes = config.get("shapes", {})
        expected = {f"{k}.{n}" for k, m in modes.items() for n in MODES.get(m, ())}
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        if missing or extra:
            raise SpecMismatchError.expected("normalizer state", f"arrays {sorted(expected)}",
                                             f"missing {missing}, unexpected {extra}")
        stats: dict[str, dict[str, np.ndarray]] = {}
        for k, m in modes.items():
            stats[k] = {}
            for n in MODES.get(m, ()):
                v = np.asarray(arrays[f"{k}.{n}"], dtype=np.float64)
                if k not in shapes or tuple(shapes[k]) != v.shape:
                    raise SpecMismatchError.expected(f"normalizer array {k}.{n} shape", shapes.get(k), v.shape)
                stats[k][n] = v
        return cls(modes, stats, range_eps=float(config.get("range_eps", 1e-4)),
                   clip_quantile=bool(config.get("clip_quantile", True)))
