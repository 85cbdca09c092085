"""The training loop: dataset windows -> policy loss -> AdamW (cosine warm-up) -> EMA, with
periodic sim evaluation on held-out seeds, atomic checkpoints, resume, CSV logs and curves.

Run layout (``--out``)::

    train_config.json   the TrainConfig of the run
    policy/             the EMA policy (safetensors + JSON): what eval and deploy load
    checkpoint/         the full training state for --resume
    train_log.csv       step, loss, lr, samples/s, times     eval_log.csv   one row per evaluation
    curves.png          loss and success curves               videos/        rollout videos
    summary.json        the final figures

Budget: ``--steps`` and/or ``--minutes`` (optimisation time). The cosine schedule follows the
larger of the two fractions used, so a time budget decays the learning rate to 0 on time.
Ctrl-C writes a checkpoint and the policy, then stops; ``--resume`` continues from it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path

import numpy as np
import torch

from robot_learning.errors import ConfigError, TrainingDivergedError
from robot_learning.training.config import TrainConfig, select_features

LOG_EVERY = 50
log = logging.getLogger(__name__)


def _config_json(cfg: TrainConfig) -> dict:
    """The run's flags as saved in train_config.json: one flat dict, flag name -> value (a nested group of flags,
    such as the evaluation's, spread into it: the file keeps its format)."""
    flat = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        flat.update(asdict(value) if is_dataclass(value) else {f.name: value})
    return json.loads(json.dumps(flat, default=str))


def prepare(cfg: TrainConfig, device: torch.device):
    """Open the dataset, pick the features, build the sampler, normaliser and a fresh policy."""
    from robot_learning.core.features import FeatureKind, FeatureSet
    from robot_learning.datasets.sampler import WindowSampler
    from robot_learning.datasets.stats import Normalizer, load_stats
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.policies.chunk_policy import normalizer_modes
    from robot_learning.policies.registry import get_family

    if not Path(cfg.dataset).exists():
        raise ConfigError(f"--dataset {cfg.dataset}: no such dataset folder")
    store = EpisodeStore.open(cfg.dataset)
    if not store.episodes:
        raise ConfigError(f"--dataset {cfg.dataset}: no committed episodes")
    schema = store.schema
    from robot_learning.runtime.control import TASK_FEATURE

    available = FeatureSet(s for st in schema.streams for s in st.features) + FeatureSet([TASK_FEATURE])
    robot_stream = [st for st in schema.streams if st.name == "robot"]
    proprio = robot_stream[0].features.of_kind(FeatureKind.STATE) if robot_stream else FeatureSet()
    features = select_features(cfg.obs, available, proprio)
    family = get_family(cfg.policy, trainable=True)
    if family.reads_language and not any(s.kind is FeatureKind.LANGUAGE for s in features):
        features = features + FeatureSet([TASK_FEATURE])   # a VLA always reads the instruction
    has_images = any(s.kind in (FeatureKind.RGB, FeatureKind.DEPTH) for s in features)
    hooks = family.training_hooks()
    hooks.prepare(cfg, store, schema.action_features)
    dcfg = hooks.config(cfg, has_images)
    sampler = WindowSampler(store, [s.name for s in features if s.kind is not FeatureKind.LANGUAGE], To=dcfg.To,
                            Tp=dcfg.Tp, Ta=dcfg.Ta)
    stats = sampler.output_stats(load_stats(store))
    action_stats = hooks.action_stats()
    if action_stats is not None:   # e.g. CARP: actions scaled as its tokenizer was trained
        stats["action"] = action_stats
    normalizer = Normalizer(normalizer_modes(dcfg, features), stats)
    period_ns = int(round(1e9 / schema.control_rate_hz))
    robot = {str(k): v for k, v in dict(schema.robot or {}).items()}
    meta = {"dataset": str(cfg.dataset), "episodes": len(store.episodes), "robot": robot,
            "train_seeds": sorted(int(e.seed) for e in store.episodes if e.seed is not None)}
    policy = family.policy_class()(dcfg, features, schema.action_features, normalizer, period_ns, meta)
    hooks.init_policy(policy)
    policy = policy.to(device)
    return store, sampler, policy, meta


def _eval_task(cfg: TrainConfig, meta: dict) -> tuple[str | None, str]:
    """(sim task, twin robot model) to evaluate on; task None: no twin evaluation (``twin_eval_note`` says why)."""
    robot = meta.get("robot", {})
    task = cfg.eval_task or (robot.get("task") if robot.get("kind") == "sim" else None)
    model = robot.get("name", "panda")
    if task is not None:
        from robot_learning.core.robot_models import ROBOTS

        if model not in ROBOTS:   # e.g. a benchmark suite's sawyer: evaluated in its suite, not in the twin
            return None, model
    return task, model


