"""Packaging: the wheel holds only the ``robot_learning`` namespace, and it works when installed.

pyproject maps the top-level folders ``hardware/``, ``sim/`` and ``datasets/`` into
``robot_learning.hardware`` / ``.sim`` / ``.datasets`` through ``[tool.setuptools.package-dir]``.
A mistake there either drops those packages from the wheel or installs top-level modules named
``datasets`` / ``sim`` (which would shadow Hugging Face ``datasets`` and friends). These tests
build the real wheel, install it into a fresh virtual environment and import everything from
there, away from the repository, so an import that only works thanks to the checkout fails here.
Building the wheel (and the editable wheel of ``pip install -e .``) prints no setuptools warnings.

The fresh environment reuses the dependencies (numpy, torch, tyro...) of the running one through a
``.pth`` line naming its site-packages; ``.pth`` files inside a directory added that way are not
processed, so the running environment's editable finder stays off (checked below).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import pkgutil
import re
import subprocess
import sys
import sysconfig
import textwrap
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TOP = "robot_learning"
MAPPED = ("hardware", "sim", "datasets")  # top-level folders installed as robot_learning.<name>
DIST_INFO = re.compile(r"^robot_learning-[^/]+\.dist-info/")
# Folders of scripts the wheel ships but nothing imports: the benchmark adapters run inside each suite's own venv
# (a namespace folder in [tool.setuptools] packages, without __init__.py).
SCRIPT_DIRS = ("robot_learning/benchmarks/adapters/",)


def _package_dirs() -> dict[str, Path]:
    """``[tool.setuptools.package-dir]``: package name -> source folder."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        cfg = tomllib.load(f)["tool"]["setuptools"]
    return {pkg: REPO_ROOT / d for pkg, d in cfg.get("package-dir", {}).items()}


def _source_modules() -> dict[str, Path]:
    """Every module the sources define under the mapping: dotted name -> source file.

    Walks each mapped folder recursively through folders that have an ``__init__.py``, so a new
    subpackage that pyproject forgot to declare shows up here but not in the wheel.
    """
    found: dict[str, Path] = {}

    def walk(pkg: str, folder: Path) -> None:
        if not (folder / "__init__.py").is_file():
            return
        for entry in sorted(folder.iterdir()):
            if entry.name == "__pycache__":
                continue
            if entry.is_file() and entry.suffix == ".py":
                name = pkg if entry.stem == "__init__" else f"{pkg}.{entry.stem}"
                found[name] = entry
            elif entry.is_dir() and (entry / "__init__.py").is_file():
                sub = f"{pkg}.{entry.name}"
                if sub not in dirs:  # a mapped package is walked from its own folder
                    walk(sub, entry)

    dirs = _package_dirs()
    for pkg, folder in dirs.items():
        walk(pkg, folder)
    return found


