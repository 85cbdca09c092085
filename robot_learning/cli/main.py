"""``robot-learning``: the command-line entry point.

Each subcommand is a frozen dataclass config (parsed by tyro) plus a ``run(config) -> int``
function imported only when that subcommand runs, so ``--help`` stays fast. Errors are caught
here and printed as one line. Exit codes: 0 success; 2 a usage error or an invalid configuration
(``ConfigError``); 1 a failure while running (any other ``RobotLearningError``: a diverged simulation or
training, a failed worker process, a failed dataset write, a device fault, a safety violation); 130 Ctrl-C.
What the library logs reaches the terminal as plain lines (``robot_learning.cli.log_setup``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import re
import sys
from dataclasses import dataclass
from typing import Annotated, Callable, Literal, Sequence, Union

import tyro

from robot_learning.cli.commands import (DatasetDeleteConfig, DatasetInfoConfig, DatasetMergeConfig,
                                        DatasetReplayConfig, DatasetSplitConfig, DatasetVerifyConfig,
                                        DatasetViewConfig, DemoConfig, DoctorConfig, EvalConfig, RecordConfig, SimCheckConfig,
                                        SimListConfig, SimViewConfig)
from robot_learning.cli.benchmark_configs import (BenchmarkConfig, BenchmarkDemosConfig, BenchmarkEvalConfig,
                                                  BenchmarkRunConfig, BenchmarkSetupConfig)
from robot_learning.cli.deploy_configs import DeployConfig, ServeConfig
from robot_learning.cli.hardware_configs import (CalibrateConfig, FindCamerasConfig, FindPortsConfig,
                                                 TeleoperateConfig)
from robot_learning.errors import ConfigError, RobotLearningError
from robot_learning.rl.config import ActorConfig, CriticTrainConfig, FinetuneResidualConfig, FinetuneRLPDConfig
from robot_learning.training.config import TokenizerTrainConfig, TrainConfig

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


FinetuneCommand = Union[
    Annotated[FinetuneResidualConfig, tyro.conf.subcommand("residual")],
    Annotated[FinetuneRLPDConfig, tyro.conf.subcommand("rlpd")],
    Annotated[ActorConfig, tyro.conf.subcommand("actor")],
]


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tune a trained policy in the twin without retraining it: residual PPO (on-policy, vectorised envs) or
    RLPD (off-policy SAC with demonstrations; a learner here and actor processes), and the actor side of RLPD."""

    cmd: tyro.conf.OmitSubcommandPrefixes[FinetuneCommand]


def train_config_type() -> type:
    """``TrainConfig`` with ``--policy`` and ``--sampler`` choices and help read from the family registry now (a
    family added by an entry point shows up; nothing is read at import)."""
    from robot_learning.policies.registry import families, help_text

    fams = [f for f in families().values() if f.trainable]
    samplers = tuple(dict.fromkeys(s for f in fams for s in f.samplers))
    return dataclasses.make_dataclass(
        "TrainConfig",
        [("policy", Annotated[Literal[tuple(f.name for f in fams)], tyro.conf.arg(help=help_text())],
          dataclasses.field(default="diffusion")),
         ("sampler", Annotated[Literal[samplers] | None, tyro.conf.arg(
             help="Sampler saved as the policy's default (eval can override): " + "; ".join(
                 f"{f.name} {' | '.join(f.samplers)}" for f in fams if f.samplers)
             + " (the first is the default)")], dataclasses.field(default=None))],
        bases=(TrainConfig,), frozen=True, namespace={"__doc__": TrainConfig.__doc__})


def command_type():
    return Union[
        Annotated[DemoConfig, tyro.conf.subcommand("demo")],
        Annotated[TeleoperateConfig, tyro.conf.subcommand("teleoperate")],
        Annotated[RecordConfig, tyro.conf.subcommand("record")],
        Annotated[train_config_type(), tyro.conf.subcommand("train")],
        *_COMMANDS_AFTER_TRAIN]


_COMMANDS_AFTER_TRAIN = [
    Annotated[EvalConfig, tyro.conf.subcommand("eval")],
    Annotated[tyro.conf.OmitSubcommandPrefixes[FinetuneConfig], tyro.conf.subcommand("finetune")],
    Annotated[TokenizerTrainConfig, tyro.conf.subcommand("tokenizer")],
    Annotated[CriticTrainConfig, tyro.conf.subcommand("critic")],
    Annotated[ServeConfig, tyro.conf.subcommand("serve")],
    Annotated[DeployConfig, tyro.conf.subcommand("deploy")],
    Annotated[tyro.conf.OmitSubcommandPrefixes[DatasetConfig], tyro.conf.subcommand("dataset")],
    Annotated[tyro.conf.OmitSubcommandPrefixes[SimConfig], tyro.conf.subcommand("sim")],
    Annotated[tyro.conf.OmitSubcommandPrefixes[BenchmarkConfig], tyro.conf.subcommand("benchmark")],
    Annotated[CalibrateConfig, tyro.conf.subcommand("calibrate")],
    Annotated[FindPortsConfig, tyro.conf.subcommand("find-ports")],
    Annotated[FindCamerasConfig, tyro.conf.subcommand("find-cameras")],
    Annotated[DoctorConfig, tyro.conf.subcommand("doctor")],
]


