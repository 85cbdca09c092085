"""Task registry. Built-in tasks resolve lazily by name; other packages add theirs with
``register_task`` (no work at import)."""

from __future__ import annotations

import difflib
import importlib

from robot_learning.errors import ConfigError
from robot_learning.sim.tasks.base import Task

_BUILTIN = {
    "lift": "robot_learning.sim.tasks.lift:Lift",
    "lift_color": "robot_learning.sim.tasks.lift_color:LiftColor",
    "stack": "robot_learning.sim.tasks.stack:Stack",
    "push_t": "robot_learning.sim.tasks.push_t:PushT",
    "insertion": "robot_learning.sim.tasks.insertion:Insertion",
}
_EXTRA: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Add a task class (usable as a decorator). Its ``name`` must be new."""
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise ConfigError.expected("register_task argument", "a Task subclass", cls)
    if cls.name in _BUILTIN or cls.name in _EXTRA:
        raise ConfigError.expected("task name", "a name not registered yet", repr(cls.name))
    _EXTRA[cls.name] = cls
    return cls


def task_names() -> list[str]:
    return sorted({*_BUILTIN, *_EXTRA})


def get_task_class(name: str) -> type[Task]:
    if name in _EXTRA:
        return _EXTRA[name]
    if name not in _BUILTIN:
        close = difflib.get_close_matches(name, task_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError.expected("task", f"one of {task_names()}", f"{name!r}{hint}")
    module, cls = _BUILTIN[name].split(":")
    return getattr(importlib.import_module(module), cls)
