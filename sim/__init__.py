"""MuJoCo robots, tasks, cameras and tactile sensors behind the device contracts
(``robot_learning.sim``).

Rendering defaults to EGL (set in ``robot_learning/__init__.py`` before mujoco is imported).
"""
