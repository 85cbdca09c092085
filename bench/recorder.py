"""Recorder under load, in real time: three cameras at 640x480 / 30 Hz plus robot state at 500 Hz.

The control runtime runs the emulated arm at 500 Hz on the real clock, with three camera devices
whose capture threads deliver 640x480 frames at 30 Hz (frames rendered once from the MuJoCo lift
scene, with a moving overlay so no two are alike), and the recorder as a sink writing JPEG frames
and state to a zarr store. Prints dropped ticks and frames, CPU use and MB per minute.

    .venv/bin/python bench/recorder.py [--duration-s 60] [--json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np

from robot_learning.core.clock import default_clock
from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
from robot_learning.datasets.recorder import Recorder, schema_for
from robot_learning.datasets.store import EpisodeStore
from robot_learning.hardware.emulated_arm import EmulatedArm
from robot_learning.hardware.sensor import Camera
from robot_learning.runtime.control import ControlRuntime, RuntimeConfig
from robot_learning.runtime.sources import FunctionSource

W, H, FPS = 640, 480, 30.0


def render_frames(n: int = 24) -> list[np.ndarray]:
    from robot_learning.sim.env import SimEnv, SimEnvConfig
    from robot_learning.sim.experts import make_expert

    env = SimEnv(SimEnvConfig(task="lift", cameras=("front",), image_size=96))
    from robot_learning.sim.sensors import SimCamera
    cam = SimCamera(env.world, "front", W, H, fps=None, name="big")
    cam.connect()
    obs = env.reset(0)
    expert = make_expert(env)
    expert.reset(obs, 0)
    frames = []
    for _ in range(n):
        obs, *_ = env.step(expert.act(obs))
        frames.append(np.array(cam.read().value["big"]))
    cam.disconnect()
    env.close()
    return frames


class ReplayCamera(Camera):
    """A camera device whose capture thread delivers pre-rendered frames at a fixed rate."""

    def __init__(self, name: str, frames: list[np.ndarray], fps: float, clock):
        super().__init__(name, clock, buffer_len=16)
        self.frames, self.fps = frames, fps
        self._features = FeatureSet([FeatureSpec(name, (H, W, 3), "uint8", FeatureKind.RGB, "srgb")])
        self._next = 0
        self._k = 0

    @property
    def features(self) -> FeatureSet:
        return self._features

    def _connect(self) -> None:
        self._next = self.clock.now_ns()

    def _disconnect(self) -> None:
        pass

    def _capture(self):
        self._next += int(1e9 / self.fps)
        self.clock.sleep_until_ns(self._next)
        f = self.frames[self._k % len(self.frames)].copy()
        x = (self._k * 7) % (W - 40)
        f[200:240, x:x + 40] = (255, 255, 0)  # moving overlay: no two frames alike
        self._k += 1
        return {self.name: f}, self.clock.now_ns()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration-s", type=float, default=60.0)
    ap.add_argument("--rate-hz", type=float, default=500.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / "recorder_bench.zarr"
    if path.exists():
        shutil.rmtree(path)
    frames = render_frames()
    clock = default_clock()
    cams = tuple(ReplayCamera(f"cam{i}", frames, FPS, clock) for i in range(3))
    load0 = os.getloadavg()
    with EmulatedArm(clock=clock) as arm:
        for c in cams:
            c.connect()
            c.start_streaming()
        hold = arm.hold()
        schema = schema_for(arm.state_features, cams, arm.action_features, args.rate_hz, {"name": "emulated"})
        store = EpisodeStore.create(path, schema)
        rec = Recorder(store, cams, queue_size=1024, flush_every=256)
        rt = ControlRuntime(arm, FunctionSource(lambda obs: hold, arm.action_features, clock),
                            RuntimeConfig(rate_hz=args.rate_hz, max_sensor_age_s=0.1), sensors=cams, sinks=[rec],
                            clock=clock)
        time.sleep(0.2)
        cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        rec.start_episode()
        stats = rt.run(duration_s=args.duration_s)
        t_end = time.perf_counter()
        ep = rec.end_episode(task="bench")
        flush_s = time.perf_counter() - t_end
        cpu1, wall1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        rec.shutdown()
        captured = {c.name: c.captured for c in cams}
        for c in cams:
            c.disconnect()
    cpu_s = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    wall = wall1 - wall0
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    stored = {c.name: ep.streams[c.name][1] - ep.streams[c.name][0] for c in cams}
    pe = stats.loop.error_percentiles_ms()
    result = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
        "cpu_count": os.cpu_count(), "loadavg_start": load0, "duration_s": args.duration_s, "rate_hz": args.rate_hz,
        "ticks": stats.loop.ticks, "ticks_stored": ep.length, "dropped_ticks": ep.dropped.get("ticks", 0),
        "overruns": stats.loop.overruns, "missed_ticks": stats.loop.missed_ticks, "period_error_ms": pe,
        "frames_stored": stored, "frames_per_camera_expected": round(args.duration_s * FPS),
        "cpu_percent_of_one_core": round(100 * cpu_s / wall, 1), "flush_after_stop_s": round(flush_s, 2),
        "dataset_mb": round(size / 1e6, 1), "mb_per_minute": round(size / 1e6 / (args.duration_s / 60), 1),
        "captured_per_camera": captured,
    }
    (out_dir / "recorder.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['date']}  {result['machine']}  cpus={result['cpu_count']}  load={load0}")
    print(f"{args.duration_s:g} s at {args.rate_hz:g} Hz: {stats.loop.ticks} ticks, {ep.length} stored, "
          f"{result['dropped_ticks']} dropped; {stats.loop.overruns} overruns, {stats.loop.missed_ticks} missed; "
          f"period error p99 {pe['p99']:.3f} ms")
    print(f"frames stored per camera: {stored} (expected ~{result['frames_per_camera_expected']})")
    print(f"CPU: {result['cpu_percent_of_one_core']}% of one core; writer finished {flush_s:.2f} s after the stop")
    print(f"dataset: {result['dataset_mb']} MB, {result['mb_per_minute']} MB/min")


if __name__ == "__main__":
    main()
