"""Control-loop jitter: the project's absolute-deadline RateLoop against a relative-sleep loop.

For each rate (100 Hz, 500 Hz) and load ("idle"; "loaded" = another process busy-spinning on
another core) this runs, one after the other:

* ``RateLoop``: ``robot_learning.runtime.loop.RateLoop`` on ``MonotonicClock``; each tick waits
  for the next absolute deadline, then does the work. Period error = wake time - deadline,
  as recorded by the loop itself (``loop.stats.period_error_ns``).
* ``relative-sleep``: the common pattern ``work(); time.sleep(max(0, period - elapsed))``.
  It has no deadlines, so its period error is (start-to-start interval - period).

Both do the same small amount of work per tick (a 6x6 matmul plus small allocations). Both also
report the start-to-start interval error, which compares them on the same footing, and their
drift: the time actually taken by N ticks minus N * period (ms), plus the achieved rate.

    python bench/runtime_jitter.py                 # 10 s per loop and condition (~80 s in all)
    python bench/runtime_jitter.py --duration-s 2 --json

Results also go to bench/results/runtime_jitter.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from robot_learning.core.clock import MonotonicClock
from robot_learning.runtime.loop import RateLoop

RESULTS = Path(__file__).resolve().parent / "results" / "runtime_jitter.json"


# ----------------------------------------------------------------------------- environment

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def pin(cpu: int | None) -> bool:
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        return False
    os.sched_setaffinity(0, {cpu})
    return True


def _spin(cpu: int | None, ready, stop) -> None:
    pin(cpu)
    ready.set()
    x = 0
    while not stop.is_set():
        for _ in range(20_000):
            x += 1


class Spinner:
    """A process busy-spinning (pinned to ``cpu`` when given) for the duration of a ``with``."""

    def __init__(self, cpu: int | None):
        self.cpu = cpu
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        self._ready, self._stop = ctx.Event(), ctx.Event()
        self._proc = ctx.Process(target=_spin, args=(cpu, self._ready, self._stop), daemon=True)

    def __enter__(self) -> "Spinner":
        self._proc.start()
        if not self._ready.wait(10):
            raise RuntimeError("load process did not start")
        time.sleep(0.2)  # let it reach full speed
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._proc.join(5)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)


class CpuAccount:
    """Who else used the CPUs during a run, from /proc/stat (Linux; zeros elsewhere).

    ``foreign_ms``: busy time on the measuring core not spent by this process (other processes,
    interrupts) -- the measurement is only clean when it is near 0. ``steal_ms``: time the
    hypervisor gave to someone else, all cores.
    """

    def __init__(self, cpu: int | None):
        self.cpu = cpu

    @staticmethod
    def _ticks_per_s() -> int:
        try:
            return os.sysconf("SC_CLK_TCK")
        except (ValueError, OSError, AttributeError):
            return 100

    def _read(self) -> tuple[int, int]:
        busy = steal = 0
        try:
            for line in Path("/proc/stat").read_text().splitlines():
                f = line.split()
                if not f or not f[0].startswith("cpu"):
                    continue
                v = [int(x) for x in f[1:]]
                user, nice, system, idle, iowait, irq, softirq = v[:7]
                st = v[7] if len(v) > 7 else 0
                if f[0] == "cpu":
                    steal = st
                elif self.cpu is not None and f[0] == f"cpu{self.cpu}":
                    busy = user + nice + system + irq + softirq
        except OSError:
            pass
        return busy, steal

    def __enter__(self) -> "CpuAccount":
        self._b0, self._s0 = self._read()
        t = os.times()
        self._own0 = t.user + t.system
        return self

    def __exit__(self, *exc) -> None:
        b1, s1 = self._read()
        t = os.times()
        own = (t.user + t.system) - self._own0
        hz = self._ticks_per_s()
        self.steal_ms = (s1 - self._s0) * 1000.0 / hz
        self.foreign_ms = max(0.0, (b1 - self._b0) * 1000.0 / hz - own * 1000.0) if self.cpu is not None else None


# ----------------------------------------------------------------------------- the work

class Work:
    """A realistic small per-tick load: a 6x6 matmul (a Jacobian-sized product) + allocations."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.a = rng.standard_normal((6, 6))
        self.b = rng.standard_normal((6, 6))
        self.q = rng.standard_normal(6)

    def __call__(self) -> float:
        m = self.a @ self.b
        cmd = np.clip(m @ self.q, -1.0, 1.0)
        obs = {"qpos": np.array(cmd, copy=True), "gripper": np.zeros(1), "t": time.monotonic_ns()}
        return float(obs["qpos"][0])


# ----------------------------------------------------------------------------- the loops

def _summary(errors_ns: np.ndarray, intervals_ns: np.ndarray, period_ns: int, ticks: int,
             elapsed_ns: int, overruns: int, missed: int) -> dict:
    e = np.abs(errors_ns.astype(np.float64)) / 1e6
    iv = np.abs(intervals_ns.astype(np.float64) - period_ns) / 1e6
    return {
        "ticks": ticks,
        "period_error_ms": {"p50": float(np.percentile(e, 50)), "p99": float(np.percentile(e, 99)),
                            "max": float(e.max())},
        "interval_error_ms": {"p50": float(np.percentile(iv, 50)), "p99": float(np.percentile(iv, 99)),
                              "max": float(iv.max())},
        "overruns": overruns,
        "missed_ticks": missed,
        "elapsed_s": elapsed_ns / 1e9,
        "achieved_hz": ticks / (elapsed_ns / 1e9),
        "drift_ms": (elapsed_ns - ticks * period_ns) / 1e6,
        # Drift not explained by deadlines the loop skipped after an overrun (RateLoop only):
        # the accumulated timing error proper.
        "drift_excl_missed_ms": (elapsed_ns - (ticks + missed) * period_ns) / 1e6,
    }


