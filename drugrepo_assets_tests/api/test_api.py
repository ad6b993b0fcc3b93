"""The prediction API as a real uvicorn process on loopback, serving the golden reference checkpoint:
keys, every error status, parity with ``drugrepo predict`` / ``drugrepo screen``, rate limit,
metrics, health and the request log the drift report reads."""

import hashlib
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from drugrepo_assets.ml.features.descriptors import DESCRIPTOR_COLUMNS
from drugrepo_assets.ml.model.checkpoint import CHECKPOINT_ID_CHARS, load_checkpoint
from drugrepo_assets.request_records import scan_request_log
from drugrepo_assets_tests.api.servers import BIN, Api, metric_value, running_api

KEYS = ("key-alpha", "key-beta", "key-gamma")
ASPIRIN = "CC(=O)Oc1ccccc1C(=O)O"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Api]:
    """``drugrepo serve --checkpoint golden/model_state.pt``, in-process LRU cache, rate limits out of the way
    (test_ratelimit.py tests them)."""
    env = {
        "DRUGREPO_API_KEYS": ",".join(KEYS),
        "DRUGREPO_RATE_LIMIT_PER_MINUTE": "1000000",
        "DRUGREPO_RATE_LIMIT_BURST": "1000000",
        "DRUGREPO_IP_RATE_LIMIT_BURST": "1000000",
    }
    with running_api(
        tmp_path_factory.mktemp("api"), ["--checkpoint", str(golden_dir / "model_state.pt")], env
    ) as running:
        yield running


@pytest.fixture(scope="module")
def golden_pairs(golden_dir: Path) -> pd.DataFrame:
    """The 64 pairs of the golden checkpoint's outputs."""
    return pd.read_csv(golden_dir / "model_pairs.csv", dtype=str)


def _post(api: Api, path: str, body: object, key: str = KEYS[0], **kwargs: object) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    if isinstance(body, (bytes, str)):
        return httpx.post(
            api.url + path, content=body, headers={**headers, "content-type": "application/json"}, timeout=60, **kwargs
        )
    return httpx.post(api.url + path, json=body, headers=headers, timeout=60, **kwargs)


def _pairs(table: pd.DataFrame) -> dict:
    return {"pairs": [{"smiles": s, "protein": p} for s, p in zip(table["SMILES"], table["Protein"])]}


def test_requests_without_a_valid_key_are_refused_before_anything_else(api: Api, golden_pairs: pd.DataFrame) -> None:
    body = _pairs(golden_pairs.head(1))
    for key in ("", "wrong-key", KEYS[0] + "x", KEYS[0][:-1]):
        response = _post(api, "/v1/predict", body, key=key)
        assert response.status_code == 401, key
        assert "API key" in response.json()["detail"]
    assert _post(api, "/v1/predict", b"{not json", key="").status_code == 401
    assert _post(api, "/v1/screen", {"protein": "MKV", "smiles": ["CCO"]}, key="nope").status_code == 401
    assert _post(api, "/v1/predict", body, key=KEYS[1]).status_code == 200


