"""``robot-learning find-ports | find-cameras | calibrate | teleoperate``."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

from robot_learning.cli.hardware_configs import (CalibrateConfig, FindCamerasConfig, FindPortsConfig,
                                                 TeleoperateConfig)
from robot_learning.errors import ConfigError, DeviceError


def ask(prompt: str) -> None:
    """Wait for Enter; the prompt goes to stderr so stdout stays machine-readable."""
    print(prompt, end="", file=sys.stderr, flush=True)
    if not sys.stdin.readline():
        raise ConfigError("stdin closed before Enter was pressed (run this command in a terminal)")


# --- find-ports ----------------------------------------------------------------------------
def list_serial_ports() -> list[dict]:
    """Serial ports with what the USB descriptors say about them (pyserial)."""
    from serial.tools import list_ports

    out = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        out.append({"port": p.device, "description": p.description or "", "serial_number": p.serial_number,
                    "vid_pid": f"{p.vid:04x}:{p.pid:04x}" if p.vid is not None else None,
                    "manufacturer": p.manufacturer})
    return out


def run_find_ports(cfg: FindPortsConfig) -> int:
    ports = list_serial_ports()
    if cfg.identify:
        if not ports:
            raise ConfigError("no serial ports found: plug in the arm's USB adapter and power it")
        print(f"{len(ports)} serial port(s): {', '.join(p['port'] for p in ports)}", file=sys.stderr)
        ask("unplug the USB cable of the arm to identify, then press Enter ")
        time.sleep(0.5)
        gone = sorted({p["port"] for p in ports} - {p["port"] for p in list_serial_ports()})
        if len(gone) != 1:
            raise ConfigError(f"expected exactly one port to disappear, found {len(gone)} ({', '.join(gone) or 'none'})")
        print(json.dumps({"port": gone[0]}) if cfg.json else f"the arm's port is {gone[0]} (plug it back in)")
        return 0
    if cfg.json:
        print(json.dumps({"ports": ports}))
    elif not ports:
        print("no serial ports found (is the arm's USB adapter plugged in and powered?)")
    else:
        for p in ports:
            extra = "  ".join(str(v) for v in (p["vid_pid"], p["serial_number"]) if v)
            print(f"{p['port']:<24} {p['description']:<40} {extra}")
    return 0


# --- find-cameras --------------------------------------------------------------------------
def run_find_cameras(cfg: FindCamerasConfig) -> int:
    from robot_learning.hardware.camera_discovery import find_opencv_cameras, find_realsense_cameras
    from robot_learning.hardware.tactile import discover_tactile_sensors

    found = {"opencv": find_opencv_cameras(), "realsense": find_realsense_cameras(),
             "tactile": discover_tactile_sensors()}
    if cfg.snapshot_dir is not None:
        _snapshots(found["opencv"], cfg.snapshot_dir)
    if cfg.json:
        print(json.dumps(found, default=str))
        return 0
    if not any(found.values()):
        print("no cameras found (UVC /dev/video*, RealSense, GelSight Mini, DIGIT)")
    for kind, items in found.items():
        for item in items:
            print(f"{kind:<10} " + "  ".join(f"{k}={v}" for k, v in item.items()))
    return 0


def _snapshots(cams: list[dict], out: Path) -> None:
    import cv2

    from robot_learning.hardware.opencv_camera import OpenCVCamera, OpenCVCameraConfig

    out.mkdir(parents=True, exist_ok=True)
    for c in cams:
        src = c.get("index", c.get("path"))
        with OpenCVCamera(OpenCVCameraConfig(source=src, name="snapshot")) as cam:
            frame = cam.read(timeout_s=2.0).value["snapshot"]
        path = out / f"camera_{str(src).replace('/', '_')}.png"
        cv2.imwrite(str(path), frame[..., ::-1])
        print(f"saved {path}", file=sys.stderr)


# --- calibrate -----------------------------------------------------------------------------
def run_calibrate(cfg: CalibrateConfig) -> int:
    from robot_learning.hardware.arm_calibration import calibration_path, check_writable, record_calibration
    from robot_learning.hardware.arms import get_arm, make_bus

    spec = get_arm(cfg.robot)
    path = calibration_path(spec.kind, cfg.id, cfg.calibration_dir)
    bus = make_bus(spec, cfg.port)
    done = threading.Event()
    lo: dict[str, int] = {}
    hi: dict[str, int] = {}

    def zero_pose() -> None:
        ask(f"{spec.kind}: torque is off. Put the arm in the zero pose (arm straight up, every joint in the middle "
              "of its range, jaw closed) and press Enter ")
        print("now move every joint through its whole range (both ends), then press Enter", file=sys.stderr)
        threading.Thread(target=lambda: (sys.stdin.readline(), done.set()), daemon=True).start()

    last = [0.0]

    def show(raw) -> None:
        for n, v in raw.items():
            lo[n], hi[n] = min(lo.get(n, v), v), max(hi.get(n, v), v)
        if time.monotonic() - last[0] > 0.25:
            last[0] = time.monotonic()
            print("\r" + "  ".join(f"{n} {raw[n]:4d}" for n in raw), end="", file=sys.stderr, flush=True)

    bus.connect()
    try:
        cal = record_calibration(bus, spec, cfg.id, wait_for_zero_pose=zero_pose, sweep_done=done.is_set,
                                 rate_hz=cfg.rate_hz, on_sample=show, check_writable=lambda: check_writable(path))
    finally:
        bus.disconnect()
    print(file=sys.stderr)
    cal.save(path)
    for n, c in cal.joints.items():
        a, b = c.range_rad
        print(f"{n:<14} range {np.degrees(a):7.1f} .. {np.degrees(b):6.1f} deg  homing offset {cal.homing_offsets[n]}",
              file=sys.stderr)
    print(json.dumps({"calibration": str(path), "robot": spec.kind, "id": cfg.id}))
    return 0


# --- teleoperate ---------------------------------------------------------------------------
class TrackingSink:
    """Runtime sink: how far the measured joints are from the previous tick's executed command (rad)."""

    def __init__(self):
        self.errors: list[float] = []
        self._prev = None
        self.final_joint_pos_rad: list[float] | None = None

    def on_tick(self, tick) -> None:
        obs = tick.observation
        if obs is not None and "joint_pos_rad" in obs.values:
            q = np.asarray(obs.values["joint_pos_rad"], dtype=np.float64)
            if self._prev is not None:
                self.errors.append(float(np.max(np.abs(q - self._prev))))
            self.final_joint_pos_rad = [round(float(v), 4) for v in q]
        self._prev = np.asarray(tick.executed["joint_pos_rad"], dtype=np.float64)

    def close(self) -> None:
        pass

    def summary(self) -> dict:
        e = np.asarray(self.errors or [np.nan])
        return {"tracking_err_rad_p50": round(float(np.median(e)), 4),
                "tracking_err_rad_p95": round(float(np.percentile(e, 95)), 4),
                "tracking_err_rad_max": round(float(e.max()), 4)}


