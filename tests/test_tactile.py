"""GelSight Mini / DIGIT tactile sensors and their OpenCV processing, on synthetic tactile video.

The synthetic gel: a textured, vignetted background with a grid of dark markers; a "press" is a
disc that brightens and shades the gel and pushes the markers radially by a known amount. The
video goes through the real sensor class and the real OpenCV camera driver (lossless FFV1 file).
"""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from robot_learning.errors import ConfigError, DeviceFaultError
from robot_learning.hardware.opencv_camera import EndOfStreamError
from robot_learning.hardware.tactile import (
    Digit,
    DigitConfig,
    GelSightMini,
    GelSightMiniConfig,
    discover_tactile_sensors,
    tactile_features,
)
from robot_learning.hardware.tactile_processing import (
    ContactParams,
    MarkerParams,
    MarkerTracker,
    TactileProcessor,
    crop_box_px,
    crop_resize,
    detect_contact,
    detect_markers,
    difference,
    mean_frame,
    order_markers,
)


# --- synthetic gel ---------------------------------------------------------------------------
class Gel:
    """Frames of a w x h gel image, RGB uint8. ``keep`` = (x0, y0, x1, y1) px is the part inside
    the housing (outside it is dark); markers sit on a grid inside it. A press at ``c`` with radius
    ``r`` moves marker p by amp * (p - c) / r * exp(-|p - c|^2 / (2 (1.2 r)^2)) px."""

    def __init__(self, w, h, keep, spacing, marker_r, noise=1.5, seed=0):
        rng = np.random.default_rng(seed)
        self.w, self.h, self.keep, self.marker_r, self.noise = w, h, keep, marker_r, noise
        self.rng = np.random.default_rng(seed + 1)
        self.yy, self.xx = np.mgrid[0:h, 0:w].astype(np.float32)
        tex = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3)
        tex *= 6.0 / tex.std()
        vign = 30 * (((self.xx - w / 2) / w) ** 2 + ((self.yy - h / 2) / h) ** 2)
        self.base = np.stack([150 - vign + tex, 140 - vign + tex, 160 - vign + tex], -1)
        x0, y0, x1, y1 = keep
        gx = np.arange(x0 + spacing * 0.75, x1 - spacing * 0.5, spacing)
        gy = np.arange(y0 + spacing * 0.75, y1 - spacing * 0.5, spacing)
        self.markers = np.array([(x, y) for y in gy for x in gx], np.float32)

    def disp(self, c, r, amp):
        if r <= 0:
            return np.zeros_like(self.markers)
        d = self.markers - np.asarray(c, np.float32)
        return (amp * d / r * np.exp(-(d ** 2).sum(1, keepdims=True) / (2 * (1.2 * r) ** 2))).astype(np.float32)

    def frame(self, c=(0.0, 0.0), r=0.0, amp=0.0, hide=()):
        img = self.base.copy()
        if r > 0:
            dx, dy = self.xx - c[0], self.yy - c[1]
            alpha = np.clip(r - np.sqrt(dx * dx + dy * dy) + 0.5, 0, 1)[..., None]
            img += alpha * np.stack([40 + 25 * dx / r, 40 + 25 * dy / r, 40 - 20 * dx / r], -1)
        dark = np.zeros((self.h, self.w), np.float32)
        R = self.marker_r
        for i, (x, y) in enumerate(self.markers + self.disp(c, r, amp)):
            if i in hide:
                continue
            xs = slice(max(int(x - R - 2), 0), min(int(x + R + 3), self.w))
            ys = slice(max(int(y - R - 2), 0), min(int(y + R + 3), self.h))
            a = np.clip(R - np.hypot(self.xx[ys, xs] - x, self.yy[ys, xs] - y) + 0.5, 0, 1)
            dark[ys, xs] = np.maximum(dark[ys, xs], a)
        img *= (1 - 0.7 * dark)[..., None]
        x0, y0, x1, y1 = self.keep
        housing = np.ones((self.h, self.w), bool)
        housing[y0:y1, x0:x1] = False
        img[housing] = 20
        img += self.rng.normal(0, self.noise, img.shape)
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_video(path, frames, fps, fourcc="FFV1"):
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert wr.isOpened()
    for f in frames:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()


