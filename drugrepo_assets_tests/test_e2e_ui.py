"""End to end in a real browser: `dagster dev` (webserver + daemon) on loopback, "Materialize all" clicked.

The test starts `dagster dev -m drugrepo_assets.definitions` on a free loopback port with a fresh
``DAGSTER_HOME``, ``DRUGREPO_TRAINING_PROFILE=tiny`` (one epoch on 128 pairs) and
``DRUGREPO_EXECUTOR=in_process`` (one process per run, not per step), opens the global
asset lineage in headless Chromium (Debian's ``/usr/bin/chromium`` through Playwright), clicks
"Materialize all…", selects all partitions and launches the backfill, then waits until the UI shows
every asset's partitions materialised (and GraphQL agrees); the daemon has ticked the sensors, all
declared running, and the backfill is complete. Screenshots of the catalog (every asset's status) and
of the lineage are saved under ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from drugrepo_assets.data.sources import DATASETS
from drugrepo_assets_tests.processes import free_port

pytestmark = pytest.mark.slow(260)

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
START_TIMEOUT_S = 120
# Waits are on progress, not on a total: a loaded machine may take any time, so the test fails only when
# no asset partition has been materialised for STALL_TIMEOUT_S (one step of the tiny profile takes seconds).
STALL_TIMEOUT_S = 900
UI_TIMEOUT_S = 300

PARTITION_STATS = """
{ assetNodes { assetKey { path } isPartitioned
  partitionStats { numMaterialized numPartitions numFailed } assetMaterializations(limit: 1) { runId } } }
"""
FAILED_RUNS = """
{ runsOrError(filter: {statuses: [FAILURE]}) { ... on Runs { results { runId jobName tags { key value } } } } }
"""
SENSORS = """
{ sensorsOrError(repositorySelector: {repositoryName: "__repository__",
                                      repositoryLocationName: "drugrepo_assets.definitions"}) {
  ... on Sensors { results { name sensorState { status ticks(limit: 1) { status } } } } } }
