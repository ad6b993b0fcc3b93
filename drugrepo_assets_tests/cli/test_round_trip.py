"""What one command writes, every other reads: each writer → reader pair of the CLI, on real rows, locally and on S3.

validate → validate, train, predict; train → predict, screen, serve; predict → validate, predict; screen's
top.parquet → screen --known. One small run (96 bundled human pairs and two bad rows, one epoch) feeds them all.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.predict import score_table
from drugrepo_assets_tests.cli.helpers import SMALL_MODEL
from drugrepo_assets_tests.data.rows import real_rows, write_csv
from drugrepo_assets_tests.data.servers import S3Bucket
from drugrepo_assets_tests.molecules import screening_candidates

ROWS = real_rows("human/random/train.csv", range(1, 97))
BAD = [("C1CC", ROWS[0][1], "1"), (ROWS[1][0], ROWS[1][1], "yes")]
TRAIN_OPTIONS = ["--epochs", "1", "--batch-size", "16", "--threads", "1", "--seed", "3", *SMALL_MODEL]
"""One epoch of a small DrugBAN (width 16): the chain's files and checkpoint ids are proved, not learning."""


def run(*args: str) -> None:
    """``drugrepo ARGS`` in this process; it must succeed."""
    assert main(list(args)) == 0, args


@dataclass(frozen=True)
class LocalRun:
    """The local chain's files: the input CSV, validate's folder, train's folder and its metrics."""

    pairs: Path
    validated: Path
    trained: Path
    metrics: dict

    @property
    def checkpoint(self) -> str:
        return str(self.trained / "best.pt")


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalRun:
    """validate pairs.csv → v/; train --data v/valid.parquet → t/ (one epoch)."""
    root = tmp_path_factory.mktemp("local")
    pairs = write_csv(root / "pairs.csv", [*ROWS, *BAD])
    run("validate", str(pairs), "--out", str(root / "v"))
    run("train", "--data", str(root / "v" / "valid.parquet"), "--out", str(root / "t"), *TRAIN_OPTIONS)
    metrics = json.loads((root / "t" / "metrics.json").read_text())
    return LocalRun(pairs, root / "v", root / "t", metrics)


def _library(folder: Path) -> tuple[list[str], list[str]]:
    """A .smi library of 8 of the rows' molecules and a FASTA of 2 of their proteins, in ``folder``."""
    smiles = screening_candidates(dict.fromkeys(r[0] for r in ROWS))[:8]  # a library refuses lone ions
    proteins = list(dict.fromkeys(r[1] for r in ROWS))[:2]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lib.smi").write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    (folder / "t.fasta").write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins)))
    return smiles, proteins


def _screen(checkpoint: str, library: str, targets: str, out: str, *extra: str) -> None:
    run(
        "screen",
        "--checkpoint",
        checkpoint,
        "--library",
        library,
        "--targets",
        targets,
        "--out",
        out,
        "--quiet",
        *extra,
    )


def test_validate_reads_its_own_outputs(local: LocalRun, tmp_path: Path) -> None:
    first = pd.read_parquet(local.validated / "valid.parquet")
    assert len(first) == len(ROWS)
    run("validate", str(local.validated / "valid.parquet"), "--out", str(tmp_path / "again"))
    again = pd.read_parquet(tmp_path / "again" / "valid.parquet")
    pd.testing.assert_frame_equal(
        again[["drug_id", "target_id", "smiles", "protein", "label"]], first[again.columns[:5]]
    )
    assert len(pd.read_parquet(tmp_path / "again" / "rejected.parquet")) == 0
    run("validate", str(local.validated / "rejected.parquet"), "--out", str(tmp_path / "refused"))
    rejected = pd.read_parquet(local.validated / "rejected.parquet")
    refused = pd.read_parquet(tmp_path / "refused" / "rejected.parquet")
    assert refused[["SMILES", "Protein", "Y", "reason_code", "reason"]].equals(
        rejected[["SMILES", "Protein", "Y", "reason_code", "reason"]]
    )
    assert rejected["reason_code"].tolist() == ["invalid_smiles", "invalid_label"]


def test_validate_to_train(local: LocalRun) -> None:
    assert sum(local.metrics["pairs"].values()) == len(ROWS)
    assert local.metrics["checkpoint_id"] == load_checkpoint(local.checkpoint).checkpoint_id
    assert local.metrics["threshold"] == local.metrics["val"]["threshold"] and 0 < local.metrics["threshold"] < 1
    assert not list(local.trained.glob("*_rejected.parquet"))  # valid.parquet holds valid pairs only


