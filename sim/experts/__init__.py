"""Scripted experts per task; ``make_expert(env)`` picks the one for the env's task."""

from __future__ import annotations

import importlib

from robot_learning.errors import ConfigError

_EXPERTS = {
    "lift": "robot_learning.sim.experts.pick_place:LiftExpert",
    "lift_color": "robot_learning.sim.experts.pick_place:LiftColorExpert",
    "stack": "robot_learning.sim.experts.pick_place:StackExpert",
    "push_t": "robot_learning.sim.experts.push_t:PushTExpert",
    "insertion": "robot_learning.sim.experts.insertion:InsertionExpert",
}


def make_expert(env, noise=None):
    from robot_learning.sim.experts.base import ExpertNoise

    name = env.task.name
    target = _EXPERTS.get(name) or getattr(env.task, "expert", None)
    if target is None:
        raise ConfigError.expected(f"scripted expert for task {name!r}", f"one of {sorted(_EXPERTS)}", "none")
    if isinstance(target, str):
        module, cls = target.split(":")
        target = getattr(importlib.import_module(module), cls)
    return target(env, noise or ExpertNoise())