"""
EXPECTED_SENSORS = {
    "automation_sensor",
    "landing_sensor",
    "retrain_sensor",
    "slack_on_materialization",
    "slack_on_run_failure",
}
BACKFILLS = """
{ partitionBackfillsOrError { ... on PartitionBackfills { results { id status } } } }
"""
LOCATION_STATUS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def graphql(base: str, query: str) -> dict[str, Any]:
    """POST one GraphQL query to the webserver; its ``data``."""
    request = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.load(response)
    assert "errors" not in body, body["errors"]
    return body["data"]


def _wait_for_location(base: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster dev exited:\n{log.read_text()[-4000:]}"
        try:
            entries = graphql(base, LOCATION_STATUS)["workspaceOrError"]["locationEntries"]
        except OSError:
            time.sleep(1)
            continue
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            loaded = [e["locationOrLoadError"] for e in entries]
            assert all(entry["__typename"] == "RepositoryLocation" for entry in loaded), loaded
            return
        time.sleep(1)
    pytest.fail(f"the code location did not load in {START_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dagster dev` with the daemon on a free loopback port and a fresh instance; its base URL."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SLACK_BOT_TOKEN", "DRUGREPO_ENV")}
    env |= {
        "DAGSTER_HOME": str(home),
        "DRUGREPO_TRAINING_PROFILE": "tiny",
        "DRUGREPO_EXECUTOR": "in_process",
        "PYTHONUNBUFFERED": "1",
    }
    log = home / "dagster-dev.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "dagster"),
                "dev",
                "-m",
                "drugrepo_assets.definitions",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_location(base, server, log)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _not_done(base: str) -> dict[str, str]:
    """Assets not materialised yet (every partition of a partitioned one), with what is done."""
    missing = {}
    for node in graphql(base, PARTITION_STATS)["assetNodes"]:
        name, stats = "/".join(node["assetKey"]["path"]), node["partitionStats"]
        if node["isPartitioned"] and stats["numMaterialized"] < stats["numPartitions"]:
            missing[name] = f"{stats['numMaterialized']}/{stats['numPartitions']} partitions"
        elif not node["isPartitioned"] and not node["assetMaterializations"]:
            missing[name] = "never materialised"
    return missing


def _launch_materialize_all(page: Page) -> None:
    dismiss = page.get_by_role("button", name="Skip")  # the community sign-up dialog of a fresh instance
    with contextlib.suppress(Exception):
        dismiss.click(timeout=15_000)
    page.locator("button", has_text="Materialize all").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="All", exact=True).click()
    dialog.get_by_text(f"{len(DATASETS)} partitions").wait_for(timeout=30_000)  # visible, or TimeoutError
    dialog.get_by_role("button", name="Launch backfill").click()


def test_materialize_all_from_the_asset_graph_in_chromium(dagster_dev: str) -> None:
    base, started = dagster_dev, time.monotonic()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        try:
            page.goto(f"{base}/asset-groups")
            page.locator("button", has_text="Materialize all").wait_for(timeout=60_000)
            _launch_materialize_all(page)
            page.get_by_text("Backfill").first.wait_for(timeout=30_000)
            missing, last_progress = _not_done(base), time.monotonic()
            while missing and time.monotonic() - last_progress < STALL_TIMEOUT_S:
                failed = graphql(base, FAILED_RUNS)["runsOrError"]["results"]
                assert not failed, f"failed runs: {failed}"
                time.sleep(2)
                if (now_missing := _not_done(base)) != missing:
                    missing, last_progress = now_missing, time.monotonic()
            assert not missing, f"no progress for {STALL_TIMEOUT_S}s, not materialised: {missing}"
            page.set_viewport_size({"width": 1600, "height": 2400})  # the catalog renders only visible rows
            page.goto(f"{base}/assets")
            statuses: dict[str, str] = {}
            ui_deadline = time.monotonic() + UI_TIMEOUT_S
            while time.monotonic() < ui_deadline:
                statuses = catalog_statuses(page.inner_text("body"), _asset_names(base))
                if all(_shown_materialised(status) for status in statuses.values()):
                    break
                page.wait_for_timeout(2_000)
            page.screenshot(path=str(ARTIFACTS / "catalog.png"), full_page=True)
            assert {n: s for n, s in statuses.items() if not _shown_materialised(s)} == {}
            sensors = graphql(base, SENSORS)["sensorsOrError"]["results"]
            assert {s["name"] for s in sensors} == EXPECTED_SENSORS
            assert {s["name"]: s["sensorState"]["status"] for s in sensors} == dict.fromkeys(
                EXPECTED_SENSORS, "RUNNING"
            )
            ticked = {s["name"] for s in sensors if s["sensorState"]["ticks"]}
            assert {"automation_sensor", "landing_sensor"} <= ticked, ticked
            backfill_deadline = time.monotonic() + UI_TIMEOUT_S  # the backfill daemon closes it on its next iteration
            while (backfills := graphql(base, BACKFILLS)["partitionBackfillsOrError"]["results"]) and (
                backfills[0]["status"] == "REQUESTED" and time.monotonic() < backfill_deadline
            ):
                time.sleep(2)
            assert [b["status"] for b in backfills] == ["COMPLETED_SUCCESS"], backfills
            page.set_viewport_size({"width": 1600, "height": 1000})
            page.goto(f"{base}/asset-groups")
            page.locator("button", has_text="Materialize all").wait_for(timeout=30_000)
            page.wait_for_timeout(3_000)
            page.screenshot(path=str(ARTIFACTS / "materialize_all.png"))
        finally:
            browser.close()
    print(f"materialize all: {time.monotonic() - started:.0f}s")


def catalog_statuses(text: str, names: list[str]) -> dict[str, str]:
    """Each asset's status cell in the catalog's text (rows start with the name twice: link and title)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    starts = {lines[i]: i for i in range(len(lines) - 1) if lines[i] == lines[i + 1] and lines[i] in names}
    order = [*sorted(starts.values()), len(lines)]
    statuses = {}
    for name, begin in starts.items():
        row = lines[begin : order[order.index(begin) + 1]]
        statuses[name] = " ".join(row[row.index("Status") + 1 :] if "Status" in row else row[2:])
    return {name: statuses.get(name, "not shown") for name in names}


def _shown_materialised(status: str) -> bool:
    """A catalog status of all partitions materialised (none missing, failed or running), or "Materialized"."""
    every_partition = re.search(rf"\bAll 0 0 0 {len(DATASETS)} partitions\b", status)
    return bool(every_partition or re.search(r"\bMaterialized\b", status))


def _asset_names(base: str) -> list[str]:
    return sorted("/".join(n["assetKey"]["path"]) for n in graphql(base, PARTITION_STATS)["assetNodes"])
