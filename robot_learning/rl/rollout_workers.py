"""Residual PPO's rollouts split over worker processes: ``ParallelRollouts``.

``Rollouts`` steps every env, and samples the base for all of them, in one process: one core. Here each of ``W``
worker processes holds ``num_envs / W`` of the envs and its own copy of the residual policy (the base loaded from
the same checkpoint, at the same sampler temperature), and collects its share of every batch; the learner sends
the actor's weights before each batch and concatenates the results along the env axis. The return normalisation
runs in the learner over all envs, as with one process. Worker ``k`` resets its episodes with seeds
``first_seed + k``, ``+ W``, ... so no two envs share a seed, and ``next_seed`` (the stored end of the RL seed
range) is past every seed used.

The processes are started with ``spawn`` (no forked torch state) and talk over ``multiprocessing`` pipes to this
process only. Ctrl-C reaches the learner; the workers ignore it and are closed by ``close``.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time

import numpy as np
import torch

from robot_learning.errors import ConfigError, WorkerFailedError

CLOSE_TIMEOUT_S = 10.0


def split_envs(num_envs: int, workers: int) -> list[int]:
    """Envs per worker: as even as possible, every worker at least one."""
    if workers < 1 or workers > num_envs:
        raise ConfigError.expected("--workers", f"1..--num-envs ({num_envs})", workers)
    return [num_envs // workers + (1 if k < num_envs % workers else 0) for k in range(workers)]


def _serve(conn, cfg, n: int, first_seed: int, stride: int, seed: int) -> None:
    """A worker: build its envs and policy, then answer ``collect`` requests until ``close``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    envs = None
    try:
        from robot_learning.rig import parse_robot
        from robot_learning.rl.residual_ppo import Rollouts, build_residual_policy

        _, task, robot = parse_robot(cfg.env)
        policy = build_residual_policy(cfg, task)
        envs = Rollouts(policy, task, robot, n, first_seed, seed, seed_stride=stride)
        generator = torch.Generator()                       # seeded by the learner for every batch
        conn.send(("ready", envs.max_steps))
        while True:
            msg = conn.recv()
            if msg[0] == "close":
                break
            _, steps, weights, log_std, noise_seed, shaping_gamma = msg
            policy.actor.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            generator.manual_seed(noise_seed)
            out = envs.collect(steps, policy.actor, log_std, generator, None, shaping_gamma)
            conn.send(("batch", tuple(t.numpy() if isinstance(t, torch.Tensor) else t for t in out), envs.next_seed))
    except (EOFError, KeyboardInterrupt):
        pass
    except BaseException as e:  # noqa: BLE001  (reported to the learner, which raises it in one line)
        try:
            conn.send(("error", f"{type(e).__name__}: {e}", isinstance(e, ConfigError)))
        except (OSError, ValueError):
            pass
    finally:
        if envs is not None:
            envs.close()
        conn.close()


class ParallelRollouts:
    """The same batches as ``Rollouts.collect`` (envs concatenated worker by worker), from ``workers``
    processes."""

    def __init__(self, cfg, first_seed: int, seed: int):
        """``cfg``: the run's ``FinetuneResidualConfig`` (its ``num_envs`` split over its ``workers``)."""
        ctx = mp.get_context("spawn")
        workers = int(cfg.workers)
        self.counts = split_envs(cfg.num_envs, workers)
        self.procs, self.conns = [], []
        self._next = [int(first_seed) + k for k in range(workers)]
        try:
            for k, n in enumerate(self.counts):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_serve, args=(child, cfg, n, int(first_seed) + k, workers, int(seed) + 104_729 * k),
                                daemon=True, name=f"rollout-worker-{k}")
                p.start()
                child.close()
                self.procs.append(p)
                self.conns.append(parent)
            steps = {self._recv(k, "ready")[1] for k in range(workers)}
        except BaseException:
            self.close()
            raise
        self.max_steps = steps.pop()

    @property
    def next_seed(self) -> int:
        return max(self._next)

    def _recv(self, k: int, kind: str):
        try:
            msg = self.conns[k].recv()
        except (EOFError, OSError):
            raise WorkerFailedError(f"rollout worker {k} died (exit code {self.procs[k].exitcode}); "
                                    "see its traceback above") from None
        if msg[0] == "error":   # a configuration the worker refused stays a ConfigError (exit 2)
            raise (ConfigError if msg[2] else WorkerFailedError)(f"rollout worker {k} failed: {msg[1]}")
        if msg[0] != kind:
            raise WorkerFailedError(f"rollout worker {k} answered {msg[0]!r}, expected {kind!r}")
        return msg

    def collect(self, steps: int, actor, log_std: float, generator: torch.Generator, reward_norm,
                shaping_gamma: float | None = None):
        from robot_learning.rl.residual_ppo import normalize_rewards

        weights = {k: v.detach().cpu().numpy() for k, v in actor.state_dict().items()}
        for conn in self.conns:
            noise_seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
            conn.send(("collect", int(steps), weights, float(log_std), noise_seed, shaping_gamma))
        parts = []
        for k in range(len(self.conns)):
            _, out, self._next[k] = self._recv(k, "batch")
            parts.append(out)
        tensors = tuple(torch.from_numpy(np.concatenate([p[j] for p in parts], axis=1)) for j in range(5))
        rewards, terminated, done = (np.concatenate([p[j] for p in parts], axis=1) for j in (5, 6, 7))
        finished = [f for p in parts for f in p[8]]
        return (*tensors, normalize_rewards(rewards, done, reward_norm), terminated, done, finished)

    def close(self) -> None:
        """Stop the workers; one interrupted mid-batch (Ctrl-C) finishes it, and its answer is read and dropped
        (a large one would otherwise block its pipe)."""
        for conn in self.conns:
            try:
                conn.send(("close",))
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        for p, conn in zip(self.procs, self.conns):
            while p.is_alive() and time.monotonic() < deadline:
                try:
                    if conn.poll(0.05):
                        conn.recv()
                except (EOFError, OSError):
                    break
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(CLOSE_TIMEOUT_S)
        for conn in self.conns:
            conn.close()
        self.procs, self.conns = [], []
