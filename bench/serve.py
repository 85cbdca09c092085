"""Policy server on loopback: what a request costs on top of in-process inference, per execution mode.

A lift diffusion policy (state observation, the CPU U-Net, DDIM-10, 8-action chunks at 10 Hz; weights
from a 2-step training run, which does not change the timing) is timed three ways on real sim
observations (``SimEnv`` built with ``env_config_for(policy.observation_features, "lift", "panda")``,
so the payloads have the real sizes):

* **local**: ``policy.infer(obs)`` and ``policy.observe(obs)`` in this process (the baseline);
* **remote**: the same checkpoint served by ``robot-learning serve`` in a separate process on
  127.0.0.1, driven with ``PolicyClient``: the client round trip of ``infer``, the server's own
  ``infer_ms``, the overhead = round trip - infer_ms (per request, then p50 / p99), the server's
  ``recv_to_send_ms``, and the ``observe`` round trip (the per-tick message between chunks);
* **null**: transport alone: a policy whose ``infer`` returns zeros at once (the lift policy's
  observation features, optionally plus one RGB image of 96x96 or 640x480, random bytes: the
  codec does not compress, so only the size matters), served by ``PolicyServer`` in a thread of
  this process (client and server share the GIL, as a sim and a server in one process would).

Then the control-loop view: the twin (the lift sim stepped in real time at the policy's 10 Hz) runs
up to ``--ticks`` ticks per mode (until the cube is lifted): ``open-loop`` (``ChunkExecutor``:
``next_action`` blocks while a chunk is computed) and the worker-thread modes of ``QueuedChunkSource``
(``queue``, ``ensemble``, ``rtc``: the control thread only takes the queued action), each with the local
policy and with ``RemotePolicy`` on the server process. Measured: the time the control thread spends in
``next_action`` per tick (p50 / p99 / max), the ticks where no action was ready (``next_action`` returned
None; the first chunk of an episode excluded and counted apart), loop overruns, the chunks inferred,
stale actions dropped, and how smoothly the executed joint targets move (rms acceleration, rms and p99
jerk, largest single-tick step: chunk seams show as jerk). Smoothness only means something with a
trained policy (``--checkpoint``): a 2-step policy's actions are noise.

Threads: ``--threads`` (default 1) torch/OpenMP threads in this process and in the server process.

Ratios are remote / local (above 1: the server costs that much more).

    .venv/bin/python bench/serve.py                         # records + trains a throwaway run (~3 min)
    .venv/bin/python bench/serve.py --checkpoint RUN        # reuse a training run or policy folder
    .venv/bin/python bench/serve.py --chunks 50 --ticks 40  # quicker

Prints a readable table, then one JSON line; the JSON also goes to bench/results/serve.json
(unless --no-save).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

from robot_learning.policies.base import ActionChunk, Policy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "serve.json"


# ----------------------------------------------------------------------------- helpers
def _ms(samples_ms: list[float]) -> dict[str, float | None]:
    if not samples_ms:
        return {"p50": None, "p99": None, "max": None, "mean": None, "n": 0}
    a = np.asarray(samples_ms, dtype=np.float64)
    return {"p50": round(float(np.percentile(a, 50)), 4), "p99": round(float(np.percentile(a, 99)), 4),
            "max": round(float(a.max()), 4), "mean": round(float(a.mean()), 4), "n": int(a.size)}


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> bool:
    from robot_learning.deploy.client import health

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            health(url)
            return True
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.1)


def start_server(run: Path) -> tuple[subprocess.Popen, list[str], str]:
    """``robot-learning serve --checkpoint RUN --port P`` in its own process, up and healthy. Should the CLI fail
    to start (a broken working tree), the same server (``load_policy`` + ``PolicyServer.serve_forever``, what
    ``run_serve`` does) is started from this file instead, still in a separate process; the JSON says which."""
    tried = []
    for cmd in ([sys.executable, "-m", "robot_learning", "serve", "--checkpoint", str(run)],
                [sys.executable, str(Path(__file__).resolve()), "--serve-worker", "--checkpoint", str(run)]):
        port = _free_port()
        cmd = [*cmd, "--port", str(port)]
        log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - the server process writes to it until the end
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True, cwd=ROOT)
        url = f"ws://127.0.0.1:{port}"
        if _wait_up(url, proc):
            return proc, cmd, url
        proc.kill()
        proc.wait()
        log.seek(0)
        err = log.read().strip().splitlines()
        tried.append(f"{' '.join(cmd[1:4])}: exit {proc.returncode}: {err[-1] if err else ''}")
        print(f"policy server did not come up ({tried[-1]})", file=sys.stderr, flush=True)
    raise SystemExit("no policy server: " + "; ".join(tried))


def serve_worker(run: str, port: int) -> int:
    from robot_learning.deploy.server import PolicyServer
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir

    PolicyServer(load_policy(resolve_policy_dir(run)), host="127.0.0.1", port=port).serve_forever()
    return 0


def make_run(workdir: Path) -> Path:
    """Scripted lift episodes + a 2-step training run (as tests/test_deploy.py's ``run_dir``)."""
    from robot_learning.cli.main import main as cli_main
    from robot_learning.datasets.scripted import record_lift

    ds = record_lift(workdir / "lift.zarr")
    run = workdir / "run"
    with contextlib.redirect_stdout(io.StringIO()):
        rc = cli_main(["train", "--dataset", str(ds), "--out", str(run), "--batch-size", "8", "--steps", "2",
                       "--eval-episodes", "0", "--no-progress"])
    if rc != 0:
        raise SystemExit(f"training the throwaway run failed (exit {rc})")
    return run


def _values(features, observation) -> tuple[dict, dict]:
    values, caps = {}, {}
    for spec in features:
        v = observation.values[spec.name]
        values[spec.name] = v if isinstance(v, str) else np.ascontiguousarray(v)
        caps[spec.name] = int(observation.t_capture_ns.get(spec.name, observation.t_ns))
    return values, caps


def _payload_bytes(values: dict, caps: dict, t_ns: int) -> int:
    from robot_learning.deploy.client import encode

    return len(encode({"type": "infer", "id": 1, "t_ns": int(t_ns), "obs": values, "t_capture_ns": caps}))


# ----------------------------------------------------------------------------- measurements
def bench_local(policy, observations: list, chunks: int, warmup: int) -> dict:
    policy.reset(0)
    for k in range(warmup):
        policy.infer(observations[k % len(observations)])
    infer, observe = [], []
    for k in range(chunks):
        o = observations[k % len(observations)]
        t0 = time.perf_counter()
        policy.infer(o)
        infer.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        policy.observe(o)
        observe.append((time.perf_counter() - t0) * 1e3)
    return {"infer_ms": _ms(infer), "observe_ms": _ms(observe)}


def bench_client(url: str, features, observations: list, chunks: int, warmup: int) -> dict:
    """``infer`` + ``observe`` requests through a PolicyClient: round trip, server infer_ms, overhead."""
    from robot_learning.deploy.client import PolicyClient

    client = PolicyClient(url, timeout_s=30.0).connect()
    try:
        client.reset(0)
        payloads = [_values(features, o) for o in observations]
        for k in range(warmup):
            v, c = payloads[k % len(payloads)]
            client.infer(v, observations[k % len(observations)].t_ns, c)
            client.observe(v, observations[k % len(observations)].t_ns, c)
        rt, srv, over, r2s, obs_rt = [], [], [], [], []
        for k in range(chunks):
            (v, c), t = payloads[k % len(payloads)], int(observations[k % len(observations)].t_ns)
            reply = client.infer(v, t, c)
            rt.append(reply.round_trip_ms)
            srv.append(reply.server_timing["infer_ms"])
            r2s.append(reply.server_timing.get("recv_to_send_ms", float("nan")))
            over.append(reply.round_trip_ms - reply.server_timing["infer_ms"])
            t0 = time.perf_counter()
            client.observe(v, t, c)
            obs_rt.append((time.perf_counter() - t0) * 1e3)
        v, c = payloads[0]
        return {"round_trip_ms": _ms(rt), "server_infer_ms": _ms(srv), "overhead_ms": _ms(over),
                "recv_to_send_ms": _ms(r2s), "observe_round_trip_ms": _ms(obs_rt),
                "request_bytes": _payload_bytes(v, c, observations[0].t_ns)}
    finally:
        client.close()


class NullPolicy(Policy):
    """Returns a chunk of zeros at once: what is left of a request is the transport."""

    kind = "null"

    def __init__(self, observation_features, action_features, period_ns: int, steps: int = 8):
        self.observation_features, self.action_features = observation_features, action_features
        self.control_period_ns, self.steps, self.meta = int(period_ns), int(steps), {}
        self._da = sum(s.size for s in action_features)

    def reset(self, seed: int | None = None) -> None:
        pass

    def observe(self, observation) -> None:
        pass

    def infer(self, observation) -> ActionChunk:
        t = int(observation.t_ns) + self.control_period_ns * np.arange(self.steps, dtype=np.int64)
        return ActionChunk(np.zeros((self.steps, self._da), np.float32), t, self.action_features)


def bench_null(policy, observations: list, image: tuple[int, int] | None, chunks: int, warmup: int) -> dict:
    from robot_learning.core.features import FeatureKind, FeatureSet, FeatureSpec
    from robot_learning.core.frame import Observation
    from robot_learning.deploy.server import PolicyServer

    feats = list(policy.observation_features)
    obs = observations
    if image is not None:
        w, h = image
        spec = FeatureSpec("front_rgb", (h, w, 3), "uint8", FeatureKind.RGB, "srgb")
        feats.append(spec)
        rng = np.random.default_rng(0)
        imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)]
        fs = FeatureSet(feats)
        obs = []
        for k, o in enumerate(observations):
            vals = {s.name: o.values[s.name] for s in policy.observation_features}
            caps = {n: int(o.t_capture_ns.get(n, o.t_ns)) for n in vals}
            vals["front_rgb"], caps["front_rgb"] = imgs[k % 2], int(o.t_ns)
            obs.append(Observation(int(o.t_ns), fs, vals, caps))
    null = NullPolicy(FeatureSet(feats), policy.action_features, policy.control_period_ns)
    server = PolicyServer(null, host="127.0.0.1", port=0)
    port = server.start()
    try:
        return bench_client(f"ws://127.0.0.1:{port}", null.observation_features, obs, chunks, warmup)
    finally:
        server.stop()