def _source_data() -> set[str]:
    """Wheel paths of the ``[tool.setuptools.package-data]`` files of the sources."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        cfg = tomllib.load(f)["tool"]["setuptools"]
    dirs = _package_dirs()
    found = set()
    for pkg, patterns in cfg.get("package-data", {}).items():
        parent = next(p for p in sorted(dirs, key=len, reverse=True) if pkg == p or pkg.startswith(f"{p}."))
        folder = dirs[parent].joinpath(*pkg[len(parent):].split(".")[1:])
        for pattern in patterns:
            found |= {"/".join([*pkg.split("."), f.relative_to(folder).as_posix()]) for f in folder.glob(pattern)}
    return found


def _wheel_modules(names: list[str]) -> set[str]:
    mods = set()
    for n in names:
        if n.endswith(".py") and not DIST_INFO.match(n) and not n.startswith(SCRIPT_DIRS):
            parts = n[: -len(".py")].split("/")
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods.add(".".join(parts))
    return mods


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1",
               PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(cmd: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


def _inside(path: str | Path, folder: str | Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


#: what setuptools warns with: a warning category (``BuildBackendWarning: Package ... is absent from the `packages`
#: configuration``, ``SetuptoolsDeprecationWarning``...) or its log's ``warning: ...`` lines
SETUPTOOLS_WARNING = re.compile(r"\b(?:[A-Z]\w*Warning|InformationOnly)\b|^\s*warning: ", re.M)
#: ``warning: build_py: byte-compiling is disabled``: PYTHONDONTWRITEBYTECODE, which _clean_env sets
NOT_A_PACKAGING_PROBLEM = re.compile(r"byte-compiling is disabled")


def _setuptools_warnings(log: str) -> list[str]:
    return [line.strip() for line in log.splitlines()
            if SETUPTOOLS_WARNING.search(line) and not NOT_A_PACKAGING_PROBLEM.search(line)]


@pytest.fixture(scope="module")
def wheel_build(tmp_path_factory) -> tuple[Path, str]:
    """The wheel, and everything pip and the build backend printed building it (verbose)."""
    out = tmp_path_factory.mktemp("wheel")
    proc = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                 "-w", out, REPO_ROOT], cwd=out)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, found {[w.name for w in wheels]}"
    assert wheels[0].name.startswith("robot_learning-"), wheels[0].name
    return wheels[0], proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel(wheel_build) -> Path:
    return wheel_build[0]


def test_wheel_builds_without_setuptools_warnings(wheel_build):
    warnings = _setuptools_warnings(wheel_build[1])
    assert not warnings, "setuptools warned building the wheel:\n" + "\n".join(warnings)


def test_editable_build_prints_no_setuptools_warning(tmp_path):
    """``pip install -e .`` calls the project's backend (``packaging/quiet_setuptools.py``, named by
    pyproject's ``backend-path``). It prints no setuptools warning at all: the ``InformationOnly: Editable
    installation.`` notice every meta-path-finder editable install carries is the one thing it silences."""
    out = tmp_path / "editable"
    out.mkdir()
    proc = _run([sys.executable, "-c", "import sys; sys.path.insert(0, 'packaging'); import quiet_setuptools; "
                 "print(quiet_setuptools.build_editable(sys.argv[1]))", out], cwd=REPO_ROOT)
    assert list(out.glob("*.whl")), proc.stdout
    warnings = _setuptools_warnings(proc.stdout + proc.stderr)
    assert not warnings, "setuptools warned building the editable wheel:\n" + "\n".join(warnings)


def test_the_sdist_carries_the_build_backend():
    """``backend-path`` must exist in the unpacked sdist, or building a wheel from it fails."""
    manifest = (REPO_ROOT / "MANIFEST.in").read_text()
    assert "include packaging/quiet_setuptools.py" in manifest.splitlines()


def test_wheel_contains_only_the_robot_learning_namespace(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()

    stray = [n for n in names if not (n.startswith(f"{TOP}/") or DIST_INFO.match(n))]
    assert not stray, f"files outside {TOP}/ and its dist-info: {stray}"
    tops = {n.split("/", 1)[0] for n in names}
    for name in MAPPED:
        assert name not in tops and f"{name}.py" not in tops, f"wheel installs a top-level `{name}`"
    for name in MAPPED:
        assert f"{TOP}/{name}/__init__.py" in names, f"{TOP}/{name}/__init__.py missing from the wheel"

    # Every module of the sources (robot_learning/ plus the mapped folders) made it in, and
    # nothing else did (e.g. a stale file left over in build/).
    expected = set(_source_modules())
    assert _wheel_modules(names) == expected, (
        f"missing from wheel: {sorted(expected - _wheel_modules(names))}; "
        f"not in sources: {sorted(_wheel_modules(names) - expected)}")

    # The scripts folders: exactly their sources' .py files.
    for folder in SCRIPT_DIRS:
        shipped = {n for n in names if n.startswith(folder)}
        sources = {folder + p.name for p in (REPO_ROOT / folder).glob("*.py")}
        assert shipped == sources, f"{folder}: wheel holds {sorted(shipped)}, sources {sorted(sources)}"

    # Data files: exactly the package data of the sources (the robot MJCF files), nothing left over in build/.
    data = {n for n in names if n.startswith(f"{TOP}/") and not n.endswith(".py")}
    assert data == _source_data(), (f"missing from wheel: {sorted(_source_data() - data)}; "
                                    f"not in sources: {sorted(data - _source_data())}")

    # The console script is declared.
    with zipfile.ZipFile(wheel) as zf:
        ep = next(n for n in names if DIST_INFO.match(n) and n.endswith("/entry_points.txt"))
        entry_points = zf.read(ep).decode()
    assert re.search(r"^robot-learning\s*=\s*robot_learning\.cli\.main:", entry_points, re.M), entry_points


_PROBE = textwrap.dedent(r"""
    import importlib, importlib.util, json, pkgutil, sys
    out = {"sys_path": sys.path, "meta_path": [getattr(f, "__name__", type(f).__name__) for f in sys.meta_path]}
    import robot_learning
    out["robot_learning"] = robot_learning.__file__
    modules, errors = {}, {}
    def onerror(name):
        errors[name] = repr(sys.exc_info()[1])
    for info in pkgutil.walk_packages(robot_learning.__path__, "robot_learning.", onerror=onerror):
        try:
            if info.name.rpartition(".")[2] == "__main__":  # runs the CLI when imported: locate only
                modules[info.name] = importlib.util.find_spec(info.name).origin
                continue
            modules[info.name] = importlib.import_module(info.name).__file__
        except BaseException as e:  # report every failure, not just the first
            errors[info.name] = repr(e)
    out["modules"], out["errors"] = modules, errors
    top = {}
    for name in ("datasets", "sim", "hardware"):
        try:
            top[name] = importlib.import_module(name).__file__ or "<namespace>"
        except ModuleNotFoundError:
            top[name] = None
    out["top_level"] = top
    import mujoco
    from robot_learning.core.robot_models import ROBOTS
    out["robot_models"] = {n: [str(r.mjcf_path()), mujoco.MjModel.from_xml_path(str(r.mjcf_path())).nu]
                           for n, r in ROBOTS.items()}
    print(json.dumps(out))
