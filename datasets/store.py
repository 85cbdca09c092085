"""The episode store on zarr v3 (layout in ``schema.py``).

Single writer, any number of readers. Writes append rows to the arrays; ``commit_episode``
then lists the episode in the root attributes, which zarr's local store replaces atomically.
Readers only look at committed rows, so a dataset can be read while it is written, and a
killed writer leaves at most an uncommitted tail that ``open(..., mode="a")`` truncates and
reports. Images are stored as JPEG (or PNG) bytes frame after frame with an end-offset array:
standard zarr dtypes, random access per frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from robot_learning.core.features import FeatureKind, FeatureSpec
from robot_learning.datasets.schema import ATTR, DatasetSchema, EpisodeRecord
from robot_learning.errors import ConfigError, SpecMismatchError

NUMERIC_CHUNK_BYTES = 1 << 20
# Encoded frames: 512 KB chunks, lz4 at level 1. JPEG bytes do not compress, but zarr stores a
# partly filled chunk at full size and rewrites the last chunk on every append: small chunks and
# a cheap codec keep both the padding and the rewrite cost low.
IMAGE_CHUNK_BYTES = 1 << 19


def _compressors():
    return (BloscCodec(cname="zstd", clevel=3, shuffle=BloscShuffle.bitshuffle),)


@dataclass(frozen=True)
class RecoveryReport:
    """What ``open(mode="a")`` found past the last committed episode and discarded."""

    discarded_ticks: int
    discarded_rows: Mapping[str, int]
    partial_files_removed: int

    @property
    def clean(self) -> bool:
        return self.discarded_ticks == 0 and not any(self.discarded_rows.values()) and not self.partial_files_removed


def _is_image(spec: FeatureSpec) -> bool:
    return spec.kind is FeatureKind.RGB or (spec.kind is FeatureKind.TACTILE and spec.dtype == "uint8"
                                            and len(spec.shape) == 3)


class EpisodeStore:
    def __init__(self, root: zarr.Group, path: Path, schema: DatasetSchema, writable: bool):
        self.root, self.path, self.schema, self.writable = root, path, schema, writable
        self.recovery: RecoveryReport | None = None

    # --- create / open ---------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, schema: DatasetSchema) -> EpisodeStore:
        path = Path(path)
        if path.exists():
            raise ConfigError.expected("new dataset path", "a path that does not exist yet", str(path))
        root = zarr.open_group(str(path), mode="w-", zarr_format=3)
        for s in schema.streams:
            g = root.create_group(f"streams/{s.name}")
            for t in ("t_capture_ns", "t_receive_ns"):
                g.create_array(t, shape=(0,), chunks=(1 << 16,), dtype="int64", compressors=_compressors())
            for f in s.features:
                if _is_image(f):
                    g.create_array(f"{f.name}.jpeg", shape=(0,), chunks=(IMAGE_CHUNK_BYTES,), dtype="uint8",
                                   compressors=(BloscCodec(cname="lz4", clevel=1, shuffle=BloscShuffle.noshuffle),))
                    g.create_array(f"{f.name}.end", shape=(0,), chunks=(1 << 16,), dtype="int64",
                                   compressors=_compressors())
                elif f.kind is FeatureKind.LANGUAGE:
                    raise ConfigError.expected(f"stream feature {f.name}", "numeric or image (language goes in "
                                               "episode metadata)", "language")
                else:
                    row = max(1, int(np.prod(f.shape)) * np.dtype(f.dtype).itemsize)
                    g.create_array(f.name, shape=(0, *f.shape), chunks=(max(16, NUMERIC_CHUNK_BYTES // row), *f.shape),
                                   dtype=f.dtype, compressors=_compressors())
        t = root.create_group("ticks")
        t.create_array("t_ns", shape=(0,), chunks=(1 << 16,), dtype="int64", compressors=_compressors())
        for name in ("held", "intervention"):
            t.create_array(name, shape=(0,), chunks=(1 << 16,), dtype="bool", compressors=_compressors())
        for a in schema.action_features:
            t.create_array(f"action.{a.name}", shape=(0, *a.shape), chunks=(1 << 14, *a.shape), dtype=a.dtype,
                           compressors=_compressors())
        for s in schema.streams:
            t.create_array(f"{s.name}.row", shape=(0,), chunks=(1 << 16,), dtype="int64", compressors=_compressors())
        root.attrs[ATTR] = {"schema": schema.to_json(), "episodes": []}
        return cls(root, path, schema, writable=True)

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> EpisodeStore:
        """``mode="r"``: read committed episodes. ``mode="a"``: append; an uncommitted tail left by
        a killed writer is discarded and reported in ``store.recovery``."""
        path = Path(path)
        if mode not in ("r", "a"):
            raise ConfigError.expected("open mode", "'r' or 'a'", repr(mode))
        if not (path / "zarr.json").is_file():
            raise ConfigError.expected("dataset", "a robot-learning zarr store (zarr.json at its root)", str(path))
        try:
            root = zarr.open_group(str(path), mode="r" if mode == "r" else "r+", zarr_format=3)
            meta = root.attrs[ATTR]
            schema = DatasetSchema.from_json(meta["schema"])
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: not a readable robot-learning dataset ({type(e).__name__}: {e})") from None
        store = cls(root, path, schema, writable=(mode == "a"))
        if mode == "a":
            store.recovery = store._recover()
        return store

    # --- committed state -------------------------------------------------------------------
    @property
    def episodes(self) -> list[EpisodeRecord]:
        return [EpisodeRecord.from_json(e) for e in self.root.attrs[ATTR]["episodes"]]

    def reload(self) -> None:
        """Re-read the root attributes (a reader following a live writer)."""
        self.root = zarr.open_group(str(self.path), mode="r" if not self.writable else "r+", zarr_format=3)

    def committed_ends(self) -> tuple[int, dict[str, int], dict[str, int]]:
        eps = self.episodes
        if not eps:
            return 0, {s.name: 0 for s in self.schema.streams}, {}
        last = eps[-1]
        return last.ticks[1], {k: v[1] for k, v in last.streams.items()}, {k: v[1] for k, v in last.image_bytes.items()}

    def _recover(self) -> RecoveryReport:
        ticks_end, rows_end, bytes_end = self.committed_ends()
        removed = 0
        for dirpath, _, files in os.walk(self.path):
            for f in files:
                if f.endswith(".partial"):
                    os.remove(os.path.join(dirpath, f))
                    removed += 1
        discarded_ticks = self._truncate_group(self.root["ticks"], ticks_end)
        discarded_rows = {}
        for s in self.schema.streams:
            g = self.root[f"streams/{s.name}"]
            discarded_rows[s.name] = self._truncate_group(g, rows_end[s.name], skip_suffix=".jpeg")
            for f in s.features:
                if _is_image(f):
                    key = f"{s.name}/{f.name}"
                    arr = g[f"{f.name}.jpeg"]
                    end = bytes_end.get(key, 0)
                    if arr.shape[0] < end:
                        raise ConfigError(f"{self.path}: {key} holds {arr.shape[0]} bytes, fewer than the "
                                          f"{end} its committed episodes need (corrupt dataset)")
                    if arr.shape[0] > end:
                        arr.resize((end,))
        return RecoveryReport(discarded_ticks, discarded_rows, removed)

    def _truncate_group(self, g: zarr.Group, n: int, skip_suffix: str | None = None) -> int:
        extra = 0
        for name, arr in g.arrays():
            if skip_suffix and name.endswith(skip_suffix):
                continue
            if arr.shape[0] < n:
                raise ConfigError(f"{self.path}: {g.path}/{name} has {arr.shape[0]} rows, fewer than the {n} "
                                  "its committed episodes need (corrupt dataset)")
            extra = max(extra, arr.shape[0] - n)
            if arr.shape[0] > n:
                arr.resize((n, *arr.shape[1:]))
        return extra

    # --- writing ---------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if not self.writable:
            raise ConfigError("dataset opened read-only: open it with mode='a' to write")

    @staticmethod
    def _append(arr: zarr.Array, values: np.ndarray) -> None:
        n = arr.shape[0]
        arr.resize((n + values.shape[0], *arr.shape[1:]))
        arr[n:n + values.shape[0]] = values

    def encode_image(self, img: np.ndarray) -> bytes:
        if self.schema.image_codec == "png":
            ok, buf = cv2.imencode(".png", img[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])
        else:
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, self.schema.jpeg_quality])
        if not ok:
            raise SpecMismatchError(f"could not encode an image of shape {img.shape}")
        return buf.tobytes()

    def append_stream(self, stream: str, values: Mapping[str, np.ndarray], t_capture_ns: np.ndarray,
                      t_receive_ns: np.ndarray, encoded: Mapping[str, list[bytes]] | None = None) -> None:
        """Append a batch of samples (arrays with a leading batch axis). Image features may come
        pre-encoded in ``encoded`` (the recorder encodes in its writer thread)."""
        self._require_writable()
        s = self.schema.stream(stream)
        g = self.root[f"streams/{stream}"]
        n = len(t_capture_ns)
        for f in s.features:
            if _is_image(f):
                frames = encoded[f.name] if encoded and f.name in encoded else [self.encode_image(v) for v in values[f.name]]
                if len(frames) != n:
                    raise SpecMismatchError.expected(f"{stream}/{f.name} frames", n, len(frames))
                data = g[f"{f.name}.jpeg"]
                start = data.shape[0]
                ends = start + np.cumsum([len(b) for b in frames], dtype=np.int64)
                self._append(data, np.frombuffer(b"".join(frames), dtype=np.uint8))
                self._append(g[f"{f.name}.end"], ends)
            else:
                v = np.asarray(values[f.name])
                if v.shape != (n, *f.shape) or v.dtype != np.dtype(f.dtype):
                    raise SpecMismatchError.expected(f"{stream}/{f.name} batch", f"{(n, *f.shape)} {f.dtype}",
                                                     f"{v.shape} {v.dtype}")
                self._append(g[f.name], v)
        self._append(g["t_capture_ns"], np.asarray(t_capture_ns, dtype=np.int64))
        self._append(g["t_receive_ns"], np.asarray(t_receive_ns, dtype=np.int64))

    def append_ticks(self, t_ns: np.ndarray, actions: Mapping[str, np.ndarray], held: np.ndarray,
                     intervention: np.ndarray, rows: Mapping[str, np.ndarray]) -> None:
        self._require_writable()
        t = self.root["ticks"]
        for a in self.schema.action_features:
            self._append(t[f"action.{a.name}"], np.asarray(actions[a.name], dtype=a.dtype))
        for s in self.schema.streams:
            self._append(t[f"{s.name}.row"], np.asarray(rows[s.name], dtype=np.int64))
        self._append(t["held"], np.asarray(held, dtype=bool))
        self._append(t["intervention"], np.asarray(intervention, dtype=bool))
        self._append(t["t_ns"], np.asarray(t_ns, dtype=np.int64))  # last: its length counts the ticks

    def lengths(self) -> tuple[int, dict[str, int], dict[str, int]]:
        """Current (uncommitted included) lengths: ticks, rows per stream, image bytes per feature."""
        rows, nbytes = {}, {}
        for s in self.schema.streams:
            g = self.root[f"streams/{s.name}"]
            rows[s.name] = g["t_capture_ns"].shape[0]
            for f in s.features:
                if _is_image(f):
                    nbytes[f"{s.name}/{f.name}"] = g[f"{f.name}.jpeg"].shape[0]
        return self.root["ticks/t_ns"].shape[0], rows, nbytes

    def commit_episode(self, start: tuple[int, dict[str, int], dict[str, int]], **meta) -> EpisodeRecord:
        """List the rows written since ``start`` (from ``lengths()``) as a new episode."""
        self._require_writable()
        end = self.lengths()
        meta_all = dict(self.root.attrs[ATTR])
        eps = list(meta_all["episodes"])
        rec = EpisodeRecord(index=len(eps), ticks=(start[0], end[0]),
                            streams={k: (start[1][k], end[1][k]) for k in end[1]},
                            image_bytes={k: (start[2].get(k, 0), end[2][k]) for k in end[2]}, **meta)
        eps.append(rec.to_json())
        meta_all["episodes"] = eps
        self.root.attrs[ATTR] = meta_all  # one atomic metadata write: the commit point
        return rec

    def discard_uncommitted(self) -> RecoveryReport:
        """Drop rows written since the last commit (re-record an episode)."""
        self._require_writable()
        return self._recover()

    # --- reading ---------------------------------------------------------------------------
    def ticks(self, ep: EpisodeRecord) -> dict[str, np.ndarray]:
        a, b = ep.ticks
        return {name: arr[a:b] for name, arr in self.root["ticks"].arrays()}

    def stream_times(self, ep: EpisodeRecord, stream: str) -> np.ndarray:
        a, b = ep.streams[stream]
        return self.root[f"streams/{stream}/t_capture_ns"][a:b]

    def read(self, stream: str, feature: str, rows: np.ndarray | slice) -> np.ndarray:
        """Values of one feature at absolute rows (images decoded)."""
        s = self.schema.stream(stream)
        spec = s.features[feature]
        g = self.root[f"streams/{stream}"]
        if not _is_image(spec):
            return np.asarray(g[feature][rows])
        n = g[f"{feature}.end"].shape[0]
        idx = np.arange(n)[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            return np.zeros((0, *spec.shape), dtype=np.uint8)
        if idx.min() < 0 or idx.max() >= n:
            raise SpecMismatchError.expected(f"{stream}/{feature} rows", f"0..{n - 1}", f"{idx.min()}..{idx.max()}")
        lo, hi = int(idx.min()), int(idx.max())
        first = max(lo - 1, 0)
        e = np.asarray(g[f"{feature}.end"][first:hi + 1])
        starts = {int(i): (int(e[i - 1 - first]) if i > 0 else 0) for i in idx}
        stops = {int(i): int(e[i - first]) for i in idx}
        off = min(starts.values())
        blob = np.asarray(g[f"{feature}.jpeg"][off:max(stops.values())])
        out = np.empty((idx.size, *spec.shape), dtype=np.uint8)
        for k, i in enumerate(idx.tolist()):
            img = cv2.imdecode(blob[starts[i] - off:stops[i] - off], cv2.IMREAD_COLOR)
            out[k] = img[..., ::-1]
        return out
