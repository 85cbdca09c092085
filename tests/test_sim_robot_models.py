"""The robot MJCF files under core/assets/robots against their metadata in core/robot_models.py and the
published specifications: names, joint ranges, attaching into a scene, holding the home pose under
gravity, the tool centre point at home, a real grasp-and-lift, and the fingertip touch_grid sensors.
"""

from __future__ import annotations

import warnings

import mujoco
import numpy as np
import pytest

from robot_learning.core.robot_models import ROBOTS, RobotModel

TIMESTEP = 0.002

# Published joint limits (rad): Franka Emika Panda datasheet; SO-ARM101 (LeRobot calibration range).
PUBLISHED_RANGES = {
    "panda": {
        "joint1": (-2.8973, 2.8973), "joint2": (-1.7628, 1.7628), "joint3": (-2.8973, 2.8973),
        "joint4": (-3.0718, -0.0698), "joint5": (-2.8973, 2.8973), "joint6": (-0.0175, 3.7525),
        "joint7": (-2.8973, 2.8973), "finger_joint1": (0.0, 0.04), "finger_joint2": (0.0, 0.04),
    },
    "so101": {
        "shoulder_pan": (-1.92, 1.92), "shoulder_lift": (-1.75, 1.75), "elbow_flex": (-1.69, 1.69),
        "wrist_flex": (-1.66, 1.66), "wrist_roll": (-2.74, 2.74), "gripper": (-0.17, 1.75),
    },
}
# Published actuator torque limits (N m): Panda 87 / 12; STS3215 stall torque about 3 N m.
TORQUE_LIMITS = {
    "panda": (87, 87, 87, 87, 12, 12, 12),
    "so101": (3.0, 3.0, 3.0, 3.0, 3.0),
}
CUBE_HALF = {"panda": 0.02, "so101": 0.0125}
MIN_DOWN = {"panda": 0.9, "so101": 0.5}
LIFT = {"panda": {"joint2": -0.25}, "so101": {"shoulder_lift": -0.3, "elbow_flex": -0.3}}

MODELS = pytest.mark.parametrize("robot", list(ROBOTS.values()), ids=list(ROBOTS))

SCENE_XML = """
<mujoco model="test_scene">
  {extension}
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{timestep}" integrator="{integrator}" cone="elliptic" impratio="10"/>
  <worldbody>
    <light pos="0 0 2" dir="0 0 -1"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="2 2 0.05"/>
    <geom name="table" type="box" pos="0.3 0 -0.02" size="0.6 0.6 0.02"/>
    <frame name="mount" pos="0 0 0"/>
    {bodies}
  </worldbody>
  {sensors}
</mujoco>
"""


def touch_xml(site: str) -> str:
    return (f'<plugin name="{site}_touch" plugin="mujoco.sensor.touch_grid" objtype="site" objname="{site}">'
            '<config key="size" value="4 4"/><config key="fov" value="20 20"/>'
            '<config key="gamma" value="0"/><config key="nchannel" value="3"/></plugin>')


def scene_spec(robot: RobotModel, bodies: str = "", tactile: bool = False,
               integrator: str = "implicitfast") -> mujoco.MjSpec:
    """World (floor, table) with the robot's MJCF attached unchanged at the origin."""
    sensors = ""
    extension = ""
    if tactile:
        extension = '<extension><plugin plugin="mujoco.sensor.touch_grid"/></extension>'
        sensors = "<sensor>" + "".join(touch_xml(s) for s in robot.tactile_sites) + "</sensor>"
    world = mujoco.MjSpec.from_string(SCENE_XML.format(
        extension=extension, timestep=TIMESTEP, integrator=integrator, bodies=bodies, sensors=sensors))
    arm = mujoco.MjSpec.from_file(str(robot.mjcf_path()))
    world.attach(arm, frame=world.frame("mount"), prefix="")  # empty prefix: names unchanged
    return world


