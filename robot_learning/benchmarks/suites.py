"""The benchmark suites the runner knows: what each one installs in its own virtual environment, its adapter file
(under ``adapters/``, run there by ``adapters/driver.py``), the task set the papers report, and the published
figures printed beside ours (docs: ``docs/benchmark_suites.md``; settings from the papers in each ``Published``).

A suite can also be given as the path of a ``*_suite.py`` file (``suite_from_file``): an ad-hoc suite with no
requirements beyond the base ones, for adapters under development and for the tests' toy suite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from robot_learning.errors import ConfigError

ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"
BASE_REQUIREMENTS = ("numpy", "msgpack", "websockets", "av")
"""What every suite's venv gets besides the suite's own packages (the driver, the one-file client, videos)."""


@dataclass(frozen=True)
class Published:
    """One published figure to print beside ours, on the same metric, with its setting."""

    figure: str        # e.g. "72.5% success"
    source: str        # e.g. "PAD (one image policy for 50 tasks, 50 demos each)"


@dataclass(frozen=True)
class SuiteRecord:
    """A suite: ``name`` (the CLI's SUITE), ``requirements`` (pip specifiers for its venv, beside
    ``BASE_REQUIREMENTS``), ``adapter`` (its ``*_suite.py`` file), ``default_tasks`` (the set the papers report),
    ``quick_task`` (the one task ``--quick`` runs), ``metric`` (the suite's own per-episode metric besides success,
    a key of the driver's episode metrics; None: success only), ``published`` (task -> figures; ``"*"``: the
    whole suite), ``env`` (variables the driver runs with)."""

    name: str
    requirements: tuple[str, ...]
    adapter: Path
    default_tasks: tuple[str, ...]
    quick_task: str
    metric: str | None = None
    published: Mapping[str, tuple[Published, ...]] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    demos: int = 50
    """Demonstrations per task the papers use (``run``'s default)."""

    def published_for(self, task: str) -> tuple[Published, ...]:
        return tuple(self.published.get(task, ())) + tuple(self.published.get("*", ()))

    @property
    def all_requirements(self) -> tuple[str, ...]:
        return (*self.requirements, *BASE_REQUIREMENTS)


_MUJOCO_ENV = {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}

SUITES: dict[str, SuiteRecord] = {s.name: s for s in (
    SuiteRecord(
        name="metaworld", requirements=("metaworld==3.1.1", "packaging"),   # pins mujoco 3.3.0; packaging undeclared
        adapter=ADAPTERS_DIR / "metaworld_suite.py",
        default_tasks=("reach", "push", "pick-place", "door-open", "drawer-open", "drawer-close",
                       "button-press-topdown", "peg-insert-side", "window-open", "window-close"),   # MT10
        quick_task="reach", env=_MUJOCO_ENV,
        published={"*": (
            Published("72.5% success", "PAD: one image policy for all 50 tasks, 50 demos each, 661M parameters"),
            Published("74.4% success", "DP3, 10 demos, single task, averaged over many tasks (image DP 59.8%)"),
        )}),
    SuiteRecord(
        name="pusht", requirements=("gym-pusht==0.1.8", "pymunk<7", "shapely"),
        adapter=ADAPTERS_DIR / "pusht_suite.py", default_tasks=("pusht",), quick_task="pusht",
        metric="max_coverage", demos=200,
        published={"*": (
            Published("0.95 max coverage (state), 0.91 (image)", "Diffusion Policy paper, 200 demos, 3 seeds x 50"),
            Published("63.8% success, 0.959 max overlap", "LeRobot diffusion, 500 episodes, 200k steps"),
        )}),
    SuiteRecord(
        name="aloha", requirements=("gym-aloha==0.1.5", "mujoco<3.9", "dm-control<1.1"),
        adapter=ADAPTERS_DIR / "aloha_suite.py", default_tasks=("transfer_cube", "insertion"),
        quick_task="transfer_cube", metric="stage", env=_MUJOCO_ENV,
        published={
            "transfer_cube": (Published("86% success", "ACT paper, 50 scripted demos (50% human)"),
                              Published("87.6% success", "LeRobot ACT on human data, 500 episodes, 100k steps")),
            "insertion": (Published("32% success", "ACT paper, 50 scripted demos (20% human)"),),
        }),
    SuiteRecord(
        name="robosuite", requirements=("robosuite==1.5.2",),
        adapter=ADAPTERS_DIR / "robosuite_suite.py", default_tasks=("lift", "can"), quick_task="lift",
        env=_MUJOCO_ENV, demos=200,
        published={
            "lift": (Published("1.00 success", "Diffusion Policy, state, 200 human demos (robomimic ph)"),),
            "can": (Published("1.00 success", "Diffusion Policy, state, 200 human demos (robomimic ph)"),),
        }),
)}


def get_suite(name: str) -> SuiteRecord:
    """The registered suite ``name``, or an ad-hoc one from a ``*_suite.py`` path."""
    if name.endswith(".py"):
        return suite_from_file(Path(name))
    try:
        return SUITES[name]
    except KeyError:
        raise ConfigError.expected("benchmark suite", f"one of {sorted(SUITES)} or a path to a *_suite.py file",
                                   repr(name)) from None


def suite_from_file(path: Path, requirements: tuple[str, ...] = ()) -> SuiteRecord:
    """An ad-hoc suite from its adapter file (its tasks are asked from the file itself)."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError.expected("suite file", "an existing *_suite.py file", str(path))
    name = path.stem.removesuffix("_suite")
    return SuiteRecord(name=name, requirements=requirements, adapter=path, default_tasks=(), quick_task="")


def with_file_defaults(suite: SuiteRecord, info: dict) -> SuiteRecord:
    """An ad-hoc suite with the default task set its file reports (``driver.py ... tasks``)."""
    from dataclasses import replace

    defaults = tuple(info.get("default_tasks") or info["tasks"][:1])
    return replace(suite, default_tasks=defaults, quick_task=defaults[0] if defaults else "")


def check_adapter(suite: SuiteRecord) -> None:
    if not suite.adapter.is_file():
        raise ConfigError(f"benchmark suite {suite.name}: its adapter {suite.adapter.name} is not written yet "
                          f"(expected at {suite.adapter})")


def parse_tasks(text: str | None, suite: SuiteRecord, known: list[str] | None = None) -> tuple[str, ...]:
    """``--tasks`` ("T1,T2", "all" / None: the suite's default set), each checked against ``known``."""
    if text is None or text.strip() in ("", "default"):
        tasks = suite.default_tasks or tuple(known or ())
    elif text.strip() == "all":
        tasks = tuple(known or suite.default_tasks)
    else:
        tasks = tuple(t.strip() for t in text.split(",") if t.strip())
    if not tasks:
        raise ConfigError.expected("--tasks", "at least one task", repr(text))
    if known is not None:
        bad = [t for t in tasks if t not in known]
        if bad:
            raise ConfigError.expected(f"{suite.name} task", f"one of {known}", ", ".join(map(repr, bad)))
    return tasks
