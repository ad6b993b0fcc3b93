"""Issue 21's findings 1–3 against a real ``drugrepo serve``: RDKit's work on a request's molecules runs in
the app's worker processes, each molecule within its budget, each distinct molecule once.

- 1: bridged cages past the ring rule (the finding's 2,116-character one, its ``*`` variant, a 121-ring one)
  are refused by the rules; the costliest cage within it (`molecules.NEAR_BUDGET_CAGE`, ~1 s of RDKit's CPU
  here) is a 422 ``over_budget`` naming its index under ``DRUGREPO_MOLECULE_CPU_SECONDS=0.1`` (drug-like
  molecules take milliseconds: ten times either way, so no verdict depends on the machine's speed), and a
  molecule over its memory budget too; meanwhile /healthz answers (the server's share of every poll under
  50 ms, `servers.HealthPolls`), the server's process tree (server and molecule workers) stays under
  `TREE_RSS_BOUND`, and the server goes on.
- 2: 100 copies of a cage in one /v1/predict: the request log computes its descriptors once (and not again
  for the next request), in its own worker.
- 3: copies in a /v1/screen are featurised and scored once.

And the API's verdict codes on generated bridged ring systems equal ``drugrepo validate``'s.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drugrepo_assets.api.app import create_app
from drugrepo_assets.api.molecules import budget
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.data.sandbox import BUDGET_VARIABLES, Budget, molecule_budget
from drugrepo_assets.ml.features.descriptors import MOLECULE_COLUMNS
from drugrepo_assets.request_records import RequestRecord, scan_request_log
from drugrepo_assets_tests.api.servers import (
    BIN,
    Api,
    metric_value,
    poll_until,
    polling_health,
    process_tree,
    running_api,
    tree_rss_bytes,
)
from drugrepo_assets_tests.data.rows import write_csv
from drugrepo_assets_tests.molecules import (
    FINDING_CAGE,
    NEAR_BUDGET_CAGE,
    RING_CAGE,
    BridgedRings,
    bridged_ring_systems,
    circulant,
)

KEY = "molecule-key"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ" * 6
TREE_RSS_BOUND = int(1.5 * 2**30)
"""The server and its molecule workers (two for requests, one for the request log's descriptors) together, each
page once (`servers.tree_rss_bytes`): ~0.5 GiB here. Each worker's address space is capped at its own size plus
the molecule budget (512 MiB by default), so the tree cannot pass ~2.5 GiB whatever the molecules; the finding's
cage took the old server from 0.67 to 5.5 GB."""
OVER_MEMORY = "C1/C=C/" + "C/C=C/" * 95 + "C1"
"""289 atoms, 96 ring double bonds with stereo: inside every rule, ~3 MiB of RDKit's memory to parse (12 ms)."""


ACCEPTED_CAGE = circulant(39, 7)
"""A bridged cage of 40 rings, the most the rules take (`rules.MAX_RINGS`), quick for RDKit."""
FINDING_2_CAGE = circulant(138, 23)
"""An 872-character cage like finding 2's and 3's (139 rings)."""
CPU_BUDGET = "0.1"
PROPERTY = settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
"""Each example runs ``drugrepo validate`` (seconds): a few examples of many molecules each."""


def _env(**extra: str) -> dict[str, str]:
    return {
        "DRUGREPO_API_KEYS": KEY,
        "DRUGREPO_RATE_LIMIT_PER_MINUTE": "1e9",
        "DRUGREPO_RATE_LIMIT_BURST": "1e9",
        "DRUGREPO_IP_RATE_LIMIT_BURST": "1e9",
        **extra,
    }


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Api]:
    """``drugrepo serve`` with the default molecule budget and workers."""
    checkpoint = ["--checkpoint", str(golden_dir / "model_state.pt")]
    with running_api(tmp_path_factory.mktemp("api-molecules"), checkpoint, _env()) as running:
        yield running


@pytest.fixture(scope="module")
def tight_api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Api]:
    """``drugrepo serve`` whose molecules may take 0.1 s of RDKit's CPU each (`NEAR_BUDGET_CAGE` needs ~1 s)."""
    checkpoint = ["--checkpoint", str(golden_dir / "model_state.pt")]
    env = _env(DRUGREPO_MOLECULE_CPU_SECONDS=CPU_BUDGET)
    with running_api(tmp_path_factory.mktemp("api-tight"), checkpoint, env) as running:
        yield running


def _post(api: Api, path: str, body: dict) -> httpx.Response:
    return httpx.post(api.url + path, json=body, headers={"X-API-Key": KEY}, timeout=120)


def _predict(api: Api, smiles: list[str]) -> httpx.Response:
    return _post(api, "/v1/predict", {"pairs": [{"smiles": s, "protein": PROTEIN} for s in smiles]})


def _screen(api: Api, smiles: list[str]) -> httpx.Response:
    return _post(api, "/v1/screen", {"protein": PROTEIN, "smiles": smiles})


