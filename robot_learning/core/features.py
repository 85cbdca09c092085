"""Feature specs: the declared name, shape, dtype, kind and units of every stream.

Robots, cameras and tactile sensors declare their features (readable while disconnected);
observations, actions, datasets and policies are validated against them. Validation is strict:
a wrong shape or dtype is an error that says what was expected and what was found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Iterator, Mapping

import numpy as np

from robot_learning.errors import ConfigError, SpecMismatchError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class FeatureKind(str, Enum):
    """What a feature holds; decides its group in the flat layout and which encoder sees it."""

    RGB = "rgb"            # (H, W, 3) uint8 colour image
    DEPTH = "depth"        # (H, W) float32 metres or uint16 millimetres
    TACTILE = "tactile"    # taxel array (..., C) float32 or tactile image (H, W, 3) uint8
    STATE = "state"        # (n,) proprioception: joint positions, gripper width, ...
    ACTION = "action"      # (n,) a command sent to the robot
    LANGUAGE = "language"  # () str: task instruction

    def __str__(self) -> str:
        return self.value


_FLOAT_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class FeatureSpec:
    """One stream's declaration.

    ``units`` is a physical unit string (``"rad"``, ``"m"``, ``"N"``, ``"1"`` for
    dimensionless, ``"srgb"`` for colour). ``names`` optionally names each element of a 1-D
    feature (joint names), so datasets and calibrations can be matched by name.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    kind: FeatureKind
    units: str
    names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ConfigError.expected("feature name", "lowercase letters, digits and '_' "
                                       "starting with a letter", repr(self.name))
        object.__setattr__(self, "kind", FeatureKind(self.kind))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if any(s <= 0 for s in self.shape):
            raise ConfigError.expected(f"{self.name}.shape", "positive sizes", self.shape)
        if not self.units:
            raise ConfigError.expected(f"{self.name}.units", "a unit string such as 'rad', 'm', '1'",
                                       repr(self.units))
        k, shp, dt = self.kind, self.shape, self.dtype
        if k is FeatureKind.LANGUAGE:
            _require(self, dt == "str" and shp == (), "dtype 'str' and shape ()")
        else:
            try:
                np.dtype(dt)
            except TypeError:
                raise ConfigError.expected(f"{self.name}.dtype", "a numpy dtype name", repr(dt)) from None
        if k is FeatureKind.RGB:
            _require(self, len(shp) == 3 and shp[2] == 3 and dt == "uint8", "shape (H, W, 3), dtype uint8")
        elif k is FeatureKind.DEPTH:
            _require(self, len(shp) == 2 and ((dt == "float32" and self.units == "m") or
                                              (dt == "uint16" and self.units == "mm")),
                     "shape (H, W) with float32 metres or uint16 millimetres")
        elif k is FeatureKind.TACTILE:
            _require(self, len(shp) >= 1 and dt in (*_FLOAT_DTYPES, "uint8"), "float32/float64/uint8 array")
        elif k in (FeatureKind.STATE, FeatureKind.ACTION):
            _require(self, len(shp) == 1 and dt in _FLOAT_DTYPES, "shape (n,), dtype float32 or float64")
        if self.names is not None:
            object.__setattr__(self, "names", tuple(self.names))
            if len(shp) != 1 or len(self.names) != shp[0]:
                raise ConfigError.expected(f"{self.name}.names", f"one name per element of shape {shp}",
                                           f"{len(self.names)} names")

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    def check(self, value: object) -> None:
        """Raise SpecMismatchError unless ``value`` matches this spec exactly."""
        if self.kind is FeatureKind.LANGUAGE:
            if not isinstance(value, str):
                raise SpecMismatchError.expected(self.name, "str", type(value).__name__)
            return
        if not isinstance(value, np.ndarray):
            raise SpecMismatchError.expected(self.name, f"numpy array {self.shape} {self.dtype}",
                                             type(value).__name__)
        if value.shape != self.shape:
            raise SpecMismatchError.expected(f"{self.name}.shape", self.shape, value.shape)
        if value.dtype != np.dtype(self.dtype):
            raise SpecMismatchError.expected(f"{self.name}.dtype", self.dtype, value.dtype)

    def to_json(self) -> dict:
        d = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
             "kind": self.kind.value, "units": self.units}
        if self.names is not None:
            d["names"] = list(self.names)
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> FeatureSpec:
        names = d.get("names")
        return cls(name=d["name"], shape=tuple(d["shape"]), dtype=d["dtype"], kind=FeatureKind(d["kind"]),
                   units=d["units"], names=tuple(names) if names is not None else None)


def _require(spec: FeatureSpec, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError.expected(f"feature {spec.name!r} of kind {spec.kind.value}", expected,
                                   f"shape {spec.shape}, dtype {spec.dtype}, units {spec.units!r}")


class FeatureSet:
    """An ordered set of FeatureSpecs with unique names."""

    __slots__ = ("_specs", "_by_name")

    def __init__(self, specs: Iterable[FeatureSpec] = ()):
        self._specs = tuple(specs)
        self._by_name: dict[str, FeatureSpec] = {}
        for s in self._specs:
            if s.name in self._by_name:
                raise ConfigError.expected("feature names", "unique names", f"{s.name!r} twice")
            self._by_name[s.name] = s

    def __iter__(self) -> Iterator[FeatureSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> FeatureSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise SpecMismatchError.expected("feature", f"one of {sorted(self._by_name)}", repr(name)) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSet) and self._specs == other._specs

    def __hash__(self) -> int:
        return hash(self._specs)

    def __repr__(self) -> str:
        return f"FeatureSet({[s.name for s in self._specs]})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._specs)

    def of_kind(self, *kinds: FeatureKind) -> FeatureSet:
        return FeatureSet(s for s in self._specs if s.kind in kinds)

    def __add__(self, other: FeatureSet) -> FeatureSet:
        return FeatureSet((*self._specs, *other._specs))

    def check(self, values: Mapping[str, object], what: str = "features") -> None:
        """Strict: exactly these keys, each matching its spec."""
        missing = [n for n in self._by_name if n not in values]
        extra = [n for n in values if n not in self._by_name]
        if missing or extra:
            raise SpecMismatchError.expected(what, f"keys {list(self._by_name)}",
                                             f"missing {missing}, unexpected {extra}")
        for s in self._specs:
            s.check(values[s.name])

    def to_json(self) -> list[dict]:
        return [s.to_json() for s in self._specs]

    @classmethod
    def from_json(cls, items: Iterable[Mapping]) -> FeatureSet:
        return cls(FeatureSpec.from_json(d) for d in items)