def test_predict_equals_drugrepo_predict_in_order(
    api: Api, golden_pairs: pd.DataFrame, golden_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "scored.csv"
    subprocess.run(
        [
            str(BIN / "drugrepo"),
            "predict",
            "--checkpoint",
            str(golden_dir / "model_state.pt"),
            "--pairs",
            str(golden_dir / "model_pairs.csv"),
            "--out",
            str(out),
            "--threads",
            "1",
        ],
        check=True,
    )
    cli = pd.read_csv(out)
    response = _post(api, "/v1/predict", _pairs(golden_pairs))
    assert response.status_code == 200
    body = response.json()
    logits = np.array([p["logit"] for p in body["predictions"]])
    assert len(logits) == len(golden_pairs) == len(cli)
    np.testing.assert_allclose(logits, cli["logit"].to_numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose([p["score"] for p in body["predictions"]], 1 / (1 + np.exp(-logits)), atol=1e-9)
    calibrated = [p["calibrated_score"] for p in body["predictions"]]
    np.testing.assert_allclose(calibrated, [p["score"] for p in body["predictions"]], rtol=1e-12)
    assert body["temperature"] == 1.0 and body["calibrated"] is False  # the golden state_dict records no temperature
    np.testing.assert_allclose([p["calibrated_score"] for p in body["predictions"]], cli["calibrated_score"], atol=1e-4)
    np.testing.assert_allclose(logits, np.load(golden_dir / "model_io.npz")["logit"], atol=1e-4, rtol=0)
    checkpoint_id = load_checkpoint(str(golden_dir / "model_state.pt")).checkpoint_id
    assert len(checkpoint_id) == CHECKPOINT_ID_CHARS
    assert body["checkpoint_id"] == checkpoint_id and body["model_version"] == f"checkpoint:{checkpoint_id}"
    reversed_body = _post(api, "/v1/predict", _pairs(golden_pairs.iloc[::-1])).json()
    np.testing.assert_allclose([p["logit"] for p in reversed_body["predictions"]], logits[::-1], atol=1e-6)


def test_screen_ranks_like_drugrepo_screen(
    api: Api, golden_pairs: pd.DataFrame, golden_dir: Path, tmp_path: Path
) -> None:
    protein = golden_pairs["Protein"].iloc[0]
    smiles = list(dict.fromkeys(golden_pairs["SMILES"]))[:20]
    pd.DataFrame({"id": [f"m{i}" for i in range(len(smiles))], "SMILES": smiles}).to_csv(
        tmp_path / "lib.csv", index=False
    )
    (tmp_path / "t.fasta").write_text(f">t0\n{protein}\n")
    subprocess.run(
        [
            str(BIN / "drugrepo"),
            "screen",
            "--checkpoint",
            str(golden_dir / "model_state.pt"),
            "--library",
            str(tmp_path / "lib.csv"),
            "--targets",
            str(tmp_path / "t.fasta"),
            "--out",
            str(tmp_path / "run"),
            "--top",
            str(len(smiles)),
            "--threads",
            "1",
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )
    cli = pd.read_csv(tmp_path / "run" / "top.csv")
    response = _post(
        api, "/v1/screen", {"protein": protein, "smiles": smiles, "ids": [f"m{i}" for i in range(len(smiles))]}
    )
    assert response.status_code == 200
    results = response.json()["results"]
    assert set(cli["checkpoint_id"]) == {response.json()["checkpoint_id"]}  # one id for the file, CLI and API
    assert response.json()["model_version"] == f"checkpoint:{response.json()['checkpoint_id']}"
    assert [r["id"] for r in results] == cli["drug_id"].tolist()
    np.testing.assert_allclose([r["logit"] for r in results], cli["logit"], atol=1e-4, rtol=0)
    assert [r["rank"] for r in results] == cli["rank_in_target"].tolist()
    np.testing.assert_allclose([r["calibrated_score"] for r in results], [r["score"] for r in results], rtol=1e-7)
    np.testing.assert_allclose([r["calibrated_score"] for r in results], cli["calibrated_score"], atol=1e-4)
    assert response.json()["calibrated"] is False and response.json()["temperature"] == 1.0
    top = _post(api, "/v1/screen", {"protein": protein, "smiles": smiles, "top": 3}).json()["results"]
    assert [r["smiles"] for r in top] == [r["smiles"] for r in results[:3]]


def test_bad_values_are_422_naming_value_and_index(api: Api, golden_pairs: pd.DataFrame) -> None:
    good = {"smiles": golden_pairs["SMILES"].iloc[0], "protein": golden_pairs["Protein"].iloc[0]}
    body = {
        "pairs": [
            good,
            {"smiles": "C1CC(", "protein": good["protein"]},
            {"smiles": ASPIRIN, "protein": "MKV1LA"},
            good,
            {"smiles": "", "protein": "MKV"},
        ]
    }
    response = _post(api, "/v1/predict", body)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert [(e["index"], e["field"], e["value"]) for e in errors] == [
        (1, "smiles", "C1CC("),
        (2, "protein", "MKV1LA"),
        (4, "smiles", ""),
    ]
    assert "1" in errors[1]["message"]
    big = "C" * 300
    response = _post(api, "/v1/predict", {"pairs": [good, {"smiles": big, "protein": "MKV"}]})
    assert response.status_code == 422 and response.json()["errors"][0]["index"] == 1
    assert "atoms" in response.json()["errors"][0]["message"]
    response = _post(api, "/v1/screen", {"protein": "MK*V", "smiles": ["CCO", "not a smiles", "CCN"]})
    assert response.status_code == 422
    assert [(e["field"], e["index"], e["value"]) for e in response.json()["errors"]] == [
        ("protein", 0, "MK*V"),
        ("smiles", 1, "not a smiles"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b"null",
        b'{"pairs": []}',
        b'{"pairs": [{"smiles": "CCO"}]}',
        b'{"pairs": "CCO"}',
        b'{"pairs": [{"smiles": 5, "protein": "MKV"}]}',
        b'{"pairs": [{"smiles": "CCO", "protein": "MKV", "x": 1}]}',
        b"\xff\xfe\x00garbage",
        '{"pairs": [{"smiles": "C\u00e9", "protein": "MKV\u00e9"}]}'.encode(),
    ],
)
def test_malformed_bodies_are_4xx_never_500(api: Api, body: bytes) -> None:
    response = _post(api, "/v1/predict", body, key=KEYS[1])
    assert response.status_code in (400, 422), (body, response.status_code, response.text)
    assert response.json()["detail"]


def test_bodies_over_one_mib_are_413(api: Api) -> None:
    pair = {"smiles": ASPIRIN, "protein": "M" * 1000}
    body = json.dumps({"pairs": [pair] * 1100}).encode()
    assert len(body) > 1024 * 1024
    response = _post(api, "/v1/predict", body, key=KEYS[1])
    assert response.status_code == 413
    streamed = httpx.post(
        api.url + "/v1/predict",
        content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]),
        headers={"X-API-Key": KEYS[1], "content-type": "application/json"},
        timeout=60,
    )
    assert streamed.status_code == 413
    assert _post(api, "/v1/predict", json.dumps({"pairs": [pair] * 10}).encode(), key=KEYS[1]).status_code == 200


def test_health_readiness_docs_and_metrics(api: Api, golden_pairs: pd.DataFrame) -> None:
    assert httpx.get(api.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(api.url + "/readyz").json()
    assert (
        ready["status"] == "ready" and ready["cache"] == "memory" and ready["model_version"].startswith("checkpoint:")
    )
    assert "swagger" in httpx.get(api.url + "/docs").text.lower()
    schema = httpx.get(api.url + "/openapi.json").json()
    assert {"/v1/predict", "/v1/screen"} <= set(schema["paths"])
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]
    for response in ("PredictResponse", "ScreenResponse"):
        assert {"model_version", "checkpoint_id"} <= set(schema["components"]["schemas"][response]["required"])
    before = httpx.get(api.url + "/metrics").text
    protein = "MKTAYIAKQRQISFVKSHFSRQ" + "A" * 50
    for _ in range(3):
        assert _post(api, "/v1/predict", {"pairs": [{"smiles": ASPIRIN, "protein": protein}]}).status_code == 200
    text = httpx.get(api.url + "/metrics").text
    ok = {"route": "/v1/predict", "status": "200"}
    assert metric_value(text, "drugrepo_requests_total", ok) - metric_value(before, "drugrepo_requests_total", ok) == 3
    hit, miss = ({"result": r, "backend": "memory"} for r in ("hit", "miss"))
    assert (
        metric_value(text, "drugrepo_target_cache_total", miss)
        - metric_value(before, "drugrepo_target_cache_total", miss)
        == 1
    )
    assert (
        metric_value(text, "drugrepo_target_cache_total", hit)
        - metric_value(before, "drugrepo_target_cache_total", hit)
        == 2
    )
    assert metric_value(text, "drugrepo_request_seconds_count", {"route": "/v1/predict"}) >= 3
    assert ready["model_version"] == f"checkpoint:{ready['checkpoint_id']}"
    info = {"version": ready["model_version"], "checkpoint_id": ready["checkpoint_id"]}
    assert metric_value(text, "drugrepo_model_info", info) == 1
    assert metric_value(text, "drugrepo_requests_total", {"route": "/v1/predict", "status": "401"}) >= 1


def test_request_log_holds_hashed_keys_descriptors_and_scores(api: Api) -> None:
    protein = "MSTNPKPQRKTKRNTNRRPQDVKFPGG"
    response = _post(api, "/v1/predict", {"pairs": [{"smiles": ASPIRIN, "protein": protein}]}, key=KEYS[1])
    score = response.json()["predictions"][0]["score"]
    deadline = time.monotonic() + 10
    while True:
        records = [
            r for r in scan_request_log(api.request_log).records if r.descriptors["protein_length"] == len(protein)
        ]
        if records or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(records) == 1
    record = records[0]
    assert record.key_id == hashlib.sha256(KEYS[1].encode()).hexdigest()[:12]
    assert (record.model_version, record.checkpoint_id) == (
        response.json()["model_version"],
        response.json()["checkpoint_id"],
    )
    assert set(DESCRIPTOR_COLUMNS) <= set(record.descriptors)
    assert record.descriptors["mol_weight"] == pytest.approx(180.159, abs=0.01)
    assert record.descriptors["aromatic_rings"] == 1
    assert record.score == pytest.approx(score)
    text = "".join(p.read_text() for p in api.request_log.glob("*.jsonl"))
    assert KEYS[1] not in text and ASPIRIN not in text and protein not in text


def test_protein_letters_are_checked_before_any_case_change(api: Api) -> None:
    """ "ßﬀıſ".upper() is "SSFFIS", all DrugBAN letters: the rules refuse the characters themselves."""
    response = _post(api, "/v1/predict", {"pairs": [{"smiles": ASPIRIN, "protein": "MKTßﬀıſA"}]})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "protein" and "'ß'" in error["message"] and "first at position 4" in error["message"]
    assert _post(api, "/v1/predict", {"pairs": [{"smiles": ASPIRIN, "protein": "mktaYIAKQR"}]}).status_code == 200


@pytest.mark.parametrize(
    ("smiles", "words"),
    [
        ("C" * 40_000, "40,000 characters, more than the limit of 10,000"),
        ("C1" + "C" * 9000 + "1", "at least 9001 atoms"),
        ("C" * 291, "at least 291 atoms, more than the limit of 290"),
    ],
)
def test_slow_smiles_are_refused_from_their_text(api: Api, smiles: str, words: str) -> None:
    response = _post(api, "/v1/predict", {"pairs": [{"smiles": smiles, "protein": "MKT"}]})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert words in error["message"] and len(error["value"]) <= 201


def test_request_budgets_are_413_naming_the_limit_and_its_setting(api: Api) -> None:
    letters = "ACDEFGHIKLMNPQRSTVWY"
    cases = [
        (
            "/v1/predict",
            {"pairs": [{"smiles": "CCO", "protein": "MKT"}] * 1001},
            "1,001 pairs, more than the limit of 1,000",
            "DRUGREPO_MAX_PAIRS_PER_REQUEST",
        ),
        (
            "/v1/predict",
            {"pairs": [{"smiles": "CCO", "protein": "MK" + a + b} for a in letters for b in letters[:4]][:65]},
            "65 distinct proteins, more than the limit of 64",
            "DRUGREPO_MAX_PROTEINS_PER_REQUEST",
        ),
        (
            "/v1/predict",
            {"pairs": [{"smiles": "C" * 9990 + str(i).rjust(10, "C"), "protein": "MKT"} for i in range(61)]},
            "610,000 characters of distinct SMILES, more than the limit of 600,000",
            "DRUGREPO_MAX_SMILES_CHARS_PER_REQUEST",
        ),
        (
            "/v1/screen",
            {"protein": "MKT", "smiles": ["CCO"] * 10_001},
            "10,001 smiles, more than the limit of 10,000",
            "DRUGREPO_MAX_SCREEN_SMILES",
        ),
        ("/v1/predict", b"[" + b"0," * 5000 + b"0]", "5,000 JSON values", "DRUGREPO_MAX_PAIRS_PER_REQUEST"),
    ]
    for path, body, words, setting in cases:
        response = _post(api, path, body, key=KEYS[2])
        assert response.status_code == 413, (words, response.text[:300])
        assert words in response.json()["detail"] and setting in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"pairs": [{"smiles": NaN, "protein": "MKT"}]}', "NaN"),
        (b'{"pairs": [{"smiles": Infinity, "protein": "MKT"}]}', "Infinity"),
        (b'{"protein": "MKT", "smiles": ["CCO"], "top": NaN}', "NaN"),
        (b'{"protein": "MKT", "smiles": ["CCO"], "top": -Infinity}', "-Infinity"),
        (b'{"protein": "MKT", "smiles": ["CCO"], "top": 1e400}', "out of the float range"),
        (b'{"pairs": [{"smiles": "C\\ud800C", "protein": "MKT"}]}', "lone surrogate (U+D800 at position 1)"),
        (b'{"pairs": [{"smiles": "CCO", "protein": "MK\\udfffT"}]}', "lone surrogate (U+DFFF at position 2)"),
        (b'{"protein": "MKT", "smiles": ["CCO"], "ids": ["\\udbff"]}', "lone surrogate"),
        (b"[" * 100_000, "nests too deeply"),
        (b'{"pairs": [{"smiles": "CCO", "protein": "MKT"}], "top": 1' + b"0" * 5000 + b"}", "not usable JSON"),
    ],
)
def test_non_standard_json_and_lone_surrogates_are_422_with_a_clear_message(api: Api, body: bytes, words: str) -> None:
    path = "/v1/screen" if b'"protein": "MKT", "smiles"' in body else "/v1/predict"
    response = _post(api, path, body, key=KEYS[2])
    assert response.status_code == 422, response.text[:300]
    payload = response.json()
    assert words in payload["detail"] + " ".join(e["message"] + e["value"] for e in payload["errors"])
    assert "Traceback" not in response.text


