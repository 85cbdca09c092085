"""OpenCVCamera on synthetic video files (lossless FFV1, frame counter in the pixels) and on a
stand-in for cv2.VideoCapture that behaves like a V4L2 device."""

import fractions
import os
import time

import numpy as np
import pytest

from robot_learning.core.clock import FakeClock, MonotonicClock
from robot_learning.errors import ConfigError, DeviceFaultError, DeviceTimeoutError
from robot_learning.hardware import opencv_camera as oc
from robot_learning.hardware.opencv_camera import (EndOfStreamError, OpenCVCamera, OpenCVCameraConfig,
                                                   find_opencv_cameras)
from support.host_load import wakeup_probe

W, H, FPS = 64, 48, 30
RED = (255, 0, 0)


def frame(i: int) -> np.ndarray:
    """RGB: pure red, the counter i in 8 black/white 8x8 blocks along the top, a green corner."""
    img = np.zeros((H, W, 3), np.uint8)
    img[...] = RED
    for b in range(8):
        img[:8, 8 * b:8 * b + 8] = 255 if (i >> b) & 1 else 0
    img[-6:, :6] = (0, 255, 0)
    return img


def counter(img: np.ndarray) -> int:
    return sum(1 << b for b in range(8) if img[:8, 8 * b:8 * b + 8].mean() > 127)


