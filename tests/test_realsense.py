"""RealSenseCamera through the real pyrealsense2 pipeline, replaying a recording made here with
librealsense's software device (colour + depth sensors, known frames, known timestamps)."""

import json
import time

import numpy as np
import pytest

from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware.opencv_camera import EndOfStreamError
from robot_learning.hardware.realsense import (CameraIntrinsics, RealSenseCamera, RealSenseConfig,
                                               find_realsense_cameras)

from support.realsense_recording import (CH, COLOR_K, CW, DEPTH_K, DEPTH_UNITS, DH, DW, FPS, N, color_frame,
                                        depth_m, f32, record)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rs") / "synthetic.db3"
    stamps = record(path)
    assert path.stat().st_size > 0
    return path, stamps


def collect(cam, n, timeout_s=5.0):
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += cam.samples_after(out[-1].seq if out else 0)
        time.sleep(0.005)
    return out


def test_playback_one_aligned_frameset_per_sample(recording):
    path, stamps = recording
    cam = RealSenseCamera(RealSenseConfig(name="wrist", playback_file=path), buffer_len=2 * N)
    assert cam.features.names == ("wrist_rgb", "wrist_depth")
    assert cam.features["wrist_depth"].shape == (CH, CW)  # aligned to colour, read from the recording
    with cam:
        cam.start_streaming()
        samples = collect(cam, N)
        with pytest.raises(EndOfStreamError, match="end of recording"):
            for _ in range(N + 1):
                cam.async_read(timeout_s=1.0)
        assert cam.timestamp_domain == "global_time" and cam.depth_scale_m == pytest.approx(DEPTH_UNITS)
        assert cam.intrinsics == CameraIntrinsics(CW, CH, **f32(COLOR_K))
        assert cam.depth_intrinsics == CameraIntrinsics(DW, DH, **f32(DEPTH_K))
        assert cam.info["serial"] == "000111222" and cam.info["name"] == "Synthetic D435"
        json.dumps(cam.metadata)
        offset = cam.timestamp_offset_ns
    assert len(samples) == N
    for i, s in enumerate(samples):  # in order, none dropped; colour and depth of one frameset
        rgb, depth = s.value["wrist_rgb"], s.value["wrist_depth"]
        np.testing.assert_array_equal(rgb, color_frame(i))
        assert depth.shape == (CH, CW) and depth.dtype == np.float32
        valid = depth[depth > 0]
        assert valid.size >= 0.8 * depth.size
        np.testing.assert_allclose(valid, depth_m(i), rtol=1e-6)
    t = np.array([s.t_capture_ns for s in samples])
    assert list(t) == [round(ms * 1e6) + offset for ms in stamps]  # the injected times, converted
    assert np.all(np.diff(t) > 0)
    recv = np.array([s.t_receive_ns for s in samples])
    assert np.all(recv - t >= 0) and np.median(recv - t) < 20e6  # the recording is placed at "now"
    rate = (N - 1) / ((recv[-1] - recv[0]) / 1e9)
    assert 20 < rate < 40
    print(f"realsense playback: {rate:.1f} frames/s (recorded {FPS}), capture-to-receive "
          f"p50 {np.median(recv - t) / 1e6:.2f} ms, max {(recv - t).max() / 1e6:.2f} ms")


def test_playback_without_alignment_and_fast(recording):
    """realtime=False replays as fast as frames are read; librealsense's pipeline keeps the newest
    frameset, so a slower reader may miss some, but never gets them out of order or mixed."""
    path, _ = recording
    cfg = RealSenseConfig(name="top", playback_file=path, align_depth_to_color=False, realtime=False)
    seen = []
    with RealSenseCamera(cfg) as cam:
        assert cam.intrinsics.width == CW and cam.depth_intrinsics.width == DW
        try:
            while True:
                s = cam.read(timeout_s=2.0)
                depth, rgb = s.value["top_depth"], s.value["top_rgb"]
                assert depth.shape == (DH, DW) and rgb.shape == (CH, CW, 3)
                i = int(round((float(depth[0, 0]) - 1.0) / 0.01))
                np.testing.assert_allclose(depth, depth_m(i), rtol=1e-6)
                np.testing.assert_array_equal(rgb, color_frame(i))  # same frameset
                seen.append(i)
        except EndOfStreamError:
            pass
    assert len(seen) >= 2 and seen == sorted(set(seen)) and seen[-1] == N - 1
    print(f"realsense fast playback: read {len(seen)}/{N} framesets: {seen}")