class TimedSource:
    """Wraps an action source: the wall time the control thread spends in ``next_action``, per tick."""

    def __init__(self, source):
        self.source, self.action_features = source, source.action_features
        self.ms: list[float] = []
        self.none_ticks: list[int] = []

    def reset(self) -> None:
        self.source.reset()

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()

    def next_action(self, observation):
        t0 = time.perf_counter()
        out = self.source.next_action(observation)
        self.ms.append((time.perf_counter() - t0) * 1e3)
        if out is None:
            self.none_ticks.append(len(self.ms) - 1)
        return out


def smoothness(records, rate_hz: float) -> dict:
    """How smoothly the executed joint targets move: per-tick finite differences of ``joint_pos_rad`` scaled to
    rad/s, rad/s^2 and rad/s^3 (norm over the joints). A jump where two chunks meet shows as a large jerk."""
    q = np.array([r.executed["joint_pos_rad"] for r in records if r.executed is not None], dtype=np.float64)
    if len(q) < 4:
        return {"accel_rms_rad_s2": None, "jerk_rms_rad_s3": None, "jerk_p99_rad_s3": None, "step_max_rad": None}
    d1, d2, d3 = (np.linalg.norm(np.diff(q, n=k, axis=0), axis=1) for k in (1, 2, 3))
    return {"accel_rms_rad_s2": round(float(np.sqrt(np.mean(d2 ** 2)) * rate_hz ** 2), 3),
            "jerk_rms_rad_s3": round(float(np.sqrt(np.mean(d3 ** 2)) * rate_hz ** 3), 2),
            "jerk_p99_rad_s3": round(float(np.percentile(d3, 99)) * rate_hz ** 3, 2),
            "step_max_rad": round(float(d1.max()), 4)}


