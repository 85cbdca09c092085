"""Importing this module registers the gymnasium ids, for gymnasium's ``module:EnvId`` syntax:
``gymnasium.make("robot_learning.sim.envs:robot_learning/Lift-v0")``. Nothing else imports it."""

from robot_learning.sim.gym_env import register_envs

register_envs()
