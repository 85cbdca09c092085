"""The shared flag groups (nested frozen dataclasses with flat flag names), ``--device`` everywhere, the CLI's
logging, and the error types that are not configuration errors. Fast: nothing here runs a sim or trains."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from robot_learning.cli.main import main, parse
from robot_learning.core.device import check_device, resolve_device
from robot_learning.errors import (ConfigError, InsufficientDataError, RobotLearningError, SimulationDivergedError,
                                   StorageError, TrainingDivergedError, WorkerFailedError)
from robot_learning.evaluation.config import HeldOutEvalConfig, SamplingConfig
from robot_learning.rl.config import RLRunConfig


def _cmd(argv):
    cmd = parse(argv)
    return getattr(cmd, "cmd", cmd)


def test_the_evaluation_flags_are_one_config_shared_with_the_same_flag_names():
    train = _cmd(["train", "--dataset", "d", "--out", "o", "--eval-episodes", "3", "--eval-seed", "7"])
    residual = _cmd(["finetune", "residual", "--checkpoint", "c", "--out", "o", "--eval-episodes", "3",
                     "--eval-seed", "7"])
    rlpd = _cmd(["finetune", "rlpd", "--checkpoint", "c", "--out", "o", "--eval-episodes", "3", "--eval-seed", "7"])
    assert train.evaluation == residual.evaluation == rlpd.evaluation == HeldOutEvalConfig(3, 7)
    # each command keeps its own default
    assert _cmd(["train", "--dataset", "d", "--out", "o"]).evaluation.eval_episodes == 10
    assert _cmd(["finetune", "rlpd", "--checkpoint", "c", "--out", "o"]).evaluation.eval_episodes == 50


def test_the_rl_run_flags_are_one_config_shared_by_both_finetune_commands():
    argv = ["--checkpoint", "c", "--out", "o", "--minutes", "2", "--eval-every-min", "1", "--seed", "3", "--resume",
            "--no-progress", "--device", "cpu"]
    residual, rlpd = _cmd(["finetune", "residual", *argv]), _cmd(["finetune", "rlpd", *argv])
    assert residual.run == rlpd.run == RLRunConfig(Path("o"), 2.0, 1.0, 3, True, False, "cpu")


def test_the_sampling_flags_are_one_config_shared_by_eval_and_serve():
    argv = ["--checkpoint", "c", "--sampler", "ddim", "--sampling-steps", "4", "--sampling-temperature", "0.5"]
    assert _cmd(["eval", *argv]).sampling == _cmd(["serve", *argv]).sampling == SamplingConfig("ddim", 4, 0.5)
    with pytest.raises(ConfigError, match="--sampling-steps: expected >= 1"):
        SamplingConfig(sampling_steps=0)
    with pytest.raises(ConfigError, match="--sampler"):
        SamplingConfig(sampler="dpm")


def test_the_rig_flags_are_one_config_shared_by_teleoperate_record_and_deploy(capsys):
    from robot_learning.rig import RigConfig, SessionConfig

    rig = ["--robot", "so101", "--robot-port", "/dev/a", "--robot-id", "f", "--teleop", "so101-leader",
           "--teleop-port", "/dev/b", "--teleop-id", "l", "--calibration-dir", "cal", "--rate-hz", "30",
           "--cameras", "opencv:0", "--task", "wave"]
    teleoperate = _cmd(["teleoperate", *rig, "--duration-s", "2", "--record", "ds"])
    record = _cmd(["record", "--dataset", "ds", *rig, "--episode-s", "5"])
    deploy = _cmd(["deploy", "--policy", "p", *rig, "--duration-s", "2", "--record", "ds"])
    assert teleoperate.rig == record.rig == deploy.rig == RigConfig(
        "so101", "so101-leader", "/dev/a", "f", "/dev/b", "l", Path("cal"), 30.0, ("opencv:0",), "wave")
    assert teleoperate.session == deploy.session == SessionConfig(2.0, Path("ds"))
    # each command keeps its own defaults
    assert _cmd(["teleoperate"]).rig == RigConfig("sim:so101", "keyboard", cameras=())
    assert _cmd(["record", "--dataset", "ds"]).rig == RigConfig("sim:lift", "scripted", cameras=None)
    assert _cmd(["deploy", "--policy", "p"]).rig == RigConfig("sim:lift", None, cameras=())
    # the shared checks, and each command's own teleop kinds; one line each, without tyro's wrapping
    for argv, error in ((["teleoperate", "--rate-hz", "0"], "--rate-hz: expected 1..1000, found 0.0"),
                        (["record", "--dataset", "ds", "--robot", "so101"], "--robot so101 needs --robot-port"),
                        (["deploy", "--policy", "p", "--robot", "x"], "--robot: expected one of so101, koch"),
                        (["teleoperate", "--teleop", "so101-leader"], "--teleop so101-leader needs --teleop-port"),
                        (["teleoperate", "--teleop", "scripted"], "--teleop: expected one of so101-leader"),
                        (["deploy", "--policy", "p", "--teleop", "keyboard"], "--teleop takes over a real arm"),
                        (["teleoperate", "--duration-s", "0"], "--duration-s: expected > 0, found 0.0")):
        assert main(argv) == 2
        assert capsys.readouterr().err.startswith(f"robot-learning: error: {error}")
    with pytest.raises(ConfigError, match="--rate-hz"):
        RigConfig(rate_hz=2000)


@pytest.mark.parametrize("argv", [
    ["train", "--dataset", "d", "--out", "o"],
    ["eval", "--checkpoint", "c"],
    ["serve", "--checkpoint", "c"],
    ["deploy", "--policy", "p"],
    ["finetune", "residual", "--checkpoint", "c", "--out", "o"],
    ["finetune", "rlpd", "--checkpoint", "c", "--out", "o"],
    ["finetune", "actor", "--learner", "ws://127.0.0.1:1", "--checkpoint", "c"],
])
def test_every_device_flag_defaults_to_auto_and_is_checked(argv, capsys):
    cmd = _cmd(argv)
    assert (cmd.run.device if hasattr(cmd, "run") else cmd.device) == "auto"
    assert main([*argv, "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err == "robot-learning: error: --device: expected auto, cpu, cuda or cuda:N, found 'gpu'\n"


def test_resolve_device():
    assert resolve_device("cpu") == "cpu"
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "CPU", "cuda:", "cuda:x", "mps", ""):
        with pytest.raises(ConfigError, match="expected auto, cpu, cuda or cuda:N"):
            check_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device is present"):
            check_device("cuda:0")
    else:
        with pytest.raises(ConfigError, match="CUDA devices present"):
            check_device(f"cuda:{torch.cuda.device_count()}")


def test_failures_that_are_not_configuration_have_their_own_types():
    for t in (SimulationDivergedError, TrainingDivergedError, WorkerFailedError, StorageError):
        assert issubclass(t, RobotLearningError) and not issubclass(t, ConfigError)
    assert issubclass(InsufficientDataError, ConfigError)


@pytest.mark.parametrize("error, code", [(ConfigError("bad"), 2), (InsufficientDataError("none"), 2),
                                         (SimulationDivergedError("nan"), 1), (WorkerFailedError("died"), 1),
                                         (TrainingDivergedError("nan"), 1), (StorageError("full"), 1)])
def test_exit_codes(monkeypatch, capsys, error, code):
    import robot_learning.cli.main as cli

    def fail(config):
        raise error

    monkeypatch.setattr(cli, "_runner", lambda cmd: (fail, cmd))
    assert main(["doctor"]) == code
    assert capsys.readouterr().err == f"robot-learning: error: {error}\n"


def test_the_cli_shows_library_logs_as_plain_lines(monkeypatch, capsys):
    import robot_learning.cli.main as cli

    def run(config):
        logging.getLogger("robot_learning.some.module").info("an info line")
        logging.getLogger("robot_learning.sim.scene").warning("MuJoCo warning: a warning line")
        logging.getLogger("robot_learning.deploy.server").info("policy server: a status line")   # stderr, as ever
        logging.getLogger("robot_learning.some.module").debug("a debug line")
        return 0

    monkeypatch.setattr(cli, "_runner", lambda cmd: (run, cmd))
    assert main(["doctor"]) == 0
    assert main(["doctor"]) == 0          # configured once: no line twice
    out, err = capsys.readouterr()
    assert out == "an info line\n" * 2
    assert err == "MuJoCo warning: a warning line\npolicy server: a status line\n" * 2
