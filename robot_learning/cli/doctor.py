"""``robot-learning doctor``: what is installed and whether it works here."""

from __future__ import annotations

import importlib
import json
import os
import platform

from robot_learning.cli.commands import DoctorConfig

MODULES = ("numpy", "torch", "mujoco", "zarr", "cv2", "pyrealsense2", "tyro", "msgpack", "safetensors",
           "scservo_sdk", "dynamixel_sdk", "serial", "pygame", "pyspacemouse", "easyhid")


def _version(mod: str) -> str:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # its banner would land in --json stdout
    try:
        m = importlib.import_module(mod)
    except Exception as e:  # report, never crash: this command exists to diagnose
        return f"unavailable ({type(e).__name__}: {str(e).splitlines()[0][:80]})"
    return str(getattr(m, "__version__", "installed"))


def run_doctor(cfg: DoctorConfig) -> int:
    import robot_learning

    info: dict[str, object] = {
        "robot_learning": robot_learning.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "(unset: mujoco picks)"),
        "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "(unset)"),
    }
    for mod in MODULES:
        info[mod] = _version(mod)
    try:
        from serial.tools import list_ports

        info["serial_ports"] = len(list_ports.comports())
        from robot_learning.hardware.camera_discovery import find_opencv_cameras, find_realsense_cameras

        info["uvc_cameras"] = len(find_opencv_cameras())
        info["realsense_cameras"] = len(find_realsense_cameras())
    except Exception as e:  # noqa: BLE001 - diagnose, never crash
        info["devices"] = f"unavailable ({type(e).__name__}: {e})"
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
    except Exception:
        pass
    if cfg.json:
        print(json.dumps(info))
    else:
        width = max(len(k) for k in info)
        for k, v in info.items():
            print(f"{k:<{width}}  {v}")
    return 0
