"""Fixtures shared by the whole test suite, and the ``services`` marker given to every test that starts a real service.

``pytest -m "not services"`` is the fast core: no PostgreSQL, Redis, MLflow or moto server, no Dagster
webserver, no Chromium and no API subprocess. A test is marked when it uses one of ``SERVICE_FIXTURES``
(directly or through another fixture) or when its module or node id is in ``SERVICE_TESTS``, for the
tests that start a service in their own code. Loopback ``http.server`` threads (``http_folder``, the
Slack receiver) are not services: they start in milliseconds inside the test process.
"""

from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "golden"

SERVICE_FIXTURES: dict[str, str] = {
    "postgres_server": "initdb + pg_ctl: a PostgreSQL server (postgres.py)",
    "moto_endpoint": "moto's S3 server (data/servers.py)",
    "s3_bucket": "a bucket on moto's S3 server (data/servers.py)",
    "mlflow_server": "`mlflow server` (assets/test_training.py)",
    "redis_url": "redis-server (api/test_redis.py)",
    "redis_srv": "redis-server (api/test_ratelimit.py)",
    "redis_api": "redis-server and `drugrepo serve` (api/test_hostile.py)",
    "api": "`drugrepo serve` as a subprocess (every `api` fixture of the API tests)",
    "webserver": "dagster-webserver over workspace.yaml (serving/test_lineage.py)",
    "dagster_dev": "`dagster dev`: webserver and daemon (test_e2e_ui.py)",
}
"""Fixtures that start a real service, and which."""

SERVICE_TESTS: dict[str, str] = {
    "drugrepo_assets_tests/test_e2e_ui.py": "drives headless Chromium (Playwright) against `dagster dev`",
    "drugrepo_assets_tests/serving/test_serving.py": "its `world` fixture starts `mlflow server`; a test starts `drugrepo serve`",
    "drugrepo_assets_tests/api/test_ratelimit.py::test_redis_limiter_falls_back_in_process_when_redis_is_gone": (
        "starts and kills a redis-server in its body"
    ),
}
"""Modules (a path) or tests (path::name) that start a service in their own code, with the reason."""


def _starts_a_service(item: pytest.Item) -> bool:
    """Whether ``item`` uses a service fixture or is listed in ``SERVICE_TESTS`` (its module or itself)."""
    if SERVICE_FIXTURES.keys() & set(getattr(item, "fixturenames", ())):
        return True
    module, _, name = item.nodeid.partition("::")
    test = f"{module}::{name.split('[')[0]}"
    return module in SERVICE_TESTS or test in SERVICE_TESTS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the ``services`` marker to every test that starts a real service (see the module's docstring)."""
    for item in items:
        if _starts_a_service(item):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """Folder of the reference DrugBAN stack's golden outputs; fail loudly when it is missing."""
    if not GOLDEN_DIR.is_dir():
        pytest.fail(f"golden data folder not found: {GOLDEN_DIR}", pytrace=False)
    return GOLDEN_DIR
