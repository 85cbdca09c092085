"""Torque off on exit and on signals, for every connected actuator.

Drivers ``register`` a device when it connects and ``unregister`` it when it disconnects. The
first registration installs handlers for SIGTERM and SIGHUP (main thread only; earlier handlers
are kept and chained; a signal ignored on purpose, as under ``nohup``, stays ignored) that raise ``SystemExit`` in the main thread, so the control runtime's
``finally`` holds the robot, the recorder closes its episode, and context managers disconnect
(torque off) exactly as on Ctrl-C. An ``atexit`` hook turns torque off on whatever is still
registered when the interpreter exits. Devices implement ``emergency_torque_off()`` (never raises).
"""

from __future__ import annotations

import atexit
import signal
import threading
import weakref

_devices: "weakref.WeakSet" = weakref.WeakSet()
_lock = threading.Lock()
_installed = False
_signals_installed = False
_previous: dict[int, object] = {}
SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)


def _torque_off_all() -> None:
    with _lock:
        devices = list(_devices)
    for d in devices:
        d.emergency_torque_off()


def _on_signal(signum, frame) -> None:
    prev = _previous.get(signum)
    if callable(prev):
        prev(signum, frame)
    raise SystemExit(128 + signum)


def _install() -> None:
    global _installed, _signals_installed
    if not _installed:
        atexit.register(_torque_off_all)
        _installed = True
    if not _signals_installed and threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            prev = signal.getsignal(s)
            if prev == signal.SIG_IGN:
                continue  # ignored on purpose (nohup): leave it so
            _previous[s] = prev if prev not in (signal.SIG_DFL, None) else None
            signal.signal(s, _on_signal)
        _signals_installed = True


def register(device) -> None:
    with _lock:
        _devices.add(device)
        _install()


def unregister(device) -> None:
    with _lock:
        _devices.discard(device)


def registered() -> list:
    with _lock:
        return list(_devices)