def scene(robot: RobotModel, **kw) -> mujoco.MjModel:
    with warnings.catch_warnings():
        # "empty prefix" and option-conflict notices (the scene's <option> wins) come at compile
        warnings.simplefilter("ignore", UserWarning)
        return scene_spec(robot, **kw).compile()


def qadr(m: mujoco.MjModel, joints) -> list[int]:
    return [int(m.joint(j).qposadr[0]) for j in joints]


def act_ids(m: mujoco.MjModel, names) -> list[int]:
    return [int(m.actuator(a).id) for a in names]


def set_home(m: mujoco.MjModel, d: mujoco.MjData, robot: RobotModel) -> None:
    d.qpos[qadr(m, robot.joint_names)] = robot.home_qpos
    d.qpos[qadr(m, robot.gripper_joints)] = robot.gripper_joint_open
    d.ctrl[act_ids(m, robot.arm_actuators)] = robot.home_qpos
    d.ctrl[m.actuator(robot.gripper_actuator).id] = robot.gripper_ctrl_open
    mujoco.mj_forward(m, d)


# --- structure ------------------------------------------------------------------------------

@MODELS
def test_mjcf_compiles_standalone(robot):
    m = mujoco.MjModel.from_xml_path(str(robot.mjcf_path()))
    base = m.body(robot.base_body)
    assert base.parentid[0] == 0, "the base must be the root body"
    assert base.jntnum[0] == 0, "the base has no joint (the caller attaches it)"
    assert m.nu == robot.n_joints + 1
    assert 0.3 < m.body_subtreemass[base.id] < 25


@MODELS
def test_names_and_order_match_metadata(robot):
    m = mujoco.MjModel.from_xml_path(str(robot.mjcf_path()))
    ids = [m.joint(j).id for j in robot.joint_names]
    assert ids == sorted(ids), "arm joints must appear in the metadata's order"
    assert [m.joint(i).name for i in range(robot.n_joints)] == list(robot.joint_names)
    for j, a in zip(robot.joint_names, robot.arm_actuators):
        act = m.actuator(a)
        assert act.trntype[0] == mujoco.mjtTrn.mjTRN_JOINT and act.trnid[0] == m.joint(j).id
        np.testing.assert_allclose(act.ctrlrange, m.joint(j).range)
        assert act.ctrllimited[0] and act.forcelimited[0]
    for j in robot.gripper_joints:
        m.joint(j)
    g = m.actuator(robot.gripper_actuator)
    lo, hi = g.ctrlrange
    assert lo <= robot.gripper_ctrl_open <= hi and lo <= robot.gripper_ctrl_closed <= hi
    jlo, jhi = m.joint(robot.gripper_joints[0]).range
    assert jlo <= robot.gripper_joint_open <= jhi and jlo <= robot.gripper_joint_closed <= jhi
    m.site(robot.ee_site)
    for s in robot.tactile_sites:
        m.site(s)
    if robot.wrist_camera:
        m.camera(robot.wrist_camera)


@MODELS
def test_joint_ranges_and_torques_within_published_limits(robot):
    m = mujoco.MjModel.from_xml_path(str(robot.mjcf_path()))
    for name, (plo, phi) in PUBLISHED_RANGES[robot.name].items():
        j = m.joint(name)
        assert j.limited[0]
        lo, hi = j.range
        assert plo - 1e-6 <= lo < hi <= phi + 1e-6, (name, lo, hi)
        assert hi - lo > 0.8 * (phi - plo), f"{name}: range much narrower than published"
    for a, limit in zip(robot.arm_actuators, TORQUE_LIMITS[robot.name]):
        np.testing.assert_allclose(m.actuator(a).forcerange, (-limit, limit), rtol=0.15)
    for q, j in zip(robot.home_qpos, robot.joint_names):
        lo, hi = m.joint(j).range
        assert lo < q < hi


