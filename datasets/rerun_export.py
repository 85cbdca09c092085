"""Export an episode to a rerun ``.rrd`` recording (open it with the rerun viewer).

Every stream is logged at its own capture times on a ``capture`` timeline (nanoseconds on the
project clock, relative to the episode start): camera frames as images, numeric features as
scalar series per element, and the executed actions at the control ticks. Needs the optional
``rerun-sdk`` package (``pip install 'robot-learning[viz]'``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from robot_learning.core.features import FeatureKind
from robot_learning.datasets.store import EpisodeStore, _is_image
from robot_learning.errors import ConfigError


def export_rrd(store: EpisodeStore, index: int, out: str | Path) -> Path:
    try:
        import rerun as rr
    except ImportError:
        raise ConfigError("the .rrd export needs rerun-sdk: pip install 'robot-learning[viz]'") from None
    eps = store.episodes
    if not 0 <= index < len(eps):
        raise ConfigError.expected("episode index", f"0..{len(eps) - 1}", index)
    ep = eps[index]
    out = Path(out)
    if out.suffix != ".rrd":
        raise ConfigError.expected("rerun output", "a path ending in .rrd", str(out))
    rec = rr.RecordingStream("robot_learning", recording_id=f"{store.path.name}-episode-{index}")
    rec.save(str(out))
    t0 = ep.t_start_ns
    for s in store.schema.streams:
        a, b = ep.streams[s.name]
        times = store.stream_times(ep, s.name)
        for f in s.features:
            if _is_image(f):
                for k, row in enumerate(range(a, b)):
                    rec.set_time("capture", duration=np.timedelta64(int(times[k] - t0), "ns"))
                    rec.log(f"{s.name}/{f.name}", rr.Image(store.read(s.name, f.name, np.array([row]))[0]))
            elif f.kind is not FeatureKind.DEPTH:
                values = np.asarray(store.read(s.name, f.name, slice(a, b)), dtype=np.float64).reshape(b - a, -1)
                names = f.names or tuple(str(i) for i in range(values.shape[1]))
                for k in range(b - a):
                    rec.set_time("capture", duration=np.timedelta64(int(times[k] - t0), "ns"))
                    for j, n in enumerate(names[:values.shape[1]]):
                        rec.log(f"{s.name}/{f.name}/{n}", rr.Scalars(values[k, j]))
    ticks = store.ticks(ep)
    for act in store.schema.action_features:
        vals = np.asarray(ticks[f"action.{act.name}"], dtype=np.float64).reshape(len(ticks["t_ns"]), -1)
        names = act.names or tuple(str(i) for i in range(vals.shape[1]))
        for k, t in enumerate(ticks["t_ns"]):
            rec.set_time("capture", duration=np.timedelta64(int(t - t0), "ns"))
            for j, n in enumerate(names[:vals.shape[1]]):
                rec.log(f"action/{act.name}/{n}", rr.Scalars(vals[k, j]))
    rec.flush()
    rec.disconnect()
    return out
