"""A RealSense recording made here with librealsense's software device: colour + depth sensors, known frames,
known intrinsics, known timestamps, written as a rosbag2 (.db3) file that ``RealSenseCamera`` plays back through
the real pyrealsense2 pipeline."""

import gc
import time

import numpy as np
import pyrealsense2 as rs

CW, CH, DW, DH, FPS, N = 64, 48, 32, 24, 30, 10
COLOR_K = dict(fx=50.0, fy=51.0, ppx=32.0, ppy=24.0, model="brown_conrady", coeffs=(0.05, -0.02, 0.001, 0.001, 0.0))
DEPTH_K = dict(fx=25.0, fy=25.5, ppx=16.0, ppy=12.0, model="none", coeffs=(0.0, 0.0, 0.0, 0.0, 0.0))
DEPTH_UNITS = 0.001


def f32(k: dict) -> dict:
    """librealsense stores intrinsics as float32."""
    return {a: (tuple(float(np.float32(c)) for c in v) if a == "coeffs" else v) for a, v in k.items()}


def color_frame(i: int) -> np.ndarray:
    img = np.empty((CH, CW, 3), np.uint8)
    img[...] = ((10 * i) % 256, (200 - 10 * i) % 256, 128)
    img[:4, :4] = (255, 0, 0)  # RGB order check
    return img


def depth_m(i: int) -> float:
    return 1.0 + 0.01 * i


def _intr(w, h, k):
    intr = rs.intrinsics()
    intr.width, intr.height, intr.fx, intr.fy, intr.ppx, intr.ppy = w, h, k["fx"], k["fy"], k["ppx"], k["ppy"]
    intr.model = getattr(rs.distortion, k["model"])
    intr.coeffs = list(k["coeffs"])
    return intr


def _stream(kind, uid, w, h, fmt, bpp, k):
    s = rs.video_stream()
    s.type, s.index, s.uid, s.width, s.height, s.fps, s.bpp, s.fmt = kind, 0, uid, w, h, FPS, bpp, fmt
    s.intrinsics = _intr(w, h, k)
    return s


def record(path, n: int | None = None, depth_lag_ms: float = 0.0) -> list[float]:
    """n (default N) colour + depth frames at FPS into a rosbag2 (.db3) file; returns their timestamps (ms,
    global time domain). depth_lag_ms: depth frames stamped that much later than their colour frames."""
    dev = rs.software_device()
    dev.register_info(rs.camera_info.name, "Synthetic D435")
    dev.register_info(rs.camera_info.serial_number, "000111222")
    cs, ds = dev.add_sensor("RGB Camera"), dev.add_sensor("Stereo Module")
    cp = cs.add_video_stream(_stream(rs.stream.color, 0, CW, CH, rs.format.rgb8, 3, COLOR_K), True)
    dp = ds.add_video_stream(_stream(rs.stream.depth, 1, DW, DH, rs.format.z16, 2, DEPTH_K), True)
    ds.add_read_only_option(rs.option.depth_units, DEPTH_UNITS)
    ext = rs.extrinsics()
    ext.rotation, ext.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]  # the default is all zeros
    dp.register_extrinsics_to(cp, ext)
    rec = rs.recorder(str(path), dev)
    cs.open(cp)
    ds.open(dp)
    n = N if n is None else n
    q = rs.frame_queue(4 * n)
    cs.start(q)
    ds.start(q)
    t0_ms = time.time() * 1e3 - 3_600_000.0  # recorded an hour ago
    stamps, keep = [], []
    for i in range(n):
        ts = t0_ms + i * 1000.0 / FPS
        for sensor, prof, pixels, bpp in ((cs, cp, color_frame(i), 3),
                                          (ds, dp, np.full((DH, DW), round(depth_m(i) / DEPTH_UNITS), np.uint16), 2)):
            f = rs.software_video_frame()
            f.pixels, f.bpp, f.stride = pixels, bpp, pixels.shape[1] * bpp
            f.timestamp, f.domain, f.frame_number = ts + (depth_lag_ms if sensor is ds else 0.0), rs.timestamp_domain.global_time, i
            f.profile = prof.as_video_stream_profile()
            if sensor is ds:
                f.depth_units = DEPTH_UNITS
            keep.append(pixels)
            sensor.on_video_frame(f)
        stamps.append(ts)
        time.sleep(1.0 / FPS)
    for s in (cs, ds):
        s.stop()
        s.close()
    del rec, q, cs, ds, cp, dp, dev
    gc.collect()
    return stamps