@MODELS
def test_attaching_into_a_scene_keeps_actuators_and_constraints(robot):
    alone = mujoco.MjModel.from_xml_path(str(robot.mjcf_path()))
    m = scene(robot)
    assert m.nu == alone.nu and m.neq == alone.neq and m.ntendon == alone.ntendon
    assert m.nexclude == alone.nexclude > 0
    for a in (*robot.arm_actuators, robot.gripper_actuator):
        i = m.actuator(a).id
        j = alone.actuator(a).id
        np.testing.assert_allclose(m.actuator_gainprm[i, :3], alone.actuator_gainprm[j, :3])
        np.testing.assert_allclose(m.actuator_biasprm[i, :3], alone.actuator_biasprm[j, :3])
        np.testing.assert_allclose(m.actuator_forcerange[i], alone.actuator_forcerange[j])
    for j in (*robot.joint_names, *robot.gripper_joints):
        np.testing.assert_allclose(m.joint(j).range, alone.joint(j).range)  # radians survive
        assert m.dof_armature[m.joint(j).dofadr[0]] == alone.dof_armature[alone.joint(j).dofadr[0]]
    assert m.geom("table").id >= 0
    # at home nothing of the robot touches itself or the table
    d = mujoco.MjData(m)
    set_home(m, d, robot)
    assert d.ncon == 0, [(m.geom(c.geom1).name, m.geom(c.geom2).name) for c in d.contact[:d.ncon]]


# --- behaviour --------------------------------------------------------------------------------

@MODELS
@pytest.mark.parametrize("integrator", ["implicitfast", "Euler"])
def test_holds_home_pose_under_gravity(robot, integrator):
    m = scene(robot, integrator=integrator)
    d = mujoco.MjData(m)
    set_home(m, d, robot)
    arm = qadr(m, robot.joint_names)
    for _ in range(int(1.0 / TIMESTEP)):
        mujoco.mj_step(m, d)
    assert np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel))
    err = np.abs(d.qpos[arm] - robot.home_qpos)
    assert err.max() < 0.02, err
    assert np.abs(d.qvel[[m.joint(j).dofadr[0] for j in robot.joint_names]]).max() < 0.01
    g = d.qpos[m.joint(robot.gripper_joints[0]).qposadr[0]]
    assert abs(g - robot.gripper_joint_open) < 0.01 * max(1.0, abs(robot.gripper_joint_open))


@MODELS
def test_arm_tracks_a_step_without_oscillation(robot):
    m = scene(robot)
    d = mujoco.MjData(m)
    set_home(m, d, robot)
    arm = qadr(m, robot.joint_names)
    target = np.array(robot.home_qpos) + 0.2
    d.ctrl[act_ids(m, robot.arm_actuators)] = target
    for _ in range(int(0.5 / TIMESTEP)):
        mujoco.mj_step(m, d)
    assert np.all(np.isfinite(d.qpos))
    assert np.abs(d.qpos[arm] - target).max() < 0.05


@MODELS
def test_tcp_at_home_points_down_in_front_of_the_base(robot):
    m = scene(robot)
    d = mujoco.MjData(m)
    set_home(m, d, robot)
    site = d.site(robot.ee_site)
    z_axis = site.xmat.reshape(3, 3)[:, 2]
    assert z_axis @ np.array([0.0, 0.0, -1.0]) > MIN_DOWN[robot.name], z_axis
    x, y, z = site.xpos
    reach = {"panda": (0.3, 0.7), "so101": (0.08, 0.3)}[robot.name]
    assert reach[0] < x < reach[1] and abs(y) < 0.02, site.xpos
    assert 0.05 < z < {"panda": 0.6, "so101": 0.25}[robot.name], site.xpos
    # the wrist camera looks along the approach direction (camera looks along its -z)
    if robot.wrist_camera:
        cam_view = -d.cam(robot.wrist_camera).xmat.reshape(3, 3)[:, 2]
        assert cam_view @ z_axis > 0.7


