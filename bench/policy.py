"""Diffusion policy speed: inference latency per action chunk and training samples/s.

Configurations:

- ``lift_state``:   the CPU-sized U-Net (64-128-256) on lift state (robot + object state, 10-D
  action), what `make demo` trains;
- ``lift_image``:   the same U-Net + one ResNet-18-style GroupNorm encoder (width 32) per camera,
  front + wrist RGB at 96 px (76 px crops) + proprio;
- ``pusht_image_paper`` / ``pusht_state_paper``: the shapes of LeRobot's default PushT diffusion
  configs (one 96 px camera + 2-D state, or 2-D state + 16-D environment state; 2-D action) at the
  paper's size (U-Net 512-1024-2048, ResNet-18 width 64), with synthetic inputs, to put next to
  LeRobot's harness (``--lerobot-python``/``--lerobot-bench``), run in the same invocation.

Latency: ``policy.infer(observation)`` on real sim observations (lift) or synthetic ones, p50/p90
over ``--runs`` after 2 warm-up calls, for DDPM-100, DDIM-10 and EDM-3 sampling. Training:
forward + backward + AdamW + EMA on batches from the in-memory window tables (lift) or synthetic
batches, median step time after 3 warm-up steps.

    .venv/bin/python bench/policy.py [--quick] [--runs 10] [--lerobot-python P --lerobot-bench B]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec  # noqa: E402
from robot_learning.core.frame import Observation  # noqa: E402
from robot_learning.datasets.stats import Normalizer  # noqa: E402
from robot_learning.policies.diffusion import DiffusionConfig, DiffusionPolicy, normalizer_modes  # noqa: E402
from robot_learning.policies.nets.encoders import EncoderConfig  # noqa: E402
from robot_learning.training.ema import EMA  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLERS = (("ddpm", 100), ("ddim", 10), ("edm", 3))
KINDS = SAMPLERS   # the samplers timed (--samplers)


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1e3, q))


def record_lift(path: Path, episodes: int) -> None:
    from robot_learning.datasets.scripted import record_sim_dataset
    from robot_learning.sim.env import SimEnv, SimEnvConfig

    with SimEnv(SimEnvConfig(task="lift", cameras=("front", "wrist"), image_size=96, camera_fps=30.0)) as env:
        record_sim_dataset(env, path, range(episodes))


def bench_latency(policy, observations, runs: int, kinds=SAMPLERS) -> dict:
    out = {}
    for kind, steps in kinds:
        policy.set_sampler(kind, steps)
        policy.reset(0)
        for o in observations[:2]:
            policy.infer(o)
        times = []
        n = max(2, runs // 4) if kind == "ddpm" else runs
        for k in range(n):
            o = observations[k % len(observations)]
            t0 = time.perf_counter()
            policy.infer(o)
            times.append(time.perf_counter() - t0)
        out[f"{kind}{steps}"] = {"p50_ms": round(pct(times, 50), 2), "p90_ms": round(pct(times, 90), 2), "n": n}
        print(f"  {kind}-{steps}: p50 {out[f'{kind}{steps}']['p50_ms']:.1f} ms, p90 "
              f"{out[f'{kind}{steps}']['p90_ms']:.1f} ms per chunk (n={n})", flush=True)
    policy.set_sampler("ddim", 10)
    return out


def bench_train(policy, make_batch, batch_size: int, steps: int) -> dict:
    policy.train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, weight_decay=1e-6)
    ema = EMA(policy)
    times = []
    for k in range(steps + 3):
        batch = make_batch(batch_size)
        t0 = time.perf_counter()
        loss = policy.compute_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(policy)
        if k >= 3:
            times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    r = {"batch_size": batch_size, "step_median_ms": round(med * 1e3, 1), "samples_per_s": round(batch_size / med, 1),
         "n_steps": steps}
    print(f"  train: batch {batch_size}, {r['step_median_ms']:.0f} ms/step, {r['samples_per_s']:.0f} samples/s",
          flush=True)
    return r


def lift_section(name: str, obs: str, dataset: Path, runs: int, train_steps: int, batch: int) -> dict:
    from robot_learning.datasets.dense import DenseWindows
    from robot_learning.evaluation.rollout import env_config_for
    from robot_learning.sim.env import SimEnv
    from robot_learning.training.config import TrainConfig
    from robot_learning.training.trainer import prepare

    _, sampler, policy, _ = prepare(TrainConfig(dataset=dataset, out=Path(tempfile.mkdtemp()), obs=obs), torch.device("cpu"))
    print(f"{name}: {policy.num_parameters() / 1e6:.2f}M parameters, obs {list(policy.observation_features.names)}",
          flush=True)
    env = SimEnv(env_config_for(policy.observation_features, "lift", "panda"))
    observations = [env.reset(1000 + k) for k in range(4)]
    env.close()
    policy.eval()
    lat = bench_latency(policy, observations, runs, kinds=KINDS)
    if train_steps <= 0:
        return {"params": policy.num_parameters(), "obs": list(policy.observation_features.names),
                "inference_chunk": lat}
    data = DenseWindows(sampler)
    gen = torch.Generator().manual_seed(0)
    tr = bench_train(policy, lambda b: data.batch(torch.randint(0, len(data), (b,), generator=gen)), batch, train_steps)
    return {"params": policy.num_parameters(), "obs": list(policy.observation_features.names),
            "inference_chunk": lat, "train": tr}


def synthetic_policy(image: bool, dims=(512, 1024, 2048)) -> DiffusionPolicy:
    feats = [FeatureSpec("agent_pos", (2,), "float32", FeatureKind.STATE, "1")]
    if image:
        feats.append(FeatureSpec("image", (96, 96, 3), "uint8", FeatureKind.RGB, "srgb"))
    else:
        feats.append(FeatureSpec("keypoints", (16,), "float32", FeatureKind.STATE, "1"))
    obs_f = FeatureSet(feats)
    act_f = FeatureSet([FeatureSpec("xy", (2,), "float32", FeatureKind.ACTION, "1")])
    cfg = DiffusionConfig(down_dims=dims, step_embed_dim=128, encoder=EncoderConfig(image_width=64, crop_px=84))
    stats = {k: {"min": -np.ones(n), "max": np.ones(n)} for k, n in
             [("action", 2), ("obs.agent_pos", 2), ("obs.keypoints", 16)]}
    norm = Normalizer(normalizer_modes(cfg, obs_f), {k: stats[k] for k in normalizer_modes(cfg, obs_f)})
    return DiffusionPolicy(cfg, obs_f, act_f, norm, 100_000_000)


def synthetic_section(name: str, image: bool, runs: int, train_steps: int, batch: int) -> dict:
    torch.manual_seed(0)
    policy = synthetic_policy(image)
    print(f"{name}: {policy.num_parameters() / 1e6:.1f}M parameters", flush=True)
    rng = np.random.default_rng(0)

    def obs(k):
        vals = {s.name: (rng.integers(0, 255, s.shape, dtype=np.uint8) if s.kind is FeatureKind.RGB
                         else rng.uniform(-1, 1, s.shape).astype(np.float32)) for s in policy.observation_features}
        return Observation(k * 100_000_000, policy.observation_features, vals, {n: k * 100_000_000 for n in vals})

    policy.eval()
    lat = bench_latency(policy, [obs(k) for k in range(4)], runs, kinds=KINDS)
    if train_steps <= 0:
        return {"params": policy.num_parameters(), "inference_chunk": lat}

    def make_batch(b):
        out = {"action": torch.rand(b, 16, 2) * 2 - 1}
        for s in policy.observation_features:
            out[f"obs.{s.name}"] = (torch.randint(0, 255, (b, 2, 3, 96, 96), dtype=torch.uint8)
                                    if s.kind is FeatureKind.RGB else torch.rand(b, 2, *s.shape) * 2 - 1)
        return out

    tr = bench_train(policy, make_batch, batch, train_steps)
    return {"params": policy.num_parameters(), "inference_chunk": lat, "train": tr}


def run_lerobot(python: str, bench: str, quick: bool) -> dict:
    out = Path(tempfile.mkdtemp()) / "lerobot.json"
    cmd = [python, bench, "--only", "diffusion", "--diff-variants", "image_state,state_envstate,image_state_ddim10",
           "--out", str(out), "--diff-n-runs", "2" if quick else "3", "--diff-n-train", "3" if quick else "10"]
    print("LeRobot harness:", " ".join(cmd), flush=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(out.parent / "hf_home"))
    subprocess.run(cmd, check=True, env=env, cwd=out.parent)
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="few repetitions (smoke run)")
    ap.add_argument("--runs", type=int, default=10, help="timed inferences per sampler (DDPM-100: a quarter)")
    ap.add_argument("--train-steps", type=int, default=10, help="timed training steps (0: inference only)")
    ap.add_argument("--samplers", default="ddpm,ddim,edm", help="samplers to time")
    ap.add_argument("--episodes", type=int, default=10, help="lift episodes recorded for the lift configurations")
    ap.add_argument("--only", default="lift_state,lift_image,pusht_image_paper,pusht_state_paper")
    ap.add_argument("--lerobot-python", default=None, help="LeRobot venv python, to run its harness in the same run")
    ap.add_argument("--lerobot-bench", default=None, help="path of LeRobot's bench_lerobot.py")
    args = ap.parse_args()
    runs, steps = (3, min(3, args.train_steps)) if args.quick else (args.runs, args.train_steps)
    global KINDS
    KINDS = tuple(k for k in SAMPLERS if k[0] in args.samplers.split(","))
    RESULTS.mkdir(parents=True, exist_ok=True)
    dataset = RESULTS / "policy_lift.zarr"
    if not (dataset / "zarr.json").exists():
        print(f"recording {args.episodes} lift episodes into {dataset}", flush=True)
        record_lift(dataset, args.episodes)
    only = set(args.only.split(","))
    res: dict = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.node(),
                 "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "load_avg_start": os.getloadavg()}
    if "lift_state" in only:
        res["lift_state"] = lift_section("lift_state", "state", dataset, runs, steps, 256)
    if "lift_image" in only:
        res["lift_image"] = lift_section("lift_image", "proprio,rgb", dataset, runs, steps, 64)
    if "pusht_image_paper" in only:
        res["pusht_image_paper"] = synthetic_section("pusht_image_paper", True, max(2, runs // 2), steps and max(3, steps // 2), 64)
    if "pusht_state_paper" in only:
        res["pusht_state_paper"] = synthetic_section("pusht_state_paper", False, runs, steps, 64)
    if args.lerobot_python and args.lerobot_bench:
        lr = run_lerobot(args.lerobot_python, args.lerobot_bench, args.quick)
        d = lr.get("diffusion", {})
        res["lerobot"] = d
        ratios = {}
        for ours, theirs in (("pusht_image_paper", "image_state"), ("pusht_state_paper", "state_envstate")):
            if ours in res and theirs in d and "inference_chunk" in d[theirs]:
                o, t = res[ours], d[theirs]
                tl = t["inference_chunk"].get("median_ms") or t["inference_chunk"].get("p50_ms")
                if tl:
                    ratios[f"{ours}_ddpm100_latency_speedup"] = round(tl / o["inference_chunk"]["ddpm100"]["p50_ms"], 2)
                ts = t.get("train", {}).get("samples_per_s_median")
                if ts:
                    ratios[f"{ours}_train_speedup"] = round(o["train"]["samples_per_s"] / ts, 2)
        t = d.get("image_state_ddim10", {}).get("inference_chunk", {})
        tl = t.get("median_ms") or t.get("p50_ms")
        if tl and "pusht_image_paper" in res:
            ratios["pusht_image_paper_ddim10_latency_speedup"] = round(
                tl / res["pusht_image_paper"]["inference_chunk"]["ddim10"]["p50_ms"], 2)
        res["ratios_vs_lerobot"] = ratios
        print("ratios vs LeRobot (same run):", json.dumps(ratios), flush=True)
    res["load_avg_end"] = os.getloadavg()
    out = RESULTS / "policy.json"
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "lerobot"}))


if __name__ == "__main__":
    sys.exit(main())
