"""Suite demonstrations into the episode store: ``driver.py ... demos`` streams each expert episode, recorded here
through the store API (one store per task), then checked as ``robot-learning dataset verify`` checks it.

The store's schema comes from the adapter's spec: a ``robot`` stream with the state (and depth) features, a
``cameras`` stream with the images when there are any, both at the suite's control rate; one action feature; the
robot metadata ``{"name": model, "kind": "benchmark", "suite", "task", "model"}``. Tick ``i`` of an episode is
stamped ``i`` control periods after the previous episode's end; every sample is captured at its tick. Each
episode keeps the suite's seed, its success flag and the task as its instruction.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

import numpy as np

from robot_learning.benchmarks.venvs import SuiteEnv
from robot_learning.errors import ConfigError, RobotLearningError, StorageError

ROBOT_STREAM = "robot"
CAMERA_STREAM = "cameras"
MAX_EPISODE_BYTES = 1 << 31


class DriverError(RobotLearningError):
    """The suite's driver process failed (its last stderr lines say why)."""


@dataclass(frozen=True)
class DemoResult:
    task: str
    store: Path
    episodes: int
    tried: int
    failed_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    steps: int
    wall_s: float
    problems: tuple[str, ...]


def _stderr_tail(proc: subprocess.Popen, lines: list[str]) -> str:
    return " | ".join(ln.strip() for ln in lines[-5:] if ln.strip()) or f"exit code {proc.returncode}"


def driver_json(env: SuiteEnv, *args: str, timeout_s: float = 300.0) -> dict:
    """A one-line JSON command of the driver (``spec``, ``tasks``)."""
    proc = subprocess.run(env.driver_argv(*args), capture_output=True, text=True, env=env.process_env(),
                          timeout=timeout_s)
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise DriverError(f"{env.suite.name} driver {args[0]} failed: {' | '.join(tail[-3:]) or proc.returncode}")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise DriverError(f"{env.suite.name} driver {args[0]}: no JSON reply ({proc.stdout[-200:]!r})") from None


def known_tasks(env: SuiteEnv) -> list[str]:
    return list(driver_json(env, "tasks")["tasks"])


def _messages(stream: IO[bytes]) -> Iterator[dict]:
    """Length-prefixed protocol messages until the stream ends."""
    from robot_learning.deploy.client import decode

    while True:
        head = stream.read(4)
        if not head:
            return
        if len(head) < 4:
            raise DriverError("demo stream ended inside a message header")
        (n,) = struct.unpack(">I", head)
        data = stream.read(n)
        if len(data) < n:
            raise DriverError(f"demo stream ended inside a message ({len(data)} of {n} bytes)")
        yield decode(data, max_bytes=MAX_EPISODE_BYTES, max_depth=8)


def schema_from_spec(spec: dict):
    """The dataset schema of a suite task's spec."""
    from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
    from robot_learning.datasets.schema import DatasetSchema, StreamSchema

    feats = [FeatureSpec.from_json(f) for f in spec["observation"]]
    state = FeatureSet(f for f in feats if f.kind is not FeatureKind.RGB)
    rgb = FeatureSet(f for f in feats if f.kind is FeatureKind.RGB)
    hz = float(spec["control_hz"])
    streams = [StreamSchema(ROBOT_STREAM, state, hz)] + ([StreamSchema(CAMERA_STREAM, rgb, hz)] if len(rgb) else [])
    robot = {"name": spec["robot"].get("model", "unknown"), **spec["robot"]}
    return DatasetSchema(tuple(streams), FeatureSet([FeatureSpec.from_json(spec["action"])]), hz, robot)


