"""``robot-learning demo``: the main job on the embedded default.

What exists today (foundation issue): the control runtime on the emulated arm with a scripted
trajectory that deliberately contains faults, so the run shows each safety mechanism acting:

- NaN commands: rejected whole, the robot holds;
- a 2 rad jump: clipped by the velocity and step caps;
- a stalled action source: the watchdog holds the robot within its timeout;
- a target past the joint limit: clipped to the limit.

It writes the tick log (CSV), a plot (requested vs executed), and a JSON summary.
"""

from __future__ import annotations

import csv
import json
import math
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from robot_learning.cli.commands import DemoConfig
from robot_learning.core.clock import default_clock
from robot_learning.core.frame import Action, Observation
from robot_learning.hardware.emulated_arm import EmulatedArm, EmulatedArmConfig
from robot_learning.runtime.control import ControlRuntime, RuntimeConfig, TickRecord
from robot_learning.runtime.sources import FunctionSource

NOT_YET = (
    "MuJoCo sim twin and tasks (issue #3): the demo runs on the emulated arm instead",
    "recorder and zarr episode store (issue #4): nothing is recorded to a dataset yet",
    "diffusion policy training and sim evaluation (issue #5): no policy is trained yet",
)

# Fault windows, as fractions of the run length: (start, end, kind)
FAULTS = ((0.20, 0.24, "nan"), (0.35, 0.37, "jump"), (0.50, 0.58, "stall"), (0.70, 0.76, "past_limit"))


class FaultyTrajectory:
    """Smooth sinusoids on every joint, with the fault windows above."""

    def __init__(self, n_joints: int, duration_s: float, seed: int, t0_ns: int):
        rng = np.random.default_rng(seed)
        self.phase = rng.uniform(0, 2 * math.pi, n_joints)
        self.amp = rng.uniform(0.4, 0.9, n_joints)
        self.freq_hz = 0.25
        self.duration_s = duration_s
        self.t0_ns = t0_ns
        self.requested: list[tuple[float, float]] = []

    def fault_at(self, t_s: float) -> str | None:
        frac = t_s / self.duration_s
        return next((kind for a, b, kind in FAULTS if a <= frac < b), None)

    def __call__(self, obs: Observation) -> Action | None:
        t = (obs.t_ns - self.t0_ns) / 1e9
        q = self.amp * np.sin(2 * math.pi * self.freq_hz * t + self.phase)
        grip = np.array([0.5 + 0.5 * math.sin(2 * math.pi * 0.1 * t)])
        fault = self.fault_at(t)
        if fault == "stall":
            return None
        if fault == "nan":
            q = q.copy()
            q[0] = float("nan")
        elif fault == "jump":
            q = q + 2.0
        elif fault == "past_limit":
            q = q.copy()
            q[0] = 3.5
        return Action({"joint_pos_rad": q, "gripper_pos": grip})


def _write_csv(path: Path, ticks: list[TickRecord], t0_ns: int) -> None:
    n = ticks[0].executed["joint_pos_rad"].shape[0]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tick", "t_s", *[f"requested_j{i + 1}" for i in range(n)],
                    *[f"executed_j{i + 1}" for i in range(n)], *[f"measured_j{i + 1}" for i in range(n)],
                    "held", "clipped_elements", "reason"])
        for t in ticks:
            req = t.requested["joint_pos_rad"] if t.requested is not None else [float("nan")] * n
            meas = t.observation.state["joint_pos_rad"] if t.observation is not None else [float("nan")] * n
            w.writerow([t.index, f"{(t.t_ns - t0_ns) / 1e9:.4f}", *map(float, req),
                        *map(float, t.executed["joint_pos_rad"]), *map(float, meas), int(t.held),
                        t.clipped_elements, t.reason or ""])