class StatusLine:
    """Runtime sink printing rate, holds, tracking error and bus errors to stderr twice a second."""

    def __init__(self, rig, tracking: TrackingSink, stream=sys.stderr, extra=None):
        self.rig, self.tracking, self.stream, self.extra = rig, tracking, stream, extra
        self._last = time.monotonic()
        self._ticks = self._last_ticks = 0
        self._holds = 0

    def on_tick(self, tick) -> None:
        self._ticks += 1
        self._holds += int(tick.held)
        now = time.monotonic()
        if now - self._last < 0.5:
            return
        rate = (self._ticks - self._last_ticks) / (now - self._last)   # over the last half second
        self._last, self._last_ticks = now, self._ticks
        bus = getattr(self.rig.robot, "bus", None)
        errs = f"  bus errors {bus.stats.errors}" if bus is not None else ""
        err = self.tracking.errors[-1] if self.tracking.errors else float("nan")
        print(f"\r{rate:5.1f} Hz  ticks {self._ticks}  holds {self._holds}  tracking "
              f"{np.degrees(err):5.2f} deg{errs}  takeover {'yes' if tick.intervention else 'no '}"
              f"{'  ' + self.extra() if self.extra is not None else ''}", end="", file=self.stream, flush=True)

    def close(self) -> None:
        print(file=self.stream)


