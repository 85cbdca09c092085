"""Typed observation and action containers, and the one flat layout of a control tick.

``Observation`` holds the sensor values aligned to one control tick, each validated against its
FeatureSpec, with the capture time of every value. ``Action`` holds named command vectors. Both
are immutable (arrays are copied and made read-only), so a sink can never change what the robot
executed.

Flat layout
-----------
One control tick flattens to ``dict[str, np.ndarray]`` with these keys (the dataset format stores
one array per key, concatenated over time):

=========================================== ========= =========================================
key                                         dtype     meaning
=========================================== ========= =========================================
``t_ns``                                    int64 ()  control-tick time on the project clock
``observation.<kind>.<name>``               per spec  the value (kind: state/rgb/depth/tactile/
                                                      language)
``observation.<kind>.<name>.t_capture_ns``  int64 ()  when that value was captured
``action.<name>``                           per spec  the executed action (after the safety
                                                      filter), one key per action feature
=========================================== ========= =========================================

Feature names are unique within an observation, so the flat keys are unambiguous, and
``unflatten`` rebuilds exactly the containers that ``flatten`` took (strictly: a missing or
extra key is an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.errors import SpecMismatchError

OBS_PREFIX = "observation"
ACTION_PREFIX = "action"
T_CAPTURE_SUFFIX = ".t_capture_ns"
TICK_KEY = "t_ns"


def _frozen_array(a: np.ndarray) -> np.ndarray:
    """A read-only array with these values. Arrays that are already read-only (sensors publish
    their samples that way) are shared, not copied: a 30 Hz camera frame seen by a 500 Hz loop is
    referenced by 16 observations, never copied 16 times."""
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        return a
    out = np.array(a, copy=True)
    out.setflags(write=False)
    return out


def _freeze_values(values: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType({k: (v if isinstance(v, str) else _frozen_array(v)) for k, v in values.items()})


@dataclass(frozen=True)
class Action:
    """Named command vectors for one control tick, e.g. ``{"joint_pos_rad": (6,), "gripper": (1,)}``."""

    values: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        for k, v in self.values.items():
            if not isinstance(v, np.ndarray):
                raise SpecMismatchError.expected(f"action {k!r}", "numpy array", type(v).__name__)
        object.__setattr__(self, "values", _freeze_values(self.values))

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.values[name]
        except KeyError:
            raise SpecMismatchError.expected("action key", f"one of {list(self.values)}", repr(name)) from None

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def keys(self):
        return self.values.keys()

    def is_finite(self) -> bool:
        return all(bool(np.all(np.isfinite(v))) for v in self.values.values())

    def replace(self, **values: np.ndarray) -> Action:
        merged = dict(self.values)
        merged.update(values)
        return Action(merged)

    def check(self, features: FeatureSet) -> None:
        features.check(self.values, what="action")

    def vector(self, features: FeatureSet) -> np.ndarray:
        """Concatenate in the order of ``features`` (float64)."""
        return np.concatenate([np.asarray(self[s.name], dtype=np.float64).reshape(-1) for s in features])

    @classmethod
    def from_vector(cls, features: FeatureSet, vec: np.ndarray) -> Action:
        vec = np.asarray(vec)
        total = sum(s.size for s in features)
        if vec.shape != (total,):
            raise SpecMismatchError.expected("action vector shape", (total,), vec.shape)
        out, i = {}, 0
        for s in features:
            out[s.name] = vec[i:i + s.size].reshape(s.shape).astype(s.dtype)
            i += s.size
        return cls(out)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Action) and self.values.keys() == other.values.keys()
                and all(np.array_equal(v, other.values[k], equal_nan=True) for k, v in self.values.items()))

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Observation:
    """Sensor values aligned to one control tick.

    ``t_ns``: the tick the values are aligned to. ``values``: one entry per feature in
    ``features`` (checked strictly). ``t_capture_ns``: capture time of each value.
    ``t_receive_ns``: when the host had it (optional, any subset of the keys).
    Typed views: ``obs.state``, ``obs.rgb``, ``obs.depth``, ``obs.tactile``, ``obs.language``.
    """

    t_ns: int
    features: FeatureSet
    values: Mapping[str, object]
    t_capture_ns: Mapping[str, int] = field(default_factory=dict)
    t_receive_ns: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(s.kind is FeatureKind.ACTION for s in self.features):
            raise SpecMismatchError.expected("observation features", "no kind=action features",
                                             [s.name for s in self.features if s.kind is FeatureKind.ACTION])
        self.features.check(self.values, what="observation")
        if set(self.t_capture_ns) != set(self.values):
            raise SpecMismatchError.expected("observation t_capture_ns keys", sorted(self.values),
                                             sorted(self.t_capture_ns))
        object.__setattr__(self, "values", _freeze_values(self.values))
        object.__setattr__(self, "t_capture_ns",
                           MappingProxyType({k: int(v) for k, v in self.t_capture_ns.items()}))
        if not set(self.t_receive_ns) <= set(self.values):
            raise SpecMismatchError.expected("observation t_receive_ns keys", f"a subset of {sorted(self.values)}",
                                             sorted(self.t_receive_ns))
        object.__setattr__(self, "t_receive_ns",
                           MappingProxyType({k: int(v) for k, v in self.t_receive_ns.items()}))

    def __getitem__(self, name: str) -> object:
        if name not in self.values:
            raise SpecMismatchError.expected("observation key", f"one of {list(self.values)}", repr(name))
        return self.values[name]

    def _of_kind(self, kind: FeatureKind) -> Mapping[str, object]:
        return MappingProxyType({s.name: self.values[s.name] for s in self.features if s.kind is kind})

    @property
    def state(self) -> Mapping[str, np.ndarray]:
        return self._of_kind(FeatureKind.STATE)  # type: ignore[return-value]

    @property
    def rgb(self) -> Mapping[str, np.ndarray]:
        return self._of_kind(FeatureKind.RGB)  # type: ignore[return-value]

    @property
    def depth(self) -> Mapping[str, np.ndarray]:
        return self._of_kind(FeatureKind.DEPTH)  # type: ignore[return-value]

    @property
    def tactile(self) -> Mapping[str, np.ndarray]:
        return self._of_kind(FeatureKind.TACTILE)  # type: ignore[return-value]

    @property
    def language(self) -> Mapping[str, str]:
        return self._of_kind(FeatureKind.LANGUAGE)  # type: ignore[return-value]

    def max_age_ns(self) -> int:
        """Age of the oldest value relative to the tick."""
        return max((self.t_ns - t for t in self.t_capture_ns.values()), default=0)


def obs_key(kind: FeatureKind, name: str) -> str:
    return f"{OBS_PREFIX}.{kind.value}.{name}"


def action_key(name: str) -> str:
    return f"{ACTION_PREFIX}.{name}"


def flat_keys(obs_features: FeatureSet, action_features: FeatureSet) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) of every flat-layout entry, in layout order."""
    keys: list[tuple[str, tuple[int, ...], str]] = [(TICK_KEY, (), "int64")]
    for s in obs_features:
        keys.append((obs_key(s.kind, s.name), s.shape, "str" if s.kind is FeatureKind.LANGUAGE else s.dtype))
        keys.append((obs_key(s.kind, s.name) + T_CAPTURE_SUFFIX, (), "int64"))
    for s in action_features:
        keys.append((action_key(s.name), s.shape, s.dtype))
    return keys