def test_colour_and_depth_from_different_moments_are_not_paired(tmp_path):
    """Depth stamped 3 frames after its colour: librealsense's syncer hands out framesets of colour and
    depth from different moments; they are dropped, and any frameset read pairs colour i + 3 with depth i
    (the same capture time)."""
    path = tmp_path / "lagged.db3"
    record(path, n=6, depth_lag_ms=3 * 1000.0 / FPS)
    cfg = RealSenseConfig(name="top", playback_file=path, align_depth_to_color=False, realtime=False)
    seen = []
    with RealSenseCamera(cfg) as cam:
        try:
            while True:
                seen.append(cam.read(timeout_s=2.0))
        except EndOfStreamError:
            pass
        dropped = cam.mismatched_framesets
    print(f"lagged depth: {len(seen)} framesets read, {dropped} dropped as mismatched")
    assert dropped > 0
    for s in seen:  # only same-moment pairs: colour i + 3 with depth i
        i = int(round((float(s.value["top_depth"][0, 0]) - 1.0) / 0.01))
        np.testing.assert_array_equal(s.value["top_rgb"], color_frame(i + 3))


def test_playback_mode_and_file_checks(recording, tmp_path):
    path, _ = recording
    with pytest.raises(ConfigError, match=r"asked color 1280x720 @ any fps, got 64x48 @ 30 fps"):
        RealSenseCamera(RealSenseConfig(playback_file=path, width=1280, height=720)).connect()
    with pytest.raises(ConfigError, match=r"asked depth 32x24 @ 15 fps, got 32x24 @ 30 fps"):
        RealSenseCamera(RealSenseConfig(playback_file=path, depth_width=DW, depth_height=DH, fps=15)).connect()
    cam = RealSenseCamera(RealSenseConfig(playback_file=path, width=CW, height=CH, fps=FPS, depth_width=DW,
                                          depth_height=DH, align_depth_to_color=False))
    assert cam.features["realsense_depth"].shape == (DH, DW)  # from the config, the file not opened
    with cam:
        assert cam.read(timeout_s=2.0).value["realsense_rgb"].shape == (CH, CW, 3)
    with pytest.raises(ConfigError, match="no such file"):
        RealSenseCamera(RealSenseConfig(playback_file=tmp_path / "none.db3")).connect()
    with pytest.raises(ConfigError, match=r"\.bag or \.db3"):
        RealSenseConfig(playback_file=tmp_path / "rec.mp4")
    with pytest.raises(ConfigError, match="width/height"):
        RealSenseConfig(width=640)
    with pytest.raises(ConfigError, match="feature name"):
        RealSenseConfig(name="Wrist")


def test_live_features_and_no_camera_here():
    cam = RealSenseCamera(RealSenseConfig(name="rs_front"))
    assert cam.features["rs_front_rgb"].shape == (480, 640, 3)
    assert cam.features["rs_front_depth"].shape == (480, 640)
    assert RealSenseCamera(RealSenseConfig(enable_depth=False, width=1280, height=720)).features.names == (
        "realsense_rgb",)
    t0 = time.monotonic()
    found = find_realsense_cameras()
    assert isinstance(found, list) and time.monotonic() - t0 < 5.0
    if not found:
        with pytest.raises(DeviceFaultError, match="expected a RealSense camera, connected: none"):
            cam.connect()
        with pytest.raises(DeviceFaultError, match="expected serial 123, connected: none"):
            RealSenseCamera(RealSenseConfig(serial="123")).connect()


def test_live_timestamp_conversion():
    cam = RealSenseCamera(RealSenseConfig())
    now_ms = time.time() * 1e3
    t = cam._to_project_ns(now_ms, "global_time", time.monotonic_ns())
    assert abs(t - time.monotonic_ns()) < 2_000_000  # wall-clock ms onto the monotonic clock
    # hardware clock: the smallest receive - device offset wins
    cam2 = RealSenseCamera(RealSenseConfig())
    assert cam2._to_project_ns(1000.0, "hardware_clock", 5_000_000_000) == 5_000_000_000
    assert cam2._to_project_ns(1033.0, "hardware_clock", 5_040_000_000) == 5_033_000_000
    assert cam2._to_project_ns(1066.0, "hardware_clock", 5_062_000_000) == 5_062_000_000
    assert cam2._to_project_ns(1100.0, "hardware_clock", 5_200_000_000) == 5_096_000_000
