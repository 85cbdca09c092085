"""The dataset schema: streams (features captured together at one rate), the control-tick table,
and the per-episode record. Stored as JSON in the root attributes of the zarr store.

Layout of a store (zarr v3):

    zarr.json                        root attributes: {"robot_learning": {schema, episodes}}
    streams/<stream>/t_capture_ns    (N,) int64   capture time of each sample (project clock)
    streams/<stream>/t_receive_ns    (N,) int64
    streams/<stream>/<feature>       (N, ...)     numeric features, Blosc-zstd
    streams/<stream>/<feature>.jpeg  (B,) uint8   image features: JPEG bytes, frame after frame
    streams/<stream>/<feature>.end   (N,) int64   end offset of each frame in <feature>.jpeg
    ticks/t_ns                       (T,) int64   control ticks
    ticks/action.<name>              (T, n)       executed action (after the safety filter)
    ticks/held, ticks/intervention   (T,) bool
    ticks/<stream>.row               (T,) int64   row of the stream sample aligned to the tick
                                                  (newest captured at or before it; -1: none)

Episodes are committed by rewriting the root attributes (atomic): an episode's rows exist in the
arrays before they are listed there, so readers only ever see complete episodes, and rows past
the last committed episode are a partial episode to discard on recovery.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.errors import ConfigError

FORMAT_VERSION = 1
ATTR = "robot_learning"


@dataclass(frozen=True)
class StreamSchema:
    """Features captured together (one timestamp per sample), at a nominal rate."""

    name: str
    features: FeatureSet
    rate_hz: float | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "features": self.features.to_json(), "rate_hz": self.rate_hz}

    @classmethod
    def from_json(cls, d: Mapping) -> StreamSchema:
        return cls(d["name"], FeatureSet.from_json(d["features"]), d.get("rate_hz"))


@dataclass(frozen=True)
class DatasetSchema:
    streams: tuple[StreamSchema, ...]
    action_features: FeatureSet
    control_rate_hz: float
    robot: Mapping = field(default_factory=dict)
    image_codec: str = "jpeg"          # "jpeg" (quality below) or "png" (lossless)
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names):
            raise ConfigError.expected("stream names", "unique", names)
        seen: set[str] = set()
        for s in self.streams:
            for f in s.features:
                if f.name in seen:
                    raise ConfigError.expected("feature names across streams", "unique", f.name)
                seen.add(f.name)
        if self.image_codec not in ("jpeg", "png"):
            raise ConfigError.expected("image_codec", "jpeg or png", self.image_codec)
        if any(f.kind is FeatureKind.ACTION for s in self.streams for f in s.features):
            raise ConfigError.expected("stream features", "observations only (kind != action)", "an action")

    def stream(self, name: str) -> StreamSchema:
        for s in self.streams:
            if s.name == name:
                return s
        raise ConfigError.expected("stream", f"one of {[s.name for s in self.streams]}", repr(name))

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, "streams": [s.to_json() for s in self.streams],
                "action_features": self.action_features.to_json(), "control_rate_hz": self.control_rate_hz,
                "robot": dict(self.robot), "image_codec": self.image_codec, "jpeg_quality": self.jpeg_quality}

    @classmethod
    def from_json(cls, d: Mapping) -> DatasetSchema:
        if d.get("format_version") != FORMAT_VERSION:
            raise ConfigError.expected("dataset format_version", FORMAT_VERSION, d.get("format_version"))
        return cls(tuple(StreamSchema.from_json(s) for s in d["streams"]), FeatureSet.from_json(d["action_features"]),
                   float(d["control_rate_hz"]), d.get("robot", {}), d.get("image_codec", "jpeg"),
                   int(d.get("jpeg_quality", 90)))


@dataclass(frozen=True)
class EpisodeRecord:
    """One committed episode: its row ranges in every array, and its metadata."""

    index: int
    ticks: tuple[int, int]                        # [start, end) rows of ticks/*
    streams: Mapping[str, tuple[int, int]]        # [start, end) rows of streams/<name>/*
    image_bytes: Mapping[str, tuple[int, int]]    # [start, end) of streams/<s>/<f>.jpeg, key "<s>/<f>"
    task: str = ""
    success: bool | None = None
    t_start_ns: int = 0
    t_end_ns: int = 0
    intervention_ticks: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    operator_notes: str = ""
    seed: int | None = None                       # sim episodes: the reset seed (for replay)

    @property
    def length(self) -> int:
        return self.ticks[1] - self.ticks[0]

    def to_json(self) -> dict:
        d = asdict(self)
        d["ticks"] = list(self.ticks)
        d["streams"] = {k: list(v) for k, v in self.streams.items()}
        d["image_bytes"] = {k: list(v) for k, v in self.image_bytes.items()}
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> EpisodeRecord:
        return cls(index=int(d["index"]), ticks=tuple(d["ticks"]),
                   streams={k: tuple(v) for k, v in d["streams"].items()},
                   image_bytes={k: tuple(v) for k, v in d.get("image_bytes", {}).items()},
                   task=d.get("task", ""), success=d.get("success"), t_start_ns=int(d.get("t_start_ns", 0)),
                   t_end_ns=int(d.get("t_end_ns", 0)), intervention_ticks=int(d.get("intervention_ticks", 0)),
                   dropped=dict(d.get("dropped", {})), operator_notes=d.get("operator_notes", ""),
                   seed=d.get("seed"))