def twin_eval_note(cfg: TrainConfig, meta: dict) -> str | None:
    """Why training evaluates nothing in the twin when the data's robot has no twin model (None otherwise)."""
    from robot_learning.core.robot_models import ROBOTS

    robot = meta.get("robot", {})
    model = robot.get("name")
    wanted = cfg.eval_task or robot.get("task")
    if cfg.evaluation.eval_episodes and wanted and model is not None and model not in ROBOTS:
        suite = robot.get("suite")
        where = f" (evaluate it in its {suite} suite: robot-learning benchmark eval)" if suite else ""
        return (f"no twin evaluation: the data's robot {model!r} has no twin model (twins: {', '.join(sorted(ROBOTS))})"
                f"{where}")
    return None


def _check_held_out(cfg: TrainConfig, meta: dict, n: int) -> list[int]:
    return cfg.evaluation.seeds(meta["train_seeds"], n)


def run_eval(policy, cfg: TrainConfig, meta: dict, episodes: int, video_dir: Path | None, progress: bool) -> dict:
    from robot_learning.evaluation.metrics import summarize
    from robot_learning.evaluation.rollout import evaluate

    task, robot = _eval_task(cfg, meta)
    if task is None or episodes == 0:
        return {}
    seeds = _check_held_out(cfg, meta, episodes)
    was = policy.training
    policy.eval()
    try:
        res = evaluate(policy, task, seeds, robot=robot, video_dir=video_dir, videos=cfg.videos, progress=progress)
    finally:
        policy.train(was)
    return {"task": task, **summarize(res)}


