"""MuJoCo robots, tasks, cameras and tactile sensors behind the device contracts
(``robot_learning.sim``).

Rendering defaults to EGL (headless, works without a display); set ``MUJOCO_GL`` before the
first import of mujoco to choose another backend (``glfw`` for a window, ``osmesa``).
"""

import os as _os

_os.environ.setdefault("MUJOCO_GL", "egl")
