"""Tactile image processing for camera-based tactile sensors (GelSight Mini, DIGIT): pure numpy /
OpenCV, no device access.

All images are (H, W, 3) uint8 RGB at the *processing* resolution (after crop and resize); every
length in pixels refers to that resolution. Coordinates are (x, y) in pixels, x to the right and y
down from the top-left pixel centre.

- ``crop_resize``: cut a box given as fractions of the frame, then resize (border removal).
- ``mean_frame`` / ``difference``: the no-contact reference frame and the signed change from it,
  float32 in 8-bit intensity levels (``frame - reference``, range [-255, 255]).
- ``detect_contact``: contact mask, area (px and mm^2), centroid (px and mm) and a contact flag.
- ``detect_markers`` / ``MarkerTracker``: dark gel markers in the reference and their displacement
  in px, frame to frame by mutual-nearest-neighbour matching within a maximum step.
- ``TactileProcessor``: all of the above behind one ``process(frame)`` call.

OpenCV is imported on first use, not at import (configs can be built without it).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from robot_learning.errors import ConfigError


# --- crop and resize -------------------------------------------------------------------------
def crop_box_px(shape: tuple[int, ...], box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1), end exclusive, of ``box`` = (x0, y0, x1, y1) as fractions of the
    frame width / height in [0, 1]."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ConfigError.expected("tactile crop box (x0, y0, x1, y1)",
                                   "fractions with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1", box)
    h, w = int(shape[0]), int(shape[1])
    px = (int(round(x0 * w)), int(round(y0 * h)), int(round(x1 * w)), int(round(y1 * h)))
    if px[2] - px[0] < 1 or px[3] - px[1] < 1:
        raise ConfigError.expected("tactile crop box", f"at least 1 px of a {w}x{h} frame", box)
    return px


def crop_resize(frame: np.ndarray, box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0),
                size_wh: tuple[int, int] | None = None) -> np.ndarray:
    """Crop ``box`` (fractions, see ``crop_box_px``) out of ``frame`` and resize to ``size_wh`` =
    (width, height) px (area interpolation when shrinking, linear when enlarging)."""
    import cv2

    x0, y0, x1, y1 = crop_box_px(frame.shape, box)
    out = frame[y0:y1, x0:x1]
    if size_wh is not None and (out.shape[1], out.shape[0]) != tuple(size_wh):
        shrink = size_wh[0] * size_wh[1] < out.shape[0] * out.shape[1]
        out = cv2.resize(out, (int(size_wh[0]), int(size_wh[1])),
                         interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(out)


# --- reference and difference ----------------------------------------------------------------
def mean_frame(frames: Sequence[np.ndarray]) -> np.ndarray:
    """The reference (no-contact) image: float32 mean of ``frames`` (8-bit intensity levels)."""
    if len(frames) == 0:
        raise ConfigError.expected("reference frames", "at least 1 frame", 0)
    shape = frames[0].shape
    acc = np.zeros(shape, np.float32)
    for f in frames:
        if f.shape != shape:
            raise ConfigError.expected("reference frame shape", shape, f.shape)
        acc += f
    return acc / np.float32(len(frames))


def difference(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Signed change from the reference: float32 ``frame - reference`` in 8-bit intensity levels,
    range [-255, 255] (positive: brighter than with no contact)."""
    if frame.shape != reference.shape:
        raise ConfigError.expected("tactile frame shape", reference.shape, frame.shape)
    return frame.astype(np.float32) - reference


def _gray(img: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def _ellipse(size_px: int) -> np.ndarray:
    import cv2

    s = max(1, int(size_px)) | 1  # odd
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (s, s))


def darkness(image: np.ndarray, kernel_px: int) -> np.ndarray:
    """How much darker than the local background each pixel is (black-hat: morphological closing
    minus the image), float32 in 8-bit levels. ``kernel_px`` must exceed the marker diameter."""
    import cv2

    g = _gray(np.asarray(image)).astype(np.uint8, copy=False)
    return cv2.morphologyEx(g, cv2.MORPH_BLACKHAT, _ellipse(kernel_px)).astype(np.float32)


