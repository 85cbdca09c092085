"""``robot-learning finetune residual``: residual PPO over a frozen policy in the sim twin."""

from __future__ import annotations

import contextlib
import json


@contextlib.contextmanager
def long_run():
    """For a long learning command: SIGTERM and SIGINT raise KeyboardInterrupt in the main thread, so the run saves
    and exits as on Ctrl-C when a job system, ``kill`` or ``timeout`` stops it (a shell starts background jobs
    with SIGINT ignored, and Python leaves SIGTERM fatal); torch's thread count is put back afterwards."""
    import signal
    import threading

    import torch

    threads = torch.get_num_threads()
    previous = None
    if threading.current_thread() is threading.main_thread():
        def interrupt(signum, frame):
            raise KeyboardInterrupt

        previous = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])
        torch.set_num_threads(threads)


def run_finetune_residual(cfg) -> int:
    from robot_learning.rl.residual_ppo import finetune_residual

    with long_run():
        s = finetune_residual(cfg)
    if s["interrupted"]:
        print(f"interrupted after {s['iterations']} iterations; checkpoint saved: {s['policy']} "
              f"(--resume continues)")
        return 130
    rate = lambda v: "-" if v is None else f"{v:.2f}"   # noqa: E731
    print(f"residual PPO on {s['env']}: {s['iterations']} iterations, {s['env_steps']} env steps in "
          f"{s['train_time_s'] / 60:.1f} min; success {rate(s['base_success_rate'])} (base) -> "
          f"{rate(s['success_rate'])} over {s['eval_episodes']} held-out episodes")
    print(f"policy {s['policy']}  curves {s['curves']}")
    print(json.dumps(s))
    return 0


def run_critic_train(cfg) -> int:
    from robot_learning.rl.critic_train import train_critic

    with long_run():
        s = train_critic(cfg)
    auc = "-" if s["val_auc"] is None else f"{s['val_auc']:.3f}"
    print(f"critic ({s['algo']}): {s['steps']} steps on {s['transitions']} transitions from "
          f"{s['train_episodes']['success']} successful / {s['train_episodes']['failure']} failed episodes in "
          f"{s['train_time_s'] / 60:.1f} min; held-out AUC (success vs failure) {auc}; saved {s['critic']}")
    print(json.dumps(s))
    return 130 if s["interrupted"] else 0


def run_finetune_rlpd(cfg) -> int:
    from robot_learning.rl.rlpd import finetune_rlpd

    with long_run():
        s = finetune_rlpd(cfg)
    if s["interrupted"]:
        print(f"interrupted after {s['episodes']} episodes; checkpoint saved: {s['policy']} (--resume continues)")
        return 130
    rate = lambda v: "-" if v is None else f"{v:.2f}"   # noqa: E731
    print(f"residual RLPD on {s['env']}: {s['episodes']} episodes, {s['env_steps']} env steps, "
          f"{s['critic_updates']} critic updates in {s['train_time_s'] / 60:.1f} min "
          f"({s['demos']['episodes']} demonstrations); success {rate(s['base_success_rate'])} (base) -> "
          f"{rate(s['success_rate'])} over {s['eval_episodes']} held-out episodes")
    print(f"policy {s['policy']}  curves {s['curves']}")
    print(json.dumps(s))
    return 0


def run_actor(cfg) -> int:
    from robot_learning.rl.actor import run_actor as actor

    with long_run():
        s = actor(cfg)
    print(json.dumps(s))
    return 0
