"""The base every device shares: a name, connect / disconnect, context manager, connection checks."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from robot_learning.core.clock import Clock, default_clock
from robot_learning.errors import AlreadyConnectedError, NotConnectedError


class Device(ABC):
    """Connect-once lifecycle. Subclasses implement ``_connect`` / ``_disconnect``.

    Feature specs are plain properties and readable while disconnected. ``disconnect()`` is
    idempotent and always safe to call (it is also what ``__exit__`` calls, even on errors).
    """

    def __init__(self, name: str, clock: Clock | None = None):
        self.name = name
        self.clock: Clock = clock if clock is not None else default_clock()
        self._connected = False
        self._lifecycle_lock = threading.RLock()

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        with self._lifecycle_lock:
            if self._connected:
                raise AlreadyConnectedError(self.name)
            self._connect()
            self._connected = True

    def disconnect(self) -> None:
        with self._lifecycle_lock:
            if not self._connected:
                return
            try:
                self._disconnect()
            finally:
                self._connected = False

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.disconnect()

    def _require_connected(self, method: str) -> None:
        if not self._connected:
            raise NotConnectedError(self.name, method)

    @abstractmethod
    def _connect(self) -> None: ...

    @abstractmethod
    def _disconnect(self) -> None: ...

    def __repr__(self) -> str:
        state = "connected" if self._connected else "disconnected"
        return f"{type(self).__name__}({self.name!r}, {state})"
