"""A suite's own virtual environment, created once and cached.

Layout: ``<root>/<suite>-<hash>/`` with ``root`` = ``$ROBOT_LEARNING_BENCH_CACHE`` or
``~/.cache/robot-learning/benchmarks``, and ``hash`` over the suite's requirements, the Python version and the
files copied into it (``driver.py``, the suite's adapter, ``robot_learning/deploy/client.py``): an edit to any of
them makes a new venv. The files sit side by side in ``<venv>/adapter/`` (the adapter imports ``client`` and
``driver`` as plain modules). ``<venv>/.complete`` (JSON: requirements, installed versions) is written last: a
folder without it is a half-made venv (an interrupted or failed install), removed and rebuilt, never used.

``python=`` (``--python`` on the command line) skips all of this: the driver runs under that interpreter, which
must already hold the suite's packages (the tests' toy suite runs under the project's own ``sys.executable``); the
scripts are then copied into a folder of the caller's choosing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from robot_learning.benchmarks.suites import SuiteRecord, check_adapter
from robot_learning.errors import ConfigError

CACHE_ENV = "ROBOT_LEARNING_BENCH_CACHE"
STAMP = ".complete"
CLIENT_FILE = Path(__file__).resolve().parent.parent / "deploy" / "client.py"
DRIVER_FILE = Path(__file__).resolve().parent / "adapters" / "driver.py"
_OFFLINE_HINTS = ("NewConnectionError", "Failed to establish", "Temporary failure in name resolution",
                  "Name or service not known", "Network is unreachable", "Connection refused", "timed out",
                  "No matching distribution found", "Could not find a version")


@dataclass(frozen=True)
class SuiteEnv:
    """Where a suite's driver runs: ``python`` (an interpreter with the suite's packages), ``scripts`` (the folder
    with ``driver.py``, ``client.py`` and the adapter), ``venv`` (the cached venv; None under a ``--python``
    override) and the environment variables it runs with."""

    suite: SuiteRecord
    python: Path
    scripts: Path
    venv: Path | None
    env: Mapping[str, str] = field(default_factory=dict)

    def driver_argv(self, *args: str) -> list[str]:
        return [str(self.python), str(self.scripts / "driver.py"), str(self.scripts / self.suite.adapter.name), *args]

    def process_env(self) -> dict[str, str]:
        """The driver's environment: ours without PYTHONPATH (nothing of this project leaks in), plus the suite's."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        return env


def cache_root(root: Path | None = None) -> Path:
    if root is not None:
        return Path(root)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path.home() / ".cache" / "robot-learning" / "benchmarks"


def script_files(suite: SuiteRecord) -> dict[str, Path]:
    """The files a suite's driver needs, by the name they get in its scripts folder."""
    check_adapter(suite)
    return {"driver.py": DRIVER_FILE, "client.py": CLIENT_FILE, suite.adapter.name: suite.adapter}


def venv_hash(suite: SuiteRecord, python_version: str | None = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"requirements": list(suite.all_requirements),
                         "python": python_version or f"{sys.version_info[0]}.{sys.version_info[1]}"}).encode())
    for name, path in sorted(script_files(suite).items()):
        h.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def venv_dir(suite: SuiteRecord, root: Path | None = None) -> Path:
    return cache_root(root) / f"{suite.name}-{venv_hash(suite)}"


def is_complete(venv: Path) -> bool:
    """Whether ``venv`` was finished (its stamp written after every install step succeeded)."""
    return (venv / STAMP).is_file() and _venv_python(venv).exists()


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def copy_scripts(suite: SuiteRecord, dest: Path) -> Path:
    """Copy the driver, the client and the suite's adapter side by side into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, src in script_files(suite).items():
        shutil.copyfile(src, dest / name)
    return dest


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _run_pip(argv: list[str], suite: SuiteRecord, progress: Callable[[str], None]) -> None:
    """Run pip, passing its progress lines on; a failure becomes one ConfigError line."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-40:]
        if line.startswith(("Collecting", "Downloading", "Installing", "Successfully", "Requirement already")):
            progress(f"[setup {suite.name}] {line.strip()}")
    if proc.wait() != 0:
        text = "\n".join(tail)
        reason = next((ln.strip() for ln in reversed(tail) if ln.strip().startswith("ERROR")), tail[-1] if tail else "")
        if any(h in text for h in _OFFLINE_HINTS):
            raise ConfigError(f"the {suite.name} benchmark venv needs the package index once, and pip could not "
                              f"install from it ({reason[:200]}); run `robot-learning benchmark setup {suite.name}` "
                              "where the index is reachable (the venv is cached), or pass --python")
        raise ConfigError(f"creating the {suite.name} benchmark venv failed: pip: {reason[:300]}")


def create_venv(suite: SuiteRecord, target: Path, progress: Callable[[str], None] = _say) -> None:
    """Build the venv at ``target`` (which does not exist): interpreter, packages, scripts, then the stamp."""
    progress(f"[setup {suite.name}] creating a virtual environment in {target}")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    py = _venv_python(target)
    reqs = list(suite.all_requirements)
    progress(f"[setup {suite.name}] pip install {' '.join(reqs)} (once; cached afterwards)")
    # this interpreter's pip installs into the new venv (pip >= 22.3 --python): no ensurepip, seconds faster
    _run_pip([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-input", "--progress-bar", "off",
              *reqs], suite, progress)
    copy_scripts(suite, target / "adapter")
    freeze = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "list", "--format", "json"],
                            capture_output=True, text=True)
    try:
        installed = {p["name"]: p["version"] for p in json.loads(freeze.stdout or "[]")}
    except ValueError:
        installed = {}
    (target / STAMP).write_text(json.dumps({"suite": suite.name, "requirements": reqs, "installed": installed},
                                           indent=2))


def ensure_suite_env(suite: SuiteRecord, *, root: Path | None = None, python: Path | None = None,
                     scripts_dir: Path | None = None, progress: Callable[[str], None] = _say,
                     create: Callable[[SuiteRecord, Path, Callable[[str], None]], None] = create_venv) -> SuiteEnv:
    """The suite's environment: the cached venv (created on first use), or ``python`` as given (its scripts
    copied into ``scripts_dir``)."""
    check_adapter(suite)
    if python is not None:
        python = Path(python)
        if not python.exists():
            raise ConfigError.expected("--python", "an existing Python interpreter", str(python))
        if scripts_dir is None:
            raise ConfigError("a --python override needs a folder for the driver scripts")
        return SuiteEnv(suite, python, copy_scripts(suite, Path(scripts_dir)), None, dict(suite.env))
    target = venv_dir(suite, root)
    if target.exists() and not is_complete(target):
        progress(f"[setup {suite.name}] {target} is unfinished (no {STAMP}): rebuilding it")
        shutil.rmtree(target)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + f".partial-{os.getpid()}")
        if partial.exists():
            shutil.rmtree(partial)
        try:
            create(suite, partial, progress)
            if not (partial / STAMP).is_file():
                raise ConfigError(f"creating the {suite.name} benchmark venv did not finish")
            partial.rename(target)
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
        progress(f"[setup {suite.name}] ready: {target}")
    return SuiteEnv(suite, _venv_python(target), target / "adapter", target, dict(suite.env))