def write_video(path, n: int, fps: int = FPS) -> None:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=fps)
        s.width, s.height, s.pix_fmt = W, H, "bgr0"
        s.time_base = fractions.Fraction(1, fps)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(frame(i), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    paths = {n: d / f"counter_{n}.mkv" for n in (5, 24)}
    for n, p in paths.items():
        write_video(p, n)
    return paths


def test_file_plays_in_real_time_in_order_rgb(video):
    cam = OpenCVCamera(OpenCVCameraConfig(source=str(video[24]), name="front"), buffer_len=64)
    assert cam.features["front"].shape == (H, W, 3)  # probed from the file while disconnected
    with wakeup_probe(period_s=0.005) as probe:
        with cam:
            assert cam.timestamp_source == "file_pts" and cam.mode["fps"] == pytest.approx(FPS)
            t0 = time.monotonic()
            first = cam.async_read(timeout_s=1.0)
            assert cam.read_latest(max_age_s=0.5).seq >= first.seq
            assert cam.read_aligned(first.t_capture_ns, max_age_s=1e-3).seq == first.seq
            samples = [first]
            while len(samples) < 24:
                samples += cam.samples_after(samples[-1].seq)
                time.sleep(0.005)
            wall = time.monotonic() - t0
    host_late_ms = 1e3 * float(np.percentile(probe, 90)) if probe else 0.0
    imgs = [s.value["front"] for s in samples]
    assert [counter(im) for im in imgs] == list(range(24))
    assert all(im.shape == (H, W, 3) and im.dtype == np.uint8 for im in imgs)
    assert tuple(imgs[0][20, 30]) == RED and tuple(imgs[0][-1, 0]) == (0, 255, 0)
    np.testing.assert_array_equal(imgs[7], frame(7))
    t = np.array([s.t_capture_ns for s in samples])
    dt_ms = np.diff(t) / 1e6
    assert np.all(dt_ms > 0)
    np.testing.assert_allclose(dt_ms, 1000 / FPS, atol=1.0)  # the container's presentation times
    late_ms = np.array([s.t_receive_ns - s.t_capture_ns for s in samples]) / 1e6
    # handed out at its time: within 15 ms, plus how late this host wakes a thread right now (~0.1 ms quiet)
    print(f"file playback: interval {dt_ms.mean():.2f} +- {dt_ms.std():.2f} ms, "
          f"hand-out lateness p50 {np.median(late_ms):.2f} ms, max {late_ms.max():.2f} ms, "
          f"host wake-up lateness p90 {host_late_ms:.2f} ms")
    assert np.all(late_ms >= 0) and np.percentile(late_ms, 90) < 15 + host_late_ms
    assert 23 / FPS - 0.05 < wall < 23 / FPS + 0.5 + late_ms.max() / 1e3   # never ahead of the recording's time


def test_file_timestamps_are_open_time_plus_pts_on_a_fake_clock(video):
    clock = FakeClock(5_000_000_000)
    with OpenCVCamera(OpenCVCameraConfig(source=str(video[5]), name="front"), clock=clock) as cam:
        stamps = [cam.read().t_capture_ns for _ in range(5)]
    assert stamps == [5_000_000_000 + round(i * 1e9 / FPS / 1e6) * 1_000_000 for i in range(5)]


def test_end_of_file_is_end_of_stream(video):
    with OpenCVCamera(OpenCVCameraConfig(source=str(video[5]), name="front", realtime=False)) as cam:
        assert [counter(cam.read().value["front"]) for _ in range(5)] == [0, 1, 2, 3, 4]
        with pytest.raises(EndOfStreamError, match="end of recording .* after 5 frames"):
            cam.read()
        assert cam.ended
    with OpenCVCamera(OpenCVCameraConfig(source=str(video[5]), name="front", realtime=False)) as cam:
        cam.start_streaming()
        deadline = time.monotonic() + 30.0
        while not cam.ended and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [counter(s.value["front"]) for s in cam.samples_after(0)] == [0, 1, 2, 3, 4]
        assert counter(cam.async_read(timeout_s=0.5).value["front"]) == 4  # the newest, not yet handed out
        with pytest.raises(DeviceTimeoutError, match="end of recording"):  # EndOfStreamError is a timeout
            cam.async_read(timeout_s=0.5)
        with pytest.raises(EndOfStreamError):
            cam.read_latest(max_age_s=10.0)


def test_loop_replays_with_increasing_timestamps(video):
    with OpenCVCamera(OpenCVCameraConfig(source=str(video[5]), name="front", realtime=False, loop=True)) as cam:
        samples = [cam.read() for _ in range(12)]
    assert [counter(s.value["front"]) for s in samples] == [0, 1, 2, 3, 4] * 2 + [0, 1]
    dt_ms = np.diff([s.t_capture_ns for s in samples]) / 1e6
    np.testing.assert_allclose(dt_ms, 1000 / FPS, atol=1.0)  # also across the loop


@pytest.mark.parametrize("rot,k", [(90, -1), (180, 2), (270, 1)])
def test_rotation(video, rot, k):
    cfg = OpenCVCameraConfig(source=str(video[5]), name="front", rotation_deg=rot, realtime=False)
    cam = OpenCVCamera(cfg)
    expected = np.rot90(frame(0), k)
    assert cam.features["front"].shape == expected.shape
    with cam:
        np.testing.assert_array_equal(cam.read().value["front"], expected)


def test_bgr_order_on_request(video):
    with OpenCVCamera(OpenCVCameraConfig(source=str(video[5]), color="bgr", realtime=False)) as cam:
        assert tuple(cam.read().value["camera"][20, 30]) == (0, 0, 255)


def test_mode_verification_and_missing_sources(video, tmp_path):
    with pytest.raises(ConfigError, match=r"asked 320x240, video file .* is 64x48"):
        OpenCVCamera(OpenCVCameraConfig(source=str(video[5]), width=320, height=240)).connect()
    with pytest.raises(ConfigError, match=r"asked 60 fps, .* is 30 fps"):
        OpenCVCamera(OpenCVCameraConfig(source=str(video[5]), fps=60)).connect()
    with pytest.raises(ConfigError, match="no such file"):
        OpenCVCamera(OpenCVCameraConfig(source=str(tmp_path / "nope.mp4"))).connect()
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    with pytest.raises(DeviceFaultError, match="cannot open video file"):
        OpenCVCamera(OpenCVCameraConfig(source=str(tmp_path / "junk.mp4"))).connect()
    if not oc.video_nodes():
        for src in (7, "/dev/video7", "/dev/v4l/by-id/usb-none-video-index0"):
            with pytest.raises(DeviceFaultError, match=r"no camera at /dev/.*present: no /dev/video\* devices"):
                OpenCVCamera(OpenCVCameraConfig(source=src)).connect()


def test_config_validation_and_defaults():
    for kw, msg in [({"rotation_deg": 45}, "rotation_deg"), ({"fourcc": "MJPEG"}, "fourcc"),
                    ({"width": 640}, "both or neither"), ({"name": "Front cam"}, "feature name"),
                    ({"color": "hsv"}, "color"), ({"fps": 30, "read_timeout_s": 0.05}, "two frame periods"),
                    ({"backend": "gst"}, "backend")]:
        with pytest.raises(ConfigError, match=msg):
            OpenCVCameraConfig(source=0, **kw)
    with pytest.raises(ConfigError, match="source"):
        OpenCVCameraConfig(source=-1)
    assert OpenCVCameraConfig(source=0, width=1920, height=1080).effective_fourcc() == "MJPG"
    assert OpenCVCameraConfig(source="/dev/video0", width=1280, height=720).effective_fourcc() == "MJPG"
    assert OpenCVCameraConfig(source=0, width=640, height=480).effective_fourcc() is None
    assert OpenCVCameraConfig(source="rec.mp4", width=1920, height=1080).effective_fourcc() is None
    cam = OpenCVCamera(OpenCVCameraConfig(source=0, name="wrist", width=640, height=480, rotation_deg=90))
    assert cam.features["wrist"].shape == (640, 480, 3)
    with pytest.raises(ConfigError, match="width and height"):
        OpenCVCamera(OpenCVCameraConfig(source=0)).features


def test_find_opencv_cameras_returns_quickly():
    t0 = time.monotonic()
    found = find_opencv_cameras(max_index=8)
    assert isinstance(found, list) and time.monotonic() - t0 < 5.0
    if not oc.video_nodes():
        assert found == []


# --- a stand-in V4L2 device ---------------------------------------------------------------
class FakeV4L2:
    """Like cv2.VideoCapture on a V4L2 camera that only does 640x480 YUYV or MJPG at 30 fps."""

    def __init__(self, src, api=None, buffer_ts="monotonic", unplug_after=None, stall_s=0.0):
        import cv2

        self.cv2, self.buffer_ts, self.unplug_after, self.stall_s = cv2, buffer_ts, unplug_after, stall_s
        self.props = {cv2.CAP_PROP_FRAME_WIDTH: 640, cv2.CAP_PROP_FRAME_HEIGHT: 480, cv2.CAP_PROP_FPS: 30.0,
                      cv2.CAP_PROP_FOURCC: float(cv2.VideoWriter_fourcc(*"YUYV")), cv2.CAP_PROP_POS_MSEC: 0.0}
        self.grabs = 0
        self.exposure_ns: list[int] = []

    def isOpened(self):
        return True

    def getBackendName(self):
        return "V4L2"

    def set(self, prop, value):
        c = self.cv2
        if prop == c.CAP_PROP_FOURCC and value in (c.VideoWriter_fourcc(*"YUYV"), c.VideoWriter_fourcc(*"MJPG")):
            self.props[prop] = float(value)
        return True  # other sizes and rates are silently ignored, as many drivers do

    def get(self, prop):
        return self.props.get(prop, -1.0)

    def grab(self):
        self.grabs += 1
        if self.unplug_after is not None and self.grabs > self.unplug_after:
            return False
        time.sleep(1 / 30 + self.stall_s)
        exposure = time.monotonic_ns() - 20_000_000  # exposed 20 ms before delivery
        self.exposure_ns.append(exposure)
        ms = exposure / 1e6 if self.buffer_ts == "monotonic" else time.time() * 1e3
        self.props[self.cv2.CAP_PROP_POS_MSEC] = ms
        return True

    def retrieve(self):
        return True, np.zeros((480, 640, 3), np.uint8)

    def release(self):
        pass


@pytest.fixture
def fake_device(monkeypatch):
    made = {}

    def install(**kw):
        def factory(src, api=None):
            made["cap"] = FakeV4L2(src, api, **kw)
            return made["cap"]
        import cv2
        monkeypatch.setattr(cv2, "VideoCapture", factory)
        real_exists = os.path.exists
        monkeypatch.setattr(oc.os.path, "exists", lambda p: p == "/dev/video3" or real_exists(p))
        return made
    return install


def test_device_uses_v4l2_buffer_timestamps(fake_device):
    made = fake_device()
    cfg = OpenCVCameraConfig(source=3, name="wrist", width=640, height=480, fps=30, warmup_s=0.05)
    with OpenCVCamera(cfg, clock=MonotonicClock()) as cam:
        assert cam.timestamp_source == "v4l2_buffer"
        assert cam.mode["fourcc"] == "YUYV"
        s = cam.read()
        assert abs(s.t_capture_ns - made["cap"].exposure_ns[-1]) < 2_000  # ms double: sub-us rounding
        assert s.value["wrist"].shape == (480, 640, 3)


def test_device_falls_back_to_host_time_when_buffer_times_are_not_monotonic(fake_device):
    made = fake_device(buffer_ts="realtime")
    cfg = OpenCVCameraConfig(source="/dev/video3", width=640, height=480, warmup_s=0.0)
    with OpenCVCamera(cfg) as cam:
        assert cam.timestamp_source == "host_after_grab"
        t_before = time.monotonic_ns()
        s = cam.read()
        t_after = time.monotonic_ns()
        # host time after grab minus one frame period (33.3 ms), not the wall-clock buffer time
        assert t_before - 33_400_000 < s.t_capture_ns < t_after - 33_300_000
        # within 20 ms of the exposure, plus however long a busy host kept the reader from stamping the frame
        # (the grab itself takes one frame period: the rest of the read is that delay)
        assert abs(s.t_capture_ns - made["cap"].exposure_ns[-1]) < 20_000_000 + max(0, t_after - t_before - 33_400_000)


def test_device_that_ignores_the_mode_is_a_config_error(fake_device):
    fake_device()
    with pytest.raises(ConfigError, match=r"asked 1920x1080 MJPG @ 30 fps, camera /dev/video3 gives 640x480 MJPG"):
        OpenCVCamera(OpenCVCameraConfig(source=3, width=1920, height=1080, fps=30)).connect()
    with pytest.raises(ConfigError, match=r"asked 640x480 any format @ 60 fps, .* gives 640x480 YUYV @ 30 fps"):
        OpenCVCamera(OpenCVCameraConfig(source=3, width=640, height=480, fps=60)).connect()


def test_unplugged_and_stalled_devices(fake_device):
    fake_device(unplug_after=3)
    with OpenCVCamera(OpenCVCameraConfig(source=3, warmup_s=0.0)) as cam:
        with pytest.raises(DeviceFaultError, match=r"capture failures in a row.*unplugged"):
            for _ in range(10):
                cam.async_read(timeout_s=1.0)
    fake_device(stall_s=0.3)
    with pytest.raises(DeviceTimeoutError, match=r"within 200.0 ms"):
        OpenCVCamera(OpenCVCameraConfig(source=3, warmup_s=0.0, read_timeout_s=0.2)).connect()