def lr_factor(step: int, warmup: int, progress: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 as ``progress`` (the larger of
    the step and the time budget fractions used) goes from 0 to 1."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def train(cfg: TrainConfig) -> dict:
    from robot_learning.training.ema import EMA
    from robot_learning.training.logs import EVAL_FIELDS, TRAIN_FIELDS, CsvLog, plot_curves
    from robot_learning.training.state import load_train_state, restore_optimizer, save_train_state

    from robot_learning.core.device import resolve_device

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = torch.device(resolve_device(cfg.device))
    out = Path(cfg.out)
    if (out / "checkpoint").exists() and not cfg.resume:
        raise ConfigError(f"--out {out} holds a run already; add --resume to continue it or pick a new folder")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    store, sampler, policy, meta = prepare(cfg, device)
    task, _ = _eval_task(cfg, meta)
    if task is not None and cfg.evaluation.eval_episodes:
        _check_held_out(cfg, meta, cfg.evaluation.eval_episodes)
    note = twin_eval_note(cfg, meta)
    if note:
        log.warning("train: %s", note)

    from robot_learning.datasets.dense import DenseWindows

    t_load = time.perf_counter()
    data = DenseWindows(sampler, device=device, progress=cfg.progress)
    if policy.language:
        from robot_learning.training.language import WithInstructions

        data = WithInstructions(data, sampler, store, policy)
        log.info("train: instructions %s", data.instructions)
    load_s = time.perf_counter() - t_load
    policy.fit_data(data)   # e.g. the autoregressive policy's quantile bins (restored on --resume)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.peak_lr, betas=(0.95, 0.999), eps=1e-8,
                            weight_decay=cfg.weight_decay)
    ema = EMA(policy)
    gen = torch.Generator().manual_seed(cfg.seed)
    step, train_time, wall_before = 0, 0.0, 0.0
    total_steps = cfg.step_budget
    if cfg.resume:
        info, tensors = load_train_state(out / "checkpoint")
        saved = info.get("config", {})
        from robot_learning.training.families import SHAPE_KEYS, effective_flags

        saved, now = effective_flags(saved), effective_flags(_config_json(cfg))
        for key in SHAPE_KEYS:   # a key the saved run does not have predates the flag (its default then)
            if key in saved and saved[key] != now.get(key):
                raise ConfigError.expected(f"--resume {key}", repr(saved[key]), repr(now.get(key)))
        from robot_learning.policies.checkpoint import load_weights

        load_weights(policy, tensors["model"], "checkpoint model")
        load_weights(ema.averaged, tensors["ema"], "checkpoint EMA")
        restore_optimizer(opt, tensors["optimizer"], info["optimizer_param_groups"])
        torch.set_rng_state(tensors["rng"]["torch_cpu"])
        gen.set_state(tensors["rng"]["batch_generator"])
        step, train_time, wall_before = int(info["step"]), float(info["train_time_s"]), float(info["wall_s"])
        ema.step = int(info["ema_step"])
    (out / "train_config.json").write_text(json.dumps(_config_json(cfg), indent=2))
    train_log = CsvLog(out / "train_log.csv", TRAIN_FIELDS, truncate_after_step=step)
    eval_log = CsvLog(out / "eval_log.csv", EVAL_FIELDS, truncate_after_step=step)
    use_amp = device.type == "cuda"
    wall0 = time.perf_counter()
    budget_s = cfg.minutes * 60 if cfg.minutes is not None else None

    def progress() -> float:
        """Fraction of the budget used: the larger of the step and the time fractions."""
        p = 0.0
        if total_steps is not None:
            p = max(p, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        if budget_s is not None:
            p = max(p, train_time / budget_s)
        return p

    def set_lr() -> float:
        lr = cfg.peak_lr * lr_factor(step, cfg.warmup_steps, progress())
        for g in opt.param_groups:
            g["lr"] = lr
        return lr

    def checkpoint() -> None:
        info = {"step": step, "train_time_s": train_time,
                "wall_s": wall_before + time.perf_counter() - wall0, "ema_step": ema.step, "config": _config_json(cfg)}
        save_train_state(out / "checkpoint", policy, ema.averaged, opt, gen, info)
        ema.averaged.save(out / "policy", {"train_step": step, "train_time_s": round(train_time, 1)})

    def evaluate_now(episodes: int) -> dict:
        res = run_eval(ema.averaged, cfg, meta, episodes, out / "videos" / (f"step{step:07d}"),
                       cfg.progress)
        if res:
            eval_log.write({"step": step, "train_time_s": round(train_time, 1), "success_rate": res["success_rate"],
                            "episodes": res["episodes"], "ci95_lo": res["ci95"][0], "ci95_hi": res["ci95"][1],
                            "mean_episode_length": res["mean_episode_length"], "latency_ms_p50": res["latency_ms_p50"],
                            "latency_ms_p90": res["latency_ms_p90"], "mean_max_coverage": res.get("mean_max_coverage")})
        return res

    def log_row() -> None:
        nonlocal losses, last_log, t_last_log
        sps = cfg.batch_size * (step - last_log) / max(1e-9, train_time - t_last_log)
        row = {"step": step, "loss": round(float(np.mean(losses)), 6), "lr": opt.param_groups[0]["lr"],
               "samples_per_s": round(sps, 1), "train_time_s": round(train_time, 2),
               "wall_s": round(wall_before + time.perf_counter() - wall0, 2)}
        train_log.write(row)
        if bar is not None:
            bar.set_postfix(step=step, loss=f"{row['loss']:.4f}", samples_s=f"{sps:.0f}", lr=f"{row['lr']:.1e}")
        losses, last_log, t_last_log = [], step, train_time

    log.info("train: %d windows from %d episodes (%.1f MiB in memory, loaded in %.1f s), obs %s, %.2fM parameters, "
             "device %s, %d threads", len(data), len(store.episodes), data.nbytes / 2**20, load_s,
             list(policy.observation_features.names), policy.num_parameters() / 1e6, device, torch.get_num_threads())
    bar = None
    if cfg.progress:   # over steps with a step budget, else over the seconds of the time budget
        from tqdm import tqdm
        by_steps = total_steps is not None
        bar = tqdm(total=total_steps if by_steps else int(budget_s), initial=step if by_steps else int(train_time),
                   unit="step" if by_steps else "s", dynamic_ncols=True, desc=f"train {policy.kind}")
    last_ckpt, last_log, interrupted = time.perf_counter(), step, False
    losses: list[float] = []
    t_last_log = train_time
    policy.train()
    try:
        while (total_steps is None or step < total_steps) and (budget_s is None or train_time < budget_s):
            t0 = time.perf_counter()
            set_lr()
            idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
            batch = data.batch(idx)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = policy.compute_loss(batch)
            loss_value = loss.item()   # one device sync per step
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(f"training diverged at step {step}: loss {loss_value} (lower --lr?)")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            ema.update(policy)
            step += 1
            dt = time.perf_counter() - t0
            train_time += dt
            losses.append(loss_value)
            if bar is not None:
                bar.update(1 if by_steps else min(dt, bar.total - bar.n))
            if step - last_log >= LOG_EVERY or step == total_steps or (budget_s is not None and train_time >= budget_s):
                log_row()
            if cfg.eval_every and step % cfg.eval_every == 0 and step != total_steps:
                last_eval = evaluate_now(cfg.evaluation.eval_episodes)
                if bar is not None and last_eval:
                    bar.write(f"step {step}: success {last_eval['success_rate']:.2f} over {last_eval['episodes']} "
                              f"held-out episodes")
            if time.perf_counter() - last_ckpt > cfg.checkpoint_every_min * 60:
                checkpoint()
                last_ckpt = time.perf_counter()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    if losses:
        log_row()
    checkpoint()
    if interrupted:
        train_log.close()
        eval_log.close()
        log.info("interrupted at step %d: checkpoint saved; continue with --resume", step)
        return {"interrupted": True, "step": step, "out": str(out)}
    final = evaluate_now(cfg.evaluation.eval_episodes) if cfg.evaluation.eval_episodes else {}
    train_log.close()
    eval_log.close()
    plot = plot_curves(out, f"{policy.kind} policy, obs {cfg.obs}, {len(store.episodes)} episodes")
    summary = {"out": str(out), "policy": str(out / "policy"), "steps": step, "train_time_s": round(train_time, 1),
               "wall_s": round(wall_before + time.perf_counter() - wall0, 1), "episodes": len(store.episodes),
               "windows": len(data), "parameters": policy.num_parameters(), "device": str(device),
               "threads": torch.get_num_threads(), "eval": final, "curves": str(plot)}
    if note:
        summary["eval_note"] = note
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

