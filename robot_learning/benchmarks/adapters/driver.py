"""The adapter-side driver: runs a suite's ``SUITE`` object inside the suite's own virtual environment.

    python driver.py SUITE_FILE spec  --task T [--image-size N]
    python driver.py SUITE_FILE demos --task T --count N --first-seed S [--max-seeds M] [--image-size N]
                                      [--keep-failures]
    python driver.py SUITE_FILE eval  --task T --seeds 100000,100001 | --first-seed S --count N
                                      --url ws://127.0.0.1:PORT [--image-size N] [--videos K --video-dir D
                                      --video-size 320] [--timeout-s 30]
    python driver.py SUITE_FILE tasks

A plain script beside ``client.py`` (the project's one-file policy client) and the suite file: it imports only
the standard library, numpy, msgpack, websockets, ``client`` and the suite (never ``robot_learning``, never torch).

Output goes to the original standard output; everything else the suite's packages print is sent to stderr:

- ``spec`` / ``tasks``: one JSON line.
- ``demos``: one length-prefixed message per kept episode (4 bytes big-endian length, then ``client.encode`` of
  ``{"type": "episode", "seed", "success", "obs": {name: (T, ...) array}, "actions": (T, n) float32,
  "metrics": {...}}``), then ``{"type": "done", "kept", "tried", "failed_seeds"}``. Progress lines on stderr.
- ``eval``: one JSON line per episode ``{"type": "episode", "seed", "success", "length", "metrics",
  "latency_ms": [per chunk], "chunks", "video"}``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

VIDEO_FPS = 20.0   # videos film every k-th step, k = round(control_hz / VIDEO_FPS)
_OUT = None   # the original stdout (binary), set by main(); fd 1 then points at stderr


def _emit_bytes(data: bytes) -> None:
    _OUT.write(data)
    _OUT.flush()


def _emit_json(doc: dict) -> None:
    _emit_bytes((json.dumps(doc) + "\n").encode())


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_suite(path: str):
    """The module-level ``SUITE`` of a suite file."""
    p = Path(path).resolve()
    if not p.is_file():
        raise SystemExit(f"driver: no suite file {p}")
    sys.path.insert(0, str(p.parent))
    spec = importlib.util.spec_from_file_location(p.stem, p)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not hasattr(mod, "SUITE"):
        raise SystemExit(f"driver: {p} defines no SUITE")
    return mod.SUITE


def _check_task(suite, task: str) -> None:
    known = list(suite.tasks())
    if task not in known:
        raise SystemExit(f"driver: unknown {suite.name} task {task!r}; expected one of {known}")


def _obs32(obs: dict, spec: dict) -> dict:
    """The observation as the spec declares it (dtype and shape checked)."""
    out = {}
    for f in spec["observation"]:
        v = np.asarray(obs[f["name"]])
        if list(v.shape) != list(f["shape"]):
            raise SystemExit(f"driver: observation {f['name']} has shape {list(v.shape)}, spec says {f['shape']}")
        out[f["name"]] = np.ascontiguousarray(v, dtype=f["dtype"])
    return out


# --------------------------------------------------------------------------- demos
def _expert_episode(suite, env, spec: dict) -> tuple[list, list, list]:
    """(observations, actions, infos) of one expert episode, ending at success or the time limit."""
    obs = env.reset()
    first = env.expert_action(obs)
    if first is None:
        # (obs, action) pairs, or (obs, action, info) triples; with pairs, the env's last_expert_infos (every step's
        # info) or last_info (the last one) says how it ended
        steps = env.expert_episode()
        obs_list = [_obs32(s[0], spec) for s in steps]
        acts = [np.asarray(s[1], dtype=np.float32) for s in steps]
        infos = [s[2] for s in steps if len(s) > 2] or list(getattr(env, "last_expert_infos", None) or [])
        return obs_list, acts, infos or [dict(getattr(env, "last_info", None) or {"success": False})]
    obs_list, acts, infos = [], [], []
    action = first
    for _ in range(int(spec["max_steps"])):
        a = np.clip(np.asarray(action, dtype=np.float32), spec["action_low"], spec["action_high"]).astype(np.float32)
        obs_list.append(_obs32(obs, spec))
        acts.append(a)
        obs, _, done, info = env.step(a)
        infos.append(info)
        if info.get("success") or done:
            break
        action = env.expert_action(obs)
    return obs_list, acts, infos


def cmd_demos(suite, args) -> int:
    from client import encode

    spec = suite.spec(args.task, args.image_size)
    kept, tried, failed = 0, 0, []
    seed = args.first_seed
    limit = args.max_seeds if args.max_seeds is not None else max(2 * args.count, args.count + 10)
    t0 = time.perf_counter()
    while kept < args.count and tried < limit:
        env = suite.make(args.task, seed, args.image_size)
        try:
            obs_list, acts, infos = _expert_episode(suite, env, spec)
        finally:
            env.close()
        metrics = suite.episode_metrics(infos)
        success = bool(metrics.get("success"))
        tried += 1
        if success or args.keep_failures:
            msg = {"type": "episode", "seed": seed, "success": success, "metrics": _plain(metrics),
                   "obs": {k: np.stack([o[k] for o in obs_list]) for k in obs_list[0]},
                   "actions": np.stack(acts).astype(np.float32)}
            data = encode(msg)
            _emit_bytes(struct.pack(">I", len(data)) + data)
            kept += 1
        else:
            failed.append(seed)
        _log(f"demos {args.task}: seed {seed} {'success' if success else 'failure'} in {len(acts)} steps "
             f"({kept}/{args.count} kept, {time.perf_counter() - t0:.1f} s)")
        seed += 1
    data = encode({"type": "done", "kept": kept, "tried": tried, "failed_seeds": failed})
    _emit_bytes(struct.pack(">I", len(data)) + data)
    return 0


def _plain(x):
    """JSON-able copy of a metrics dict (numpy scalars to Python)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