def _codes(response: httpx.Response) -> dict[int, str]:
    """A 422's problems as index → reason code."""
    assert response.status_code == 422, response.text
    return {p["index"]: p["code"] for p in response.json()["errors"]}


def _metrics(api: Api) -> str:
    return httpx.get(api.url + "/metrics", timeout=30).text


def _molecules(api: Api) -> float:
    """``drugrepo_molecules_total`` over every outcome: the molecules RDKit's workers featurised."""
    text = _metrics(api)
    return sum(
        metric_value(text, "drugrepo_molecules_total", {"outcome": o}) for o in ("featurised", "refused", "over_budget")
    )


def _assert_prompt_and_small(reports: list, api: Api) -> None:
    (report,) = reports
    assert len(report.polls) >= 10 and {status for _, status, _ in report.polls} == {200}
    stalled = report.stalled()
    assert stalled == [], (
        f"{len(stalled)} of {len(report.polls)} polls took 50 ms or more of server time: {stalled[:10]}"
    )
    assert report.peak_rss < TREE_RSS_BOUND and tree_rss_bytes(api.pid) < TREE_RSS_BOUND, report.peak_rss
    slowest = max(seconds - queued for seconds, _, queued in report.polls)
    print(
        f"tree RSS peak {report.peak_rss / 2**20:.0f} MiB, {len(report.polls)} polls, slowest {slowest * 1000:.1f} ms"
    )


def test_bridged_cages_are_refused_while_health_answers_and_the_process_tree_stays_small(
    api: Api, tmp_path: Path
) -> None:
    cages = {1: FINDING_CAGE, 2: circulant(290, 55, query_at=0), 3: RING_CAGE}
    assert len(FINDING_CAGE) == 2116
    with polling_health(api, tmp_path) as reports:
        for _ in range(5):
            assert _codes(_predict(api, [ASPIRIN, *cages.values()])) == {
                1: "too_many_rings",
                2: "query_atom",
                3: "too_many_rings",
            }
            assert _codes(_screen(api, [ASPIRIN, *cages.values()])) == {
                1: "too_many_rings",
                2: "query_atom",
                3: "too_many_rings",
            }
    _assert_prompt_and_small(reports, api)
    assert _predict(api, [ASPIRIN]).status_code == 200


def test_a_molecule_over_its_cpu_budget_is_422_over_budget_while_health_answers(tight_api: Api, tmp_path: Path) -> None:
    assert _predict(tight_api, [ASPIRIN]).status_code == 200
    workers = len(process_tree(tight_api.pid))
    with polling_health(tight_api, tmp_path) as reports:
        for _ in range(3):
            refused = _predict(tight_api, [ASPIRIN, NEAR_BUDGET_CAGE, "CCO"])
            assert _codes(refused) == {1: "over_budget"}
            assert "CPU-time budget of 0.1 s" in refused.json()["errors"][0]["message"]
        assert _codes(_screen(tight_api, [NEAR_BUDGET_CAGE, ASPIRIN, NEAR_BUDGET_CAGE])) == {
            0: "over_budget",
            2: "over_budget",
        }
    _assert_prompt_and_small(reports, tight_api)
    assert _predict(tight_api, [ASPIRIN, "CCO"]).status_code == 200
    assert len(process_tree(tight_api.pid)) == workers  # each worker that passed its budget was replaced
    text = _metrics(tight_api)
    assert metric_value(text, "drugrepo_molecules_total", {"outcome": "over_budget"}) == 4  # once per request
    assert metric_value(text, "drugrepo_requests_total", {"route": "/v1/predict", "status": "500"}) == 0


def test_a_molecule_over_its_memory_budget_is_422_over_budget(golden_dir: Path, tmp_path: Path) -> None:
    settings = ServingSettings(
        api_keys=KEY,
        checkpoint=str(golden_dir / "model_state.pt"),
        request_log_dir=str(tmp_path / "requests"),
        model_refresh_seconds=0,
        molecule_memory_mb=1,
    )
    app = create_app(settings)
    pairs = [{"smiles": s, "protein": PROTEIN} for s in (ASPIRIN, OVER_MEMORY)]

    async def post() -> tuple[httpx.Response, httpx.Response]:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
        ):
            headers = {"X-API-Key": KEY}
            refused = await client.post("/v1/predict", json={"pairs": pairs}, headers=headers)
            return refused, await client.post("/v1/predict", json={"pairs": pairs[:1]}, headers=headers)

    refused, scored = asyncio.run(post())
    assert _codes(refused) == {1: "over_budget"}
    assert "memory budget of 1 MiB" in refused.json()["errors"][0]["message"]
    assert scored.status_code == 200


def test_the_settings_read_the_sandbox_budget_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {BUDGET_VARIABLES["cpu_seconds"]: "0.25", BUDGET_VARIABLES["memory_mb"]: "64"}
    for variable, value in values.items():
        monkeypatch.setenv(variable, value)
    assert budget(ServingSettings()) == molecule_budget(values) == Budget(0.25, 64 * 2**20)


