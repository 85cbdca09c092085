"""Scene composition: a world (table, lights, scene cameras, task objects, tactile sensors) with a
robot model attached at the origin.

The table top is the plane z = 0; the robot's base stands on it at the origin, facing +x.
Task objects come as MJCF snippets from the task; the robot's MJCF file is attached unchanged
(the same file the Cartesian controller and the real arm's driver use).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import mujoco

from robot_learning.core.robot_models import RobotModel

log = logging.getLogger(__name__)

TOUCH_ROWS, TOUCH_COLS = 4, 4


@dataclass(frozen=True)
class Workspace:
    """Where a robot can reach comfortably on the table: centre and half-extents (m)."""

    center_xy: tuple[float, float]
    half_xy: tuple[float, float]
    #: scale of objects for this robot relative to the Panda's (the SO-101 grasps smaller things)
    object_scale: float = 1.0


WORKSPACES = {
    "panda": Workspace((0.5, 0.0), (0.1, 0.15), 1.0),
    "so101": Workspace((0.22, 0.0), (0.04, 0.06), 0.6),
}


def touch_sensor_name(site: str) -> str:
    return f"{site}_touch"


def _world_xml(robot: RobotModel, task_assets: str, task_bodies: str, width: int, height: int,
               tactile: bool) -> str:
    ws = WORKSPACES[robot.name]
    cx, cy = ws.center_xy
    s = ws.object_scale
    ext = '<extension><plugin plugin="mujoco.sensor.touch_grid"/></extension>' if tactile and robot.tactile_sites else ""
    sensors = ""
    if ext:
        sensors = "<sensor>" + "".join(
            f'<plugin name="{touch_sensor_name(site)}" plugin="mujoco.sensor.touch_grid" objtype="site" '
            f'objname="{site}"><config key="size" value="{TOUCH_ROWS} {TOUCH_COLS}"/>'
            f'<config key="fov" value="20 20"/><config key="gamma" value="0"/>'
            f'<config key="nchannel" value="3"/></plugin>' for site in robot.tactile_sites) + "</sensor>"
    # Scene cameras look at the workspace centre: "front" from the far side of the table, "top"
    # straight down, "side" from the robot's left.
    d = 0.55 * s + 0.12
    return f"""
<mujoco model="scene">
  {ext}
  <compiler angle="radian" autolimits="true"/>
  <option integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{width}" offheight="{height}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1="0.82 0.80 0.76" rgb2="0.74 0.72 0.68"
             width="256" height="256" mark="edge" markrgb="0.6 0.6 0.6"/>
    <material name="table" texture="grid" texrepeat="8 8" reflectance="0"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.62 0.7" rgb2="0.2 0.22 0.25" width="32" height="32"/>
    {task_assets}
  </asset>
  <worldbody>
    <light name="key" pos="{cx} {cy - 0.6} 1.6" dir="0 0.35 -1" diffuse="0.6 0.6 0.6" castshadow="false"/>
    <geom name="table" type="plane" size="1.2 1.2 0.02" material="table" friction="0.8 0.005 0.0001"/>
    <body name="workspace_center" pos="{cx} {cy} {0.04 * s}"/>
    <camera name="front" pos="{cx + d} {cy} {0.42 * s + 0.1}" mode="targetbody" target="workspace_center" fovy="50"/>
    <camera name="top" pos="{cx} {cy} {0.55 * s + 0.2}" xyaxes="0 -1 0 1 0 0" fovy="35"/>
    <camera name="side" pos="{cx} {cy + d} {0.42 * s + 0.1}" mode="targetbody" target="workspace_center" fovy="50"/>
    <frame name="robot_mount" pos="0 0 0"/>
    {task_bodies}
  </worldbody>
  {sensors}
</mujoco>
"""


def build_scene(robot: RobotModel, task_assets: str = "", task_bodies: str = "", *,
                max_render: tuple[int, int] = (640, 480), tactile: bool = True) -> mujoco.MjModel:
    """Compile the world with the robot attached. ``max_render``: largest camera image (w, h)."""
    world = mujoco.MjSpec.from_string(_world_xml(robot, task_assets, task_bodies, *max_render, tactile))
    arm = mujoco.MjSpec.from_file(str(robot.mjcf_path()))
    # An empty prefix keeps the robot's names as in its file; MuJoCo warns that saving the composed
    # XML could then be ambiguous, which the project never does: silence exactly that warning.
    previous = mujoco.get_mju_user_warning()

    def _warning(msg: str) -> None:
        if "empty prefix" not in msg:
            (previous or (lambda m: log.warning("MuJoCo warning: %s", m)))(msg)

    mujoco.set_mju_user_warning(_warning)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Attaching a spec with an empty prefix")
            world.attach(arm, frame=world.frame("robot_mount"), prefix="")
            return world.compile()
    finally:
        mujoco.set_mju_user_warning(previous)