# --------------------------------------------------------------------------- eval
def _write_video(frames: list, path: Path, fps: float) -> None:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(1, int(round(fps))))
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:stream.height, :stream.width]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _eval_episode(suite, client, task: str, seed: int, spec: dict, args, video_path: Path | None) -> dict:
    period_ns = int(round(1e9 / float(spec["control_hz"])))
    low = np.asarray(spec["action_low"], dtype=np.float32)
    high = np.asarray(spec["action_high"], dtype=np.float32)
    env = suite.make(task, seed, args.image_size)
    frames, infos, latencies = [], [], []
    queue: list[np.ndarray] = []
    steps = 0
    stride = max(1, int(round(float(spec["control_hz"]) / VIDEO_FPS)))   # film at about VIDEO_FPS, in real time
    try:
        client.reset(seed)
        obs = env.reset()
        limit = int(spec["max_steps"]) if args.max_steps is None else min(int(spec["max_steps"]), args.max_steps)
        for step in range(limit):
            values = _obs32(obs, spec)
            t_ns = step * period_ns
            if not queue:
                reply = client.infer(values, t_ns)
                latencies.append(round(reply.round_trip_ms, 3))
                queue = [a for a, t in zip(reply.actions, reply.t_ns) if int(t) >= t_ns]
                if not queue:
                    raise SystemExit(f"driver: the policy's chunk holds no action for tick {t_ns} ns")
            else:
                client.observe(values, t_ns)
            action = np.clip(np.asarray(queue.pop(0), dtype=np.float32), low, high)
            if video_path is not None and step % stride == 0:
                frames.append(env.render(args.video_size))
            obs, _, done, info = env.step(action)
            infos.append(info)
            steps += 1
            if info.get("success") or done:
                break
        if video_path is not None:
            frames.append(env.render(args.video_size))
    finally:
        env.close()
    metrics = _plain(suite.episode_metrics(infos))
    video = None
    if video_path is not None and frames:
        video = str(video_path.with_name(f"{video_path.stem}_{'success' if metrics.get('success') else 'failure'}.mp4"))
        _write_video(frames, Path(video), float(spec["control_hz"]) / stride)
    return {"type": "episode", "task": task, "seed": seed, "success": bool(metrics.get("success")), "length": steps,
            "metrics": metrics, "latency_ms": latencies, "chunks": len(latencies), "video": video}