def _plot(path: Path, ticks: list[TickRecord], t0_ns: int, limit_rad: float) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = np.array([(t.t_ns - t0_ns) / 1e9 for t in ticks])
    req = np.array([t.requested["joint_pos_rad"][0] if t.requested is not None else np.nan for t in ticks])
    exe = np.array([t.executed["joint_pos_rad"][0] for t in ticks])
    meas = np.array([t.observation.state["joint_pos_rad"][0] if t.observation is not None else np.nan
                     for t in ticks])
    held = np.array([t.held for t in ticks])
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(ts, np.clip(req, -4, 4), ".", ms=2.5, color="tab:red", label="requested (clipped to +-4 for display)")
    ax.plot(ts, exe, "-", lw=1.4, color="tab:blue", label="executed (after safety filter)")
    ax.plot(ts, meas, "--", lw=1.0, color="tab:green", label="measured")
    ax.fill_between(ts, -4, 4, where=held, color="0.85", step="mid", label="robot held")
    for y in (-limit_rad, limit_rad):
        ax.axhline(y, color="k", lw=0.6, ls=":")
    ax.set_ylim(-4, 4)
    ax.set_xlabel("time [s]")
    ax.set_ylabel("joint 1 [rad]")
    ax.set_title("Control runtime on the emulated arm: NaN, jump, stalled source, past-limit target")
    ax.legend(loc="lower left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(cfg: DemoConfig) -> int:
    duration_s = cfg.duration_s if cfg.duration_s is not None else (3.0 if cfg.quick else 10.0)
    out = cfg.out if cfg.out is not None else Path("runs") / f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    clock = default_clock()
    arm_cfg = EmulatedArmConfig()
    ticks: list[TickRecord] = []

    class Collect:
        def on_tick(self, tick: TickRecord) -> None:
            ticks.append(tick)

        def close(self) -> None:
            pass

    print(f"robot-learning demo: control runtime at {cfg.rate_hz:g} Hz for {duration_s:g} s "
          f"on the emulated {arm_cfg.n_joints}-joint arm, with injected faults")
    wall0 = time.perf_counter()
    with EmulatedArm(arm_cfg, clock=clock) as arm:
        t0 = clock.now_ns()
        traj = FaultyTrajectory(arm_cfg.n_joints, duration_s, cfg.seed, t0)
        source = FunctionSource(traj, arm.action_features, clock)
        runtime = ControlRuntime(arm, source, RuntimeConfig(rate_hz=cfg.rate_hz, watchdog_periods=3),
                                 sinks=[Collect()], clock=clock)
        stats = runtime.run(duration_s=duration_s)
    wall = time.perf_counter() - wall0
    if not ticks:
        print("no ticks ran")
        return 1

    exe = np.stack([t.executed["joint_pos_rad"] for t in ticks])
    step_ms = np.diff([t.t_ns for t in ticks]) / 1e6
    period_s = 1.0 / cfg.rate_hz
    # Rate of the command stream between consecutive filtered ticks (a hold bypasses the filter:
    # it commands the measured pose, i.e. it stops the robot where it is).
    filtered = np.array([not (a.held or b.held) for a, b in zip(ticks[:-1], ticks[1:])])
    rates = np.abs(np.diff(exe, axis=0)) / np.maximum(step_ms[:, None] / 1e3, period_s)
    max_cmd_rate = float(rates[filtered].max()) if filtered.any() else 0.0
    fault_first = {}
    for t in ticks:
        kind = traj.fault_at((t.t_ns - t0) / 1e9)
        if kind and kind not in fault_first:
            fault_first[kind] = t
    stall_start = fault_first.get("stall")
    hold_delay = None
    if stall_start is not None:
        first_hold = next((t for t in ticks if t.index >= stall_start.index and t.reason
                           and t.reason.startswith("watchdog")), None)
        if first_hold is not None:
            hold_delay = (first_hold.t_ns - stall_start.t_ns) * cfg.rate_hz / 1e9
    summary = {
        "robot": "emulated_arm", "rate_hz": cfg.rate_hz, "duration_s": duration_s, "wall_s": round(wall, 2),
        **stats.summary(),
        "executed_max_abs_joint_rad": float(np.max(np.abs(exe))),
        "joint_limit_rad": arm_cfg.joint_limit_rad,
        "executed_max_rate_rad_s": round(max_cmd_rate, 3),
        "velocity_cap_rad_s": arm_cfg.safety_velocity_rad_s,
        "watchdog_hold_after_periods": hold_delay,
        "not_yet": list(NOT_YET),
        "out": str(out),
    }
    _write_csv(out / "ticks.csv", ticks, t0)
    _plot(out / "joint1.png", ticks, t0, arm_cfg.joint_limit_rad)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    pe = stats.loop.error_percentiles_ms()
    rows = [
        ("ticks", f"{stats.loop.ticks} ({stats.loop.overruns} overruns, {stats.loop.missed_ticks} missed)"),
        ("period error", f"p50 {pe['p50']:.3f} ms, p99 {pe['p99']:.3f} ms, max {pe['max']:.3f} ms"),
        ("NaN commands", f"{stats.rejected} rejected, robot held (the robot never saw a NaN)"),
        ("clipped ticks", f"{stats.clipped_ticks} (fault windows, and catching up at the velocity cap after each hold)"),
        ("max |executed|", f"{summary['executed_max_abs_joint_rad']:.3f} rad (limit {arm_cfg.joint_limit_rad} rad)"),
        ("max command rate", f"{max_cmd_rate:.3f} rad/s between filtered ticks (cap {arm_cfg.safety_velocity_rad_s} rad/s)"),
        ("watchdog", f"{stats.watchdog_trips} trip(s); held {hold_delay} periods after the source stalled "
                     f"(limit 3)" if hold_delay is not None else f"{stats.watchdog_trips} trip(s)"),
        ("holds", f"{stats.holds} ticks: {dict(sorted(stats.reasons.items()))}"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")
    print()
    print(f"  tick log  {out / 'ticks.csv'}")
    print(f"  plot      {out / 'joint1.png'}")
    print(f"  summary   {out / 'summary.json'}")
    print()
    print("Not there yet:")
    for line in NOT_YET:
        print(f"  - {line}")
    if cfg.json:
        print(json.dumps(summary))
    return 0
