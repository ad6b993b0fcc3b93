"""Champion/challenger traffic through real ``drugrepo serve`` processes: two checkpoints (the golden one and the
same weights with the last bias raised by 1, so every challenger logit is the champion's + 1).

- split, share 0.2 and a seed: about a fifth of 300 requests answered by the challenger (within 4 sigma of the
  binomial), each answer naming its model and role, both versions in /metrics and in the request log;
- shadow: every answer from the champion, the challenger's records (role shadow) joined to the champion's by
  request id and pair index, its scores only in the log and metrics;
- a challenger that fails to load: the champion answers everything, ``drugrepo_model_loaded{role="challenger"}``
  is 0 and /readyz says degraded;
- a challenger alias on a real MLflow server: absent (champion only, degraded), set (loaded and answering while
  the API runs), removed (dropped: the champion answers everything again).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from drugrepo_assets.api.challenger import Assigner
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.request_records import RequestRecord, scan_request_log
from drugrepo_assets_tests.api.servers import (
    Api,
    challenger_checkpoint,
    metric_value,
    poll_until,
    running_api,
    running_mlflow,
)

pytestmark = pytest.mark.slow(65)

KEY = "cc-key"
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"
PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
MOLECULES = [ASPIRIN, "CCO", "c1ccccc1O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]
REQUESTS = 300
SHARE = 0.2
UNLIMITED = {
    "DRUGREPO_API_KEYS": KEY,
    "DRUGREPO_RATE_LIMIT_PER_MINUTE": "1000000",
    "DRUGREPO_RATE_LIMIT_BURST": "1000000",
    "DRUGREPO_MODEL_REFRESH_SECONDS": "0",
}


@dataclass
class Models:
    """The two checkpoint files and their ids."""

    champion: Path
    champion_id: str
    challenger: Path
    challenger_id: str


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Models:
    champion = golden_dir / "model_state.pt"
    challenger = tmp_path_factory.mktemp("challenger") / "challenger.pt"
    challenger_id = challenger_checkpoint(champion, challenger)
    return Models(champion, load_checkpoint(str(champion)).checkpoint_id, challenger, challenger_id)


def _serve(folder: Path, models: Models, **challenger: str) -> Iterator[Api]:
    env = {**UNLIMITED, "DRUGREPO_CHALLENGER_CHECKPOINT": str(models.challenger), **challenger}
    with running_api(folder, ["--checkpoint", str(models.champion)], env) as api:
        yield api


@pytest.fixture(scope="module")
def split_api(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Iterator[Api]:
    yield from _serve(
        tmp_path_factory.mktemp("split"),
        models,
        DRUGREPO_CHALLENGER_SHARE=str(SHARE),
        DRUGREPO_CHALLENGER_MODE="split",
        DRUGREPO_CHALLENGER_SEED="20240601",
    )


@pytest.fixture(scope="module")
def shadow_api(tmp_path_factory: pytest.TempPathFactory, models: Models) -> Iterator[Api]:
    yield from _serve(
        tmp_path_factory.mktemp("shadow"), models, DRUGREPO_CHALLENGER_SHARE="1", DRUGREPO_CHALLENGER_MODE="shadow"
    )


def _predict(client: httpx.Client, api: Api, smiles: list[str]) -> httpx.Response:
    body = {"pairs": [{"smiles": s, "protein": PROTEIN} for s in smiles]}
    response = client.post(api.url + "/v1/predict", json=body, headers={"X-API-Key": KEY}, timeout=60)
    assert response.status_code == 200, response.text
    return response


def _logged(api: Api, count: int) -> list[RequestRecord]:
    """The request log once it holds ``count`` records."""
    poll_until(lambda: len(scan_request_log(api.request_log).records) >= count, f"{count} request-log records")
    records = scan_request_log(api.request_log).records
    assert len(records) == count
    return records


def test_the_assigner_draws_the_share_and_a_seed_repeats_it() -> None:
    assert not any(Assigner(0.0, 1).draw() for _ in range(1000))
    assert all(Assigner(1.0, 1).draw() for _ in range(1000))
    first, second = Assigner(0.3, 5), Assigner(0.3, 5)
    assert [first.draw() for _ in range(200)] == [second.draw() for _ in range(200)]
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        Assigner(1.5)


def test_a_challenger_is_an_alias_or_a_file_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        ServingSettings(challenger_alias="challenger", challenger_checkpoint="c.pt")
    assert ServingSettings(challenger_alias="challenger").challenger_uri() == "models:/drugban-human@challenger"
    assert (
        ServingSettings(model_uri="models:/drugban-yeast@champion", challenger_alias="next").challenger_uri()
        == "models:/drugban-yeast@next"
    )
    with pytest.raises(ValueError, match="less than or equal to 1"):
        ServingSettings(challenger_share=1.2)


@pytest.mark.services  # starts drugrepo serve
def test_split_sends_about_the_share_to_the_challenger(split_api: Api, models: Models) -> None:
    ids = {"champion": models.champion_id, "challenger": models.challenger_id}
    roles: Counter[str] = Counter()
    answers: dict[str, dict] = {}
    with httpx.Client() as client:
        for i in range(REQUESTS):
            response = _predict(client, split_api, [MOLECULES[i % len(MOLECULES)]])
            body = response.json()
            roles[body["role"]] += 1
            assert body["checkpoint_id"] == ids[body["role"]]
            assert body["model_version"] == f"checkpoint:{ids[body['role']]}"
            answers[response.headers["X-Request-Id"]] = body
    mean, sigma = REQUESTS * SHARE, math.sqrt(REQUESTS * SHARE * (1 - SHARE))
    assert abs(roles["challenger"] - mean) <= 4 * sigma, roles
    assert roles["champion"] + roles["challenger"] == REQUESTS

    text = httpx.get(split_api.url + "/metrics").text
    for role, count in roles.items():
        labels = {"route": "/v1/predict", "checkpoint_id": ids[role], "role": role}
        assert metric_value(text, "drugrepo_model_requests_total", labels) == count
        assert metric_value(text, "drugrepo_model_pairs_total", labels) == count
        assert metric_value(text, "drugrepo_score_count", {"role": role}) == count
        assert metric_value(text, "drugrepo_model_info", {"checkpoint_id": ids[role], "role": role}) == 1
        assert metric_value(text, "drugrepo_model_loaded", {"role": role}) == 1
    assert metric_value(text, "drugrepo_challenger_share", {"mode": "split"}) == SHARE
    assert metric_value(text, "drugrepo_pairs_scored_total", {"route": "/v1/predict"}) == REQUESTS

    records = _logged(split_api, REQUESTS)
    assert Counter(r.role for r in records) == roles
    for record in records:
        answer = answers[record.request_id]
        assert (record.role, record.checkpoint_id, record.model_version, record.pair) == (
            answer["role"],
            answer["checkpoint_id"],
            answer["model_version"],
            0,
        )
        assert record.logit == pytest.approx(answer["predictions"][0]["logit"])
    ready = httpx.get(split_api.url + "/readyz").json()
    assert ready["status"] == "ready"
    assert ready["challenger"] | {"shadow_queued": 0} == {
        "mode": "split",
        "share": SHARE,
        "loaded": True,
        "shadow_queued": 0,
        "model_version": f"checkpoint:{models.challenger_id}",
        "checkpoint_id": models.challenger_id,
    }


@pytest.mark.services  # starts drugrepo serve
def test_the_challenger_answers_with_its_own_logits(split_api: Api) -> None:
    """Every logit of the challenger is the champion's + 1 (its last bias): the role in the answer is the model's."""
    by_role: dict[str, float] = {}
    with httpx.Client() as client:
        while len(by_role) < 2:
            body = _predict(client, split_api, [ASPIRIN]).json()
            by_role[body["role"]] = body["predictions"][0]["logit"]
    assert by_role["challenger"] == pytest.approx(by_role["champion"] + 1.0, abs=1e-4)


@pytest.mark.services  # starts drugrepo serve
def test_shadow_answers_from_the_champion_and_logs_the_challenger_beside_it(shadow_api: Api, models: Models) -> None:
    requests = 20
    answers: dict[str, dict] = {}
    with httpx.Client() as client:
        for i in range(requests):
            response = _predict(client, shadow_api, MOLECULES[: 1 + i % 3])
            body = response.json()
            assert (body["role"], body["checkpoint_id"]) == ("champion", models.champion_id)
            answers[response.headers["X-Request-Id"]] = body
        screen = client.post(
            shadow_api.url + "/v1/screen",
            json={"protein": PROTEIN, "smiles": MOLECULES, "ids": ["a", "b", "c", "d"], "top": 2},
            headers={"X-API-Key": KEY},
            timeout=60,
        )
    assert screen.status_code == 200 and screen.json()["role"] == "champion"
    pairs = sum(len(b["predictions"]) for b in answers.values())
    records = _logged(shadow_api, 2 * pairs + 2 * 2)
    assert Counter(r.role for r in records) == {"champion": pairs + 2, "shadow": pairs + 2}

    joined: dict[tuple[str, int | None], dict[str, RequestRecord]] = {}
    for record in records:
        joined.setdefault((record.request_id, record.pair), {})[record.role] = record
    assert all(set(both) == {"champion", "shadow"} for both in joined.values())
    for request_id, body in answers.items():
        for pair, prediction in enumerate(body["predictions"]):
            both = joined[(request_id, pair)]
            assert both["champion"].checkpoint_id == models.champion_id
            assert both["shadow"].checkpoint_id == models.challenger_id
            assert both["champion"].logit == pytest.approx(prediction["logit"])
            assert both["shadow"].logit == pytest.approx(prediction["logit"] + 1.0, abs=1e-4)
            assert both["champion"].descriptors["mol_weight"] == both["shadow"].descriptors["mol_weight"]
    screened = {pair: both for (rid, pair), both in joined.items() if rid == screen.headers["X-Request-Id"]}
    ranked = {r["id"]: r for r in screen.json()["results"]}
    assert {"abcd"[pair] for pair in screened} == set(ranked)
    for pair, both in screened.items():
        assert both["champion"].logit == pytest.approx(ranked["abcd"[pair]]["logit"])

    text = httpx.get(shadow_api.url + "/metrics").text
    champion = {"route": "/v1/predict", "checkpoint_id": models.champion_id, "role": "champion"}
    shadow = {"route": "/v1/predict", "checkpoint_id": models.challenger_id, "role": "shadow"}
    assert metric_value(text, "drugrepo_model_requests_total", champion) == requests
    assert metric_value(text, "drugrepo_model_requests_total", shadow) == requests
    assert metric_value(text, "drugrepo_model_pairs_total", shadow) == pairs
    assert metric_value(text, "drugrepo_model_requests_total", {"role": "challenger"}) == 0
    assert metric_value(text, "drugrepo_pairs_scored_total", {"route": "/v1/predict"}) == pairs
    assert metric_value(text, "drugrepo_score_count", {"role": "shadow"}) == pairs + 2
    assert metric_value(text, "drugrepo_shadow_dropped_total", {"reason": "error"}) == 0


@pytest.mark.services  # starts drugrepo serve
def test_a_challenger_that_fails_to_load_leaves_the_champion_serving(
    tmp_path: Path, models: Models, golden_dir: Path
) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    env = {
        **UNLIMITED,
        "DRUGREPO_CHALLENGER_CHECKPOINT": str(broken),
        "DRUGREPO_CHALLENGER_SHARE": "0.5",
        "DRUGREPO_CHALLENGER_SEED": "1",
    }
    with running_api(tmp_path, ["--checkpoint", str(models.champion)], env) as api, httpx.Client() as client:
        ready = httpx.get(api.url + "/readyz").json()
        assert ready["status"] == "degraded" and ready["model_version"] == f"checkpoint:{models.champion_id}"
        assert ready["challenger"]["loaded"] is False and "broken.pt" in ready["challenger"]["error"]
        for _ in range(20):
            body = _predict(client, api, [ASPIRIN]).json()
            assert (body["role"], body["checkpoint_id"]) == ("champion", models.champion_id)
        text = httpx.get(api.url + "/metrics").text
        assert 'drugrepo_model_loaded{role="challenger"} 0.0' in text.splitlines()
        assert 'drugrepo_model_loaded{role="champion"} 1.0' in text.splitlines()
        assert metric_value(text, "drugrepo_model_requests_total", {"role": "champion"}) == 20
        assert "challenger not loaded" in api.log.read_text()


def _register(client: MlflowClient, name: str, checkpoint: Path) -> str:
    """A training-like run holding ``checkpoint/best.pt`` and a registry version of it; the version number."""
    run = client.create_run(client.create_experiment(f"exp-{checkpoint.stem}"))
    folder = checkpoint.parent / f"{checkpoint.stem}-artifact"
    folder.mkdir()
    (folder / "best.pt").write_bytes(checkpoint.read_bytes())
    client.log_artifacts(run.info.run_id, str(folder), artifact_path="checkpoint")
    client.set_terminated(run.info.run_id)
    source = f"runs:/{run.info.run_id}/checkpoint"
    return client.create_model_version(name, source, run_id=run.info.run_id).version


@pytest.mark.services  # starts drugrepo serve
def test_a_challenger_alias_is_followed_and_dropped_with_the_alias(tmp_path: Path, models: Models) -> None:
    name = "drugban-cc"
    with running_mlflow(tmp_path / "mlflow") as url:
        client = MlflowClient(tracking_uri=url, registry_uri=url)
        client.create_registered_model(name)
        staged = tmp_path / "staged"
        staged.mkdir()
        for label, path in (("champion", models.champion), ("challenger", models.challenger)):
            (staged / f"{label}.pt").write_bytes(path.read_bytes())
        champion = _register(client, name, staged / "champion.pt")
        challenger = _register(client, name, staged / "challenger.pt")
        client.set_registered_model_alias(name, "champion", champion)
        env = {
            **UNLIMITED,
            "MLFLOW_TRACKING_URI": url,
            "DRUGREPO_MODEL_NAME": name,
            "DRUGREPO_MODEL_REFRESH_SECONDS": "0.3",
            "DRUGREPO_CHALLENGER_ALIAS": "challenger",
            "DRUGREPO_CHALLENGER_SHARE": "1",
        }
        with running_api(tmp_path / "api", [], env) as api, httpx.Client() as http:

            def challenger_status() -> dict:
                return http.get(api.url + "/readyz").json()["challenger"]

            # No challenger alias yet: the champion answers, the challenger is reported not loaded.
            ready = http.get(api.url + "/readyz").json()
            assert ready["status"] == "degraded" and ready["model_version"] == f"{name}/{champion}"
            assert not ready["challenger"]["loaded"] and f"models:/{name}@challenger" in ready["challenger"]["error"]
            assert _predict(http, api, [ASPIRIN]).json()["role"] == "champion"

            # The alias appears: the running API loads it and sends it its share (all of it here).
            client.set_registered_model_alias(name, "challenger", challenger)
            poll_until(lambda: challenger_status()["loaded"], "the challenger alias to be loaded")
            assert challenger_status()["model_version"] == f"{name}/{challenger}"
            assert http.get(api.url + "/readyz").json()["status"] == "ready"
            body = _predict(http, api, [ASPIRIN]).json()
            assert (body["role"], body["model_version"], body["checkpoint_id"]) == (
                "challenger",
                f"{name}/{challenger}",
                models.challenger_id,
            )
            text = http.get(api.url + "/metrics").text
            info = {"version": f"{name}/{challenger}", "role": "challenger"}
            assert metric_value(text, "drugrepo_model_info", info) == 1

            # The alias is removed (the challenger dropped): the champion answers everything again.
            client.delete_registered_model_alias(name, "challenger")
            poll_until(lambda: not challenger_status()["loaded"], "the challenger to be dropped")
            body = _predict(http, api, [ASPIRIN]).json()
            assert (body["role"], body["model_version"]) == ("champion", f"{name}/{champion}")
            lines = http.get(api.url + "/metrics").text.splitlines()
            assert 'drugrepo_model_loaded{role="challenger"} 0.0' in lines
            assert not any(line.startswith("drugrepo_model_info{") and "challenger" in line for line in lines)
            assert "challenger alias models:/drugban-cc@challenger is gone" in api.log.read_text()