# The GelSight Mini default crop keeps x 60..340, y 45..255 of a 400 x 300 file (280 x 210 px),
# then resizes to 320 x 240: output = (input - origin + 0.5) * 8/7 - 0.5.
W_IN, H_IN, KEEP, SCALE = 400, 300, (60, 45, 340, 255), 320 / 280
N_STILL, N_PRESS, N_RELEASE, N_REF = 8, 14, 4, 5
HIDDEN_FROM = 8  # press frame from which the markers nearest the press vanish


def to_out(p):
    return (np.asarray(p, np.float64) - np.array(KEEP[:2]) + 0.5) * SCALE - 0.5


@pytest.fixture(scope="module")
def press_frames():
    gel = Gel(W_IN, H_IN, KEEP, spacing=21.0, marker_r=2.8)
    frames = [gel.frame() for _ in range(N_STILL)]
    truth = [None] * N_STILL
    for k in range(N_PRESS):
        r = 8.0 + 2.0 * k
        c = (190.0 + 1.5 * k, 140.0 + 0.7 * k)
        near = np.argsort(((gel.markers - c) ** 2).sum(1))[:3]
        hide = tuple(int(i) for i in near) if k >= HIDDEN_FROM else ()
        frames.append(gel.frame(c, r, 0.08 * r, hide))
        truth.append({"c": c, "r": r, "disp": gel.disp(c, r, 0.08 * r), "hide": hide})
    frames += [gel.frame() for _ in range(N_RELEASE)]
    truth += [None] * N_RELEASE
    return frames, gel, truth


@pytest.fixture(scope="module")
def press_video(press_frames, tmp_path_factory):
    """Lossless (FFV1) video of the press."""
    frames, gel, truth = press_frames
    path = tmp_path_factory.mktemp("tactile") / "press.avi"
    write_video(path, frames, fps=25.0)
    return path, gel, truth


def read_all(sensor):
    out = []
    while True:
        try:
            s = sensor.read(timeout_s=2.0)
        except EndOfStreamError:
            return out
        sensor.features.check(s.value)
        out.append(s)


