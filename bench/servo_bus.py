"""Servo-bus benchmark: the project's FeetechBus, side by side with LeRobot's FeetechMotorsBus.

Both stacks drive the same byte-exact servo emulator (``hardware/servo_emulator.py``, stdlib only, on a
pseudo-terminal) with 6 STS3215 servos (ids 1..6, shafts parked at known positions, torque off), the
same emulator seed, through the same vendor SDK (``scservo_sdk``). Each stack runs in its own
process with its own emulator, whose servos answer from a process of their own (as real servos do:
the stack's threads and GIL never delay them), the same for both.

Measured, per stack:

* **clean**: ``--reads`` sync reads of present position (6 motors, one transaction each): latency
  p50 / p99 / max; ``--writes`` sync writes of goal position (broadcast, no replies): p50 / p99 / max.
* **corrupt**: ``corrupt_rate`` (default 0.05) of the status packets get a bad checksum;
  ``--corrupt-reads`` sync reads paced at ``--rate-hz`` (0: back to back). Counted: reads that
  raised, reads that returned a value other than the shaft's (``wrong``), the tries the emulator
  saw (``retries`` = sync-read packets - reads), latency p50 / p99 / max of the reads that returned.
  The shafts move 3 ticks before every read, so a read that returns a position other than the
  current one (``wrong_values``; ``stale_values``: an earlier read's) is caught: a reply left in
  the input buffer by an earlier failed try and taken as the answer.
* **vanish**: ``disappear(3)``, then the time until a sync read raises; ``--vanish-reps``
  repetitions (servo back and one good read between them), median and max.

The project bus runs with its defaults (3 retries, 12 ms per try; a sync read retries only the
motors that have not answered). LeRobot (``--lerobot-python``: an interpreter with lerobot 0.4.4,
run in a subprocess) is called through its public API, ``sync_read("Present_Position",
normalize=False, num_retry=N)`` and ``sync_write("Goal_Position", ..., normalize=False)``, its
``connect()`` handshake and its default timeouts, once per ``--lerobot-retries`` value; num_retry=0
is its default (what ``SOFollower.get_observation`` uses), the others are its documented knob. Its
"best" setting is the one with the fewest failed reads at 5 % corruption (ties: lower p99).

Ratios are project / LeRobot: below 1 means the project is faster (latency) or better.

    .venv/bin/python bench/servo_bus.py                          # project only (~40 s)
    .venv/bin/python bench/servo_bus.py --lerobot-python /tmp/lerobot-motors-venv/bin/python --runs 3

Prints a readable table, then one JSON line (medians over ``--runs``, and every run); the JSON also
goes to bench/results/servo_bus.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EMULATOR_PATH = ROOT / "hardware" / "servo_emulator.py"
RESULTS = Path(__file__).resolve().parent / "results" / "servo_bus.json"
NAMES = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper")
IDS = {name: i + 1 for i, name in enumerate(NAMES)}
POSITIONS = {name: 700 + 450 * i for i, name in enumerate(NAMES)}  # physical = reported (no offset)
VANISH_ID = 3


def load_emulator() -> Any:
    """``hardware/servo_emulator.py`` by path (stdlib only: it runs under any interpreter, LeRobot's too; it
    loads its sibling files ``servo_packets.py`` and ``servo_peer.py`` by path itself)."""
    spec = importlib.util.spec_from_file_location("servo_emulator", EMULATOR_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["servo_emulator"] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- the two stacks
class ProjectStack:
    """robot_learning.hardware.feetech.FeetechBus with its defaults."""

    def __init__(self, port: str, setting: Any = None):
        from robot_learning.hardware.feetech import FeetechBus
        from robot_learning.hardware.servo_bus import Motor

        self.bus = FeetechBus(port, {n: Motor(i, "sts3215") for n, i in IDS.items()})
        self.bus.connect()

    def read(self) -> dict[str, int]:
        return self.bus.sync_read("present_position")

    def write(self, values: dict[str, int]) -> None:
        self.bus.sync_write("goal_position", values)

    def close(self) -> None:
        self.bus.disconnect()


class LeRobotStack:
    """lerobot.motors.feetech.FeetechMotorsBus, public API, default timeouts; ``setting``: num_retry."""

    def __init__(self, port: str, setting: Any = 0):
        from lerobot.motors import Motor, MotorNormMode
        from lerobot.motors.feetech import FeetechMotorsBus

        self.num_retry = int(setting or 0)
        motors = {n: Motor(i, "sts3215", MotorNormMode.RANGE_0_100 if n == "gripper" else
                           MotorNormMode.RANGE_M100_100) for n, i in IDS.items()}
        self.bus = FeetechMotorsBus(port=port, motors=motors)
        self.bus.connect()

    def read(self) -> dict[str, int]:
        return self.bus.sync_read("Present_Position", normalize=False, num_retry=self.num_retry)

    def write(self, values: dict[str, int]) -> None:
        self.bus.sync_write("Goal_Position", values, normalize=False)

    def close(self) -> None:
        self.bus.disconnect()


STACKS = {"project": ProjectStack, "lerobot": LeRobotStack}


# ----------------------------------------------------------------------------- measurements
def _ms(samples_ns: list[int]) -> dict[str, float | None]:
    if not samples_ns:
        return {"p50": None, "p99": None, "max": None, "mean": None}
    s = sorted(samples_ns)

    def q(p: float) -> float:
        return round(s[min(len(s) - 1, round(p * (len(s) - 1)))] / 1e6, 4)

    return {"p50": q(0.5), "p99": q(0.99), "max": round(s[-1] / 1e6, 4), "mean": round(sum(s) / len(s) / 1e6, 4)}


class _Rig:
    """A fresh emulator (6 x STS3215, the seed) and a stack connected to it."""

    def __init__(self, emulator: Any, make: Callable[..., Any], setting: Any, seed: int):
        self.emu = emulator.ServoEmulator("feetech", {i: "sts3215" for i in IDS.values()}, seed=seed).start()
        for name, i in IDS.items():
            self.emu.servo(i).set_physical(POSITIONS[name])
        try:
            self.stack = make(self.emu.port, setting)
        except BaseException:
            self.emu.stop()
            raise

    def close(self) -> None:
        self.emu.corrupt_rate = 0.0
        self.emu.reappear(VANISH_ID)
        try:
            self.stack.close()
        except Exception:  # noqa: BLE001, S110 - teardown only
            pass
        self.emu.stop()


def _clean(emulator: Any, make: Callable[..., Any], setting: Any, cfg: dict) -> dict:
    rig = _Rig(emulator, make, setting, cfg["seed"])
    try:
        for _ in range(50):
            rig.stack.read()
        reads, bad = [], 0
        for _ in range(cfg["reads"]):
            t0 = time.perf_counter_ns()
            values = rig.stack.read()
            reads.append(time.perf_counter_ns() - t0)
            bad += values != POSITIONS
        writes = []
        for k in range(cfg["writes"]):
            values = {n: v + (k & 1) for n, v in POSITIONS.items()}
            t0 = time.perf_counter_ns()
            rig.stack.write(values)
            writes.append(time.perf_counter_ns() - t0)
            if k % 50 == 49:
                rig.emu.sync()  # let the emulator keep up; not timed
        rig.emu.sync()
        return {"read_ms": _ms(reads), "write_ms": _ms(writes), "reads": len(reads), "wrong_values": bad,
                "writes": len(writes)}
    finally:
        rig.close()


def _corrupt(emulator: Any, make: Callable[..., Any], setting: Any, cfg: dict) -> dict:
    rig = _Rig(emulator, make, setting, cfg["seed"])
    try:
        emu, period = rig.emu, (1.0 / cfg["rate_hz"] if cfg["rate_hz"] > 0 else 0.0)
        emu.corrupt_rate = cfg["corrupt_rate"]
        packets0, corrupted0 = emu.stats.packets, emu.stats.corrupted
        ok_ns, failed, wrong, stale, first_error = [], 0, 0, 0, None
        deadline = time.perf_counter()
        for k in range(cfg["corrupt_reads"]):
            # the shafts move a little before every read: a reply left over from an earlier read shows
            expected = {n: v + 3 * (k % 200) for n, v in POSITIONS.items()}
            for name, i in IDS.items():
                emu.servo(i).set_physical(expected[name])
            if period:
                deadline += period
                pause = deadline - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            t0 = time.perf_counter_ns()
            try:
                values = rig.stack.read()
            except Exception as exc:  # noqa: BLE001 - what a control loop would see
                failed += 1
                first_error = first_error or f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:240]
                continue
            ok_ns.append(time.perf_counter_ns() - t0)
            if values != expected:
                wrong += 1
                stale += all(values[n] == expected[n] or 0 <= values[n] - POSITIONS[n] < expected[n] - POSITIONS[n]
                             and (values[n] - POSITIONS[n]) % 3 == 0 for n in values)
        emu.corrupt_rate = 0.0
        emu.sync()
        tries = emu.stats.packets - packets0
        out = {"reads": cfg["corrupt_reads"], "failed": failed, "wrong_values": wrong, "stale_values": stale, "tries": tries,
               "retries": tries - cfg["corrupt_reads"], "corrupted_replies": emu.stats.corrupted - corrupted0,
               "latency_ms": _ms(ok_ns), "first_error": first_error}
        stats = getattr(getattr(rig.stack, "bus", None), "stats", None)
        if stats is not None and hasattr(stats, "retries"):
            out["bus_stats"] = {"retries": stats.retries, "failures": stats.failures,
                                "errors_by_kind": dict(stats.errors_by_kind)}
        return out
    finally:
        rig.close()


def _vanish(emulator: Any, make: Callable[..., Any], setting: Any, cfg: dict) -> dict:
    rig = _Rig(emulator, make, setting, cfg["seed"])
    try:
        detect, reads_to_error, error, recovered = [], [], None, True
        for _ in range(cfg["vanish_reps"]):
            rig.emu.disappear(VANISH_ID)
            t0, n = time.perf_counter_ns(), 0
            while n < 100:
                n += 1
                try:
                    rig.stack.read()
                except Exception as exc:  # noqa: BLE001
                    detect.append(time.perf_counter_ns() - t0)
                    reads_to_error.append(n)
                    error = error or f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
                    break
            rig.emu.reappear(VANISH_ID)
            time.sleep(0.1)
            for _ in range(10):  # the servo is back: the next good read (the other replies may be stale)
                try:
                    if rig.stack.read() == POSITIONS:
                        break
                except Exception:  # noqa: BLE001, S110 - not back yet: try again
                    pass
            else:
                recovered = False
        stats = getattr(getattr(rig.stack, "bus", None), "stats", None)   # the project's bus: its wait per try
        return {"detect_ms": _ms(detect), "reads_to_error": max(reads_to_error, default=None),
                "detected": len(detect), "reps": cfg["vanish_reps"], "error": error, "recovered": recovered,
                "try_timeout_ms": round(stats.try_timeout_s * 1e3, 2) if hasattr(stats, "try_timeout_s") else None}
    finally:
        rig.close()


def measure(stack: str, cfg: dict) -> dict:
    """Every measurement of one stack, in this process."""
    emulator, make = load_emulator(), STACKS[stack]
    settings = cfg["lerobot_retries"] if stack == "lerobot" else [None]
    label = (lambda s: f"num_retry={s}") if stack == "lerobot" else (lambda s: "default (3 retries)")
    out: dict[str, Any] = {"stack": stack, "python": sys.version.split()[0]}
    if stack == "lerobot":
        import lerobot

        out["version"] = lerobot.__version__
    out["clean"] = _clean(emulator, make, settings[0], cfg)
    out["corrupt"] = {label(s): _corrupt(emulator, make, s, cfg) for s in settings}
    out["vanish"] = {label(s): _vanish(emulator, make, s, cfg) for s in settings}
    return out


# ----------------------------------------------------------------------------- runs and report
def _median_tree(runs: list[Any]) -> Any:
    first = runs[0]
    if isinstance(first, dict):
        return {k: _median_tree([r[k] for r in runs if isinstance(r, dict) and k in r]) for k in first}
    if isinstance(first, bool) or not isinstance(first, (int, float)):
        return first if all(r == first for r in runs) else runs
    values = [r for r in runs if isinstance(r, (int, float))]
    return statistics.median(values) if values else None


def _best(corrupt: dict) -> str:
    return min(corrupt, key=lambda k: (corrupt[k]["failed"], corrupt[k]["latency_ms"]["p99"] or float("inf")))


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def run_lerobot(python: str, cfg: dict) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", "lerobot", "--worker-config", json.dumps(cfg)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, timeout=3600, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"LeRobot worker failed (exit {proc.returncode}); its stderr is above")
    return json.loads(lines[-1])


def compare(project: dict, lerobot: dict | None) -> dict:
    p_corrupt = next(iter(project["corrupt"].values()))
    p_vanish = next(iter(project["vanish"].values()))
    summary: dict[str, Any] = {
        "project": {"read_ms": project["clean"]["read_ms"], "write_ms": project["clean"]["write_ms"],
                    "corrupt": p_corrupt, "vanish_ms": p_vanish["detect_ms"],
                    "vanish_try_timeout_ms": p_vanish.get("try_timeout_ms")}}
    if lerobot is None:
        return summary
    default = "num_retry=0" if "num_retry=0" in lerobot["corrupt"] else next(iter(lerobot["corrupt"]))
    best = _best(lerobot["corrupt"])
    summary["lerobot"] = {"version": lerobot.get("version"), "read_ms": lerobot["clean"]["read_ms"],
                          "write_ms": lerobot["clean"]["write_ms"], "default": default, "best": best,
                          "corrupt": lerobot["corrupt"], "vanish_ms": {k: v["detect_ms"]
                                                                       for k, v in lerobot["vanish"].items()}}
    r: dict[str, Any] = {}
    for kind in ("read_ms", "write_ms"):
        for q in ("p50", "p99", "max"):
            r[f"{kind[:-3]}_{q}"] = _ratio(project["clean"][kind][q], lerobot["clean"][kind][q])
    for tag, key in (("default", default), ("best", best)):
        lc = lerobot["corrupt"][key]
        for q in ("p50", "p99"):
            r[f"corrupt_{q}_vs_{tag}"] = _ratio(p_corrupt["latency_ms"][q], lc["latency_ms"][q])
        r[f"failed_vs_{tag}"] = _ratio(p_corrupt["failed"], lc["failed"])
        r[f"vanish_vs_{tag}"] = _ratio(p_vanish["detect_ms"]["p50"], lerobot["vanish"][key]["detect_ms"]["p50"])
    summary["ratios_project_over_lerobot"] = r
    return summary


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(project: dict, lerobot: dict | None) -> str:
    cols: list[tuple[str, dict, str]] = [("project", project, next(iter(project["corrupt"])))]
    if lerobot is not None:
        cols += [(f"LeRobot {k}", lerobot, k) for k in lerobot["corrupt"]]
    rows = [("sync read p50 / p99 / max (ms)",
             lambda d, k: "/".join(_f(d["clean"]["read_ms"][q]) for q in ("p50", "p99", "max"))),
            ("sync write p50 / p99 / max (ms)",
             lambda d, k: "/".join(_f(d["clean"]["write_ms"][q], 3) for q in ("p50", "p99", "max"))),
            ("5% corrupt: failed reads / 1000",
             lambda d, k: _f(d["corrupt"][k]["failed"] * 1000 / d["corrupt"][k]["reads"], 1)),
            ("5% corrupt: reads returning old positions / 1000",
             lambda d, k: _f(d["corrupt"][k]["wrong_values"] * 1000 / d["corrupt"][k]["reads"], 1)),
            ("5% corrupt: retries (emulator)", lambda d, k: _f(d["corrupt"][k]["retries"])),
            ("5% corrupt: p50 / p99 of reads that returned (ms)",
             lambda d, k: "/".join(_f(d["corrupt"][k]["latency_ms"][q]) for q in ("p50", "p99"))),
            ("vanished servo -> error, p50 / max (ms)",
             lambda d, k: "/".join(_f(d["vanish"][k]["detect_ms"][q], 1) for q in ("p50", "max")))]
    clean_once = lambda i, r: i > 1 and r < 2  # clean figures: one per stack
    lines = ["| measurement | " + " | ".join(c[0] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for ri, (title, get) in enumerate(rows):
        cells = ["(same)" if clean_once(ci, ri) else get(d, k) for ci, (_, d, k) in enumerate(cols)]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lerobot-python", metavar="PATH",
                    help="a Python with lerobot (0.4.4) + feetech-servo-sdk: also measure LeRobot's FeetechMotorsBus")
    ap.add_argument("--lerobot-retries", default="0,3,10",
                    help="comma-separated num_retry values for LeRobot's sync_read (default 0,3,10; 0 is its default)")
    ap.add_argument("--runs", type=int, default=1, help="repeat everything; medians are reported (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="emulator seed, the same for both stacks (default 0)")
    ap.add_argument("--reads", type=int, default=2000, help="clean sync reads (default 2000)")
    ap.add_argument("--writes", type=int, default=1000, help="sync writes (default 1000)")
    ap.add_argument("--corrupt-rate", type=float, default=0.05, help="corrupted status packets (default 0.05)")
    ap.add_argument("--corrupt-reads", type=int, default=1000, help="sync reads under corruption (default 1000)")
    ap.add_argument("--rate-hz", type=float, default=50.0, help="pace of those reads; 0: back to back (default 50)")
    ap.add_argument("--vanish-reps", type=int, default=5, help="disappear(3) repetitions (default 5)")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/servo_bus.json")
    ap.add_argument("--worker", choices=sorted(STACKS), help=argparse.SUPPRESS)
    ap.add_argument("--worker-config", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:  # one stack in this interpreter; one JSON line on stdout
        print(json.dumps(measure(args.worker, json.loads(args.worker_config))), flush=True)
        return 0

    cfg = {"seed": args.seed, "reads": args.reads, "writes": args.writes, "corrupt_rate": args.corrupt_rate,
           "corrupt_reads": args.corrupt_reads, "rate_hz": args.rate_hz, "vanish_reps": args.vanish_reps,
           "lerobot_retries": [int(x) for x in args.lerobot_retries.split(",") if x.strip()]}
    runs = []
    for k in range(args.runs):
        load = os.getloadavg()
        started = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(f"run {k + 1}/{args.runs}: project ... (load {load[0]:.2f})", file=sys.stderr, flush=True)
        project = measure("project", cfg)
        lerobot = None
        if args.lerobot_python:
            print(f"run {k + 1}/{args.runs}: LeRobot ...", file=sys.stderr, flush=True)
            lerobot = run_lerobot(args.lerobot_python, cfg)
        runs.append({"started": started, "loadavg_before": [round(x, 2) for x in load],
                     "loadavg_after": [round(x, 2) for x in os.getloadavg()], "project": project,
                     "lerobot": lerobot})
    project = _median_tree([r["project"] for r in runs])
    lerobot = _median_tree([r["lerobot"] for r in runs]) if args.lerobot_python else None
    result = {"bench": "servo_bus", "date": _dt.date.today().isoformat(), "host": platform.node(),
              "cpus": os.cpu_count(), "python": sys.version.split()[0], "config": cfg, "runs_n": args.runs,
              "median": compare(project, lerobot),
              "loadavg": [r["loadavg_before"] + r["loadavg_after"] for r in runs], "runs": runs}
    print(f"\nServo bus, 6 x STS3215 on the pty emulator, medians of {args.runs} run(s), "
          f"{args.corrupt_rate:.0%} corruption at {args.rate_hz:g} Hz:\n")
    print(table(project, lerobot))
    ratios = result["median"].get("ratios_project_over_lerobot")
    if ratios:
        print("\nratios project / LeRobot: " + ", ".join(f"{k} {_f(v, 3)}" for k, v in ratios.items()))
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