LOOP_MODES = ("open-loop", "queue", "ensemble", "rtc")


def bench_loop(policy, mode: str, ticks: int, seed: int) -> dict:
    from robot_learning.sim.env import SimEnv
    from robot_learning.sim.world import PhysicsConfig

    from robot_learning.evaluation.rollout import chunk_source, env_config_for

    cfg = env_config_for(policy.observation_features, "lift", "panda")
    env = SimEnv(dataclasses.replace(cfg, physics=PhysicsConfig(realtime=True)))
    try:
        env.reset(seed)
        source = chunk_source(policy, env, seed, mode)
        timed = TimedSource(source)
        records: list = []
        w0 = time.perf_counter()
        try:
            stats = env.make_runtime(timed).run(max_ticks=ticks,
                                                should_stop=lambda t: records.append(t) or env.task.success(env.world))
        finally:
            timed.close()
        wall_s = time.perf_counter() - w0
        success = bool(env.task.success(env.world))
        rate = env.task.config.control_rate_hz
    finally:
        env.close()
    first_action = next((i for i, r in enumerate(records) if r.requested is not None), None)
    none_after = [i for i in timed.none_ticks if first_action is not None and i > first_action]
    return {"next_action_ms": _ms(timed.ms), "ticks": len(timed.ms),
            "no_action_ticks": len(none_after), "ticks_before_first_action": first_action,
            "held_ticks": sum(r.held for r in records), "overruns": stats.loop.overruns,
            "missed_ticks": stats.loop.missed_ticks, "chunks": len(source.latencies_s),
            "stale_dropped": getattr(source, "stale_dropped", 0), "success": success,
            "smoothness": smoothness(records[first_action or 0:], rate),
            "chunk_latency_ms": _ms([s * 1e3 for s in source.latencies_s]), "wall_s": round(wall_s, 2)}


