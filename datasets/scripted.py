"""Recording the task's scripted expert: the one loop that `record --teleop scripted`, the demo,
the benchmarks and the tests use to turn sim episodes into a dataset."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from robot_learning.datasets.recorder import Recorder, schema_for
from robot_learning.datasets.schema import EpisodeRecord
from robot_learning.datasets.store import EpisodeStore
from robot_learning.runtime.control import RunStats, Sink
from robot_learning.runtime.sources import FunctionSource


@dataclass(frozen=True)
class ScriptedEpisode:
    seed: int
    success: bool
    record: EpisodeRecord | None   # None: not kept (failed and keep_failures=False)
    stats: RunStats


def record_expert_episodes(env, recorder: Recorder, seeds: Iterable[int], *, expert=None,
                           sinks: tuple[Sink, ...] = (), keep_failures: bool = False,
                           notes: str = "scripted expert") -> list[ScriptedEpisode]:
    """Run ``env``'s scripted expert through the control runtime once per seed, recording each
    episode (with its seed, so it can be replayed). Each episode ends at success or time-out."""
    from robot_learning.sim.experts import make_expert

    expert = expert or make_expert(env)
    out = []
    for seed in seeds:
        obs = env.reset(seed)
        expert.reset(obs, seed)
        runtime = env.make_runtime(FunctionSource(expert.act, env.robot.action_features, env.world.clock),
                                   sinks=(recorder, *sinks))
        recorder.start_episode()
        stats = runtime.run(max_ticks=env.max_steps, should_stop=lambda t: env.task.success(env.world))
        success = env.task.success(env.world)
        rec = recorder.end_episode(keep=success or keep_failures, task=env.task.instruction(), success=success,
                                   seed=seed, operator_notes=notes)
        out.append(ScriptedEpisode(seed, success, rec, stats))
    return out


@contextmanager
def sim_dataset_recorder(env, path: str | Path) -> Iterator[Recorder]:
    """A recorder into a new dataset at ``path`` with ``env``'s robot state, sensors and actions
    (robot metadata: the sim model and task); shut down (everything committed) on exit."""
    schema = schema_for(env.robot.state_features, env.sensors, env.robot.action_features,
                        env.task.config.control_rate_hz,
                        {"name": env.config.robot, "kind": "sim", "task": env.config.task})
    recorder = Recorder(EpisodeStore.create(path, schema), env.sensors)
    try:
        yield recorder
    finally:
        recorder.shutdown()


def record_sim_dataset(env, path: str | Path, seeds: Iterable[int], **kwargs) -> list[ScriptedEpisode]:
    """A new dataset at ``path`` of ``env``'s scripted expert, one episode per seed
    (``kwargs``: those of ``record_expert_episodes``)."""
    with sim_dataset_recorder(env, path) as recorder:
        return record_expert_episodes(env, recorder, seeds, **kwargs)


LIFT_SEEDS = (0, 1, 2)


def record_lift(path: str | Path, seeds: Iterable[int] = LIFT_SEEDS, camera_fps: float | None = None,
                **env_overrides) -> Path:
    """A small lift dataset at ``path``: the scripted expert on the sim twin, one episode per seed, every episode
    kept (failures too), with robot state, object state, front + wrist cameras at 96 px and tactile. The cameras
    render at ticks, or stream at ``camera_fps`` (so image rows are not tick rows); ``env_overrides`` replace
    fields of the ``SimEnvConfig`` (e.g. ``robot="so101", cameras=(), tactile=False``). The quick dataset that
    the benchmarks and the tests train on; it imports no policy code."""
    from robot_learning.sim.env import SimEnv, SimEnvConfig

    cfg = dict(task="lift", cameras=("front", "wrist"), image_size=96, tactile=True, object_state=True,
               camera_fps=camera_fps)
    with SimEnv(SimEnvConfig(**{**cfg, **env_overrides})) as env:
        record_sim_dataset(env, path, seeds, keep_failures=True)
    return Path(path)
