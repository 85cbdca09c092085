"""End-effector command features: what an action source emits when it commands the tool pose instead of
the joints (the runtime's Cartesian stage turns them into joint commands).

- ``ABSOLUTE``: ``ee_pos_m`` (3,), ``ee_quat_wxyz`` (4,), ``gripper_pos`` (1,);
- ``DELTA``: ``ee_dpos_m`` (3,), ``ee_drot_rad`` (3,, rotation vector), ``gripper_pos`` (1,), added
  to the current target (keyboard, gamepad and SpaceMouse teleop).
"""

from __future__ import annotations

from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec

ABSOLUTE = FeatureSet([
    FeatureSpec("ee_pos_m", (3,), "float32", FeatureKind.ACTION, "m", ("x", "y", "z")),
    FeatureSpec("ee_quat_wxyz", (4,), "float32", FeatureKind.ACTION, "1", ("w", "x", "y", "z")),
    FeatureSpec("gripper_pos", (1,), "float32", FeatureKind.ACTION, "1"),
])
DELTA = FeatureSet([
    FeatureSpec("ee_dpos_m", (3,), "float32", FeatureKind.ACTION, "m", ("x", "y", "z")),
    FeatureSpec("ee_drot_rad", (3,), "float32", FeatureKind.ACTION, "rad", ("x", "y", "z")),
    FeatureSpec("gripper_pos", (1,), "float32", FeatureKind.ACTION, "1"),
])