def run_rate_loop(rate_hz: float, ticks: int, work: Work) -> dict:
    """N ticks of the project's loop; elapsed = wake of tick N - wake of tick 0."""
    loop = RateLoop(MonotonicClock(), rate_hz)
    wakes = np.empty(ticks + 1, dtype=np.int64)
    loop.wait()
    wakes[0] = time.monotonic_ns()
    for i in range(1, ticks + 1):
        work()
        loop.wait()
        wakes[i] = time.monotonic_ns()
    errors = np.asarray(loop.stats.period_error_ns[1:], dtype=np.int64)  # [0] is the start itself
    return _summary(errors, np.diff(wakes), loop.period_ns, ticks, int(wakes[-1] - wakes[0]),
                    loop.stats.overruns, loop.stats.missed_ticks)


def run_relative_sleep(rate_hz: float, ticks: int, work: Work) -> dict:
    """N ticks of ``work(); sleep(max(0, period - elapsed))``; elapsed = end of N ticks - start."""
    period = 1.0 / rate_hz
    period_ns = int(round(1e9 / rate_hz))
    starts = np.empty(ticks + 1, dtype=np.int64)
    overruns = 0
    for i in range(ticks):
        t0 = time.monotonic()
        starts[i] = time.monotonic_ns()
        work()
        elapsed = time.monotonic() - t0
        if elapsed > period:
            overruns += 1
        time.sleep(max(0.0, period - elapsed))
    starts[ticks] = time.monotonic_ns()
    intervals = np.diff(starts)
    return _summary(intervals - period_ns, intervals, period_ns, ticks, int(starts[-1] - starts[0]),
                    overruns, 0)


# ----------------------------------------------------------------------------- main

def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.0f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration-s", type=float, default=10.0, help="seconds per loop and condition")
    p.add_argument("--rates", type=float, nargs="+", default=[100.0, 500.0])
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.duration_s <= 0:
        p.error("--duration-s must be > 0")

    cpus = usable_cpus()
    me = cpus[0] if len(cpus) >= 2 else None
    other = cpus[1] if len(cpus) >= 2 else None
    machine = {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": cpus,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "pinned_measuring_cpu": me if pin(me) else None,
        "load_cpu": other,
        "duration_s_per_run": args.duration_s,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }

    work = Work()
    for _ in range(1000):
        work()  # warm numpy up

    runs = []
    for rate in args.rates:
        ticks = max(1, int(round(args.duration_s * rate)))
        for load in ("idle", "loaded"):
            for name, fn in (("RateLoop", run_rate_loop), ("relative-sleep", run_relative_sleep)):
                if not args.json:
                    print(f"  running {name:<14} {rate:>5.0f} Hz {load:<6} ({args.duration_s:g} s)...",
                          file=sys.stderr, flush=True)
                with contextlib.ExitStack() as stack:
                    if load == "loaded":
                        stack.enter_context(Spinner(other))
                    with CpuAccount(me) as acct:
                        r = fn(rate, ticks, work)
                runs.append({"loop": name, "rate_hz": rate, "load": load, **r,
                             "foreign_cpu_ms_on_measuring_core": acct.foreign_ms, "steal_ms": acct.steal_ms})

    result = {"machine": machine, "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    if args.json:
        print(json.dumps(result))
        return 0

    m = machine
    la = m["loadavg_at_start"]
    print(f"date     {m['date']}")
    print(f"machine  {m['platform']} | {m['cpu_model']} | {m['cpu_count']} CPUs (usable {m['usable_cpus']})"
          f" | Python {m['python']} | numpy {m['numpy']}")
    print(f"load     loadavg at start {' '.join(f'{x:.2f}' for x in la) if la else 'n/a'}"
          f" | measuring on CPU {m['pinned_measuring_cpu']}, load process on CPU {m['load_cpu']}")
    print(f"runs     {args.duration_s:g} s per loop and condition")
    print()
    head = (f"{'loop':<14} {'rate':>5} {'load':<6} {'ticks':>6} | {'p50':>6} {'p99':>6} {'max':>7} |"
            f" {'iv p99':>6} {'iv max':>7} | {'overr':>5} {'missed':>6} | {'Hz':>8} {'drift ms':>9} |"
            f" {'foreign':>7} {'steal':>6}")
    print(f"{'':<34} | {'|period error| ms':^21} | {'|interval err| ms':^14} |{'':14}|")
    print(head)
    print("-" * len(head))
    for r in runs:
        pe, iv = r["period_error_ms"], r["interval_error_ms"]
        print(f"{r['loop']:<14} {r['rate_hz']:>5.0f} {r['load']:<6} {r['ticks']:>6} |"
              f" {pe['p50']:>6.3f} {pe['p99']:>6.3f} {pe['max']:>7.3f} |"
              f" {iv['p99']:>6.3f} {iv['max']:>7.3f} | {r['overruns']:>5} {r['missed_ticks']:>6} |"
              f" {r['achieved_hz']:>8.2f} {r['drift_ms']:>9.2f} |"
              f" {_ms(r['foreign_cpu_ms_on_measuring_core']):>7} {_ms(r['steal_ms']):>6}")
    print()
    print("period error: RateLoop = wake - absolute deadline; relative-sleep = start-to-start interval - period.")
    print("interval error: |start-to-start interval - period| for both. drift = elapsed - ticks * period"
          " (for RateLoop: missed_ticks * period + the last tick's period error).")
    print("foreign: CPU ms used on the measuring core by other processes during the run (clean run: ~0);"
          " steal: hypervisor steal ms, all cores.")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
