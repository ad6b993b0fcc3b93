"""Fixtures shared by the whole test suite, and the ``services`` marker given to every test that starts a real service.

``pytest -m "not services"`` is the fast core: no PostgreSQL, Redis, MLflow, Prometheus or moto server, no
Dagster webserver, no Chromium and no API subprocess. A test is marked when it, a fixture it uses (directly
or through other fixtures) or a function of the test package they call refers to one of
``SERVICE_STARTERS``, or when it uses one of ``SERVICE_FIXTURES``, which start their server with their own
commands. Loopback ``http.server`` threads (``http_folder``, the Slack receiver) are not services: they
start in milliseconds inside the test process.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import CodeType
from typing import Any

import pytest

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "golden"

SERVICE_STARTERS: dict[str, str] = {
    "running_api": "`drugrepo serve` as a subprocess (api/servers.py)",
    "running_mlflow": "`mlflow server` (api/servers.py)",
    "running_redis": "redis-server (api/servers.py)",
    "redis_server": "redis-server (api/servers.py)",
    "ThreadedMotoServer": "moto's S3 server (data/servers.py: moto_endpoint, s3_bucket)",
    "sync_playwright": "Chromium driven by Playwright (test_e2e_ui.py)",
}
"""Names whose use starts a service: the helpers that start one, and the libraries' server classes."""

SERVICE_FIXTURES: dict[str, str] = {
    "postgres_server": "initdb + pg_ctl: a PostgreSQL server (postgres.py)",
    "dagster_dev": "`dagster dev`: webserver and daemon (test_e2e_ui.py)",
    "webserver": "dagster-webserver over workspace.yaml (serving/test_lineage.py)",
}
"""Fixtures that start a service with their own commands."""

TEST_PACKAGE = __name__.rpartition(".")[0]


def _names(code: CodeType) -> Iterator[str]:
    """The global and attribute names ``code`` and the functions nested in it refer to."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield from _names(constant)


def _refers_to_a_starter(function: Callable[..., Any], seen: set[CodeType]) -> bool:
    """Whether ``function``, or a function of the test package it names, refers to a service starter."""
    code = getattr(inspect.unwrap(function), "__code__", None)
    if code is None or code in seen:
        return False
    seen.add(code)
    names = set(_names(code))
    if names & SERVICE_STARTERS.keys():
        return True
    scope = getattr(inspect.unwrap(function), "__globals__", {})
    return any(
        _refers_to_a_starter(scope[name], seen)
        for name in names
        if inspect.isfunction(scope.get(name)) and scope[name].__module__.startswith(TEST_PACKAGE)
    )


def starts_a_service(item: pytest.Item) -> bool:
    """Whether ``item`` uses a service fixture, or it or one of its fixtures refers to a service starter."""
    if SERVICE_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
        return True
    functions = [getattr(item, "obj", None)]
    fixture_info = getattr(item, "_fixtureinfo", None)  # pytest's FuncFixtureInfo: every fixture the test uses
    if fixture_info is not None:
        functions += [d.func for defs in fixture_info.name2fixturedefs.values() for d in defs]
    seen: set[CodeType] = set()
    return any(_refers_to_a_starter(f, seen) for f in functions if f is not None)


def pytest_configure(config: pytest.Config) -> None:
    """One torch (OpenMP) thread per process unless ``OMP_NUM_THREADS`` is set: `make test` runs three workers on two
    cores, where a second thread in each worker and each process it starts only spins against the others (a
    `drugrepo train` on a loaded machine used 40 s of CPU with two threads, 22 s with one). Subprocesses inherit it."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the ``services`` marker to every test that starts a real service (see the module's docstring), and put the
    files with a ``slow(seconds)`` test first, longest first, so that ``-n 3 --dist loadfile`` (in collection order:
    ``--no-loadscope-reorder``) starts the long ones at once and ends on short files instead of on one long file while
    the other workers are idle. The seconds are a scheduling hint only: nothing asserts them."""
    for item in items:
        if starts_a_service(item):
            item.add_marker(pytest.mark.services)
    seconds: dict[Path, float] = {}
    for item in items:
        if (marker := item.get_closest_marker("slow")) is not None:
            if len(marker.args) != 1:
                raise pytest.UsageError(f"{item.nodeid}: mark it slow(seconds), about how long its file runs")
            seconds[item.path] = max(seconds.get(item.path, 0.0), float(marker.args[0]))
    items.sort(key=lambda item: -seconds.get(item.path, 0.0))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Folder of the reference DrugBAN stack's golden outputs; fail loudly when it is missing."""
    if not GOLDEN_DIR.is_dir():
        pytest.fail(f"golden data folder not found: {GOLDEN_DIR}", pytrace=False)
    return GOLDEN_DIR