def cmd_eval(suite, args) -> int:
    from client import PolicyClient

    spec = suite.spec(args.task, args.image_size)
    seeds = _seeds(args)
    video_dir = Path(args.video_dir) if args.video_dir else None
    if video_dir is not None:
        video_dir.mkdir(parents=True, exist_ok=True)
    with PolicyClient(args.url, timeout_s=args.timeout_s) as client:
        served = client.spec()
        want = sorted(f["name"] for f in spec["observation"])
        needs = sorted(f["name"] for f in served["observation_features"])
        missing = sorted(set(needs) - set(want))
        if missing:
            raise SystemExit(f"driver: the served policy reads {missing}, which the {suite.name} {args.task} "
                             f"observation ({want}) does not hold")
        for i, seed in enumerate(seeds):
            path = video_dir / f"{args.task}_seed{seed}" if video_dir is not None and i < args.videos else None
            doc = _eval_episode(suite, client, args.task, seed, spec, args, path)
            doc["obs_sent"] = needs
            _emit_json(doc)
            _log(f"eval {args.task}: seed {seed} {'success' if doc['success'] else 'failure'} in {doc['length']} "
                 f"steps")
    return 0


def _seeds(args) -> list[int]:
    if args.seeds:
        return [int(s) for s in args.seeds.split(",") if s.strip()]
    return list(range(args.first_seed, args.first_seed + args.count))


# --------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="driver.py", description="Run a benchmark suite's adapter.")
    p.add_argument("suite_file")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("tasks")
    s = sub.add_parser("spec")
    s.add_argument("--task", required=True)
    s.add_argument("--image-size", type=int, default=None)
    d = sub.add_parser("demos")
    d.add_argument("--task", required=True)
    d.add_argument("--count", type=int, required=True)
    d.add_argument("--first-seed", type=int, default=0)
    d.add_argument("--max-seeds", type=int, default=None)
    d.add_argument("--image-size", type=int, default=None)
    d.add_argument("--keep-failures", action="store_true")
    e = sub.add_parser("eval")
    e.add_argument("--task", required=True)
    e.add_argument("--url", required=True)
    e.add_argument("--seeds", default=None)
    e.add_argument("--first-seed", type=int, default=100_000)
    e.add_argument("--count", type=int, default=10)
    e.add_argument("--image-size", type=int, default=None)
    e.add_argument("--videos", type=int, default=0)
    e.add_argument("--video-dir", default=None)
    e.add_argument("--video-size", type=int, default=320)
    e.add_argument("--timeout-s", type=float, default=60.0)
    e.add_argument("--max-steps", type=int, default=None,
                   help="cut episodes shorter than the suite's limit (smoke tests)")
    return p


def main(argv: list[str] | None = None) -> int:
    global _OUT
    args = _parser().parse_args(argv)
    _OUT = os.fdopen(os.dup(1), "wb")      # the protocol channel
    os.dup2(2, 1)                         # whatever else prints goes to stderr
    sys.stdout = sys.stderr
    suite = load_suite(args.suite_file)
    if args.command == "tasks":
        _emit_json({"suite": suite.name, "tasks": list(suite.tasks()), "default_tasks": list(suite.default_tasks())})
        return 0
    _check_task(suite, args.task)
    if args.command == "spec":
        _emit_json(_plain(suite.spec(args.task, args.image_size)))
        return 0
    if args.command == "demos":
        return cmd_demos(suite, args)
    return cmd_eval(suite, args)


if __name__ == "__main__":
    sys.exit(main())
