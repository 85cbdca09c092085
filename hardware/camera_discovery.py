"""Finding cameras for ``robot-learning find-cameras``: UVC devices (through OpenCV) and RealSense
cameras (through librealsense). Each SDK is imported only when its search runs."""

from __future__ import annotations

import glob
import os
import re
import sys


def video_nodes() -> list[str]:
    """The /dev/videoN nodes present, by index."""
    nodes = [p for p in glob.glob("/dev/video*") if re.fullmatch(r"/dev/video\d+", p)]
    return sorted(nodes, key=lambda p: int(p[len("/dev/video"):]))


def _by_id_paths() -> dict[str, str]:
    """/dev/videoN -> its /dev/v4l/by-id/... link (stable across replugs)."""
    out: dict[str, str] = {}
    for link in sorted(glob.glob("/dev/v4l/by-id/*")):
        out.setdefault(os.path.realpath(link), link)
    return out


def fourcc_str(code: float) -> str:
    c = int(code)
    s = "".join(chr((c >> (8 * i)) & 0xFF) for i in range(4))
    return s if s.isprintable() and c else ""


def find_opencv_cameras(max_index: int = 16) -> list[dict]:
    """Video devices that open and deliver a frame: index, path, by-id link, default mode.

    On Linux only the /dev/videoN nodes present are tried (none present: [] at once); elsewhere
    indices 0..max_index. Metadata nodes (a second node of many UVC cameras) deliver no frame and
    are left out.
    """
    linux = sys.platform.startswith("linux")
    if linux:
        nodes = [(int(p[len("/dev/video"):]), p) for p in video_nodes()]
        nodes = [(i, p) for i, p in nodes if i <= max_index and os.access(p, os.R_OK | os.W_OK)]
    else:
        nodes = [(i, None) for i in range(max_index + 1)]
    if not nodes:
        return []
    import cv2

    os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "2")
    by_id = _by_id_paths() if linux else {}
    found = []
    for index, path in nodes:
        cap = cv2.VideoCapture(index, cv2.CAP_V4L2 if linux else cv2.CAP_ANY)
        try:
            if not cap.isOpened():
                continue
            ok, frame = cap.read()
            if not ok or frame is None:
                continue
            found.append({"index": index, "path": path, "by_id": by_id.get(path) if path else None,
                          "width": int(frame.shape[1]), "height": int(frame.shape[0]),
                          "fps": float(cap.get(cv2.CAP_PROP_FPS)), "fourcc": fourcc_str(cap.get(cv2.CAP_PROP_FOURCC)),
                          "backend": cap.getBackendName()})
        finally:
            cap.release()
    return found


def find_realsense_cameras() -> list[dict]:
    """Connected RealSense cameras: serial, name, firmware, usb type, product line, port ([] if none)."""
    import pyrealsense2 as rs

    fields = {"serial": rs.camera_info.serial_number, "name": rs.camera_info.name,
              "firmware": rs.camera_info.firmware_version, "usb_type": rs.camera_info.usb_type_descriptor,
              "product_line": rs.camera_info.product_line, "port": rs.camera_info.physical_port}
    found = []
    for dev in rs.context().query_devices():
        found.append({k: (dev.get_info(v) if dev.supports(v) else None) for k, v in fields.items()})
    return found
