"""Robot models shipped with the project: MJCF files under ``robot_learning/core/assets/robots`` plus
the metadata the sim twin, the Cartesian controller and the real drivers share (joint names and
order, units, limits, end-effector site, gripper mapping). They sit in ``core`` because all three
use them: the twin (``robot_learning.sim``) builds its scene from them, the real arms
(``robot_learning.hardware``) compute their end-effector pose and joint box from them.

The MJCF files are written for this project from the robots' published specifications (link
lengths, joint ranges, velocity limits); simple collision geometry, light visuals.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

from robot_learning.errors import ConfigError


@dataclass(frozen=True)
class RobotModel:
    """Metadata of one robot model.

    Units: joint positions in radians (``joint_pos_rad``), joint velocities in rad/s; the gripper
    command and state ``gripper_pos`` is a fraction: 0 = fully open, 1 = fully closed.
    """

    name: str
    mjcf: str                                 # file name under core/assets/robots/
    base_body: str                            # root body of the arm (attached to the world)
    joint_names: tuple[str, ...]              # arm joints, in order (MJCF names)
    arm_actuators: tuple[str, ...]            # position actuators, same order as joint_names
    gripper_actuator: str                     # position actuator of the gripper
    gripper_ctrl_open: float                  # actuator ctrl for gripper_pos = 0
    gripper_ctrl_closed: float                # actuator ctrl for gripper_pos = 1
    gripper_joints: tuple[str, ...]           # finger joints (the first one measures the opening)
    gripper_joint_open: float                 # that joint's position when open
    gripper_joint_closed: float               # and when closed (no object)
    ee_site: str                              # tool-centre-point site between the fingertips
    home_qpos: tuple[float, ...]              # arm joints at home, rad
    max_joint_velocity_rad_s: tuple[float, ...]  # published joint speed limits
    tactile_sites: tuple[str, ...] = ()       # fingertip pad sites (touch_grid looks along -z: -z out of the pad)
    wrist_camera: str | None = None           # camera name on the wrist, if any
    #: how far the jaw tips reach past the tcp along the approach axis (keep them off the table)
    tip_beyond_tcp_m: float = 0.0
    #: one-sided grippers (a fixed jaw and a moving one): the fixed jaw's inner face on the tool y
    #: axis (m from the tcp); a grasp puts the object just off it so the moving jaw closes onto it
    fixed_jaw_face_y_m: float | None = None

    def __post_init__(self) -> None:
        n = len(self.joint_names)
        for what, v in (("arm_actuators", self.arm_actuators), ("home_qpos", self.home_qpos),
                        ("max_joint_velocity_rad_s", self.max_joint_velocity_rad_s)):
            if len(v) != n:
                raise ConfigError.expected(f"{self.name}.{what}", f"{n} entries (one per joint)", len(v))

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    def mjcf_path(self) -> Path:
        return Path(str(importlib.resources.files("robot_learning.core").joinpath("assets", "robots", self.mjcf)))


# Franka-Panda-class 7-DoF arm with a parallel gripper. Joint ranges and speed limits from the
# published Franka Emika Panda specification.
PANDA = RobotModel(
    name="panda",
    mjcf="panda.xml",
    base_body="link0",
    joint_names=("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7"),
    arm_actuators=("actuator1", "actuator2", "actuator3", "actuator4", "actuator5", "actuator6", "actuator7"),
    gripper_actuator="actuator8",
    gripper_ctrl_open=0.04,
    gripper_ctrl_closed=0.0,
    gripper_joints=("finger_joint1", "finger_joint2"),
    gripper_joint_open=0.04,
    gripper_joint_closed=0.0,
    ee_site="tcp",
    home_qpos=(0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785),
    max_joint_velocity_rad_s=(2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61),
    tactile_sites=("left_pad", "right_pad"),
    wrist_camera="wrist_cam",
)

# SO-101-class 5-DoF arm + gripper. Joint names and order match the real SO-101 (LeRobot naming);
# units are radians (the project's real SO-101 driver converts servo ticks to the same units).
SO101 = RobotModel(
    name="so101",
    mjcf="so101.xml",
    base_body="base",
    joint_names=("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"),
    arm_actuators=("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll"),
    gripper_actuator="gripper",
    gripper_ctrl_open=1.5,
    gripper_ctrl_closed=0.0,
    gripper_joints=("gripper",),
    gripper_joint_open=1.5,
    gripper_joint_closed=0.0,
    ee_site="tcp",
    home_qpos=(0.0, -1.2, 1.2, 0.9, 0.0),
    max_joint_velocity_rad_s=(4.0, 4.0, 4.0, 4.0, 4.0),
    tactile_sites=("jaw_pad",),
    wrist_camera="wrist_cam",
    tip_beyond_tcp_m=0.015,
    fixed_jaw_face_y_m=-0.0125,
)

ROBOTS: dict[str, RobotModel] = {"panda": PANDA, "so101": SO101}


def get_robot_model(name: str) -> RobotModel:
    try:
        return ROBOTS[name]
    except KeyError:
        raise ConfigError.expected("robot model", f"one of {sorted(ROBOTS)}", repr(name)) from None
