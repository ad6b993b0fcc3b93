"""Both code locations in one `dagster-webserver` on loopback, and the cross-location lineage it serves to the UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drugrepo_assets_tests.processes import free_port, stop, wait_until

REPO = Path(__file__).resolve().parents[2]
ASSET_NODES = """
{ assetNodes { assetKey { path } repository { location { name } }
  dependencyKeys { path } dependedByKeys { path } } }
"""
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""


def _graphql(url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`dagster-webserver -w workspace.yaml` on a free loopback port, once both locations have loaded."""
    home = tmp_path_factory.mktemp("dagster_home")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DRUGREPO_", "DAGSTER_"))} | {
        "DAGSTER_HOME": str(home)
    }
    log = open(home / "webserver.log", "wb")  # noqa: SIM115 (the server writes it until the finally below)
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def loaded() -> bool:
        try:
            entries = _graphql(url, LOCATIONS)["workspaceOrError"]["locationEntries"]
        except OSError:
            return False
        return len(entries) == 2 and all(e["loadStatus"] == "LOADED" for e in entries)

    try:
        wait_until(server, loaded, home / "webserver.log", "dagster-webserver with both locations", timeout=240)
        yield url
    finally:
        stop(server, timeout=30)
        log.close()


def test_both_locations_load_without_errors(webserver: str) -> None:
    entries = _graphql(webserver, LOCATIONS)["workspaceOrError"]["locationEntries"]
    assert {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries} == {
        "drugrepo_assets": "RepositoryLocation",
        "drugrepo_serving": "RepositoryLocation",
    }


def test_serving_assets_hang_under_the_training_locations_assets_in_the_lineage(webserver: str) -> None:
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    for node in _graphql(webserver, ASSET_NODES)["assetNodes"]:
        nodes[("/".join(node["assetKey"]["path"]), node["repository"]["location"]["name"])] = node
    edges = {("/".join(d["path"]), key) for key, node in nodes.items() for d in node["dependedByKeys"]}
    checkpoint = nodes[("drugban_checkpoint", "drugrepo_assets")]
    evaluation = nodes[("model_evaluation", "drugrepo_assets")]
    registered = nodes[("registered_model", "drugrepo_serving")]
    drift = nodes[("drift_report", "drugrepo_serving")]
    assert {"/".join(k["path"]) for k in registered["dependencyKeys"]} == {"drugban_checkpoint", "model_evaluation"}
    assert {"/".join(k["path"]) for k in drift["dependencyKeys"]} == {
        "drugban_checkpoint",
        "dataset_splits",
        "validated_pairs",
    }
    assert {"registered_model", "drift_report"} <= {"/".join(k["path"]) for k in checkpoint["dependedByKeys"]}
    assert "registered_model" in {"/".join(k["path"]) for k in evaluation["dependedByKeys"]}
    assert ("registered_model", ("drugban_checkpoint", "drugrepo_assets")) in edges
    assert not any(key == ("drugban_checkpoint", "drugrepo_serving") for key in nodes)  # one node, owned by training
