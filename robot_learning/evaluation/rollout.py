"""Policy rollouts in the MuJoCo twin, through the control runtime (the deploy loop).

``evaluate(policy, task, seeds)`` runs one episode per seed: ``SimEnv.reset(seed)``, then the
runtime pulls actions from a ``ChunkExecutor`` over the policy (safety filter and watchdog in
between, as on hardware) until the task succeeds or its time limit. The env's sensors are the
ones the policy was trained on (``env_config_for``). Videos of the first episodes are written
from a separate scene camera rendered at every tick, with the outcome in the file name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from robot_learning.core.features import FeatureKind, FeatureSet
from robot_learning.errors import ConfigError, SpecMismatchError
from robot_learning.runtime.control import TickRecord


@dataclass(frozen=True)
class EpisodeResult:
    seed: int
    success: bool
    length: int                 # control ticks run
    max_reward: float           # the task's dense reward, best over the episode
    max_coverage: float | None  # push_t only: best coverage of the target
    latencies_s: tuple[float, ...] = field(repr=False)   # one per inferred chunk
    video: str | None = None


def held_out_seeds(first: int, n: int, train_seeds, flag: str = "--seed") -> list[int]:
    """Seeds ``first .. first+n-1``, refused (one-line ConfigError) if any was in the training data."""
    seeds = list(range(first, first + n))
    overlap = sorted(set(seeds) & {int(x) for x in train_seeds})
    if overlap:
        raise ConfigError(f"{flag} {first}: seeds {overlap[:5]} were in the training data; evaluate on held-out "
                          f"seeds (e.g. {flag} 100000)")
    return seeds


def seen_seeds(meta) -> list[int]:
    """Every sim seed a policy was trained on: its demonstrations' (``train_seeds``) and the seed ranges an RL
    fine-tune reset its envs with (``train_seed_ranges``, [first, end) pairs)."""
    seeds = [int(x) for x in meta.get("train_seeds", [])]
    for lo, hi in meta.get("train_seed_ranges", []):
        seeds.extend(range(int(lo), int(hi)))
    return seeds


def env_config_for(features: FeatureSet, task: str, robot: str):
    """A ``SimEnvConfig`` whose observation holds ``features`` (the sensors a policy was trained on)."""
    from robot_learning.sim.env import SimEnvConfig

    def camera_of(name: str) -> str:   # sim cameras are named <camera>_rgb, their depth <camera>_rgb_depth
        name = name[:-len("_depth")] if name.endswith("_depth") else name
        return name[:-len("_rgb")] if name.endswith("_rgb") else name

    cameras, sizes, depth, tactile = [], set(), False, False
    for s in features:
        if s.kind in (FeatureKind.RGB, FeatureKind.DEPTH):
            if camera_of(s.name) not in cameras:
                cameras.append(camera_of(s.name))
            sizes.add(s.shape[0])
            depth = depth or s.kind is FeatureKind.DEPTH
        elif s.kind is FeatureKind.TACTILE:
            tactile = True
    if len(sizes) > 1:
        raise ConfigError.expected("policy camera sizes", "one image size for every camera", sorted(sizes))
    return SimEnvConfig(task=task, robot=robot, cameras=tuple(cameras), image_size=sizes.pop() if sizes else 96,
                        depth=depth, tactile=tactile, object_state=True, camera_fps=None)


def check_env_features(env_features: FeatureSet, policy_features: FeatureSet) -> None:
    for s in policy_features:
        if s.name not in env_features:
            raise SpecMismatchError.expected("sim observation", f"feature {s.name!r} the policy reads",
                                             f"features {list(env_features.names)}")
        if tuple(env_features[s.name].shape) != tuple(s.shape):
            raise SpecMismatchError.expected(f"sim {s.name} shape", s.shape, env_features[s.name].shape)


class _SceneVideo:
    """Runtime sink: one frame of a scene camera per control tick, for rollout videos."""

    def __init__(self, world, camera: str = "front", size: int = 192):
        self.world, self.camera = world, camera
        self.renderer = mujoco.Renderer(world.model, size, size)
        self.frames: list[np.ndarray] = []

    def on_tick(self, tick: TickRecord) -> None:
        self.renderer.update_scene(self.world.data, self.camera)
        self.frames.append(self.renderer.render().copy())

    def close(self) -> None:
        pass


def chunk_source(policy, env, seed: int, mode: str = "open-loop"):
    """The action source that plays ``policy``'s chunks in ``mode``: ``open-loop`` (``ChunkExecutor``, in the
    control thread) or a worker-thread merge of ``QueuedChunkSource`` (``queue``, ``ensemble``, ``rtc``), which
    only makes sense on an env stepped in real time (``PhysicsConfig(realtime=True)``)."""
    from robot_learning.policies.executor import ChunkExecutor

    if mode == "open-loop":
        return ChunkExecutor(policy, env.world.clock, seed=seed)
    if not env.world.physics.realtime:
        raise ConfigError(f"chunk mode {mode} runs the policy beside the control loop: it needs the twin stepped in "
                          "real time (PhysicsConfig(realtime=True))")
    from robot_learning.deploy.chunk_queue import QueuedChunkSource

    return QueuedChunkSource(policy, env.world.clock, env.period_ns, seed=seed, merge=mode)


def rollout(env, policy, seed: int, video_path: Path | None = None, fps: float = 10.0,
            mode: str = "open-loop", recorder=None, notes: str = "policy rollout", sinks: tuple = (),
            wrap_source=None, instruction: str = "right") -> EpisodeResult:
    """One episode; ``recorder`` (a ``Recorder`` on ``env``'s schema) keeps it with its success label; ``sinks``:
    more runtime sinks (each sees every tick: the RL actor's transitions); ``wrap_source``: a function of the
    policy's action source returning the one the runtime pulls from (a human takeover's ``InterventionSource``).
    ``instruction``: what the observations say: ``right`` (the task's), ``wrong`` (another goal in the same scene) or
    ``empty``; success is always the task's own goal."""
    env.reset(seed)
    if instruction != "right":
        text = "" if instruction == "empty" else env.task.wrong_instruction(np.random.default_rng([seed, 1]))
        env.reset(seed, instruction=text)
    executor = chunk_source(policy, env, seed, mode)
    source = wrap_source(executor) if wrap_source is not None else executor
    video = _SceneVideo(env.world) if video_path is not None else None
    push_t = hasattr(env.task, "coverage")
    best = {"reward": env.task.reward(env.world), "coverage": env.task.coverage(env.world) if push_t else None}

    def after_tick(tick: TickRecord) -> bool:
        best["reward"] = max(best["reward"], env.task.reward(env.world))
        if push_t:
            best["coverage"] = max(best["coverage"], env.task.coverage(env.world))
        return env.task.success(env.world)

    sinks = tuple(x for x in (recorder, video) if x is not None) + tuple(sinks)
    runtime = env.make_runtime(source, sinks=sinks)
    if recorder is not None:
        recorder.start_episode()
    try:
        stats = runtime.run(max_ticks=env.max_steps, should_stop=after_tick)
    finally:
        close = getattr(executor, "close", None)   # a worker thread stops with the episode
        if close is not None:
            close()
        if video is not None:
            video.renderer.close()
    if stats.interrupted:
        if recorder is not None:
            recorder.end_episode(keep=False)
        raise KeyboardInterrupt
    success = env.task.success(env.world)
    if recorder is not None:
        recorder.end_episode(keep=True, task=env.task.instruction(), success=bool(success), seed=int(seed),
                             operator_notes=notes)
    out = None
    if video is not None and video.frames:
        from robot_learning.video import VideoWriter

        out = video_path.with_name(f"{video_path.stem}_{'success' if success else 'fail'}{video_path.suffix}")
        with VideoWriter(out, fps) as w:
            for f in video.frames:
                w.write(f)
            for _ in range(int(fps)):     # hold the last frame one second
                w.write(video.frames[-1])
        out = str(out)
    return EpisodeResult(int(seed), bool(success), int(stats.loop.ticks), float(best["reward"]), best["coverage"],
                         tuple(executor.latencies_s), out)


def evaluate(policy, task: str, seeds, *, robot: str = "panda", video_dir: Path | None = None, videos: int = 4,
             progress: bool = False, env=None, mode: str = "open-loop", record: Path | None = None,
             notes: str = "policy rollout", realtime: bool = False,
             instruction: str = "right") -> list[EpisodeResult]:
    """One rollout per seed (see the module docstring); videos of the first ``videos`` episodes. ``mode``: how
    chunks are played (``chunk_source``); any but ``open-loop`` steps the twin in real time (``realtime``: open-loop
    too, so the robot waits on each inference as it would on hardware). ``record``: a dataset
    that keeps every episode, failures too, with its success label and seed (data for an offline critic).
    ``instruction``: right | wrong | empty (see ``rollout``)."""
    import dataclasses

    from robot_learning.sim.env import SimEnv

    own = env is None
    if own:
        cfg = env_config_for(policy.observation_features, task, robot)
        if mode != "open-loop" or realtime:
            cfg = dataclasses.replace(cfg, physics=dataclasses.replace(cfg.physics, realtime=True))
        env = SimEnv(cfg)
    try:
        check_env_features(env.observation_features, policy.observation_features)
        seeds = list(seeds)
        it = seeds
        if progress:
            from tqdm import tqdm
            it = tqdm(seeds, desc=f"eval {task}", unit="ep", leave=False)
        results = []
        recorder = _rollout_recorder(env, Path(record)) if record is not None else None
        try:
            for k, seed in enumerate(it):
                path = Path(video_dir) / f"{task}_seed{seed}.mp4" if video_dir is not None and k < videos else None
                results.append(rollout(env, policy, seed, path, mode=mode, recorder=recorder, notes=notes,
                                       instruction=instruction))
                if progress:
                    it.set_postfix(success=f"{np.mean([r.success for r in results]):.2f}")
        finally:
            if recorder is not None:
                recorder.shutdown()
        return results
    finally:
        if own:
            env.close()


def _rollout_recorder(env, path: Path):
    """A recorder of ``env``'s robot state, sensors and executed actions into ``path`` (created, or appended to when
    its schema matches)."""
    from robot_learning.datasets.recorder import Recorder, open_store, schema_for

    schema = schema_for(env.robot.state_features, env.sensors, env.robot.action_features,
                        env.task.config.control_rate_hz,
                        {"name": env.config.robot, "kind": "sim", "task": env.config.task})
    return Recorder(open_store(path, schema), env.sensors)