def test_a_body_sent_as_a_form_is_read_as_json(api: Api) -> None:
    """curl -d sends application/x-www-form-urlencoded: the README's example must work as written."""
    body = json.dumps({"pairs": [{"smiles": ASPIRIN, "protein": "MKTAYIAKQR"}]})
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"X-API-Key": KEYS[0]} | ({"content-type": content_type} if content_type else {})
        response = httpx.post(api.url + "/v1/predict", content=body.encode(), headers=headers, timeout=60)
        assert response.status_code == 200, (content_type, response.text[:300])
        assert len(response.json()["predictions"]) == 1


def test_a_422_lists_the_first_problems_and_counts_them_all(api: Api) -> None:
    bad = {"smiles": "C1CC(" + "C" * 300, "protein": "MKV1" * 100}
    body = json.dumps({"pairs": [bad] * 900}).encode()
    assert len(body) > 600_000
    response = _post(api, "/v1/predict", body, key=KEYS[2])
    assert response.status_code == 422
    payload = response.json()
    assert payload["error_count"] == 1800 and len(payload["errors"]) == 100
    assert [(e["index"], e["field"]) for e in payload["errors"][:2]] == [(0, "smiles"), (0, "protein")]
    assert all(len(e["value"]) <= 201 for e in payload["errors"])
    assert len(response.content) < 64 * 1024
    shape = _post(
        api, "/v1/predict", {"pairs": [{"smiles": "CCO", "protein": "MKT", "x": "y" * 500}] * 900}, key=KEYS[2]
    )
    assert shape.status_code == 422 and shape.json()["error_count"] == 900 and len(shape.content) < 64 * 1024
    assert shape.json()["errors"][0]["field"] == "pairs.0.x"
