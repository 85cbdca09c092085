"""robot-learning: teleoperate, record, train and deploy robot manipulation policies."""

import os as _os

# MuJoCo picks its GL backend when it is first imported, wherever that happens in the project:
# default to EGL (headless rendering, no display needed). Set MUJOCO_GL yourself to override
# (glfw for a window, osmesa with libosmesa6).
_os.environ.setdefault("MUJOCO_GL", "egl")

__version__ = "0.1.0"
