"""Recording the task's scripted expert: the one loop that `record --teleop scripted`, the demo,
the benchmarks and the tests use to turn sim episodes into a dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from robot_learning.datasets.recorder import Recorder
from robot_learning.datasets.schema import EpisodeRecord
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