""")


def test_wheel_installs_and_imports_in_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel], cwd=tmp_path)

    # Let the fresh venv see the running environment's dependencies (appended after its own
    # site-packages, so the freshly installed robot_learning comes first).
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path).stdout.strip())
    outer = sysconfig.get_paths()
    outer_dirs = list(dict.fromkeys([outer["purelib"], outer["platlib"]]))
    (site / "_outer_site_packages.pth").write_text("".join(f"{d}\n" for d in outer_dirs))

    work = tmp_path / "cwd"  # not the repository: nothing importable from the checkout
    work.mkdir()
    probe = json.loads(_run([py, "-c", _PROBE], cwd=work).stdout.strip().splitlines()[-1])

    assert "_EditableFinder" not in probe["meta_path"], (
        "the running environment's editable finder is active in the fresh venv; the test would "
        f"import from the repository: {probe['meta_path']}")
    from_repo = [p for p in probe["sys_path"]
                 if p and _inside(p, REPO_ROOT) and not any(_inside(p, d) for d in outer_dirs)]
    assert not from_repo, f"the fresh venv imports from the repository through {from_repo}"

    installed = site / TOP
    assert _inside(probe["robot_learning"], installed), (
        f"robot_learning imported from {probe['robot_learning']}, not from the fresh venv {installed}")
    assert not probe["errors"], f"imports failed in the installed package: {probe['errors']}"
    for name, (path, n_actuators) in probe["robot_models"].items():  # MJCF shipped as package data
        assert _inside(path, installed) and n_actuators > 0, (name, path)
    for name, file in probe["modules"].items():
        assert file and _inside(file, installed), f"{name} imported from {file}, outside {installed}"
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = _wheel_modules(zf.namelist()) - {TOP}
    assert set(probe["modules"]) == in_wheel, (
        f"walk_packages found {sorted(probe['modules'])}, wheel holds {sorted(in_wheel)}")
    for name in MAPPED:
        assert f"{TOP}.{name}" in probe["modules"], f"{TOP}.{name} not importable from the wheel"

    # The project installs no top-level datasets/sim/hardware; an unrelated package of that
    # name may exist in the environment, but it must not come from this project.
    for name, file in probe["top_level"].items():
        if file is None:
            continue
        assert not _inside(file, REPO_ROOT) and not _inside(file, installed) and not _inside(
            file, site / name), f"`import {name}` resolved to this project: {file}"

    helped = _run([venv / "bin" / "robot-learning", "--help"], cwd=work, timeout=60)
    assert re.search(r"\bdemo\b", helped.stdout + helped.stderr), helped.stdout
    if f"{TOP}.__main__" in probe["modules"]:
        helped = _run([py, "-m", TOP, "--help"], cwd=work, timeout=60)
        assert re.search(r"\bdemo\b", helped.stdout + helped.stderr), helped.stdout


def _is_editable_install() -> bool:
    # Look at every robot-learning distribution on sys.path: run from the repository root, the
    # in-tree robot_learning.egg-info (left by builds) is found before the installed dist-info.
    from importlib import metadata
    for dist in metadata.distributions(name="robot-learning"):
        direct = dist.read_text("direct_url.json")
        if direct and json.loads(direct).get("dir_info", {}).get("editable", False):
            return True
    return False


@pytest.mark.skipif(not _is_editable_install(), reason="robot-learning is not installed in editable mode here")
def test_editable_install_exposes_the_same_subpackages():
    import robot_learning

    # In editable mode the mapped packages live outside robot_learning/, and setuptools' editable
    # finder does not list them to pkgutil: walking robot_learning.__path__ alone misses them.
    # So walk robot_learning and each mapped package from its own __path__.
    found: dict[str, str] = {}
    errors: dict[str, str] = {}

    def onerror(name: str) -> None:
        errors[name] = repr(sys.exc_info()[1])

    roots = [(TOP, robot_learning)]
    for pkg in _package_dirs():
        if pkg != TOP:
            try:
                roots.append((pkg, importlib.import_module(pkg)))
            except Exception as e:
                errors[pkg] = repr(e)
    for pkg, mod in roots:
        found[pkg] = mod.__file__
        for info in pkgutil.walk_packages(mod.__path__, f"{pkg}.", onerror=onerror):
            try:
                if info.name.rpartition(".")[2] == "__main__":  # runs the CLI when imported: locate only
                    found[info.name] = importlib.util.find_spec(info.name).origin
                    continue
                found[info.name] = importlib.import_module(info.name).__file__
            except Exception as e:
                errors[info.name] = repr(e)
    assert not errors, f"imports failed in the editable install: {errors}"

    expected = _source_modules()
    assert set(found) == set(expected), (
        f"missing: {sorted(set(expected) - set(found))}; unexpected: {sorted(set(found) - set(expected))}")
    for name, file in found.items():
        assert Path(file).resolve() == expected[name].resolve(), f"{name} imported from {file}, expected {expected[name]}"

    import robot_learning.hardware
    assert Path(robot_learning.hardware.__file__).resolve() == (REPO_ROOT / "hardware" / "__init__.py").resolve()
    assert robot_learning.hardware.__file__.endswith(os.path.join("hardware", "__init__.py"))
