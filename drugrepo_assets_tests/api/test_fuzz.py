"""Schemathesis against the live API's /openapi.json (its CLI, a bounded number of cases, a fixed
seed): with a valid key, no answer is a server error and every documented answer fits its schema."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from drugrepo_assets_tests.api.servers import BIN, Api, metric_value, running_api

KEY = "fuzz-key"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Api]:
    """``drugrepo serve`` with rate limits out of the way (a 429 would hide what the fuzzer sends)."""
    env = {
        "DRUGREPO_API_KEYS": KEY,
        "DRUGREPO_RATE_LIMIT_PER_MINUTE": "1e9",
        "DRUGREPO_RATE_LIMIT_BURST": "1e9",
        "DRUGREPO_IP_RATE_LIMIT_PER_MINUTE": "1e9",
        "DRUGREPO_IP_RATE_LIMIT_BURST": "1e9",
    }
    with running_api(
        tmp_path_factory.mktemp("api-fuzz"), ["--checkpoint", str(golden_dir / "model_state.pt")], env
    ) as running:
        yield running


def test_schemathesis_finds_no_server_error_and_no_schema_breach(api: Api, tmp_path: Path) -> None:
    command = [
        str(BIN / "st"),
        "run",
        f"{api.url}/openapi.json",
        "--header",
        f"X-API-Key: {KEY}",
        "--checks",
        "not_a_server_error,response_schema_conformance",
        "--mode",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "300",
        "--seed",
        "20240611",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--no-color",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert counts is not None and int(counts[1]) == int(counts[2]) >= 300, result.stdout[-3000:]
    text = httpx.get(api.url + "/metrics").text
    fuzzed = sum(
        metric_value(text, "drugrepo_requests_total", {"route": route, "status": status})
        for route in ("/v1/predict", "/v1/screen")
        for status in ("200", "413", "422")
    )
    assert fuzzed >= 300  # both operations were exercised, answered 4xx or scored
    assert all(
        metric_value(text, "drugrepo_requests_total", {"route": route, "status": "500"}) == 0
        for route in ("/v1/predict", "/v1/screen", "/healthz", "/readyz", "/metrics")
    )