def test_validate_and_train_to_predict_then_predict_to_validate_and_predict(
    local: LocalRun, tmp_path: Path, golden_dir: Path
) -> None:
    scored_csv = tmp_path / "scored.csv"
    run(
        "predict",
        "--checkpoint",
        local.checkpoint,
        "--pairs",
        str(local.validated / "valid.parquet"),
        "--out",
        str(scored_csv),
    )
    scored = pd.read_csv(scored_csv, keep_default_na=False)
    valid = pd.read_parquet(local.validated / "valid.parquet")
    assert list(scored.columns) == [
        "drug_id",
        "target_id",
        "smiles",
        "protein",
        "label",
        "smiles_input",
        "logit",
        "score",
        "calibrated_score",
        "error",
    ]
    assert (scored["error"] == "").all() and scored["drug_id"].tolist() == valid["drug_id"].tolist()
    run("predict", "--checkpoint", local.checkpoint, "--pairs", str(local.pairs), "--out", str(tmp_path / "raw.csv"))
    raw = pd.read_csv(tmp_path / "raw.csv", keep_default_na=False)
    np.testing.assert_allclose(scored["logit"], raw["logit"].head(len(ROWS)).astype(float), atol=1e-5, rtol=0)

    run("validate", str(scored_csv), "--out", str(tmp_path / "v2"))  # predict → validate
    revalidated = pd.read_parquet(tmp_path / "v2" / "valid.parquet")
    assert revalidated["drug_id"].tolist() == valid["drug_id"].tolist()
    assert revalidated["label"].tolist() == valid["label"].tolist()

    rescored_csv = tmp_path / "rescored.csv"  # predict → predict: another checkpoint rescores the same rows
    golden = str(golden_dir / "model_state.pt")
    run("predict", "--checkpoint", golden, "--pairs", str(scored_csv), "--out", str(rescored_csv))
    rescored = pd.read_csv(rescored_csv, keep_default_na=False)
    assert list(rescored.columns) == list(scored.columns)
    expected = score_table(load_checkpoint(golden).model, valid).table["logit"]
    np.testing.assert_allclose(rescored["logit"], expected, atol=1e-5, rtol=0)
    assert not np.allclose(rescored["logit"], scored["logit"], atol=1e-3)


def test_train_to_screen_and_serve_and_top_to_known(local: LocalRun, tmp_path: Path, golden_dir: Path) -> None:
    from drugrepo_assets.api.app import create_app
    from drugrepo_assets.api.settings import ServingSettings

    smiles, proteins = _library(tmp_path)
    library, targets = str(tmp_path / "lib.smi"), str(tmp_path / "t.fasta")
    _screen(str(golden_dir / "model_state.pt"), library, targets, str(tmp_path / "golden"), "--top", "3")
    golden_top = pd.read_parquet(tmp_path / "golden" / "top.parquet")
    _screen(
        local.checkpoint,
        library,
        targets,
        str(tmp_path / "ours"),
        "--rank-all",
        "--known",
        str(tmp_path / "golden" / "top.parquet"),
    )
    ranked = pd.read_parquet(tmp_path / "ours" / "ranked").sort_values(["target_id", "drug_id"], ignore_index=True)
    assert len(ranked) == 16 and set(ranked["checkpoint_id"]) == {local.metrics["checkpoint_id"]}
    model = load_checkpoint(local.checkpoint).model
    pairs = pd.DataFrame(
        {
            "SMILES": [smiles[int(d[1:])] for d in ranked["drug_id"]],
            "Protein": [proteins[int(t[1:])] for t in ranked["target_id"]],
        }
    )
    np.testing.assert_allclose(ranked["logit"], score_table(model, pairs).table["logit"], atol=1e-4, rtol=0)
    report = pd.read_csv(tmp_path / "ours" / "enrichment.csv")  # screen → screen --known: the other model's top 3
    assert report["target_id"].tolist() == ["T0", "T1"] and report["actives"].tolist() == [3, 3]
    assert golden_top.groupby("target_id").size().tolist() == [3, 3]

    settings = ServingSettings(
        api_keys="k", checkpoint=local.checkpoint, request_log_dir=str(tmp_path / "requests"), model_refresh_seconds=0
    )
    app = create_app(settings)

    async def post() -> httpx.Response:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
        ):
            body = {"pairs": [{"smiles": s, "protein": p} for s, p in zip(pairs["SMILES"], pairs["Protein"])]}
            return await client.post("/v1/predict", json=body, headers={"X-API-Key": "k"})

    response = asyncio.run(post())
    assert response.status_code == 200, response.text
    assert response.json()["checkpoint_id"] == local.metrics["checkpoint_id"]
    served = [p["logit"] for p in response.json()["predictions"]]
    np.testing.assert_allclose(served, ranked["logit"], atol=1e-4, rtol=0)