# --- the sensor on the video file ------------------------------------------------------------
@pytest.mark.parametrize("fourcc", ["FFV1", "MJPG"])  # lossless, and JPEG as UVC cameras stream
def test_gelsight_mini_on_press_video(press_frames, fourcc, tmp_path):
    frames, gel, truth = press_frames
    path = tmp_path / "press.avi"
    write_video(path, frames, 25.0, fourcc)
    cfg = GelSightMiniConfig(source=str(path), reference_frames=N_REF, realtime=False, publish_difference=True)
    with GelSightMini(cfg) as sensor:
        assert sensor.camera.config.fps is None and sensor.camera.config.width is None  # files: own size/rate
        samples = read_all(sensor)
        assert sensor.ended
        n_found = sensor.n_markers
    assert len(samples) == N_STILL - N_REF + N_PRESS + N_RELEASE
    assert n_found == len(gel.markers)
    t = [s.t_capture_ns for s in samples]
    assert all(b > a for a, b in zip(t, t[1:]))
    assert abs((t[1] - t[0]) * 1e-9 - 1 / 25.0) < 1e-3  # the file's presentation times, 25 fps

    name, mm = "gelsight", cfg.mm_per_px
    v0 = samples[0].value
    assert v0[f"{name}_image"].shape == (240, 320, 3) and v0[f"{name}_difference"].dtype == np.float32
    # markers: reference positions (matched to the truth by nearest neighbour) to 0.2 px
    ref = v0[f"{name}_marker_ref_px"][:n_found]
    true_ref = to_out(gel.markers)
    d = np.hypot(*(ref[:, None, :] - true_ref[None]).transpose(2, 0, 1))
    match = d.argmin(axis=1)
    assert len(set(match)) == n_found and d.min(axis=1).max() < 0.2

    areas, errs = [], {"area": [], "centroid": [], "disp": []}
    for s, tr in zip(samples, truth[N_REF:]):
        v = s.value
        area = float(v[f"{name}_contact_area_mm2"][0])
        valid = v[f"{name}_marker_valid"][:n_found].astype(bool)
        disp = v[f"{name}_marker_disp_px"][:n_found]
        assert not v[f"{name}_marker_valid"][n_found:].any()
        if tr is None:  # no contact: before the press, and after release
            assert area == 0.0 and not v[f"{name}_contact_centroid_mm"].any()
            assert valid.all() and np.abs(disp).max() < 0.2
            continue
        true_area_mm2 = np.pi * (tr["r"] * SCALE) ** 2 * mm ** 2
        errs["area"].append(area / true_area_mm2 - 1)
        centroid_px = v[f"{name}_contact_centroid_mm"] / mm + np.array([319 / 2, 239 / 2])
        errs["centroid"].append(np.hypot(*(centroid_px - to_out(tr["c"]))))
        areas.append(area)
        hidden = np.isin(match, tr["hide"])
        assert not valid[hidden].any() and valid[~hidden].all()
        errs["disp"].append(np.abs(disp[valid] - tr["disp"][match[valid]] * SCALE).max())
    assert all(b > a for a, b in zip(areas, areas[1:]))  # grows with the press
    assert np.abs(errs["area"]).max() < 0.2
    assert max(errs["centroid"]) < 2.0
    assert max(errs["disp"]) < 1.0
    print(f"{fourcc}: area error max {np.abs(errs['area']).max():.3f}, centroid error max "
          f"{max(errs['centroid']):.2f} px, marker displacement error max {max(errs['disp']):.3f} px")


def test_streaming_in_real_time_uses_file_times(press_video):
    path, _, _ = press_video
    with GelSightMini(source=str(path), reference_frames=N_REF, publish_markers=False) as sensor:
        got = [sensor.async_read(timeout_s=1.0) for _ in range(6)]
        assert sensor.is_streaming
    dt = np.diff([s.t_capture_ns for s in got]) * 1e-9
    assert np.all(dt > 0) and np.allclose(dt[dt < 0.06], 0.04, atol=2e-3)  # 25 fps, frames may be skipped
    assert "gelsight_marker_disp_px" not in got[0].value


def test_digit_crop_resize_and_outputs(press_video):
    path, _, _ = press_video
    cfg = DigitConfig(source=str(path), crop_box=(0.1, 0.2, 0.9, 0.8), output_size=(160, 120), reference_frames=3,
                      realtime=False, publish_difference=True)
    assert [s.name for s in tactile_features(cfg)] == ["digit_image", "digit_difference", "digit_contact_area_mm2",
                                                       "digit_contact_centroid_mm"]
    with Digit(cfg) as sensor:
        s = sensor.read()
        assert s.value["digit_image"].shape == (120, 160, 3)
        assert s.value["digit_difference"].shape == (120, 160, 3)
        assert sensor.n_markers == 0
        sensor.reset_reference()
        assert sensor.read().value["digit_contact_area_mm2"][0] == 0.0
    portrait = DigitConfig(source=str(path), rotation_deg=270, output_size=(240, 320), reference_frames=2,
                           realtime=False, publish_contact=False)
    with Digit(portrait) as sensor:
        assert sensor.camera.config.rotation_deg == 270
        assert sensor.read().value["digit_image"].shape == (320, 240, 3)
    assert crop_box_px((300, 400), (0.1, 0.2, 0.9, 0.8)) == (40, 60, 360, 240)


