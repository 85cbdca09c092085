"""``--device``: one spelling everywhere (auto, cpu, cuda or cuda:N), checked when a config is built and resolved
to what torch takes where a model is placed.

``check_device`` is what configs call in ``__post_init__``: the spelling, and a CUDA device that is asked for by
name must be present. ``resolve_device`` turns ``auto`` into ``cuda`` when a CUDA device is present, else ``cpu``.
"""

from __future__ import annotations

import re

from robot_learning.errors import ConfigError

DEVICE_HELP = "auto (CUDA when present, else cpu), cpu, cuda or cuda:N"
_SPELLING = re.compile(r"(auto|cpu|cuda(:[0-9]+)?)")


def resolve_device(spec: str, flag: str = "--device") -> str:
    """``spec`` as a torch device string: ``auto`` is ``cuda`` when a CUDA device is present, else ``cpu``; ``cpu``,
    ``cuda`` and ``cuda:N`` come back as they are once the device is known to exist. Raises ``ConfigError``
    (one line) for any other spelling, and for a CUDA device this machine does not have."""
    if not isinstance(spec, str) or not _SPELLING.fullmatch(spec):
        raise ConfigError.expected(flag, "auto, cpu, cuda or cuda:N", repr(spec))
    if spec == "cpu":
        return spec
    import torch

    if spec == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"{flag} {spec}: no CUDA device is present on this machine (torch {torch.__version__}"
                          f"{'' if torch.version.cuda else ', built without CUDA'}); use {flag} cpu or auto")
    index = int(spec.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError.expected(f"{flag} {spec}", f"cuda:0..cuda:{count - 1} ({count} CUDA devices present)",
                                   spec)
    return spec


def check_device(spec: str, flag: str = "--device") -> None:
    """Refuse (``ConfigError``) a ``--device`` that ``resolve_device`` would refuse; for configs' ``__post_init__``
    (``cpu`` and ``auto`` are checked without importing torch)."""
    if spec != "auto":
        resolve_device(spec, flag)
