"""Training: dense in-memory batches, EMA, the train/eval CLI (resume, errors), loss going down,
and resume equivalence, on a small recorded lift dataset."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from robot_learning.cli.main import main
from robot_learning.core.features import FeatureSet
from robot_learning.datasets.dense import DenseWindows
from robot_learning.datasets.sampler import WindowSampler
from robot_learning.datasets.store import EpisodeStore
from robot_learning.errors import ConfigError
from robot_learning.evaluation.config import HeldOutEvalConfig
from robot_learning.training.config import TrainConfig, select_features
from robot_learning.training.ema import EMA
from robot_learning.training.logs import read_csv
from robot_learning.training.trainer import train
from support.sim_recordings import LIFT_SEEDS as SEEDS, record_lift



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return record_lift(tmp_path_factory.mktemp("training") / "lift.zarr", camera_fps=30.0)   # rows != ticks


# --------------------------------------------------------------------------- dense batches
@pytest.mark.parametrize("To, Tp, Ta, pad_after", [(2, 16, 8, None), (3, 8, 2, 5)])
def test_dense_batches_equal_sampler_items(dataset, To, Tp, Ta, pad_after):
    store = EpisodeStore.open(dataset)
    available = FeatureSet(s for st in store.schema.streams for s in st.features)
    features = select_features("state,rgb,tactile", available)
    assert {"front_rgb", "wrist_rgb", "left_pad_taxels", "cube_pos_m"} <= set(features.names)
    sampler = WindowSampler(store, list(features.names), To=To, Tp=Tp, Ta=Ta, pad_after=pad_after)
    dense = DenseWindows(sampler)
    assert len(dense) == len(sampler) > 40
    order = np.random.default_rng(0).permutation(len(sampler))
    images = {f"obs.{s.name}" for s in features if s.kind.value == "rgb"}
    assert dense.images == images
    for part in np.array_split(order, 3):
        batch = dense.batch(torch.as_tensor(part))
        for j, i in enumerate(part):
            item = sampler[int(i)]
            assert set(batch) == set(item) - {"episode_index", "tick"}
            for k, v in batch.items():
                got = v[j].numpy()
                if k in images:
                    assert v.dtype == torch.uint8 and got.shape == (To, 3, 96, 96)
                    want = np.asarray(item[k]).transpose(0, 3, 1, 2)   # HWC -> CHW
                else:
                    want = np.asarray(item[k])
                    if want.dtype != np.bool_:
                        assert v.dtype == torch.float32
                        want = want.astype(np.float32)
                assert np.array_equal(got, want), (k, int(i))
    # the windows are not trivially alike: padding occurs, and camera frames change within a window
    all_items = dense.batch(torch.arange(len(dense)))
    assert all_items["obs_is_pad"].any() and all_items["action_is_pad"].any()
    f = all_items["obs.front_rgb"]
    assert (f[:, 0] != f[:, -1]).any()
    with pytest.raises(ConfigError, match="in-memory budget"):
        DenseWindows(sampler, max_bytes=100_000)


# --------------------------------------------------------------------------- EMA
def test_ema_decay_schedule():
    ema = EMA(nn.Linear(2, 2))
    assert ema.decay(0) == 0.0 and ema.decay(1) == 0.0      # first updates copy the weights
    for step in (2, 3, 11, 100, 5000):
        n = step - 1
        assert ema.decay(step) == pytest.approx(1 - (1 + n) ** -0.75, rel=1e-12)
    assert ema.decay(10**7) == 0.9999                       # clamped at max_decay
    assert ema.decay(2) < ema.decay(3) < ema.decay(100)
    late = EMA(nn.Linear(2, 2), update_after_step=5, min_decay=0.5, inv_gamma=2.0)
    assert late.decay(6) == 0.0
    assert late.decay(7) == 0.5                             # 1 - 1.5^-0.75 = 0.26 -> min_decay
    assert late.decay(50) == pytest.approx(1 - (1 + 44 / 2.0) ** -0.75)


def test_ema_averages_parameters_and_copies_buffers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model)
    assert all(not p.requires_grad for p in ema.averaged.parameters()) and not ema.averaged.training
    manual = [p.detach().clone() for p in model.parameters()]
    decays = []
    for k in range(12):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(5, 3))   # moves the BatchNorm running stats (buffers)
        d_expected = ema.decay()
        d = ema.update(model)
        assert d == d_expected and ema.step == k + 1
        decays.append(d)
        manual = [m * d + p.detach() * (1 - d) for m, p in zip(manual, model.parameters())]
        for m, a in zip(manual, ema.averaged.parameters()):
            torch.testing.assert_close(a, m, rtol=1e-5, atol=1e-6)
        for b_avg, b in zip(ema.averaged.buffers(), model.buffers()):
            assert torch.equal(b_avg, b)
    assert decays[:2] == [0.0, 0.0] and decays[2] == pytest.approx(1 - 2 ** -0.75)
    # the average lags the weights once the decay is non-zero
    assert not torch.allclose(next(ema.averaged.parameters()), next(model.parameters()))


# --------------------------------------------------------------------------- the CLI
def _one_error_line(err):
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("robot-learning: error:") and "Traceback" not in err
    return lines[0]


def test_cli_train_resume_and_eval(dataset, tmp_path, capfd):
    run = tmp_path / "run"
    base = ["train", "--dataset", str(dataset), "--out", str(run), "--batch-size", "8", "--eval-episodes", "1",
            "--no-progress"]
    assert main([*base, "--steps", "2"]) == 0
    out, err = capfd.readouterr()
    assert "trained 2 steps" in out
    for f in ("policy/config.json", "policy/model.safetensors", "policy/normalizer.safetensors",
              "checkpoint/state.json", "train_log.csv", "eval_log.csv", "curves.png", "summary.json",
              "train_config.json"):
        assert (run / f).stat().st_size > 0, f
    assert json.loads((run / "checkpoint/state.json").read_text())["step"] == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["eval"]["episodes"] == 1 and summary["eval"]["task"] == "lift"
    assert summary["eval"]["seeds"] == [100_000]
    videos = sorted((run / "videos").rglob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    assert [r["step"] for r in read_csv(run / "train_log.csv")] == ["2"]
    assert [r["step"] for r in read_csv(run / "eval_log.csv")] == ["2"]
    policy_doc = json.loads((run / "policy/config.json").read_text())
    assert policy_doc["meta"]["train_step"] == 2 and policy_doc["meta"]["train_seeds"] == list(SEEDS)

    # resume: continues from step 2 to 4, appending to the logs
    assert main([*base, "--steps", "4", "--resume"]) == 0
    out, err = capfd.readouterr()
    assert "trained 4 steps" in out
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    assert json.loads((run / "checkpoint/state.json").read_text())["step"] == 4
    assert json.loads((run / "policy/config.json").read_text())["meta"]["train_step"] == 4
    assert [r["step"] for r in read_csv(run / "train_log.csv")] == ["2", "4"]
    assert [r["step"] for r in read_csv(run / "eval_log.csv")] == ["2", "4"]

    # the first command again, without --resume: refused, the run left as it was
    assert main([*base, "--steps", "2"]) == 2
    out, err = capfd.readouterr()
    assert "--resume" in _one_error_line(err)
    assert json.loads((run / "checkpoint/state.json").read_text())["step"] == 4

    # eval: one JSON line on stdout, a video
    ev = tmp_path / "eval"
    assert main(["eval", "--checkpoint", str(run), "--episodes", "1", "--json", "--videos", "1",
                 "--out", str(ev)]) == 0
    out, err = capfd.readouterr()
    lines = out.splitlines()
    assert len(lines) == 1, out
    res = json.loads(lines[0])
    for key in ("success_rate", "episodes", "ci95", "mean_episode_length", "latency_ms_p50", "latency_ms_p90"):
        assert key in res, key
    detail = json.loads((ev / "eval.json").read_text())["episodes_detail"]
    assert res["episodes"] == 1 and res["seeds"] == [100_000] and [d["seed"] for d in detail] == [100_000]
    won = int(detail[0]["success"])                   # a 4-step policy: either outcome, but reported as it happened
    assert res["successes"] == won and res["success_rate"] == won
    # the Wilson 95% interval of won/1, by hand: centre and half-width are both (z^2 / 2) / (1 + z^2)
    half = 1.959964 ** 2 / 2 / (1 + 1.959964 ** 2)
    assert res["ci95"] == ([round(1 - 2 * half, 4), 1.0] if won else [0.0, round(2 * half, 4)])
    assert res["mean_episode_length"] == detail[0]["length"]
    if not won:                                       # a failure runs to the task's time limit
        from robot_learning.sim.env import SimEnv, SimEnvConfig

        with SimEnv(SimEnvConfig(task="lift")) as env:
            assert detail[0]["length"] == env.max_steps
    assert 0 < res["latency_ms_p50"] <= res["latency_ms_p90"]
    vids = sorted(ev.glob("*.mp4"))
    assert [v.name for v in vids] == [f"lift_seed100000_{'success' if won else 'fail'}.mp4"]
    assert vids[0].stat().st_size > 1000

    # eval on a seed of the training data, or of a missing checkpoint: refused with one line
    assert main(["eval", "--checkpoint", str(run), "--episodes", "1", "--seed", "1", "--json"]) == 2
    out, err = capfd.readouterr()
    assert out == "" and "training data" in _one_error_line(err)
    assert main(["eval", "--checkpoint", str(tmp_path / "nope"), "--episodes", "1"]) == 2
    out, err = capfd.readouterr()
    assert "no such" in _one_error_line(err)


# --------------------------------------------------------------------------- optimisation
def test_training_lowers_the_loss(dataset, tmp_path):
    summary = train(TrainConfig(dataset=dataset, out=tmp_path / "run", steps=150, batch_size=32, lr=1e-3,
                                warmup_steps=10, evaluation=HeldOutEvalConfig(eval_episodes=0), progress=False))
    assert summary["steps"] == 150 and summary["eval"] == {}
    rows = read_csv(tmp_path / "run" / "train_log.csv")
    assert [int(r["step"]) for r in rows] == [50, 100, 150]
    loss = [float(r["loss"]) for r in rows]
    assert all(math.isfinite(x) for x in loss)
    assert loss[-1] < 0.5 * loss[0], loss
    lr = [float(r["lr"]) for r in rows]
    assert 0 < lr[1] < lr[0] <= 1e-3 and lr[2] < 1e-6   # cosine decay to ~0 by the last step


def _tensors(path):
    return load_file(str(path))


def _assert_same(a, b):
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def test_resume_gives_the_same_weights_as_one_run(dataset, tmp_path):
    def cfg(out, steps, resume=False):
        # warm-up longer than the run: the lr of steps 1-2 does not depend on the planned total
        return TrainConfig(dataset=dataset, out=out, steps=steps, batch_size=8,
                           evaluation=HeldOutEvalConfig(eval_episodes=0), progress=False, resume=resume, lr=1e-3,
                           warmup_steps=10)

    straight, split = tmp_path / "straight", tmp_path / "split"
    train(cfg(straight, 4))
    train(cfg(split, 2))
    after2 = _tensors(split / "policy" / "model.safetensors")
    train(cfg(split, 4, resume=True))
    for f in ("policy/model.safetensors", "checkpoint/model.safetensors", "checkpoint/ema.safetensors",
              "checkpoint/optimizer.safetensors"):
        _assert_same(straight / f, split / f)
    final = _tensors(split / "policy" / "model.safetensors")
    assert any(not torch.equal(after2[k], final[k]) for k in final)   # steps 3-4 did change the weights
    for run in (straight, split):
        assert json.loads((run / "checkpoint" / "state.json").read_text())["step"] == 4


def test_ctrl_c_saves_a_checkpoint_that_resumes(dataset, tmp_path):
    """SIGINT in the middle of training: exit 130, checkpoint + policy written, --resume continues."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    args = [sys.executable, "-m", "robot_learning", "train", "--dataset", str(dataset), "--out", str(run),
            "--steps", "100000", "--batch-size", "8", "--eval-episodes", "0", "--no-progress", "--threads", "1"]
    env = dict(os.environ, HF_HUB_OFFLINE="1", MUJOCO_GL="egl")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    log = run / "train_log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.exists() and len(read_csv(log)) >= 1):
        time.sleep(0.2)
    assert log.exists(), proc.communicate(timeout=10)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue with --resume" in out
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    assert state["step"] >= 50
    meta = json.loads((run / "policy" / "config.json").read_text())["meta"]
    assert meta["train_step"] == state["step"]
    resumed = subprocess.run([*args[:9], str(state["step"] + 2), *args[10:], "--resume"], capture_output=True,
                             text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "summary.json").read_text())["steps"] == state["step"] + 2


def test_depth_and_transformer_train_and_evaluate(tmp_path):
    """A wrist depth camera recorded, trained on by the transformer denoiser for 2 steps, and the
    policy evaluated for 1 episode in a sim env built with the depth camera it needs."""
    record_lift(tmp_path / "depth.zarr", seeds=(0,), cameras=("wrist",), image_size=64, depth=True, tactile=False)
    summary = train(TrainConfig(dataset=tmp_path / "depth.zarr", out=tmp_path / "run", obs="proprio,depth",
                                denoiser="transformer", steps=2, batch_size=4,
                                evaluation=HeldOutEvalConfig(eval_episodes=1), videos=0, progress=False))
    assert summary["steps"] == 2 and summary["eval"]["episodes"] == 1
    cfg = json.loads((tmp_path / "run" / "policy" / "config.json").read_text())["config"]
    assert cfg["diffusion"]["denoiser"] == "transformer"
    kinds = {f["name"]: f["kind"] for f in cfg["observation_features"]}
    assert kinds["wrist_rgb_depth"] == "depth" and "wrist_rgb" not in kinds