# --- contact ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContactParams:
    """Contact detection on the intensity change (RMS over the 3 channels of ``difference``)."""

    blur_sigma_px: float = 2.0     # Gaussian blur of the change map
    threshold: float = 12.0        # 8-bit levels of change that count as contact
    open_px: int = 5               # opening (removes specks smaller than this)
    close_px: int = 7              # closing (bridges gaps smaller than this)
    edge_fraction: float = 0.5     # each blob's edge: this fraction of its peak change (0: off)
    min_area_px: int = 40          # smaller blobs are dropped; contact flag needs at least this
    fill_holes: bool = True        # ring-shaped responses (flat indenter centre) count as filled
    remove_global_offset: bool = True  # subtract the per-channel median change (lighting drift)

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ConfigError.expected("contact threshold (8-bit levels)", "> 0", self.threshold)
        if self.blur_sigma_px < 0 or self.min_area_px < 1:
            raise ConfigError.expected("contact blur_sigma_px / min_area_px", ">= 0 / >= 1",
                                       (self.blur_sigma_px, self.min_area_px))
        if not 0 <= self.edge_fraction < 1:
            raise ConfigError.expected("contact edge_fraction", "0 <= edge_fraction < 1", self.edge_fraction)


@dataclass(frozen=True)
class Contact:
    """``centroid_px``: (x, y) from the top-left pixel; ``centroid_mm``: (x right, y down) from the
    image centre. Both are zero when there is no contact."""

    mask: np.ndarray        # (H, W) bool
    area_px: int
    area_mm2: float
    centroid_px: np.ndarray  # (2,) float32
    centroid_mm: np.ndarray  # (2,) float32
    in_contact: bool


def change_magnitude(diff: np.ndarray, ignore: np.ndarray | None = None,
                     params: ContactParams = ContactParams()) -> np.ndarray:
    """Blurred intensity change (8-bit levels, (H, W) float32). Pixels in ``ignore`` (markers) are
    left out of the blur and filled from their neighbours (normalised convolution)."""
    import cv2

    d = diff
    if params.remove_global_offset:
        d = d - np.median(d[::4, ::4].reshape(-1, d.shape[-1]), axis=0).astype(np.float32)
    mag = np.sqrt(np.einsum("ijk,ijk->ij", d, d) / np.float32(d.shape[-1])) if d.ndim == 3 else np.abs(d)
    if params.blur_sigma_px <= 0:
        return np.where(ignore, 0.0, mag).astype(np.float32) if ignore is not None else mag
    blur = lambda a: cv2.GaussianBlur(a, (0, 0), params.blur_sigma_px)  # noqa: E731
    if ignore is None:
        return blur(mag)
    w = (~ignore).astype(np.float32)
    return blur(mag * w) / np.maximum(blur(w), 1e-3)


def detect_contact(diff: np.ndarray, mm_per_px: float, params: ContactParams = ContactParams(),
                   ignore: np.ndarray | None = None) -> Contact:
    """Contact from a ``difference`` image: threshold the blurred change, clean up
    morphologically, fill holes, drop blobs under ``min_area_px``."""
    import cv2

    change = change_magnitude(diff, ignore, params)
    mask = (change > params.threshold).astype(np.uint8)
    if params.edge_fraction > 0 and mask.any():
        # the edge of each blob at a fraction of its own peak (half maximum by default): the area
        # then does not grow with the contrast of the press
        n, lab = cv2.connectedComponents(mask, connectivity=8)
        idx = np.flatnonzero(mask)
        peak = np.zeros(n, np.float32)
        np.maximum.at(peak, lab.ravel()[idx], change.ravel()[idx])
        level = np.maximum(params.threshold, params.edge_fraction * peak)
        level[0] = np.inf
        mask = (change > level[lab]).astype(np.uint8)
    if params.open_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _ellipse(params.open_px))
    if params.close_px > 1:
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _ellipse(params.close_px))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL if params.fill_holes else cv2.RETR_CCOMP,
                                   cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(mask)
    if params.fill_holes:
        keep = [c for c in contours if cv2.contourArea(c) + 0.5 * len(c) >= params.min_area_px]
        if keep:
            cv2.drawContours(out, keep, -1, 1, thickness=cv2.FILLED)
    else:
        n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        big = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= params.min_area_px)
        big = big[big > 0]
        out = np.isin(lab, big).astype(np.uint8)
    area = int(np.count_nonzero(out))
    h, w = out.shape
    if area >= params.min_area_px:
        m = cv2.moments(out, binaryImage=True)
        c_px = np.array([m["m10"] / m["m00"], m["m01"] / m["m00"]], np.float32)
        c_mm = ((c_px - np.array([(w - 1) / 2, (h - 1) / 2], np.float32)) * mm_per_px).astype(np.float32)
        return Contact(out.astype(bool), area, area * mm_per_px ** 2, c_px, c_mm, True)
    z = np.zeros(2, np.float32)
    return Contact(np.zeros((h, w), bool), 0, 0.0, z, z.copy(), False)


