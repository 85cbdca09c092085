"""What the library logs reaches the terminal through here, set up once by the CLI entry point.

Library code logs with ``logging.getLogger(__name__)`` (every module sits under the ``robot_learning`` logger, the
``sim``, ``datasets`` and ``hardware`` folders included) and never prints. The CLI shows the message alone, as a
plain line, on the stream the line always went to: INFO on stdout, except the loggers in ``STDERR_LOGGERS`` (status
lines of a long-running service, whose stdout stays free for the command's result); WARNING and above on stderr.
DEBUG is hidden unless ``ROBOT_LEARNING_LOG=debug``. Progress bars (tqdm) write to stderr on their own, as before.
"""

from __future__ import annotations

import logging
import os
import sys

LOGGER = "robot_learning"
LEVEL_ENV = "ROBOT_LEARNING_LOG"
STDERR_LOGGERS = frozenset({"robot_learning.deploy.server", "robot_learning.rig"})
"""Loggers whose INFO lines go to stderr too (the policy server's per-client lines: it may run inside a command
whose stdout is its result, e.g. ``deploy --json`` against an in-process server; a teleop device's controls, shown
to the operator of ``record`` / ``teleoperate`` / ``deploy``, whose stdout is their summary)."""


class TerminalHandler(logging.Handler):
    """INFO and below to stdout (stderr for ``STDERR_LOGGERS``), WARNING and above to stderr, flushed at once. The
    streams are looked up at each record, so a redirected or captured ``sys.stdout`` / ``sys.stderr`` receives what
    is logged after the change."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            to_stderr = record.levelno >= logging.WARNING or record.name in STDERR_LOGGERS
            stream = sys.stderr if to_stderr else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 - logging's own contract: report through handleError, never raise
            self.handleError(record)


def configure_logging() -> None:
    """Attach the terminal handler to the ``robot_learning`` logger (once; calling again changes nothing but the
    level) at INFO, or at the level named by ``$ROBOT_LEARNING_LOG`` (debug, info, warning, error)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(h, TerminalHandler) for h in logger.handlers):
        handler = TerminalHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    level = os.environ.get(LEVEL_ENV, "info").strip().upper()
    logger.setLevel(level if level in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL") else logging.INFO)