def test_the_round_trip_with_inputs_and_outputs_on_s3(
    local: LocalRun, tmp_path: Path, s3_bucket: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    client, bucket, endpoint = s3_bucket
    s3 = f"s3://{bucket}"
    endpoint_option = ["--s3-endpoint-url", endpoint]

    def read(key: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()

    client.put_object(Bucket=bucket, Key="in/pairs.csv", Body=local.pairs.read_bytes())
    run("validate", f"{s3}/in/pairs.csv", "--out", f"{s3}/v", *endpoint_option)
    assert capsys.readouterr().out.splitlines()[-2:] == [
        f"wrote {s3}/v/valid.parquet",
        f"wrote {s3}/v/rejected.parquet",
    ]
    valid = pd.read_parquet(io.BytesIO(read("v/valid.parquet")))
    local_valid = pd.read_parquet(local.validated / "valid.parquet")
    assert valid["source_file"].unique().tolist() == [f"{s3}/in/pairs.csv"]
    pd.testing.assert_frame_equal(valid.drop(columns="source_file"), local_valid.drop(columns="source_file"))
    assert len(pd.read_parquet(io.BytesIO(read("v/rejected.parquet")))) == len(BAD)

    trained = tmp_path / "t"  # validate (S3) → train: the same pairs and seed train the same weights
    run("train", "--data", f"{s3}/v/valid.parquet", "--out", str(trained), *TRAIN_OPTIONS, *endpoint_option)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["pairs"] == local.metrics["pairs"]
    assert metrics["checkpoint_id"] == local.metrics["checkpoint_id"]

    checkpoint = str(trained / "best.pt")  # validate (S3) and train → predict (S3) → validate and predict (S3)
    run(
        "predict",
        "--checkpoint",
        checkpoint,
        "--pairs",
        f"{s3}/v/valid.parquet",
        "--out",
        f"{s3}/scored.csv",
        *endpoint_option,
    )
    scored = pd.read_csv(io.BytesIO(read("scored.csv")), keep_default_na=False)
    assert (scored["error"] == "").all() and scored["drug_id"].tolist() == local_valid["drug_id"].tolist()
    run("validate", f"{s3}/scored.csv", "--out", f"{s3}/v2", *endpoint_option)
    assert pd.read_parquet(io.BytesIO(read("v2/valid.parquet")))["drug_id"].tolist() == local_valid["drug_id"].tolist()
    run(
        "predict",
        "--checkpoint",
        checkpoint,
        "--pairs",
        f"{s3}/scored.csv",
        "--out",
        f"{s3}/rescored.csv",
        *endpoint_option,
    )
    rescored = pd.read_csv(io.BytesIO(read("rescored.csv")), keep_default_na=False)
    assert list(rescored.columns) == list(scored.columns)
    np.testing.assert_allclose(rescored["logit"], scored["logit"], atol=1e-6, rtol=0)

    _library(tmp_path)  # train → screen (S3), its top.parquet (S3) → screen --known
    client.upload_file(str(tmp_path / "lib.smi"), bucket, "lib/lib.smi")
    targets = str(tmp_path / "t.fasta")
    _screen(checkpoint, f"{s3}/lib", targets, f"{s3}/first", "--top", "2", *endpoint_option)
    top = pd.read_parquet(io.BytesIO(read("first/top.parquet")))
    assert set(top["checkpoint_id"]) == {metrics["checkpoint_id"]} and len(top) == 4
    _screen(checkpoint, f"{s3}/lib", targets, f"{s3}/second", "--known", f"{s3}/first/top.parquet", *endpoint_option)
    report = pd.read_csv(io.BytesIO(read("second/enrichment.csv")))
    assert report["actives"].tolist() == [2, 2]
    assert report["auroc"].tolist() == [1.0, 1.0]  # the known actives are this model's own top 2