# ----------------------------------------------------------------------------- report
def table(res: dict) -> str:
    def q3(d: dict | None) -> str:
        return "-" if d is None else " / ".join(_f(d[k], 2) for k in ("p50", "p99", "max"))

    loc, rem = res["local"], res["remote"]
    lines = ["| request (ms, p50 / p99 / max) | local (in-process) | remote (server process) |",
             "|---|---|---|",
             f"| infer: call / client round trip | {q3(loc['infer_ms'])} | {q3(rem['round_trip_ms'])} |",
             f"| infer: server-side infer_ms | - | {q3(rem['server_infer_ms'])} |",
             f"| infer: overhead (round trip - infer_ms) | - | {q3(rem['overhead_ms'])} |",
             f"| infer: server recv -> send | - | {q3(rem['recv_to_send_ms'])} |",
             f"| observe (per tick between chunks) | {q3(loc['observe_ms'])} | {q3(rem['observe_round_trip_ms'])} |",
             "", ("| null policy, transport only (ms, p50 / p99 / max) | request bytes | infer overhead | "
                 "observe round trip |"), "|---|---|---|---|"]
    for name, d in res["null"].items():
        lines.append(f"| {name} | {d['request_bytes']:,} | {q3(d['overhead_ms'])} | "
                     f"{q3(d['observe_round_trip_ms'])} |")
    lines += ["", (f"| control loop, up to {res['config']['ticks']} ticks at 10 Hz on the twin | next_action ms "
                  "p50 / p99 / max | no action ready | ticks before 1st action | overruns | chunks | stale dropped | "
                  "accel rms rad/s^2 | jerk rms / p99 rad/s^3 | largest step rad | lifted |"),
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, d in res["loop"].items():
        sm = d["smoothness"]
        lines.append(f"| {name} | {q3(d['next_action_ms'])} | {d['no_action_ticks']} | "
                     f"{d['ticks_before_first_action']} | {d['overruns']} | {d['chunks']} | {d['stale_dropped']} | "
                     f"{_f(sm['accel_rms_rad_s2'])} | {_f(sm['jerk_rms_rad_s3'], 1)} / {_f(sm['jerk_p99_rad_s3'], 1)} | "
                     f"{_f(sm['step_max_rad'], 3)} | {'yes' if d['success'] else 'no'} |")
    return "\n".join(lines)


def ratios(res: dict) -> dict:
    loc, rem, out = res["local"], res["remote"], {}
    for q in ("p50", "p99"):
        out[f"infer_{q}"] = _ratio(rem["round_trip_ms"][q], loc["infer_ms"][q])
        out[f"observe_{q}"] = _ratio(rem["observe_round_trip_ms"][q], loc["observe_ms"][q])
    for mode in LOOP_MODES:
        a, b = res["loop"].get(f"{mode}_remote"), res["loop"].get(f"{mode}_local")
        if a and b:
            for q in ("p50", "p99", "max"):
                out[f"{mode}_next_action_{q}"] = _ratio(a["next_action_ms"][q], b["next_action_ms"][q])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", metavar="RUN", help="a training run or policy folder (default: record 3 lift "
                                                       "episodes and train 2 steps in a temp dir)")
    ap.add_argument("--chunks", type=int, default=200, help="timed requests per measurement (default 200)")
    ap.add_argument("--warmup", type=int, default=10, help="untimed requests first (default 10)")
    ap.add_argument("--ticks", type=int, default=100, help="control ticks per execution mode (default 100)")
    ap.add_argument("--seed", type=int, default=100_000, help="sim seed of the control-loop episodes")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch/OpenMP threads of this process and of the server process (default 1: client, "
                         "server and sim share the cores, and oversubscribed OpenMP spinning makes inference "
                         "erratic; 0: torch's default)")
    ap.add_argument("--modes", nargs="+", default=list(LOOP_MODES), choices=LOOP_MODES,
                    help="chunk execution modes of the control-loop runs (default: all)")
    ap.add_argument("--skip-loop", action="store_true", help="requests only, no control-loop runs")
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results/serve.json")
    ap.add_argument("--serve-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve_worker:
        return serve_worker(args.checkpoint, args.port)
    if args.threads > 0:   # this process and the server process (it inherits the environment)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    import torch
    from robot_learning.sim.env import SimEnv

    from robot_learning.deploy.remote import RemotePolicy
    from robot_learning.evaluation.rollout import env_config_for
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir

    load0 = os.getloadavg()
    tmp = None
    if args.checkpoint:
        run = Path(args.checkpoint)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="bench_serve_")
        print("recording 3 lift episodes and training 2 steps ...", file=sys.stderr, flush=True)
        run = make_run(Path(tmp.name))
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    policy = load_policy(resolve_policy_dir(run))
    policy.eval()
    env = SimEnv(env_config_for(policy.observation_features, "lift", "panda"))
    observations = [env.reset(1000 + k) for k in range(8)]
    env.close()
    cfg = {"threads": torch.get_num_threads(), "chunks": args.chunks, "warmup": args.warmup, "ticks": args.ticks, "seed": args.seed,
           "obs": list(policy.observation_features.names), "params": policy.num_parameters(),
           "chunk_steps": None}

    print("local in-process inference ...", file=sys.stderr, flush=True)
    local = bench_local(policy, observations, args.chunks, args.warmup)
    cfg["chunk_steps"] = len(policy.infer(observations[0]))

    server, server_cmd, url = start_server(run)
    res: dict[str, Any] = {}
    try:
        print("remote (server process) ...", file=sys.stderr, flush=True)
        remote = bench_client(url, policy.observation_features, observations, args.chunks, args.warmup)
        print("null policy (transport only) ...", file=sys.stderr, flush=True)
        null = {name: bench_null(policy, observations, image, args.chunks, args.warmup)
                for name, image in (("state", None), ("state + 96x96 RGB", (96, 96)),
                                    ("state + 640x480 RGB", (640, 480)))}
        loop: dict[str, Any] = {}
        if not args.skip_loop:
            for mode in args.modes:
                for where in ("local", "remote"):
                    print(f"control loop: {mode}, {where} ...", file=sys.stderr, flush=True)
                    p = policy if where == "local" else RemotePolicy(url, timeout_s=30.0)
                    try:
                        loop[f"{mode}_{where}"] = bench_loop(p, mode, args.ticks, args.seed)
                    finally:
                        if where == "remote":
                            p.close()
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        if tmp is not None:
            tmp.cleanup()

    res = {"bench": "serve", "date": _dt.date.today().isoformat(), "host": platform.node(), "cpus": os.cpu_count(),
           "python": sys.version.split()[0], "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
           "checkpoint": None if tmp is not None else str(run), "config": cfg,
           "server_command": " ".join(Path(c).name if c == sys.executable else c for c in server_cmd),
           "local": local, "remote": remote, "null": null, "loop": loop,
           "loadavg": [round(x, 2) for x in load0 + os.getloadavg()]}
    res["ratios_remote_over_local"] = ratios(res)
    print(f"\nPolicy server on loopback vs in-process, lift state policy ({cfg['params'] / 1e6:.2f}M params, "
          f"{cfg['chunk_steps']}-step chunks), {args.chunks} requests after {args.warmup} warm-up:\n")
    print(table(res))
    print("\nratios remote / local: " + ", ".join(f"{k} {_f(v, 2)}" for k, v in res["ratios_remote_over_local"].items()))
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