def test_defaults_features_and_errors(monkeypatch):
    g, d = GelSightMiniConfig(), DigitConfig()
    assert (g.output_size, g.fps, g.crop_box) == ((320, 240), 25.0, (0.15, 0.15, 0.85, 0.85))
    assert (d.capture_size, d.fps, d.publish_markers) == ((320, 240), 60.0, False)
    f = GelSightMini().features  # readable while disconnected
    assert f["gelsight_marker_disp_px"].shape == (g.markers.max_markers, 2)
    assert f["gelsight_contact_area_mm2"].units == "mm2" and f["gelsight_image"].kind.value == "tactile"
    for bad in (dict(crop_box=(0.5, 0, 0.4, 1)), dict(output_size=(4, 4)), dict(reference_frames=0),
                dict(mm_per_px=0), dict(name="Bad Name"), dict(publish_image=False, publish_contact=False,
                                                              publish_markers=False)):
        with pytest.raises(ConfigError):
            GelSightMiniConfig(**bad)
    with pytest.raises(ConfigError):
        ContactParams(threshold=0)
    with pytest.raises(ConfigError):
        MarkerParams(min_area_px=10, max_area_px=5)
    monkeypatch.setattr("robot_learning.hardware.tactile.discover_tactile_sensors", lambda: [])
    with pytest.raises(DeviceFaultError, match="no GelSight Mini found"):
        GelSightMini().connect()


# --- discovery -------------------------------------------------------------------------------
def test_discovery_here_and_on_a_fake_sysfs(tmp_path):
    assert discover_tactile_sensors() == []
    sys_root, by_id = tmp_path / "video4linux", tmp_path / "by-id"
    by_id.mkdir()
    for node, name, index in [("video0", "Integrated Camera", 0), ("video1", "USB2.0 Digital Camera", 0),
                              ("video2", "GelSight Mini", 0),
                              ("video3", "GelSight Mini", 1), ("video4", "DIGIT: DIGIT", 0)]:
        (sys_root / node).mkdir(parents=True)
        (sys_root / node / "name").write_text(name + "\n")
        (sys_root / node / "index").write_text(f"{index}\n")
    os.symlink("../../video4", by_id / "usb-Facebook_DIGIT_D20001-video-index0")
    found = discover_tactile_sensors(sys_root, by_id)
    assert [(d["model"], d["device"], d["serial"]) for d in found] == [
        ("gelsight_mini", "/dev/video2", None), ("digit", "/dev/video4", "D20001")]
    assert found[1]["by_id"].endswith("usb-Facebook_DIGIT_D20001-video-index0")
    assert discover_tactile_sensors(tmp_path / "missing", tmp_path / "missing") == []


def test_import_does_not_load_opencv():
    code = "import sys, robot_learning.hardware.tactile, robot_learning.hardware.tactile_processing; " \
           "print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- processing units ------------------------------------------------------------------------
def test_crop_resize_reference_and_difference():
    img = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    assert crop_resize(img, (0.25, 0.1, 0.75, 0.9)).shape == (80, 100, 3)
    assert crop_resize(img, (0.25, 0.1, 0.75, 0.9), (50, 40)).shape == (40, 50, 3)
    assert crop_resize(img, size_wh=(400, 200)).shape == (200, 400, 3)
    with pytest.raises(ConfigError):
        crop_box_px(img.shape, (0, 0, 1.5, 1))
    a, b = np.full((4, 5, 3), 100, np.uint8), np.full((4, 5, 3), 110, np.uint8)
    ref = mean_frame([a, b])
    assert ref.dtype == np.float32 and np.all(ref == 105)
    dif = difference(np.zeros_like(a), ref)
    assert dif.dtype == np.float32 and np.all(dif == -105)
    with pytest.raises(ConfigError):
        mean_frame([])
    with pytest.raises(ConfigError):
        difference(np.zeros((3, 5, 3), np.uint8), ref)


def _disc(h, w, c, r, value):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.where(np.hypot(xx - c[0], yy - c[1]) <= r, value, 0.0)


