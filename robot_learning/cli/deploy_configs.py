"""Configs of the deploy subcommands: inert frozen dataclasses, validated on construction."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from robot_learning.core.device import check_device
from robot_learning.errors import ConfigError
from robot_learning.evaluation.config import FLAT, SamplingConfig
from robot_learning.rig import EE_TELEOPS, TELEOPS, RigConfig, SessionConfig

TOKEN_ENV = "ROBOT_LEARNING_TOKEN"


@dataclass(frozen=True)
class ServeConfig:
    """Serve a trained policy over a websocket (msgpack messages, never pickle) for a robot or a simulator in
    another process or on another machine; clients use robot_learning/deploy/client.py (a single file that needs only
    numpy, msgpack and websockets). Protocol: docs/deploy_protocol.md."""

    checkpoint: Path
    """A training run folder (its policy/) or a policy folder."""
    host: str = "127.0.0.1"
    """Address to listen on. Loopback (127.0.0.1, ::1, localhost) is reachable only from this machine; any other
    address (0.0.0.0 for every interface) needs --token."""
    port: int = 8765
    """TCP port (0 picks a free one, printed at start)."""
    token: str | None = field(default=None, repr=False)
    """Bearer token every client must send (Authorization: Bearer TOKEN). Default: $ROBOT_LEARNING_TOKEN when set;
    prefer the variable, a command-line token is visible in the process list."""
    device: str = "auto"
    """auto (CUDA when present, else cpu), cpu, cuda or cuda:N."""
    sampling: Annotated[SamplingConfig, FLAT] = SamplingConfig()
    """--sampler, --sampling-steps, --sampling-temperature."""

    def __post_init__(self) -> None:
        if self.token is None and os.environ.get(TOKEN_ENV):
            object.__setattr__(self, "token", os.environ[TOKEN_ENV])
        if not 0 <= self.port <= 65535:
            raise ConfigError.expected("--port", "0..65535", self.port)
        if not self.host.strip():
            raise ConfigError.expected("--host", "an address such as 127.0.0.1 or 0.0.0.0", repr(self.host))
        check_device(self.device)
        from robot_learning.deploy.server import check_bind

        check_bind(self.host, self.token)


DEPLOY_MODES = ("open-loop", "queue", "ensemble", "rtc")


@dataclass(frozen=True)
class DeployConfig:
    """Run a trained policy on a robot through the control runtime (safety filter, watchdog): a local run folder
    or a policy server (ws://HOST:PORT, see `robot-learning serve`). On a sim robot, --episodes N --seed S runs N
    held-out episodes and reports the success rate like `eval`; on a real arm it runs until --duration-s or
    Ctrl-C."""

    policy: str
    """A training run folder (its policy/), a policy folder, or ws://HOST:PORT of a policy server."""
    rig: Annotated[RigConfig, FLAT] = RigConfig(robot="sim:lift", teleop=None, cameras=())
    """--robot, --teleop, --robot-port, --robot-id, --teleop-port, --teleop-id, --calibration-dir, --rate-hz,
    --cameras, --task."""
    session: Annotated[SessionConfig, FLAT] = SessionConfig()
    """--duration-s, --record (real arms)."""
    token: str | None = None
    """Bearer token of the policy server (default: $ROBOT_LEARNING_TOKEN)."""
    mode: str | None = None
    """Chunk execution: open-loop (each chunk played out, then the next inferred in the control thread: what eval
    does; the sim default), or, in a worker thread so the robot never waits on the policy (actions whose tick
    has passed are dropped; a policy server that died is reconnected): queue (the next chunk replaces the queue;
    the real-arm default), ensemble (temporal ensembling: a chunk every tick, weighted mean per tick) or rtc
    (real-time chunking: actions due during the inference stay committed, the rest blends into the new chunk).
    On the sim twin the worker-thread modes step physics in real time (an episode takes its real length)."""
    episodes: int = 1
    """Sim: episodes, one per seed from --seed."""
    realtime: bool = False
    """Sim, open-loop: step the twin in real time too (the arm waits while a chunk is inferred, as on hardware;
    the worker-thread modes always run in real time), to compare modes under the same clock."""
    seed: int = 100_000
    """Sim: first seed; seeds the policy was trained on are refused."""
    json: bool = False
    """Print the result as one JSON line."""
    device: str = "auto"
    """Local policy: auto (CUDA when present, else cpu), cpu, cuda or cuda:N."""

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.mode is not None and self.mode not in DEPLOY_MODES:
            raise ConfigError.expected("--mode", f"one of {', '.join(DEPLOY_MODES)}", repr(self.mode))
        if self.episodes < 1:
            raise ConfigError.expected("--episodes", ">= 1", self.episodes)
        self.rig.check_teleop((None, *TELEOPS), "a leader arm (so101-leader, koch-leader) or one of "
                              f"{', '.join(EE_TELEOPS)}")
        if self.rig.teleop is not None and not self.rig.real:
            raise ConfigError("--teleop takes over a real arm; on the sim twin deploy evaluates the policy alone")
        if self.token is None and os.environ.get(TOKEN_ENV):
            object.__setattr__(self, "token", os.environ[TOKEN_ENV])
