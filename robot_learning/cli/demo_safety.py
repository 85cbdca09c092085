"""Safety part of the demo: a scripted trajectory with deliberate faults through the control runtime.

- NaN commands: rejected whole, the robot holds;
- a 2 rad jump: clipped by the velocity and step caps;
- a stalled action source: the watchdog holds the robot within its timeout;
- a target past the joint limit: clipped to the limit.

Writes the tick log (CSV), a plot (requested vs executed), and returns a summary.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from robot_learning.core.clock import Clock
from robot_learning.core.frame import Action, Observation
from robot_learning.hardware.robot import Robot
from robot_learning.runtime.control import ControlRuntime, RuntimeConfig, TickRecord
from robot_learning.runtime.sources import FunctionSource

# Fault windows, as fractions of the run length: (start, end, kind)
FAULTS = ((0.20, 0.24, "nan"), (0.35, 0.37, "jump"), (0.50, 0.58, "stall"), (0.70, 0.76, "past_limit"))


class FaultyTrajectory:
    """Smooth sinusoids on every joint, with the fault windows above."""

    def __init__(self, center: np.ndarray, upper: np.ndarray, duration_s: float, seed: int, t0_ns: int):
        n_joints = len(center)
        rng = np.random.default_rng(seed)
        self.center = np.asarray(center, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.phase = rng.uniform(0, 2 * math.pi, n_joints)
        self.amp = rng.uniform(0.3, 0.6, n_joints)
        self.freq_hz = 0.25
        self.duration_s = duration_s
        self.t0_ns = t0_ns
        self.float32 = False

    def fault_at(self, t_s: float) -> str | None:
        frac = t_s / self.duration_s
        return next((kind for a, b, kind in FAULTS if a <= frac < b), None)

    def __call__(self, obs: Observation) -> Action | None:
        t = (obs.t_ns - self.t0_ns) / 1e9
        q = self.center + self.amp * np.sin(2 * math.pi * self.freq_hz * t + self.phase)
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
            q[0] = self.upper[0] + 1.0
        dtype = np.float32 if self.float32 else np.float64
        return Action({"joint_pos_rad": q.astype(dtype), "gripper_pos": grip.astype(dtype)})


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


def _plot(path: Path, ticks: list[TickRecord], t0_ns: int, limits_rad: tuple[float, float], title: str) -> None:
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
    ax.plot(ts, np.clip(req, limits_rad[0] - 0.5, limits_rad[1] + 0.5), ".", ms=2.5, color="tab:red",
            label="requested (clipped to the plot)")
    ax.plot(ts, exe, "-", lw=1.4, color="tab:blue", label="executed (after safety filter)")
    ax.plot(ts, meas, "--", lw=1.0, color="tab:green", label="measured")
    lo, hi = min(limits_rad[0], np.nanmin(exe)) - 0.5, max(limits_rad[1], np.nanmax(exe)) + 0.5
    ax.fill_between(ts, lo, hi, where=held, color="0.85", step="mid", label="robot held")
    for y in limits_rad:
        ax.axhline(y, color="k", lw=0.6, ls=":")
    ax.set_ylim(lo, hi)
    ax.set_xlabel("time [s]")
    ax.set_ylabel("joint 1 [rad]")
    ax.set_title(title)
    ax.legend(loc="lower left", fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class _Collect:
    def __init__(self) -> None:
        self.ticks: list[TickRecord] = []

    def on_tick(self, tick: TickRecord) -> None:
        self.ticks.append(tick)

    def close(self) -> None:
        pass


def run_safety(robot: Robot, center: np.ndarray, clock: Clock, rate_hz: float, duration_s: float, seed: int,
               out: Path, title: str) -> tuple[dict, list[tuple[str, str]]]:
    """Run the faulty trajectory on a connected robot; return (summary, printable rows)."""
    limits = {lim.feature: lim for lim in robot.default_safety().limits}["joint_pos_rad"]
    lower = np.broadcast_to(np.asarray(limits.lower, dtype=np.float64), center.shape)
    upper = np.broadcast_to(np.asarray(limits.upper, dtype=np.float64), center.shape)
    collect = _Collect()
    t0 = clock.now_ns()
    traj = FaultyTrajectory(center, upper, duration_s, seed, t0)
    traj.float32 = robot.action_features["joint_pos_rad"].dtype == "float32"
    runtime = ControlRuntime(robot, FunctionSource(traj, robot.action_features, clock),
                             RuntimeConfig(rate_hz=rate_hz, watchdog_periods=3), sinks=[collect], clock=clock)
    stats = runtime.run(duration_s=duration_s)
    ticks = collect.ticks
    exe = np.stack([t.executed["joint_pos_rad"] for t in ticks]).astype(np.float64)
    dt = np.diff([t.t_ns for t in ticks]) / 1e9
    # command rate between consecutive filtered ticks (a hold bypasses the filter: it commands
    # the measured pose, i.e. it stops the robot where it is)
    filtered = np.array([not (a.held or b.held) for a, b in zip(ticks[:-1], ticks[1:])])
    vmax = np.asarray(limits.max_velocity_per_s, dtype=np.float64)
    ratio = np.abs(np.diff(exe, axis=0)) / np.maximum(dt[:, None], 1.0 / rate_hz) / vmax
    max_ratio = float(ratio[filtered].max()) if filtered.any() else 0.0
    first = {}
    for t in ticks:
        kind = traj.fault_at((t.t_ns - t0) / 1e9)
        if kind and kind not in first:
            first[kind] = t
    hold_delay = None
    if "stall" in first:
        hold = next((t for t in ticks if t.index >= first["stall"].index and t.reason
                     and t.reason.startswith("watchdog")), None)
        if hold is not None:
            hold_delay = round((hold.t_ns - first["stall"].t_ns) * rate_hz / 1e9, 3)
    inside = bool(np.all(exe >= lower - 1e-6) and np.all(exe <= upper + 1e-6))
    summary = {**stats.summary(), "rate_hz": rate_hz, "duration_s": duration_s,
               "executed_within_joint_limits": inside, "max_command_rate_over_cap": round(max_ratio, 4),
               "watchdog_hold_after_periods": hold_delay}
    _write_csv(out / "safety_ticks.csv", ticks, t0)
    _plot(out / "safety_joint1.png", ticks, t0, (float(lower[0]), float(upper[0])), title)
    rows = [
        ("NaN commands", f"{stats.rejected} rejected, robot held (the robot never saw a NaN)"),
        ("clipped ticks", f"{stats.clipped_ticks} (fault windows, and catching up at the velocity cap after each hold)"),
        ("joint limits", "every executed command inside" if inside else "VIOLATED"),
        ("command rate", f"max {max_ratio:.3f} x the velocity cap between filtered ticks"),
        ("watchdog", f"{stats.watchdog_trips} trip(s); held {hold_delay} periods after the source stalled (limit 3)"),
        ("holds", f"{stats.holds} ticks: {dict(sorted(stats.reasons.items()))}"),
    ]
    return summary, rows