def append_episode(store, msg: dict, task_text: str, notes: str):
    """Append one streamed episode to ``store`` and commit it (with its seed and success)."""
    schema = store.schema
    actions = np.asarray(msg["actions"])
    n = actions.shape[0]
    if n == 0:
        raise DriverError(f"seed {msg.get('seed')}: an episode with no steps")
    period = int(round(1e9 / schema.control_rate_hz))
    eps = store.episodes
    t0 = (eps[-1].t_end_ns + period) if eps else 0
    t_ns = t0 + period * np.arange(n, dtype=np.int64)
    start = store.lengths()
    for s in schema.streams:
        values = {f.name: np.asarray(msg["obs"][f.name]) for f in s.features}
        for name, v in values.items():
            if v.shape[0] != n:
                raise DriverError(f"seed {msg.get('seed')}: {name} has {v.shape[0]} rows for {n} actions")
        store.append_stream(s.name, values, t_ns, t_ns)
    action = schema.action_features.names[0]
    store.append_ticks(t_ns, {action: actions.astype(schema.action_features[action].dtype)}, np.zeros(n, bool),
                       np.zeros(n, bool), {s.name: start[1][s.name] + np.arange(n) for s in schema.streams})
    return store.commit_episode(start, task=task_text, success=bool(msg["success"]), seed=int(msg["seed"]),
                                t_start_ns=int(t_ns[0]), t_end_ns=int(t_ns[-1]), operator_notes=notes)


def record_demos(env: SuiteEnv, task: str, store_path: Path, count: int, first_seed: int = 0,
                 image_size: int | None = None, max_seeds: int | None = None, keep_failures: bool = False,
                 progress: Callable[[str], None] | None = None) -> DemoResult:
    """Run the suite's expert on seeds ``first_seed, first_seed+1, ...`` until ``count`` demos are kept (or
    ``max_seeds`` tried), recording each into a new store at ``store_path``; then verify it."""
    from robot_learning.datasets.store import EpisodeStore
    from robot_learning.datasets.verify import verify

    if count < 1:
        raise ConfigError.expected("--demos", ">= 1", count)
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    store_path = Path(store_path)
    if store_path.exists():
        raise ConfigError(f"{store_path} exists already: demos go into a new store (remove it or pick another --out)")
    spec_args = ["spec", "--task", task] + (["--image-size", str(image_size)] if image_size else [])
    spec = driver_json(env, *spec_args)
    schema = schema_from_spec(spec)
    args = ["demos", "--task", task, "--count", str(count), "--first-seed", str(first_seed)]
    args += (["--image-size", str(image_size)] if image_size else []) + (["--keep-failures"] if keep_failures else [])
    args += ["--max-seeds", str(max_seeds)] if max_seeds is not None else []
    t0 = time.perf_counter()
    store = EpisodeStore.create(store_path, schema)
    proc = subprocess.Popen(env.driver_argv(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env.process_env())
    err_lines: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            err_lines.append(line)
            del err_lines[:-50]
            if line.startswith("demos "):
                say(f"[{env.suite.name}] {line}")

    import threading

    pumper = threading.Thread(target=pump, daemon=True)
    pumper.start()
    done, seeds, steps = None, [], 0
    notes = f"{env.suite.name} scripted expert"
    try:
        assert proc.stdout is not None
        for msg in _messages(proc.stdout):
            if msg["type"] == "episode":
                rec = append_episode(store, msg, f"{env.suite.name} {task}", notes)
                seeds.append(int(msg["seed"]))
                steps += rec.length
            elif msg["type"] == "done":
                done = msg
    except BaseException:
        proc.kill()
        raise
    finally:
        proc.wait()
        pumper.join(timeout=5)
    if proc.returncode != 0 or done is None:
        raise DriverError(f"{env.suite.name} demos for {task} failed after {len(seeds)} episodes: "
                          f"{_stderr_tail(proc, err_lines)}")
    problems = verify(EpisodeStore.open(store_path))
    if problems:
        raise StorageError(f"{store_path}: dataset verify found {len(problems)} problem(s): {problems[0]}")
    if not seeds:
        raise DriverError(f"{env.suite.name} {task}: the expert succeeded on none of {done['tried']} seeds")
    return DemoResult(task, store_path, len(seeds), int(done["tried"]), tuple(done["failed_seeds"]), tuple(seeds),
                      steps, round(time.perf_counter() - t0, 1), tuple(problems))