def _logged(api: Api, request_id: str) -> list[RequestRecord]:
    return [r for r in scan_request_log(api.request_log).records if r.request_id == request_id]


def test_the_request_log_computes_descriptors_once_per_distinct_molecule(api: Api, tmp_path: Path) -> None:
    computed = metric_value(_metrics(api), "drugrepo_request_log_descriptors_computed_total")
    featurised = _molecules(api)
    with polling_health(api, tmp_path) as reports:
        first = _predict(api, [ACCEPTED_CAGE] * 100)
        assert first.status_code == 200, first.text
        request_id = first.headers["X-Request-Id"]
        poll_until(lambda: len(_logged(api, request_id)) == 100, "the request log's 100 records")
    _assert_prompt_and_small(reports, api)
    records = _logged(api, request_id)
    assert {json.dumps({c: r.descriptors[c] for c in MOLECULE_COLUMNS}) for r in records} == {
        json.dumps({c: records[0].descriptors[c] for c in MOLECULE_COLUMNS})
    }
    assert records[0].descriptors["heavy_atoms"] == 39
    assert _molecules(api) - featurised == 1
    assert metric_value(_metrics(api), "drugrepo_request_log_descriptors_computed_total") - computed == 1
    again = _predict(api, [ACCEPTED_CAGE] * 100)
    poll_until(lambda: len(_logged(api, again.headers["X-Request-Id"])) == 100, "the second request's records")
    assert metric_value(_metrics(api), "drugrepo_request_log_descriptors_computed_total") - computed == 1  # remembered
    finding = _predict(api, [FINDING_2_CAGE] * 100)  # the finding's 872-character cage: refused once, for every copy
    assert len(FINDING_2_CAGE) == 872 and set(_codes(finding).values()) == {"too_many_rings"}
    assert finding.json()["error_count"] == 100 and _molecules(api) - featurised == 3


def test_a_screen_of_copies_featurises_and_scores_each_distinct_molecule_once(api: Api) -> None:
    featurised = _molecules(api)
    library = [ACCEPTED_CAGE, ASPIRIN, f" {ASPIRIN} "] * 150
    response = _screen(api, library)
    assert response.status_code == 200, response.text
    results = pd.DataFrame(response.json()["results"])
    assert len(results) == 450 and _molecules(api) - featurised == 2
    assert results.groupby("smiles")["logit"].nunique().to_dict() == {ACCEPTED_CAGE: 1, ASPIRIN: 1}
    assert results.groupby("smiles")["rank"].nunique().to_dict() == {ACCEPTED_CAGE: 1, ASPIRIN: 1}  # copies tie


def test_screen_refuses_lone_atoms_and_ions_and_predict_keeps_them(api: Api) -> None:
    ions = ["[Na+]", "I", "[H+]", "[Mg+2]"]
    assert _codes(_screen(api, [ASPIRIN, *ions])) == dict.fromkeys(range(1, 5), "not_a_drug")
    assert _predict(api, ions).status_code == 200  # training data holds such rows; a pair is scored as given


FIXED = [ASPIRIN, "C1CC", "[Na+]", "C" * 300, ACCEPTED_CAGE, FINDING_CAGE, circulant(290, 55, query_at=7)]


@PROPERTY
@given(st.lists(bridged_ring_systems().filter(lambda c: not c.near_budget), min_size=5, max_size=25))
def test_the_api_and_drugrepo_validate_give_the_same_verdict_codes(
    api: Api, tmp_path_factory: pytest.TempPathFactory, cages: list[BridgedRings]
) -> None:
    """Generated bridged ring systems (`molecules.bridged_ring_systems`, the ones whose verdict may depend on
    the machine's speed left out) and a few fixed molecules, one distinct protein each (no duplicate pairs)."""
    folder = tmp_path_factory.mktemp("verdicts")
    molecules = FIXED + [c.smiles for c in cages]
    rows = [(s, PROTEIN[: 30 + i], "1") for i, s in enumerate(molecules)]
    pairs = write_csv(folder / "pairs.csv", rows)
    subprocess.run([str(BIN / "drugrepo"), "validate", str(pairs), "--out", str(folder / "v")], check=True, timeout=600)
    rejected = pd.read_parquet(folder / "v" / "rejected.parquet")
    cli = dict(zip(rejected["source_row"].astype(int) - 1, rejected["reason_code"]))
    response = _post(api, "/v1/predict", {"pairs": [{"smiles": s, "protein": p} for s, p, _ in rows]})
    assert _codes(response) == cli, cages
    fixed = {i: code for i, code in cli.items() if i < len(FIXED)}
    assert fixed == {1: "invalid_smiles", 3: "too_many_atoms", 5: "too_many_rings", 6: "query_atom"}
