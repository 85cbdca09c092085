"""Layers point one way: the import-linter contracts in ``.importlinter`` (repository root) hold.

import-linter (grimp) finds a package's modules by walking its folder, so it cannot see
``hardware/``, ``sim/`` and ``datasets/``, which pyproject maps into ``robot_learning`` from the top
level. The test lays the sources out as installed, in a temporary tree of symlinks (every entry of
``robot_learning/`` plus each mapped folder under its package name; ``tests/`` and ``bench/`` as
packages), and runs ``lint-imports`` on it in a fresh interpreter whose ``sys.path`` starts there.

The contracts name modules one by one, so the test also checks that those lists cover every
module of the tree: a new top-level module or sim module must be placed in a layer.

Not every way of reaching the tests is an import: bench scripts must not put ``tests/`` (nor the
repository root, which makes ``tests`` and top-level ``sim`` / ``datasets`` importable) on
``sys.path``, nor load files from ``tests/`` by path.
"""

from __future__ import annotations

import ast
import configparser
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = REPO_ROOT / ".importlinter"
TOP = "robot_learning"
SKIP = {"__pycache__"}


def _mapped() -> dict[str, Path]:
    """``[tool.setuptools.package-dir]`` subpackages of robot_learning: short name -> source folder."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as f:
        dirs = tomllib.load(f)["tool"]["setuptools"].get("package-dir", {})
    return {pkg.removeprefix(f"{TOP}."): REPO_ROOT / d for pkg, d in dirs.items() if pkg.startswith(f"{TOP}.")}


def _link_entries(src: Path, dst: Path, pattern: str = "*") -> None:
    dst.mkdir(parents=True)
    for entry in sorted(src.glob(pattern)):
        if entry.name not in SKIP and not entry.name.startswith("."):
            (dst / entry.name).symlink_to(entry)


def _tree(root: Path) -> Path:
    _link_entries(REPO_ROOT / TOP, root / TOP)
    for name, folder in _mapped().items():
        assert not (root / TOP / name).exists(), f"{TOP}/{name} exists and is also mapped from {folder}"
        (root / TOP / name).symlink_to(folder)
    for pkg in ("tests", "bench"):
        _link_entries(REPO_ROOT / pkg, root / pkg, "*.py" if pkg == "bench" else "*")
        if not (root / pkg / "__init__.py").exists():
            (root / pkg / "__init__.py").write_text("")
    return root


def _contracts() -> dict[str, dict[str, list[str]]]:
    cp = configparser.ConfigParser()
    cp.read(CONFIG)
    out = {}
    for section in cp.sections():
        if section.startswith("importlinter:contract:"):
            out[section.rpartition(":")[2]] = {k: v.split() for k, v in cp[section].items()}
    return out


def _top_level() -> set[str]:
    """Every top-level module and subpackage of robot_learning as installed (without ``robot_learning`` itself)."""
    names = {p.stem for p in (REPO_ROOT / TOP).glob("*.py") if p.stem != "__init__"}
    names |= {p.name for p in (REPO_ROOT / TOP).iterdir() if (p / "__init__.py").is_file()}
    return names | set(_mapped())


def test_lint_imports_keeps_every_contract(tmp_path):
    tree = _tree(tmp_path / "tree")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}
    env["PYTHONPATH"] = str(tree)
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())", str(CONFIG), "--no-cache"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"lint-imports found broken contracts (exit {proc.returncode}):\n{report}"
    n = len(_contracts())
    assert f"Contracts: {n} kept, 0 broken." in report, report


def _of_package(modules: list[str], package: str = TOP) -> set[str]:
    return {m.removeprefix(f"{package}.") for m in modules if m.startswith(f"{package}.")}


def test_contracts_place_every_top_level_module():
    c, top = _contracts(), _top_level()
    assert _of_package(c["core"]["forbidden_modules"]) == top - {"core", "errors"}
    assert _of_package(c["hardware"]["forbidden_modules"]) == top - {"hardware", "core", "errors"}
    assert _of_package(c["no-cli"]["source_modules"]) == top - {"cli", "__main__", "errors"}


def test_contracts_place_every_sim_module():
    sim = _mapped()["sim"]
    modules = {p.stem for p in sim.glob("*.py")} | {p.name for p in sim.iterdir() if (p / "__init__.py").is_file()}
    twin = _of_package(_contracts()["sim-twin"]["source_modules"], f"{TOP}.sim")
    adapters = {"__init__", "env", "envs", "gym_env"}   # above the runtime (see .importlinter)
    assert twin | adapters == modules and not twin & adapters, sorted(modules ^ (twin | adapters))


def test_contracts_forbid_every_test_helper_name():
    """Whatever tests/ holds besides test modules is importable by its own name under pytest."""
    helpers = {p.stem for p in (REPO_ROOT / "tests").glob("*.py") if not p.name.startswith("test_")}
    helpers |= {p.name for p in (REPO_ROOT / "tests").iterdir() if (p / "__init__.py").is_file()}
    c = _contracts()
    for contract in ("no-tests", "bench"):
        assert helpers | {"tests"} <= set(c[contract]["forbidden_modules"]), contract


def _code_strings(tree: ast.AST) -> list[ast.Constant]:
    """String constants of a module, without docstrings."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def _sys_path_edits(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("insert", "append", "extend") and ast.unparse(n.func.value) == "sys.path"]


@pytest.mark.parametrize("script", sorted((REPO_ROOT / "bench").glob("*.py")), ids=lambda p: p.name)
def test_bench_uses_the_installed_package_only(script):
    """A bench script runs from bench/ (its own folder is on sys.path for its siblings) against the installed
    package: it puts nothing else on sys.path and reads no code from tests/."""
    tree = ast.parse(script.read_text(), str(script))
    edits = [f"l.{n.lineno}: {ast.unparse(n)}" for n in _sys_path_edits(tree)]
    assert not edits, f"{script.name} edits sys.path: {edits}"
    into_tests = [f"l.{n.lineno}: {n.value!r}" for n in _code_strings(tree)
                  if n.value.strip("/") == "tests" or n.value.startswith("tests/")]
    assert not into_tests, f"{script.name} reaches into tests/: {into_tests}"