def run_teleoperate(cfg: TeleoperateConfig) -> int:
    from robot_learning.hardware.teleop import EpisodeEvent
    from robot_learning.rig import open_rig
    from robot_learning.runtime.sources import TeleopSource

    rig = open_rig(cfg.rig, quiet=cfg.json)
    record, task, teleop = cfg.session.record, cfg.rig.task, cfg.rig.teleop
    recorder = None
    t0 = time.perf_counter()
    try:
        tracking = TrackingSink()
        sinks = [tracking] + ([] if cfg.json else [StatusLine(rig, tracking)])
        if record is not None:
            recorder = _open_recorder(record, rig)
            sinks.insert(0, recorder)
        if rig.env is not None:
            rig.env.reset(0)
        events: list = []

        def should_stop(tick) -> bool:
            events.extend(rig.teleop.poll_events())
            return EpisodeEvent.STOP in events

        # Plain teleop: every tick is the human's, none is a takeover from a policy.
        runtime = rig.runtime(TeleopSource(rig.teleop, report_intervention=False), sinks, task=task)
        if recorder is not None:
            recorder.start_episode()
        episode = None
        try:
            stats = runtime.run(duration_s=cfg.session.duration_s, should_stop=should_stop)
        except (DeviceError, SystemExit, KeyboardInterrupt) as e:
            # The runtime held the robot; keep what was recorded up to a fault or a SIGTERM, marked as such.
            if recorder is not None:
                why = f"a device fault: {e}" if isinstance(e, DeviceError) else f"signal (exit {e})"
                recorder.end_episode(keep=True, task=task or "", operator_notes=f"{teleop} teleop; ended by "
                                     f"{why}")
                print(f"\nthe episode up to here is kept in {record}", file=sys.stderr)
            raise
        if recorder is not None:
            rec = recorder.end_episode(keep=True, task=task or "", operator_notes=f"{teleop} teleop")
            episode = None if rec is None else rec.index
    finally:
        try:
            if recorder is not None:
                recorder.shutdown()
        finally:
            rig.close()
    summary = {"robot": cfg.rig.robot, "teleop": teleop, "wall_s": round(time.perf_counter() - t0, 2),
               **stats.summary(), **tracking.summary(), "final_joint_pos_rad": tracking.final_joint_pos_rad}
    for key, device in (("bus", rig.robot), ("teleop_bus", rig.teleop)):  # the follower's, the leader arm's
        st = getattr(getattr(device, "bus", None), "stats", None)
        if st is not None:
            summary[key] = {"transactions": st.transactions, "retries": st.retries, "errors": st.errors,
                            "failures": st.failures, "late_replies": st.late_replies,
                            "errors_by_kind": dict(st.errors_by_kind), "last_error": st.last_error,
                            "try_timeout_ms": round(st.try_timeout_s * 1e3, 1)}
    if record is not None:
        summary["dataset"], summary["episode"] = str(record), episode
    print(json.dumps(summary) if cfg.json else "  ".join(f"{k} {v}" for k, v in summary.items()))
    return 0


def _open_recorder(path: Path, rig):
    from robot_learning.datasets.recorder import Recorder, open_store, schema_for

    schema = schema_for(rig.robot.state_features, tuple(rig.sensors), rig.robot.action_features, rig.rate_hz,
                        rig.info)
    return Recorder(open_store(path, schema), tuple(rig.sensors))