# --- markers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MarkerParams:
    """Dark gel markers: black-hat darkness above ``threshold`` (8-bit levels), blobs of
    ``min_area_px``..``max_area_px``; tracked with at most ``max_step_px`` motion per frame."""

    kernel_px: int = 15           # black-hat kernel, larger than a marker's diameter
    threshold: float = 25.0       # 8-bit levels darker than the local background (the minimum)
    auto_threshold: bool = True   # raise it to Otsu's threshold of the reference's darkness
    min_area_px: int = 4
    max_area_px: int = 400
    max_markers: int = 128        # fixed row count of the published marker arrays
    max_step_px: float = 6.0      # max motion of one marker between two frames (px)

    def __post_init__(self) -> None:
        if self.kernel_px < 3 or not self.threshold > 0 or self.max_markers < 1:
            raise ConfigError.expected("marker kernel_px / threshold / max_markers", ">= 3 / > 0 / >= 1",
                                       (self.kernel_px, self.threshold, self.max_markers))
        if not 0 < self.min_area_px <= self.max_area_px or not self.max_step_px > 0:
            raise ConfigError.expected("marker min_area_px <= max_area_px, max_step_px > 0",
                                       "positive values", (self.min_area_px, self.max_area_px, self.max_step_px))


def find_blobs(dark: np.ndarray, params: MarkerParams = MarkerParams()) -> np.ndarray:
    """(M, 2) float32 (x, y) darkness-weighted centroids of the marker-sized blobs in a
    ``darkness`` map (sub-pixel)."""
    import cv2

    mask = (dark > params.threshold).astype(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros((0, 2), np.float32)
    idx = np.flatnonzero(mask)
    flat = lab.ravel()[idx]
    w = dark.ravel()[idx] - np.float32(params.threshold * 0.5)
    ys, xs = np.divmod(idx, lab.shape[1])
    sw = np.bincount(flat, w, minlength=n)
    sx = np.bincount(flat, w * xs, minlength=n)
    sy = np.bincount(flat, w * ys, minlength=n)
    area = stats[:, cv2.CC_STAT_AREA]
    ok = (area >= params.min_area_px) & (area <= params.max_area_px) & (sw > 0)
    ok[0] = False
    return np.stack([sx[ok] / sw[ok], sy[ok] / sw[ok]], axis=1).astype(np.float32)


def order_markers(pos: np.ndarray) -> np.ndarray:
    """Rows top to bottom (a new row where y jumps by more than half the typical spacing), each
    left to right: a stable order for a marker grid."""
    if len(pos) < 2:
        return pos
    by_y = pos[np.argsort(pos[:, 1], kind="stable")]
    d = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    spacing = float(np.median(d.min(axis=1)))
    row = np.concatenate([[0], np.cumsum(np.diff(by_y[:, 1]) > 0.5 * spacing)])
    return by_y[np.lexsort((by_y[:, 0], row))]


def marker_threshold(dark: np.ndarray, params: MarkerParams = MarkerParams()) -> float:
    """The darkness threshold (8-bit levels) for markers: ``params.threshold``, raised to Otsu's
    split of the reference's darkness map with ``auto_threshold`` (gel texture vs markers)."""
    import cv2

    if not params.auto_threshold:
        return float(params.threshold)
    otsu, _ = cv2.threshold(np.clip(dark, 0, 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return max(float(params.threshold), float(otsu))


def detect_markers(reference: np.ndarray, params: MarkerParams = MarkerParams()) -> np.ndarray:
    """(N, 2) float32 marker positions in the reference image, N <= ``max_markers`` (the ones
    closest to the image centre are kept), in row order."""
    dark = darkness(np.clip(np.rint(reference), 0, 255).astype(np.uint8), params.kernel_px)
    params = replace(params, threshold=marker_threshold(dark, params), auto_threshold=False)
    pos = find_blobs(dark, params)
    if len(pos) > params.max_markers:
        h, w = reference.shape[:2]
        r = ((pos - np.array([(w - 1) / 2, (h - 1) / 2])) ** 2).sum(1)
        pos = pos[np.argsort(r, kind="stable")[: params.max_markers]]
    return order_markers(pos)


@dataclass(frozen=True)
class Markers:
    """``ref_px``: (N, 2) reference positions; ``disp_px``: (N, 2) current minus reference (zero
    where not valid); ``valid``: (N,) bool, false for markers not found this frame."""

    ref_px: np.ndarray
    disp_px: np.ndarray
    valid: np.ndarray

    def padded(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fixed-shape (n, 2), (n, 2), (n,) uint8 copies (rows past the detected count: 0, invalid)."""
        k = min(n, len(self.ref_px))
        ref, disp, val = np.zeros((n, 2), np.float32), np.zeros((n, 2), np.float32), np.zeros(n, np.uint8)
        ref[:k], disp[:k], val[:k] = self.ref_px[:k], self.disp_px[:k], self.valid[:k]
        return ref, disp, val


class MarkerTracker:
    """Tracks reference markers frame to frame: each marker takes the blob nearest to its last
    known position if that marker is also the blob's nearest one and the step is at most
    ``max_step_px``. A marker that is not found keeps its last position and is re-acquired when a
    blob shows up near it again."""

    def __init__(self, ref_px: np.ndarray, max_step_px: float):
        self.ref_px = np.asarray(ref_px, np.float32).reshape(-1, 2)
        self.max_step_px = float(max_step_px)
        self.pos = self.ref_px.copy()
        self.valid = np.ones(len(self.ref_px), bool)

    def update(self, blobs: np.ndarray) -> Markers:
        n = len(self.ref_px)
        valid = np.zeros(n, bool)
        if n and len(blobs):
            d = np.sqrt(((self.pos[:, None, :] - blobs[None, :, :]) ** 2).sum(-1))
            j = d.argmin(axis=1)
            back = d.argmin(axis=0)
            valid = (back[j] == np.arange(n)) & (d[np.arange(n), j] <= self.max_step_px)
            self.pos[valid] = blobs[j[valid]]
        self.valid = valid
        disp = np.where(valid[:, None], self.pos - self.ref_px, 0.0).astype(np.float32)
        return Markers(self.ref_px, disp, valid.copy())


# --- all together ----------------------------------------------------------------------------
@dataclass(frozen=True)
class TactileResult:
    difference: np.ndarray   # (H, W, 3) float32, 8-bit levels
    contact: Contact | None
    markers: Markers | None


class TactileProcessor:
    """Reference, difference, contact and markers for one sensor. Call ``set_reference`` with
    no-contact frames first (the markers are found in the reference), then ``process``."""

    def __init__(self, mm_per_px: float, contact: ContactParams | None = ContactParams(),
                 markers: MarkerParams | None = MarkerParams()):
        if not mm_per_px > 0:
            raise ConfigError.expected("tactile mm_per_px", "> 0", mm_per_px)
        self.mm_per_px = float(mm_per_px)
        self.contact_params, self.marker_params = contact, markers
        self.reference: np.ndarray | None = None
        self._ref_markers_mask: np.ndarray | None = None
        self.tracker: MarkerTracker | None = None
        self.session_markers: MarkerParams | None = None

    def set_reference(self, frames: Sequence[np.ndarray]) -> None:
        """Average ``frames`` into the reference; detect the markers in it (restarts tracking)."""
        self.reference = mean_frame(frames)
        mp = self.marker_params
        if mp is not None:
            ref8 = np.clip(np.rint(self.reference), 0, 255).astype(np.uint8)
            dark = darkness(ref8, mp.kernel_px)
            #: the marker parameters of this reference, with the threshold fixed
            self.session_markers = replace(mp, threshold=marker_threshold(dark, mp), auto_threshold=False)
            self._ref_markers_mask = self._marker_mask(dark)
            self.tracker = MarkerTracker(detect_markers(ref8, self.session_markers), mp.max_step_px)

    @property
    def n_markers(self) -> int:
        return 0 if self.tracker is None else len(self.tracker.ref_px)

    def _marker_mask(self, dark: np.ndarray) -> np.ndarray:
        import cv2

        m = (dark > 0.5 * self.session_markers.threshold).astype(np.uint8)
        return cv2.dilate(m, _ellipse(3)).astype(bool)

    def difference(self, frame: np.ndarray) -> np.ndarray:
        if self.reference is None:
            raise ConfigError.expected("tactile reference", "set_reference() before processing", "none")
        return difference(frame, self.reference)

    def process(self, frame: np.ndarray) -> TactileResult:
        diff = self.difference(frame)
        markers, ignore = None, None
        if self.marker_params is not None and self.tracker is not None:
            dark = darkness(frame, self.marker_params.kernel_px)
            markers = self.tracker.update(find_blobs(dark, self.session_markers))
            ignore = self._marker_mask(dark) | self._ref_markers_mask
        contact = None
        if self.contact_params is not None:
            contact = detect_contact(diff, self.mm_per_px, self.contact_params, ignore)
        return TactileResult(diff, contact, markers)
