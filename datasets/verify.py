"""Dataset invariants: what ``robot-learning dataset verify`` checks.

- the schema parses, every array the schema names exists;
- episodes are contiguous, in order, and inside every array's length;
- per episode: tick times strictly increase; each stream's capture times never decrease and
  receive >= capture; the row each tick is aligned to lies in that episode's rows of the stream
  (or is -1) and was captured at or before the tick (a sensor's sample) or during the tick (the
  robot's state, read once the tick has begun; a real arm's repeated reading after a bad bus
  answer may be up to 3 periods old);
- numeric arrays hold no NaN or inf; image frames (first, middle, last of each episode) decode to
  the declared shape.
"""

from __future__ import annotations

import numpy as np

from robot_learning.datasets.recorder import ROBOT_STREAM
from robot_learning.datasets.store import EpisodeStore, _is_image


def verify(store: EpisodeStore, decode_images: bool = True) -> list[str]:
    """Problems found (empty: the dataset is consistent)."""
    problems: list[str] = []
    schema = store.schema
    root = store.root
    try:
        ticks = root["ticks"]
        tick_len = ticks["t_ns"].shape[0]
    except KeyError as e:
        return [f"missing array {e}"]
    eps = store.episodes
    period_ns = int(1e9 / schema.control_rate_hz)
    prev_t, prev_rows = 0, {s.name: 0 for s in schema.streams}
    for ep in eps:
        tag = f"episode {ep.index}"
        a, b = ep.ticks
        if a != prev_t or b < a or b > tick_len:
            problems.append(f"{tag}: tick rows {a}..{b} not contiguous with {prev_t} or past {tick_len}")
            continue
        prev_t = b
        t_ns = ticks["t_ns"][a:b]
        if np.any(np.diff(t_ns) <= 0):
            problems.append(f"{tag}: tick times do not strictly increase")
        for act in schema.action_features:
            v = ticks[f"action.{act.name}"][a:b]
            if not np.all(np.isfinite(v)):
                problems.append(f"{tag}: non-finite executed action {act.name}")
        for s in schema.streams:
            g = root[f"streams/{s.name}"]
            sa, sb = ep.streams.get(s.name, (prev_rows[s.name], prev_rows[s.name]))
            n = g["t_capture_ns"].shape[0]
            if sa != prev_rows[s.name] or sb < sa or sb > n:
                problems.append(f"{tag}: {s.name} rows {sa}..{sb} not contiguous with {prev_rows[s.name]} or past {n}")
                continue
            prev_rows[s.name] = sb
            t_cap = g["t_capture_ns"][sa:sb]
            t_recv = g["t_receive_ns"][sa:sb]
            if np.any(np.diff(t_cap) < 0):
                problems.append(f"{tag}: {s.name} capture times go backwards")
            if np.any(t_recv < t_cap):
                problems.append(f"{tag}: {s.name} received before captured")
            rows = ticks[f"{s.name}.row"][a:b]
            bad = (rows != -1) & ((rows < sa) | (rows >= sb))
            if np.any(bad):
                problems.append(f"{tag}: {int(bad.sum())} ticks aligned to {s.name} rows outside the episode")
            ok = rows != -1
            if np.any(ok) and not np.any(bad):
                lag = g["t_capture_ns"][rows[ok]] - t_ns[ok]
                if s.name == ROBOT_STREAM:
                    # sim: lag 0; a real arm reads after the deadline, before the next tick begins (a tick that
                    # overran ends at the next deadline the loop kept; the last tick, once its state arrived: on a
                    # busy host that read can take longer than a period), or hands out its previous reading after
                    # a bad bus answer (at most 50 ms old, ServoArmConfig.max_read_age_s)
                    ends = np.append(t_ns[1:], t_ns[-1] + period_ns)
                    if rows[-1] != -1:
                        ends[-1] = max(int(ends[-1]), int(g["t_receive_ns"][rows[-1]]) + 1)
                    next_t = ends[ok]
                    ahead = np.maximum(next_t - t_ns[ok], 50_000_000)
                    outside = (lag < -max(3 * period_ns, 60_000_000)) | (lag >= ahead)
                    if np.any(outside):
                        problems.append(f"{tag}: robot state of {int(outside.sum())} ticks captured outside its tick")
                elif np.any(lag > 0):
                    problems.append(f"{tag}: ticks aligned to {s.name} samples captured after the tick")
            for f in s.features:
                if _is_image(f):
                    if decode_images and sb > sa:
                        try:
                            imgs = store.read(s.name, f.name, np.unique([sa, (sa + sb) // 2, sb - 1]))
                            if imgs.shape[1:] != f.shape:
                                problems.append(f"{tag}: {s.name}/{f.name} decodes to {imgs.shape[1:]}, not {f.shape}")
                        except Exception as e:  # a corrupt frame is a finding, not a crash
                            problems.append(f"{tag}: {s.name}/{f.name} does not decode ({e})")
                elif np.issubdtype(np.dtype(f.dtype), np.floating):
                    v = g[f.name][sa:sb]
                    if not np.all(np.isfinite(v)):
                        problems.append(f"{tag}: non-finite values in {s.name}/{f.name}")
    return problems
