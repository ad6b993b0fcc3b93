"""A declared dependency is used; a used module is declared: pyproject's ``[project] dependencies`` against
every import of the package (its modules' syntax trees), and the images' constraints against both."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import defaultdict
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import drugrepo_assets

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(drugrepo_assets.__file__).resolve().parent

USED_BY_NAME: dict[str, str] = {
    # The Dagster UI, started as a command: `make dev` (`dagster dev`), the UI and lineage tests.
    "dagster-webserver": "started by name (dagster dev, dagster-webserver)",
    # Run, event log and schedule storage of deployments/<env>/dagster.yaml (`postgres:`), which Dagster
    # loads in every run worker and step pod of our images.
    "dagster-postgres": "instance storage loaded by Dagster from dagster.yaml",
    # The S3 compute log manager of deployments/<env>/dagster.yaml (`module: dagster_aws.s3.compute_log_manager`).
    "dagster-aws": "compute log manager loaded by Dagster from dagster.yaml",
    # The s3:// file system fsspec (under universal-pathlib) loads by protocol name in drugrepo_assets.files.
    "s3fs": "fsspec's s3:// implementation, loaded by protocol name",
}
"""Runtime dependencies used but never imported by the package, each with how it is used."""

STUB_ONLY = {"_typeshed"}
"""Modules of the standard library's type stubs, imported only under ``TYPE_CHECKING`` (no distribution)."""


def _normalized(name: str) -> str:
    """A distribution name as the registries compare them (PEP 503): lower case, runs of ``-_.`` as ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec)
    assert match, f"not a requirement: {spec!r}"
    return _normalized(match.group(0))


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _declared() -> set[str]:
    return {_requirement_name(spec) for spec in _pyproject()["project"]["dependencies"]}


@cache
def _imports() -> dict[str, set[str]]:
    """Top-level third-party module → the package's files importing it (anywhere: functions, TYPE_CHECKING)."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in STUB_ONLY and top != PACKAGE.name:
                    found[top].add(path.relative_to(ROOT).as_posix())
    return found


def _providers() -> dict[str, set[str]]:
    """Top-level module → the (normalized) installed distributions that provide it."""
    return {module: {_normalized(d) for d in dists} for module, dists in packages_distributions().items()}


def test_the_walk_sees_imports_in_functions_and_type_checking_blocks() -> None:
    imports = _imports()
    assert "drugrepo_assets/resources.py" in imports["optuna"]  # only imported inside methods and TYPE_CHECKING
    assert "drugrepo_assets/files.py" in imports["upath"]
    assert not {"os", "json", "__future__", "drugrepo_assets", "_typeshed"} & set(imports)


def test_every_imported_module_is_declared() -> None:
    declared, providers = _declared(), _providers()
    undeclared = {
        module: (sorted(files), sorted(providers.get(module, ())) or "no installed distribution")
        for module, files in _imports().items()
        if not providers.get(module, set()) & declared
    }
    assert undeclared == {}, f"imported but not in [project] dependencies: {undeclared}"


def test_every_declared_dependency_is_imported_or_used_by_name() -> None:
    imported, providers = set(_imports()), _providers()
    modules_of: dict[str, set[str]] = defaultdict(set)
    for module, dists in providers.items():
        for dist in dists:
            modules_of[dist].add(module)
    unused = sorted(d for d in _declared() - set(USED_BY_NAME) if not modules_of[d] & imported)
    assert unused == [], f"declared in [project] dependencies but never imported: {unused}"


def test_the_used_by_name_exceptions_are_declared_and_not_imported() -> None:
    declared, imported, providers = _declared(), set(_imports()), _providers()
    assert set(USED_BY_NAME) <= declared
    imported_dists = {d for module in imported for d in providers.get(module, ())}
    assert set(USED_BY_NAME).isdisjoint(imported_dists), "an imported dependency needs no exception"


def test_ruff_and_mypy_are_dev_dependencies() -> None:
    dev = {_requirement_name(spec) for spec in _pyproject()["project"]["optional-dependencies"]["dev"]}
    assert {"ruff", "mypy", "pytest"} <= dev


def test_the_images_pin_every_runtime_dependency() -> None:
    lines = (ROOT / "docker" / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pinned = {_requirement_name(line) for line in lines if "==" in line and not line.startswith("#")}
    assert sorted(_declared() - pinned) == []
