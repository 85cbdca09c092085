"""How busy the host is right now, measured the way a timing test needs it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator


@contextlib.contextmanager
def wakeup_probe(period_s: float = 0.01) -> Iterator[list[float]]:
    """How late this host wakes a sleeping thread while the block runs: the lateness (s) of each wake-up of a
    thread that sleeps ``period_s`` at a time (filled in while the block runs). On a quiet host ~0.1 ms; with
    every core busy, ms. Timing tests add it to what they promise, so a loaded host does not fail them."""
    late: list[float] = []
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            t = time.monotonic()
            time.sleep(period_s)
            late.append(time.monotonic() - t - period_s)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        yield late
    finally:
        stop.set()
        th.join()
