"""MuJoCo robots, tasks, cameras and tactile sensors behind the device contracts
(``robot_learning.sim``). Lands with the sim-world issue; the emulated arm in
``robot_learning.hardware.emulated_arm`` stands in until then."""