def flatten(obs: Observation, action: Action) -> dict[str, np.ndarray]:
    """One tick in the flat layout (see module docstring)."""
    flat: dict[str, np.ndarray] = {TICK_KEY: np.asarray(obs.t_ns, dtype=np.int64)}
    for s in obs.features:
        key = obs_key(s.kind, s.name)
        flat[key] = np.asarray(obs.values[s.name])
        flat[key + T_CAPTURE_SUFFIX] = np.asarray(obs.t_capture_ns[s.name], dtype=np.int64)
    for name, v in action.values.items():
        flat[action_key(name)] = v
    return flat


def unflatten(obs_features: FeatureSet, action_features: FeatureSet,
              flat: Mapping[str, np.ndarray]) -> tuple[Observation, Action]:
    """Inverse of ``flatten``; strict about missing and unexpected keys."""
    expected = {k for k, _, _ in flat_keys(obs_features, action_features)}
    missing, extra = sorted(expected - set(flat)), sorted(set(flat) - expected)
    if missing or extra:
        raise SpecMismatchError.expected("flat frame keys", "exactly the layout's keys",
                                         f"missing {missing}, unexpected {extra}")
    values, t_cap = {}, {}
    for s in obs_features:
        key = obs_key(s.kind, s.name)
        v = flat[key]
        values[s.name] = str(v) if s.kind is FeatureKind.LANGUAGE else np.asarray(v)
        t_cap[s.name] = int(flat[key + T_CAPTURE_SUFFIX])
    obs = Observation(t_ns=int(flat[TICK_KEY]), features=obs_features, values=values, t_capture_ns=t_cap)
    action = Action({s.name: np.asarray(flat[action_key(s.name)]) for s in action_features})
    action.check(action_features)
    return obs, action