@MODELS
def test_touch_sites_look_at_the_object_between_the_fingers(robot):
    """touch_grid looks along its site's -z axis (camera convention): with the gripper closed, that
    axis must point out of the pad, across the gap toward the tool centre point's axis."""
    m = mujoco.MjModel.from_xml_path(str(robot.mjcf_path()))
    d = mujoco.MjData(m)
    set_home(m, d, robot)
    d.qpos[qadr(m, robot.gripper_joints)] = robot.gripper_joint_closed
    mujoco.mj_forward(m, d)
    tcp = d.site(robot.ee_site)
    approach = tcp.xmat.reshape(3, 3)[:, 2]
    for s in robot.tactile_sites:
        site = d.site(s)
        look = -site.xmat.reshape(3, 3)[:, 2]
        across = tcp.xpos - site.xpos
        across -= (across @ approach) * approach  # from the pad straight across to the tcp axis
        across /= np.linalg.norm(across)
        assert look @ across > 0.95, (s, look, across)


@MODELS
def test_grasp_lifts_a_cube_and_touch_grid_reads_it(robot):
    # place the cube between the open fingers at the tcp, resting on a thin post below it
    m0 = scene(robot)
    d0 = mujoco.MjData(m0)
    set_home(m0, d0, robot)
    tcp = d0.site(robot.ee_site).xpos.copy()
    h = CUBE_HALF[robot.name]
    post = (tcp[2] - h) / 2
    bodies = (f'<body name="cube" pos="{tcp[0]} {tcp[1]} {tcp[2]}"><freejoint/>'
              f'<geom type="box" size="{h} {h} {h}" mass="0.05" friction="1 0.005 0.0001"/></body>'
              f'<geom name="post" type="box" pos="{tcp[0]} {tcp[1]} {post}" size="0.008 0.008 {post}"/>')
    m = scene(robot, bodies=bodies, tactile=True)
    d = mujoco.MjData(m)
    set_home(m, d, robot)
    cube = m.body("cube").id
    grip = m.actuator(robot.gripper_actuator).id

    def normal(site: str) -> np.ndarray:
        s = m.sensor(f"{site}_touch")
        return d.sensordata[s.adr[0]:s.adr[0] + s.dim[0]].reshape(3, 4, 4)[0]

    def run(seconds: float, ramp: dict[str, float] | None = None) -> None:
        n = int(seconds / TIMESTEP)
        start = {a: d.ctrl[m.actuator(a).id] for a in (ramp or {})}
        for i in range(n):
            for a, delta in (ramp or {}).items():
                d.ctrl[m.actuator(a).id] = start[a] + delta * min(1.0, 2.0 * (i + 1) / n)
            mujoco.mj_step(m, d)

    run(0.2)
    for s in robot.tactile_sites:
        assert np.abs(normal(s)).sum() < 1e-9, "open gripper: no touch"
    z_rest = d.xpos[cube][2]

    d.ctrl[grip] = robot.gripper_ctrl_closed
    run(0.6)
    g = d.qpos[m.joint(robot.gripper_joints[0]).qposadr[0]]
    assert abs(g - robot.gripper_joint_closed) > 0.1 * abs(robot.gripper_joint_open - robot.gripper_joint_closed), \
        "the fingers closed through the cube"
    for s in robot.tactile_sites:
        assert normal(s).sum() > 1.0, (s, normal(s))

    arm_actuator = dict(zip(robot.joint_names, robot.arm_actuators))
    run(1.0, {arm_actuator[j]: delta for j, delta in LIFT[robot.name].items()})
    assert np.all(np.isfinite(d.qpos))
    assert d.xpos[cube][2] - z_rest > 0.03, "the cube did not rise with the gripper"
    assert np.linalg.norm(d.site(robot.ee_site).xpos - d.xpos[cube]) < 0.015, "the cube slipped"
    for s in robot.tactile_sites:
        assert normal(s).sum() > 1.0

    d.ctrl[grip] = robot.gripper_ctrl_open
    run(0.4)
    for s in robot.tactile_sites:
        assert np.abs(normal(s)).sum() < 1e-9
