"""Runners of the deploy subcommands (imported only when one runs)."""

from __future__ import annotations

import sys

from robot_learning.cli.deploy_configs import ServeConfig


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def run_serve(cfg: ServeConfig) -> int:
    """Load the policy, serve it until Ctrl-C; returns 0."""
    from robot_learning.core.device import resolve_device
    from robot_learning.deploy.server import PolicyServer
    from robot_learning.policies.checkpoint import load_policy, resolve_policy_dir

    policy_dir = resolve_policy_dir(cfg.checkpoint)
    policy = load_policy(policy_dir, device=resolve_device(cfg.device))
    cfg.sampling.apply(policy)
    server = PolicyServer(policy, host=cfg.host, port=cfg.port, token=cfg.token)
    port = server.start()
    where = f"{_url_host(server.host)}:{port}"
    print(f"serving {policy.kind} policy {policy_dir} on ws://{where} "
          f"(health: http://{where}/health)", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0
