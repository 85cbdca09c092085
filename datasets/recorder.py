"""The recorder: a control-runtime sink that writes episodes to an ``EpisodeStore``.

The control thread only copies references into a bounded queue (``on_tick``); a background
writer thread encodes images and appends batches to the store. If the writer falls behind and
the queue is full, the tick is dropped and counted (never blocking the control loop); the count
is reported per episode and stored in its metadata.

Streams are recorded at their own rates with their capture timestamps: the robot state at the
control rate (from each tick's observation), and every sensor's samples as captured (each
frame a camera took since the previous tick, via ``samples_after``). Each tick stores the
executed action and, per stream, the row of the sample it was aligned to.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.datasets.schema import DatasetSchema, EpisodeRecord, StreamSchema
from robot_learning.datasets.store import EpisodeStore
from robot_learning.errors import ConfigError, StorageError
from robot_learning.hardware.sensor import StreamingSensor
from robot_learning.runtime.control import TickRecord

log = logging.getLogger(__name__)

ROBOT_STREAM = "robot"


def schema_for(robot_state: FeatureSet, sensors: tuple[StreamingSensor, ...], action_features: FeatureSet,
               control_rate_hz: float, robot: dict | None = None, image_codec: str = "jpeg") -> DatasetSchema:
    """The dataset schema for a robot and its sensors: one stream per sensor, plus ``robot``."""
    streams = [StreamSchema(ROBOT_STREAM, robot_state, control_rate_hz)]
    for s in sensors:
        feats = FeatureSet(f for f in s.features if f.kind is not FeatureKind.LANGUAGE)
        streams.append(StreamSchema(s.name, feats, getattr(s, "fps", None)))
    return DatasetSchema(tuple(streams), action_features, control_rate_hz, robot or {}, image_codec)


def _layout(schema: DatasetSchema) -> dict:
    """What must match to append: streams, features, rates, codec, and which robot (not its calibration or the
    cameras' metadata of the day: a recalibrated arm or a camera whose timestamp source changed still appends)."""
    d = schema.to_json()
    d["robot"] = {k: v for k, v in d["robot"].items() if k not in ("calibration", "cameras")}
    return d


def open_store(path: Path, schema: DatasetSchema) -> EpisodeStore:
    """The dataset to record into: created, or opened for appending (after recovering a killed recording) when its
    schema is this recording's."""
    if not path.exists():
        return EpisodeStore.create(path, schema)
    store = EpisodeStore.open(path, mode="a")
    if _layout(store.schema) != _layout(schema):
        raise ConfigError(f"{path}: its schema (streams, features, rates, robot) differs from this recording's; "
                          "record into a new dataset")
    rep = store.recovery
    if rep is not None and not rep.clean:
        log.warning("recovered %s: discarded an unfinished episode (%d ticks, rows %s, %d partial files)", path,
                    rep.discarded_ticks, dict(rep.discarded_rows), rep.partial_files_removed)
    return store


@dataclass
class _Batch:
    t_cap: list[int] = field(default_factory=list)
    t_recv: list[int] = field(default_factory=list)
    values: dict[str, list] = field(default_factory=dict)


class Recorder:
    """Sink that records ticks between ``start_episode`` and ``end_episode``."""

    def __init__(self, store: EpisodeStore, sensors: tuple[StreamingSensor, ...] = (), queue_size: int = 256,
                 flush_every: int = 32):
        if not store.writable:
            raise ConfigError("Recorder needs a store opened for writing (EpisodeStore.create or open(mode='a'))")
        self.store = store
        self.sensors = {s.name: s for s in sensors}
        for s in sensors:
            store.schema.stream(s.name)  # every sensor needs its stream in the schema
        self.flush_every = flush_every
        self._q: queue.Queue = queue.Queue(maxsize=queue_size)
        self._recording = False
        self._seq: dict[str, int] = {}
        self.dropped = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="recorder-writer", daemon=True)
        self._thread.start()

    # --- control thread --------------------------------------------------------------------
    def start_episode(self) -> None:
        self._check()
        if self._recording:
            raise ConfigError("start_episode(): an episode is already being recorded")
        self._seq = {}
        for name, s in self.sensors.items():
            newest = s.samples_after(0)  # include the newest sample: the first tick aligns to it
            self._seq[name] = newest[-1].seq - 1 if newest else 0
        self.dropped = 0
        self._q.put(("start", None))
        self._recording = True

    def on_tick(self, tick: TickRecord) -> None:
        if not self._recording or tick.observation is None:
            return
        samples = {}
        for name, s in self.sensors.items():
            new = s.samples_after(self._seq[name])
            if new:
                self._seq[name] = new[-1].seq
            samples[name] = new
        try:
            self._q.put_nowait(("tick", (tick, samples)))
        except queue.Full:
            self.dropped += 1

    def end_episode(self, keep: bool = True, timeout_s: float = 60.0, **meta) -> EpisodeRecord | None:
        """Finish the episode: commit it (``keep``) or discard it (re-record). Waits for the writer."""
        if not self._recording:
            raise ConfigError("end_episode(): no episode is being recorded")
        self._recording = False
        done = threading.Event()
        box: dict = {}
        self._q.put(("end", (keep, dict(meta, dropped={"ticks": self.dropped}), done, box)))
        if not done.wait(timeout_s):
            raise StorageError(f"recorder writer did not finish the episode within {timeout_s} s")
        self._check()
        return box.get("record")

    def close(self) -> None:
        """Runtime sink hook at the end of every run: the episode stays open until ``end_episode``
        (a run is not a recording session); use ``shutdown`` to stop the writer."""

    def shutdown(self) -> None:
        """Stop the writer thread; an unfinished episode is discarded (never half committed)."""
        if self._recording:
            self.end_episode(keep=False)
        self._q.put(("stop", None))
        self._thread.join(timeout=30)
        self._check()

    def _check(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    # --- writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        state: dict = {}
        while True:
            kind, payload = self._q.get()
            try:
                if kind == "stop":
                    return
                if kind == "start":
                    state = self._begin()
                elif kind == "tick" and state:
                    self._add(state, *payload)
                    if len(state["ticks"]) >= self.flush_every:
                        self._flush(state)
                elif kind == "end":
                    keep, meta, done, box = payload
                    try:
                        if state:
                            self._flush(state)
                            if keep and state["t0"] is None:  # no tick had an observation: nothing to keep
                                self.store.discard_uncommitted()
                            elif keep:
                                box["record"] = self.store.commit_episode(state["start"], t_start_ns=state["t0"],
                                                                          t_end_ns=state["t1"],
                                                                          intervention_ticks=state["interv"], **meta)
                            else:
                                self.store.discard_uncommitted()
                    finally:
                        state = {}
                        done.set()
            except BaseException as e:  # surfaced to the control thread at the next call
                self._error = e
                state = {}
                if kind == "end":
                    payload[2].set()

    def _begin(self) -> dict:
        start = self.store.lengths()
        return {"start": start, "rows": dict(start[1]), "ticks": [], "streams": {s.name: _Batch()
                for s in self.store.schema.streams}, "recent": {s.name: {} for s in self.store.schema.streams},
                "t0": None, "t1": 0, "interv": 0}

    def _add(self, state: dict, tick: TickRecord, samples: dict) -> None:
        obs = tick.observation
        schema = self.store.schema
        robot = schema.stream(ROBOT_STREAM)
        batch = state["streams"][ROBOT_STREAM]
        first = robot.features.names[0]
        t_cap = obs.t_capture_ns[first]
        batch.t_cap.append(t_cap)
        batch.t_recv.append(obs.t_receive_ns.get(first, max(obs.t_ns, t_cap)))
        for f in robot.features:
            batch.values.setdefault(f.name, []).append(obs.values[f.name])
        rows = {ROBOT_STREAM: state["rows"][ROBOT_STREAM]}
        state["rows"][ROBOT_STREAM] += 1
        for name, new in samples.items():
            b = state["streams"][name]
            recent = state["recent"][name]
            for s in new:
                b.t_cap.append(s.t_capture_ns)
                b.t_recv.append(s.t_receive_ns)
                for k, v in s.value.items():
                    if k in schema.stream(name).features:
                        b.values.setdefault(k, []).append(v)
                recent[s.t_capture_ns] = state["rows"][name]
                state["rows"][name] += 1
            feats = schema.stream(name).features.names
            t_aligned = obs.t_capture_ns.get(feats[0]) if feats else None
            rows[name] = recent.get(t_aligned, -1)
            if len(recent) > 256:
                for key in sorted(recent)[:-64]:
                    del recent[key]
        if state["t0"] is None:
            state["t0"] = tick.t_ns
        state["t1"] = tick.t_ns
        state["interv"] += int(tick.intervention)
        state["ticks"].append((tick.t_ns, tick.executed, tick.held, tick.intervention, rows))

    def _flush(self, state: dict) -> None:
        store, schema = self.store, self.store.schema
        for s in schema.streams:
            b: _Batch = state["streams"][s.name]
            if not b.t_cap:
                continue
            store.append_stream(s.name, {k: np.stack(v) for k, v in b.values.items()},
                                np.asarray(b.t_cap, dtype=np.int64), np.asarray(b.t_recv, dtype=np.int64))
            state["streams"][s.name] = _Batch()
        ticks = state["ticks"]
        if ticks:
            store.append_ticks(
                np.array([t[0] for t in ticks], dtype=np.int64),
                {a.name: np.stack([t[1][a.name] for t in ticks]) for a in schema.action_features},
                np.array([t[2] for t in ticks]), np.array([t[3] for t in ticks]),
                {s.name: np.array([t[4].get(s.name, -1) for t in ticks]) for s in schema.streams})
            state["ticks"] = []