def test_detect_contact_area_centroid_and_ring():
    rng = np.random.default_rng(0)
    h, w = 240, 320
    noise = rng.normal(0, 2, (h, w, 3)).astype(np.float32)
    none = detect_contact(noise, 0.05)
    assert not none.in_contact and none.area_px == 0 and none.area_mm2 == 0.0
    diff = noise + _disc(h, w, (120.3, 100.7), 30, 35.0)[..., None].astype(np.float32)
    ct = detect_contact(diff, 0.05)
    assert ct.in_contact and abs(ct.area_px / (np.pi * 900) - 1) < 0.05
    assert np.hypot(*(ct.centroid_px - (120.3, 100.7))) < 0.5
    assert ct.area_mm2 == pytest.approx(ct.area_px * 0.05 ** 2)
    assert np.allclose(ct.centroid_mm, (ct.centroid_px - ((w - 1) / 2, (h - 1) / 2)) * 0.05, atol=1e-5)
    # a ring (the flat centre of an indenter barely changes the image) is filled
    ring = _disc(h, w, (160, 120), 40, 35.0) - _disc(h, w, (160, 120), 25, 35.0)
    filled = detect_contact(noise + ring[..., None].astype(np.float32), 0.05)
    assert abs(filled.area_px / (np.pi * 1600) - 1) < 0.1
    assert detect_contact(noise + ring[..., None].astype(np.float32), 0.05,
                          ContactParams(fill_holes=False)).area_px < 0.8 * filled.area_px
    # a speck smaller than min_area_px is no contact; a global lighting shift is ignored
    assert not detect_contact(noise + _disc(h, w, (50, 50), 2, 80.0)[..., None].astype(np.float32), 0.05).in_contact
    assert not detect_contact(noise + 20.0, 0.05).in_contact


def test_markers_detect_track_lose_and_reacquire():
    gel = Gel(200, 160, (0, 0, 200, 160), spacing=20.0, marker_r=3.0, noise=1.0)
    ref = gel.frame()
    pos = detect_markers(ref)
    assert len(pos) == len(gel.markers)
    assert np.abs(pos - order_markers(gel.markers)).max() < 0.15  # same (row-major) order, sub-pixel
    assert len(detect_markers(ref, MarkerParams(max_markers=10))) == 10
    trk = MarkerTracker(pos, max_step_px=4.0)
    shift = np.array([1.3, -0.6], np.float32)
    gel.markers = gel.markers + shift
    m = trk.update(detect_markers(gel.frame(hide=(0, 5))))
    assert m.valid.sum() == len(pos) - 2 and not m.valid[[0, 5]].any()
    assert np.abs(m.disp_px[m.valid] - shift).max() < 0.15 and not m.disp_px[~m.valid].any()
    m = trk.update(detect_markers(gel.frame()))  # re-acquired near their last known position
    assert m.valid.all() and np.abs(m.disp_px - shift).max() < 0.15
    gel.markers = gel.markers + np.array([8.0, 0.0], np.float32)  # farther than max_step_px, toward a neighbour
    assert not trk.update(detect_markers(gel.frame())).valid.all()
    ref_p, disp_p, valid_p = m.padded(100)
    assert ref_p.shape == disp_p.shape == (100, 2) and valid_p.dtype == np.uint8 and valid_p[len(pos):].sum() == 0


def test_processor_needs_reference_and_measures_press():
    gel = Gel(320, 240, (0, 0, 320, 240), spacing=24.0, marker_r=3.0)
    proc = TactileProcessor(0.06)
    with pytest.raises(ConfigError):
        proc.process(gel.frame())
    proc.set_reference([gel.frame() for _ in range(4)])
    res = proc.process(gel.frame((160, 120), 30.0, 2.0))
    assert res.contact.in_contact and abs(res.contact.area_px / (np.pi * 900) - 1) < 0.1
    assert res.markers.valid.all() and proc.n_markers == len(gel.markers)
    with pytest.raises(ConfigError):
        TactileProcessor(0.0)
