"""A declared dependency is used; a used module is declared: pyproject's ``[project] dependencies`` against
every import of the package (its modules' syntax trees), and the images' constraints against both. The layers
hold: the serving location never reaches the API, and the core (data, ml, screening, figures, files, location, request
records) never reaches Dagster, directly or through another module of the package, nor any of the Dagster layers
(lib/, defs/ and the definitions modules). Loading a code location's definitions, what every Dagster process does
first, imports none of the heavy libraries (torch, scikit-learn, ...): a step imports what it uses."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

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


def _module_name(path: Path) -> str:
    """The dotted name of a module file of the package (a package's ``__init__`` is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _module_imports() -> dict[str, set[str]]:
    """Each module of the package → every module name it imports (``from a import b`` names ``a`` and ``a.b``)."""
    found: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0 and node.module, f"{path}: a relative import escapes this walk"
                names.add(node.module)
                names.update(f"{node.module}.{alias.name}" for alias in node.names)
        found[_module_name(path)] = names
    return found


def _reached(module: str) -> set[str]:
    """The package's modules that ``module`` imports, directly or through others of the package."""
    graph = _module_imports()
    seen: set[str] = set()
    todo = [module]
    while todo:
        for name in graph[todo.pop()]:
            if name in graph and name not in seen:
                seen.add(name)
                todo.append(name)
    return seen


def _within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(f"{p}.") for p in prefixes)


def test_the_module_walk_sees_the_package_and_its_imports() -> None:
    graph = _module_imports()
    assert "drugrepo_assets.request_records" in _reached("drugrepo_assets.serving.challenger")
    assert "drugrepo_assets.api.request_log" in _reached("drugrepo_assets.api.app")
    assert "dagster" in graph["drugrepo_assets.serving.defs.assets"]


def _forbidden_reaches(sources: tuple[str, ...], forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    """Each module within ``sources`` that reaches a module within ``forbidden``, with those it reaches."""
    reaching = {
        module: sorted(m for m in _reached(module) if _within(m, *forbidden))
        for module in _module_imports()
        if _within(module, *sources)
    }
    return {m: found for m, found in reaching.items() if found}


def test_the_serving_location_does_not_import_the_api() -> None:
    assert _forbidden_reaches(("drugrepo_assets.serving",), ("drugrepo_assets.api",)) == {}


CORE = tuple(
    f"drugrepo_assets.{name}" for name in ("data", "ml", "screening", "figures", "files", "location", "request_records")
)
"""The modules that run without Dagster (the CLI, the API and the benchmarks use them alone)."""


def test_the_core_imports_no_dagster() -> None:
    graph = _module_imports()
    reaching = {
        module: sorted(
            f"{via}: {name}"
            for via in {module} | _reached(module)
            for name in graph[via]
            if name.split(".")[0].startswith("dagster")
        )
        for module in graph
        if _within(module, *CORE)
    }
    assert {m: found for m, found in reaching.items() if found} == {}


DAGSTER_LAYERS = (
    "drugrepo_assets.lib",
    "drugrepo_assets.defs",
    "drugrepo_assets.definitions",
    "drugrepo_assets.serving.defs",
    "drugrepo_assets.serving.definitions",
)
"""The Dagster layers: shared pieces that are not definitions (lib), each code location's definitions (defs)
and the modules that load them (definitions)."""


def test_the_core_imports_no_dagster_layer() -> None:
    assert _forbidden_reaches(CORE, DAGSTER_LAYERS) == {}


def test_lib_imports_no_definitions_of_either_location() -> None:
    """lib/ holds what the definitions share (resources, I/O managers, the schedules' pieces); each location's
    defs/ builds on it."""
    assert _forbidden_reaches(("drugrepo_assets.lib",), ("drugrepo_assets.defs", "drugrepo_assets.serving.defs")) == {}


@pytest.mark.parametrize("layer", DAGSTER_LAYERS)
def test_each_dagster_layer_exists_and_imports_dagster(layer: str) -> None:
    graph = _module_imports()
    modules = [m for m in graph if _within(m, layer)]
    assert any(name.split(".")[0] == "dagster" for m in modules for name in graph[m]), f"{layer}: {modules}"


def _providers() -> dict[str, set[str]]:
    """Top-level module → the (normalized) installed distributions that provide it."""
    return {module: {_normalized(d) for d in dists} for module, dists in packages_distributions().items()}


def test_the_walk_sees_imports_in_functions_and_type_checking_blocks() -> None:
    imports = _imports()
    assert "drugrepo_assets/lib/resources.py" in imports["optuna"]  # only imported inside methods and TYPE_CHECKING
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


HEAVY_LIBRARIES = ("torch", "sklearn", "scipy", "matplotlib", "optuna", "evidently", "mlflow")
"""Libraries that take from a third of a second to seconds to import: a code server, ``dagster definitions
validate`` or a run worker that loads the definitions does not import them; the steps that use them do."""


@pytest.mark.parametrize("module", ["drugrepo_assets.definitions", "drugrepo_assets.serving.definitions"])
def test_loading_the_definitions_imports_no_heavy_library(module: str) -> None:
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        f"print(json.dumps([{module!r} in sys.modules, sorted(m for m in {HEAVY_LIBRARIES!r} if m in sys.modules)]))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRUGREPO_")}  # the local defaults
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, check=True
    )
    assert json.loads(done.stdout.splitlines()[-1]) == [True, []]
