"""Servo-bus arms the project drives: SO-101 (Feetech STS3215) and Koch v1.1 (Dynamixel X), each as a
follower (a ``Robot``) and as a leader (a ``Teleop``).

Joint names, order and units match the SO-101 sim twin (``robot_learning.core.robot_models.SO101``):
``shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll`` in radians, plus the gripper
as ``gripper_pos`` (0 = open .. 1 = closed). 0 rad is the calibration's zero pose, which is the
sim twin's zero pose: every joint in the middle of its range (arm pointing straight up, wrist
level, jaw closed). Koch arms use the same names and units; they have no sim twin here, so their
state has no end-effector pose.
"""

from __future__ import annotations

from dataclasses import dataclass

from robot_learning.errors import ConfigError
from robot_learning.hardware.servo_bus import Motor

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
GRIPPER = "gripper"


@dataclass(frozen=True)
class ArmSpec:
    """One arm variant.

    ``motors``: bus motor of each joint (arm joints in ``JOINTS`` order, then ``gripper``).
    ``directions``: +1, or -1 where the servo counts opposite to the joint's positive sense.
    ``twin``: the sim robot model sharing its joints (forward kinematics, Cartesian control,
    joint ranges), or None. ``max_velocity_rad_s``: runtime velocity cap per arm joint.
    """

    name: str
    protocol: str                          # "feetech" or "dynamixel"
    role: str                              # "follower" or "leader"
    motors: tuple[tuple[str, Motor], ...]
    directions: tuple[int, ...] = (1, 1, 1, 1, 1, 1)
    twin: str | None = None
    max_velocity_rad_s: float = 3.0
    max_step_rad: float = 0.35

    def __post_init__(self) -> None:
        names = tuple(n for n, _ in self.motors)
        if names != JOINTS + (GRIPPER,):
            raise ConfigError.expected(f"{self.name} motors", JOINTS + (GRIPPER,), names)
        if len(self.directions) != len(names) or any(d not in (1, -1) for d in self.directions):
            raise ConfigError.expected(f"{self.name} directions", f"{len(names)} values of +1 / -1", self.directions)
        if self.protocol not in ("feetech", "dynamixel"):
            raise ConfigError.expected(f"{self.name} protocol", "feetech or dynamixel", self.protocol)

    @property
    def motor_map(self) -> dict[str, Motor]:
        return dict(self.motors)

    @property
    def kind(self) -> str:
        """The name users type: so101, so101-leader, koch, koch-leader."""
        return self.name if self.role == "follower" else f"{self.name}-leader"


def _motors(models: tuple[str, ...]) -> tuple[tuple[str, Motor], ...]:
    return tuple((n, Motor(i + 1, m)) for i, (n, m) in enumerate(zip(JOINTS + (GRIPPER,), models)))


SO101_FOLLOWER = ArmSpec("so101", "feetech", "follower", _motors(("sts3215",) * 6), twin="so101")
SO101_LEADER = ArmSpec("so101", "feetech", "leader", _motors(("sts3215",) * 6), twin="so101")
KOCH_FOLLOWER = ArmSpec("koch", "dynamixel", "follower",
                        _motors(("xl430-w250", "xl430-w250", "xl330-m288", "xl330-m288", "xl330-m288", "xl330-m288")))
KOCH_LEADER = ArmSpec("koch", "dynamixel", "leader", _motors(("xl330-m077",) * 6))

ARMS: dict[str, ArmSpec] = {a.kind: a for a in (SO101_FOLLOWER, SO101_LEADER, KOCH_FOLLOWER, KOCH_LEADER)}
FOLLOWERS = tuple(k for k, a in ARMS.items() if a.role == "follower")
LEADERS = tuple(k for k, a in ARMS.items() if a.role == "leader")


def get_arm(kind: str) -> ArmSpec:
    try:
        return ARMS[kind]
    except KeyError:
        raise ConfigError.expected("arm", f"one of {', '.join(ARMS)}", repr(kind)) from None


def make_bus(spec: ArmSpec, port: str, **kw):
    """The servo bus of an arm on ``port`` (the SDK is imported here, not at package import)."""
    if spec.protocol == "feetech":
        from robot_learning.hardware.feetech import FeetechBus

        return FeetechBus(port, spec.motor_map, name=f"{spec.kind}@{port}", **kw)
    from robot_learning.hardware.dynamixel import DynamixelBus

    return DynamixelBus(port, spec.motor_map, name=f"{spec.kind}@{port}", **kw)