# Each config type -> "module:function" that runs it, imported only when that command runs.
RUNNERS: dict[type, str] = {
    DemoConfig: "robot_learning.cli.demo:run_demo",
    DoctorConfig: "robot_learning.cli.doctor:run_doctor",
    RecordConfig: "robot_learning.cli.record_cmds:run_record",
    TeleoperateConfig: "robot_learning.cli.hardware_cmds:run_teleoperate",
    CalibrateConfig: "robot_learning.cli.hardware_cmds:run_calibrate",
    FindPortsConfig: "robot_learning.cli.hardware_cmds:run_find_ports",
    FindCamerasConfig: "robot_learning.cli.hardware_cmds:run_find_cameras",
    TrainConfig: "robot_learning.cli.learn_cmds:run_train",
    EvalConfig: "robot_learning.cli.learn_cmds:run_eval",
    FinetuneResidualConfig: "robot_learning.cli.rl_cmds:run_finetune_residual",
    FinetuneRLPDConfig: "robot_learning.cli.rl_cmds:run_finetune_rlpd",
    ActorConfig: "robot_learning.cli.rl_cmds:run_actor",
    CriticTrainConfig: "robot_learning.cli.rl_cmds:run_critic_train",
    TokenizerTrainConfig: "robot_learning.cli.learn_cmds:run_tokenizer_train",
    ServeConfig: "robot_learning.cli.deploy_cmds:run_serve",
    DeployConfig: "robot_learning.cli.deploy_run:run_deploy",
    SimListConfig: "robot_learning.cli.sim_cmds:run_sim_list",
    SimCheckConfig: "robot_learning.cli.sim_cmds:run_sim_check",
    SimViewConfig: "robot_learning.cli.sim_cmds:run_sim_view",
    DatasetInfoConfig: "robot_learning.cli.dataset_cmds:run_info",
    DatasetVerifyConfig: "robot_learning.cli.dataset_cmds:run_verify",
    DatasetReplayConfig: "robot_learning.cli.dataset_cmds:run_replay",
    DatasetViewConfig: "robot_learning.cli.dataset_cmds:run_view",
    DatasetSplitConfig: "robot_learning.cli.dataset_cmds:run_split",
    DatasetMergeConfig: "robot_learning.cli.dataset_cmds:run_merge",
    DatasetDeleteConfig: "robot_learning.cli.dataset_cmds:run_delete",
    BenchmarkSetupConfig: "robot_learning.cli.benchmark_cmds:run_setup",
    BenchmarkDemosConfig: "robot_learning.cli.benchmark_cmds:run_demos",
    BenchmarkEvalConfig: "robot_learning.cli.benchmark_cmds:run_eval",
    BenchmarkRunConfig: "robot_learning.cli.benchmark_cmds:run_benchmark_cmd",
}


def _runner(cmd: object) -> tuple[Callable[[object], int], object]:
    """The function that runs ``cmd`` and its config (command groups unwrap to their subcommand)."""
    if isinstance(cmd, (SimConfig, DatasetConfig, FinetuneConfig, BenchmarkConfig)):
        cmd = cmd.cmd
    runner = next(RUNNERS[c] for c in type(cmd).__mro__ if c in RUNNERS)   # train's type is a TrainConfig subclass
    module, func = runner.split(":")
    return getattr(importlib.import_module(module), func), cmd


_BOX = re.compile(r"^[\s│╭╮╰╯─┃━┏┓┗┛]+|[\s│╭╮╰╯─┃━┏┓┗┛]+$")


def condense_usage_error(text: str) -> str:
    """tyro draws its errors in a box; reduce it to one line: '<title>: <first message>'."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    rule = set("─━- ")   # a separator line (without a terminal, rich draws no box: title, a rule of '-', message)
    title, message = "", []
    for i, ln in enumerate(lines):
        stripped = _BOX.sub("", ln)
        if ln.lstrip().startswith("╭"):
            title = stripped.strip("─ ").strip()
            continue
        following = _BOX.sub("", lines[i + 1]) if i + 1 < len(lines) else ""
        if not title and not message and following and set(following) <= rule and set(stripped) - rule:
            title = stripped.strip()
            continue
        if not stripped or set(stripped) <= rule:
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
            return tyro.cli(command_type(), args=list(argv), prog=PROG,
                            description="Teleoperate, record, train and deploy robot manipulation policies.")
    except SystemExit as e:
        if e.code in (0, None):
            sys.stderr.write(err.getvalue())
            raise
        config_error = _config_error_behind(e)
        if config_error is not None:   # a config's own check (__post_init__): its message alone, not tyro's box
            raise config_error from None
        raise UsageError(condense_usage_error(err.getvalue())) from None


def _config_error_behind(exc: BaseException) -> ConfigError | None:
    """The ``ConfigError`` a config's ``__post_init__`` raised, if that is what tyro turned into its exit (tyro
    wraps it as an instantiation error and exits inside the handler, so it is on the exception's context chain)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, ConfigError):
            return exc
        seen.add(id(exc))
        exc = exc.__context__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from robot_learning.cli.log_setup import configure_logging

    configure_logging()
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
        run, config = _runner(cmd)
        return int(run(config) or 0)
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
    import signal

    # Ctrl-C (SIGINT) stops every command the same way, even when a shell started it as a background job (which
    # ignores SIGINT, and Python then never raises KeyboardInterrupt): `kill -INT` saves like Ctrl-C.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
