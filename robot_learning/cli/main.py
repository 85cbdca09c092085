"""``robot-learning``: the command-line entry point.

Each subcommand is a frozen dataclass config (parsed by tyro) plus a ``run(config) -> int``
function imported only when that subcommand runs, so ``--help`` stays fast. Errors are caught
here and printed as one line: usage errors and invalid configs exit 2, runtime errors 1,
Ctrl-C 130.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Callable, Sequence, Union

import tyro

from robot_learning.cli.commands import (DatasetDeleteConfig, DatasetInfoConfig, DatasetMergeConfig,
                                        DatasetReplayConfig, DatasetSplitConfig, DatasetVerifyConfig,
                                        DatasetViewConfig, DemoConfig, DoctorConfig, RecordConfig, SimCheckConfig,
                                        SimListConfig, SimViewConfig)
from robot_learning.errors import ConfigError, RobotLearningError

PROG = "robot-learning"

SimCommand = Union[
    Annotated[SimListConfig, tyro.conf.subcommand("list")],
    Annotated[SimCheckConfig, tyro.conf.subcommand("check")],
    Annotated[SimViewConfig, tyro.conf.subcommand("view")],
]


@dataclass(frozen=True)
class SimConfig:
    """MuJoCo sim tools: list tasks, check scripted experts, write videos."""

    cmd: tyro.conf.OmitSubcommandPrefixes[SimCommand]


DatasetCommand = Union[
    Annotated[DatasetInfoConfig, tyro.conf.subcommand("info")],
    Annotated[DatasetVerifyConfig, tyro.conf.subcommand("verify")],
    Annotated[DatasetReplayConfig, tyro.conf.subcommand("replay")],
    Annotated[DatasetViewConfig, tyro.conf.subcommand("view")],
    Annotated[DatasetSplitConfig, tyro.conf.subcommand("split")],
    Annotated[DatasetMergeConfig, tyro.conf.subcommand("merge")],
    Annotated[DatasetDeleteConfig, tyro.conf.subcommand("delete-episode")],
]


@dataclass(frozen=True)
class DatasetConfig:
    """Dataset tools: info, verify, replay, view, split, merge, delete-episode."""

    cmd: tyro.conf.OmitSubcommandPrefixes[DatasetCommand]


Command = Union[
    Annotated[DemoConfig, tyro.conf.subcommand("demo")],
    Annotated[RecordConfig, tyro.conf.subcommand("record")],
    Annotated[tyro.conf.OmitSubcommandPrefixes[DatasetConfig], tyro.conf.subcommand("dataset")],
    Annotated[tyro.conf.OmitSubcommandPrefixes[SimConfig], tyro.conf.subcommand("sim")],
    Annotated[DoctorConfig, tyro.conf.subcommand("doctor")],
]


def _runner(cmd: object) -> Callable[[object], int]:
    if isinstance(cmd, SimConfig):
        from robot_learning.cli import sim_cmds
        runner = {SimListConfig: sim_cmds.run_sim_list, SimCheckConfig: sim_cmds.run_sim_check,
                  SimViewConfig: sim_cmds.run_sim_view}[type(cmd.cmd)]
        return lambda c: runner(c.cmd)
    if isinstance(cmd, RecordConfig):
        from robot_learning.cli.record_cmds import run_record
        return run_record
    if isinstance(cmd, DatasetConfig):
        from robot_learning.cli import dataset_cmds, record_cmds
        runner = {DatasetInfoConfig: record_cmds.run_dataset_info,
                  DatasetVerifyConfig: record_cmds.run_dataset_verify,
                  DatasetReplayConfig: dataset_cmds.run_replay, DatasetViewConfig: dataset_cmds.run_view,
                  DatasetSplitConfig: dataset_cmds.run_split, DatasetMergeConfig: dataset_cmds.run_merge,
                  DatasetDeleteConfig: dataset_cmds.run_delete}[type(cmd.cmd)]
        return lambda c: runner(c.cmd)
    if isinstance(cmd, DemoConfig):
        from robot_learning.cli.demo import run_demo
        return run_demo
    if isinstance(cmd, DoctorConfig):
        from robot_learning.cli.doctor import run_doctor
        return run_doctor
    raise AssertionError(f"no runner for {type(cmd).__name__}")


_BOX = re.compile(r"^[\s│╭╮╰╯─┃━┏┓┗┛]+|[\s│╭╮╰╯─┃━┏┓┗┛]+$")


def condense_usage_error(text: str) -> str:
    """tyro draws its errors in a box; reduce it to one line: '<title>: <first message>'."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    title, message = "", []
    for ln in lines:
        stripped = _BOX.sub("", ln)
        if ln.lstrip().startswith("╭"):
            title = stripped.strip("─ ").strip()
            continue
        if not stripped or set(stripped) <= set("─━ "):
            if message:
                break
            continue
        if stripped.lower().startswith(("usage:", "for full helptext")):
            continue
        message.append(stripped)
    msg = " ".join(message).strip() or (lines[-1].strip() if lines else "invalid arguments")
    if title and not msg.lower().startswith(title.lower()):
        msg = f"{title.lower()}: {msg}"
    return msg


class UsageError(Exception):
    pass


def parse(argv: Sequence[str]) -> object:
    """Parse argv into a config; raise UsageError with one line on bad input."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return tyro.cli(Command, args=list(argv), prog=PROG,
                            description="Teleoperate, record, train and deploy robot manipulation policies.")
    except SystemExit as e:
        if e.code in (0, None):
            sys.stderr.write(err.getvalue())
            raise
        raise UsageError(condense_usage_error(err.getvalue())) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        cmd = parse(argv)
    except UsageError as e:
        print(f"{PROG}: error: {e} (see {PROG} --help)", file=sys.stderr)
        return 2
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    try:
        return int(_runner(cmd)(cmd) or 0)
    except ConfigError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except RobotLearningError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def entrypoint() -> None:
    sys.exit(main())
