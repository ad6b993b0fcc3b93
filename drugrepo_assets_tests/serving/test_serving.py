"""The serving location against a real training stage: a tiny DrugBAN materialised (with its gating
checks) on a temp instance, tracked by a real `mlflow server`; `registered_model` registers every
checkpoint and moves the champion alias only when every gate passed; the API serves the alias;
`drugrepo rollback` moves it back; `drift_report` compares training, landed data and API requests."""

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, ExecuteInProcessResult, materialize
from mlflow import MlflowClient

from drugrepo_assets.api.model_service import load_served_model
from drugrepo_assets.api.request_log import LoggedBatch, RequestLog
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.assets.training import CHECKPOINT_ID_TAG as RUN_CHECKPOINT_ID_TAG
from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.io_managers import JsonIOManager, ParquetIOManager
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.predict import score_table
from drugrepo_assets.resources import MlflowTracking, TrainingProfile
from drugrepo_assets.serving.assets import drift_report, external_assets, registered_model
from drugrepo_assets.serving.registry import CHECKPOINT_ID_TAG as VERSION_CHECKPOINT_ID_TAG
from drugrepo_assets.serving.registry import PREVIOUS_TAG, alias_version
from drugrepo_assets.serving.resources import DriftSettings, RegistrySettings
from drugrepo_assets.storage import StorageResource
from drugrepo_assets_tests.api.servers import BIN, metric_value, running_api, running_mlflow
from drugrepo_assets_tests.assets.training_setup import resources, small_dataset

NAME = "drugban-human"
KEY = "serving-test-key"
TRAINING = AssetSelection.all() - AssetSelection.assets("hpo_study") - AssetSelection.groups("screening")
RETRAIN = AssetSelection.assets("drugban_checkpoint", "model_evaluation")


def _profile(floor: float) -> TrainingProfile:
    return TrainingProfile(
        name="tiny",
        epochs=1,
        patience=None,
        batch_size=32,
        max_train_pairs=96,
        max_eval_pairs=48,
        test_auroc_floor=floor,
        attention_examples=1,
    )


class World:
    """A temp instance, dataset, storage and MLflow server shared by the scenario."""

    def __init__(self, base: Path, instance: DagsterInstance, mlflow_url: str) -> None:
        self.base, self.instance, self.mlflow_url = base, instance, mlflow_url
        self.source = base / "source"
        small_dataset(self.source)

    def train(self, selection: AssetSelection, floor: float) -> ExecuteInProcessResult:
        return materialize(
            [*all_assets, *all_asset_checks],
            selection=selection,
            partition_key="human",
            resources=resources(self.base, self.source, _profile(floor), tracking_uri=self.mlflow_url),
            instance=self.instance,
            raise_on_error=False,
        )

    def serving_resources(self, request_log: Path) -> dict[str, Any]:
        storage = str(self.base / "storage")
        return {
            "json_io_manager": JsonIOManager(base_path=storage),
            "io_manager": ParquetIOManager(base_path=storage),
            "storage": StorageResource(base_path=storage),
            "mlflow_tracking": MlflowTracking(tracking_uri=self.mlflow_url),
            "registry_settings": RegistrySettings(),
            "drift_settings": DriftSettings(request_log_dir=str(request_log)),
        }

    def serve(self, asset: Any, request_log: Path = Path("unused")) -> ExecuteInProcessResult:
        return materialize(
            [*external_assets, asset],
            selection=[asset],
            partition_key="human",
            resources=self.serving_resources(request_log),
            instance=self.instance,
        )

    def value(self, asset: str) -> dict[str, Any]:
        return json.loads((self.base / "storage" / asset / "human.json").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("serving")
    with running_mlflow(base / "mlflow") as url, DagsterInstance.ephemeral() as instance:
        yield World(base, instance, url)


def _checks(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_alias_moves_only_when_every_gate_passed_and_rolls_back(
    world: World, tmp_path: Path, golden_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = MlflowClient(tracking_uri=world.mlflow_url)
    # 1. A checkpoint whose evaluation misses the AUROC floor: registered, not promoted.
    failed = world.train(TRAINING, floor=1.01)
    assert not failed.success
    assert _checks(failed) == {**dict.fromkeys(_checks(failed), True), "model_evaluation_auroc_floor": False}
    first = world.serve(registered_model).output_for_node("registered_model")
    assert first.version == "1" and first.created and not first.promoted
    assert first.gates == {
        "drugban_checkpoint:drugban_checkpoint_losses_finite": "passed",
        "drugban_checkpoint:drugban_checkpoint_reproduces": "passed",
        "model_evaluation:model_evaluation_auroc_floor": "failed",
    }
    assert "model_evaluation_auroc_floor" in first.decision
    assert alias_version(client, NAME, "champion") is None
    version = client.get_model_version(NAME, "1")
    assert version.tags["gate.model_evaluation_auroc_floor"] == "failed"
    assert version.run_id == world.value("drugban_checkpoint")["mlflow_run_id"]
    assert version.tags[VERSION_CHECKPOINT_ID_TAG] == world.value("drugban_checkpoint")["checkpoint_id"]
    assert "checkpoint_sha256" not in version.tags
    assert version.source.endswith("/checkpoint")

    # 2. The same checkpoint evaluated again, now over the floor: same version, now the champion.
    passed = world.train(AssetSelection.assets("model_evaluation"), floor=0.0)
    assert passed.success and _checks(passed) == {"model_evaluation_auroc_floor": True}
    second = world.serve(registered_model).output_for_node("registered_model")
    assert second.version == "1" and not second.created and second.promoted
    assert alias_version(client, NAME, "champion") == "1"

    # 3. A new checkpoint passing every gate: version 2 becomes the champion, remembering version 1.
    retrained = world.train(RETRAIN, floor=0.0)
    assert retrained.success and all(_checks(retrained).values())
    third = world.serve(registered_model).output_for_node("registered_model")
    assert third.version == "2" and third.promoted and third.champion_version == "2"
    assert client.get_model_version(NAME, "2").tags[PREVIOUS_TAG] == "1"
    checkpoint_2 = world.value("drugban_checkpoint")["checkpoint"]

    # 4. The API serves models:/drugban-human@champion from the server: version 2's weights.
    pairs = pd.read_csv(golden_dir / "model_pairs.csv", dtype=str).head(8)
    body = {"pairs": [{"smiles": s, "protein": p} for s, p in zip(pairs["SMILES"], pairs["Protein"])]}
    env = {
        "DRUGREPO_API_KEYS": KEY,
        "MLFLOW_TRACKING_URI": world.mlflow_url,
        "DRUGREPO_MODEL_NAME": NAME,
        "DRUGREPO_MODEL_REFRESH_SECONDS": "0.5",
    }
    with running_api(tmp_path / "api", [], env) as api:
        assert httpx.get(api.url + "/readyz").json()["model_version"] == f"{NAME}/2"
        response = httpx.post(api.url + "/v1/predict", json=body, headers={"X-API-Key": KEY}, timeout=60).json()
        expected = score_table(load_checkpoint(checkpoint_2)[0], pairs).table["logit"].to_numpy()
        assert response["model_version"] == f"{NAME}/2"
        np.testing.assert_allclose([p["logit"] for p in response["predictions"]], expected, atol=1e-4, rtol=0)

        # 5. Rollback: the alias goes back to version 1; with no earlier version, a second rollback refuses.
        rollback = [str(BIN / "drugrepo"), "rollback", "--model", NAME, "--tracking-uri", world.mlflow_url]
        moved = subprocess.run(rollback, capture_output=True, text=True)
        assert moved.returncode == 0, moved.stderr
        assert f"{NAME}@champion: version 2 -> 1" in moved.stdout
        assert alias_version(client, NAME, "champion") == "1"
        again = subprocess.run(rollback, capture_output=True, text=True)
        assert again.returncode == 1 and "no previous version" in again.stderr
        assert alias_version(client, NAME, "champion") == "1"

        # 6. The running API follows the alias: version 1 is served within a few refreshes, no restart.
        deadline = time.monotonic() + 60
        while httpx.get(api.url + "/readyz").json()["model_version"] != f"{NAME}/1" and time.monotonic() < deadline:
            time.sleep(0.25)
        after = httpx.post(api.url + "/v1/predict", json=body, headers={"X-API-Key": KEY}, timeout=60).json()
        text = httpx.get(api.url + "/metrics").text
    assert after["model_version"] == f"{NAME}/1"
    assert metric_value(text, "drugrepo_model_info", {"version": f"{NAME}/1"}) == 1
    assert metric_value(text, "drugrepo_model_info", {"version": f"{NAME}/2"}) == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    version_1 = load_served_model(ServingSettings(model_uri=f"models:/{NAME}/1", mlflow_tracking_uri=world.mlflow_url))
    assert list(scratch.iterdir()) == []  # the downloaded checkpoint is gone once loaded: a model change leaks nothing
    expected_1 = score_table(version_1.model, pairs).table["logit"].to_numpy()
    np.testing.assert_allclose([p["logit"] for p in after["predictions"]], expected_1, atol=1e-4, rtol=0)


def _screen_checkpoint_ids(checkpoint: str, pairs: pd.DataFrame, out: Path) -> set[str]:
    """The checkpoint_id column of ``drugrepo screen``'s score table for ``checkpoint`` on a few molecules."""
    out.mkdir(parents=True)
    smiles = list(dict.fromkeys(pairs["SMILES"]))
    pd.DataFrame({"id": [f"m{i}" for i in range(len(smiles))], "SMILES": smiles}).to_csv(out / "lib.csv", index=False)
    (out / "targets.fasta").write_text(f">t0\n{pairs['Protein'].iloc[0]}\n")
    command = [str(BIN / "drugrepo"), "screen", "--checkpoint", checkpoint, "--library", str(out / "lib.csv")]
    command += ["--targets", str(out / "targets.fasta"), "--out", str(out / "run"), "--top", str(len(smiles))]
    command += ["--threads", "1", "--quiet"]
    screened = subprocess.run(command, capture_output=True, text=True)
    assert screened.returncode == 0, screened.stderr
    return set(pd.read_csv(out / "run" / "top.csv", dtype=str)["checkpoint_id"])


def test_one_checkpoint_id_in_score_table_mlflow_run_registry_version_and_api(
    world: World, tmp_path: Path, golden_dir: Path
) -> None:
    """For one checkpoint file, the score table, the training run, the registry version and the API serving
    that version name it by the same string."""
    if not (world.base / "storage" / "drugban_checkpoint" / "human.json").exists():
        assert world.train(TRAINING, floor=0.0).success
    registered = world.serve(registered_model).output_for_node("registered_model")
    checkpoint = world.value("drugban_checkpoint")
    client = MlflowClient(tracking_uri=world.mlflow_url)
    run_id = client.get_run(checkpoint["mlflow_run_id"]).data.tags[RUN_CHECKPOINT_ID_TAG]
    version_id = client.get_model_version(NAME, registered.version).tags[VERSION_CHECKPOINT_ID_TAG]
    pairs = pd.read_csv(golden_dir / "model_pairs.csv", dtype=str).head(6)
    table_ids = _screen_checkpoint_ids(checkpoint["checkpoint"], pairs, tmp_path / "screen")
    env = {
        "DRUGREPO_API_KEYS": KEY,
        "MLFLOW_TRACKING_URI": world.mlflow_url,
        "DRUGREPO_MODEL_URI": f"models:/{NAME}/{registered.version}",
    }
    body = {"pairs": [{"smiles": s, "protein": p} for s, p in zip(pairs["SMILES"], pairs["Protein"])]}
    with running_api(tmp_path / "api", [], env) as api:
        response = httpx.post(api.url + "/v1/predict", json=body, headers={"X-API-Key": KEY}, timeout=60).json()
        text = httpx.get(api.url + "/metrics").text
    file_id = load_checkpoint(checkpoint["checkpoint"])[1]["checkpoint_id"]
    assert table_ids == {file_id}
    assert checkpoint["checkpoint_id"] == run_id == version_id == registered.checkpoint_id == file_id
    assert response["checkpoint_id"] == file_id and response["model_version"] == f"{NAME}/{registered.version}"
    assert metric_value(text, "drugrepo_model_info", {"checkpoint_id": file_id}) == 1


def _log_requests(folder: Path, smiles: list[str], proteins: list[str]) -> None:
    log = RequestLog(folder)
    log.submit(
        LoggedBatch(
            "/v1/predict",
            "abc123",
            f"{NAME}/1",
            "0123456789abcdef",
            smiles,
            proteins,
            [0.0] * len(smiles),
            [0.5] * len(smiles),
        )
    )
    log.close()


def test_drift_report_compares_training_with_landed_data_and_requests(world: World, tmp_path: Path) -> None:
    if not (world.base / "storage" / "drugban_checkpoint" / "human.json").exists():
        world.train(TRAINING, floor=0.0)
    splits = pd.read_parquet(world.base / "storage" / "dataset_splits" / "human.parquet")
    train = splits[(splits["strategy"] == "random") & (splits["split"] == "train")]
    like_training = tmp_path / "like-training"
    _log_requests(like_training, train["smiles"].tolist()[:120], train["protein"].tolist()[:120])
    [log_file] = like_training.glob("requests-*.jsonl")
    with open(log_file, "ab") as handle:
        handle.write(b'{"ts": "2024-01-01T00:00:00+00:00", "mol_weight": 18\n\xff\xfe not utf-8\n')
    result = world.serve(drift_report, like_training)
    value = result.output_for_node("drift_report")
    assert set(value.comparisons) == {"landed", "requests"}
    assert value.comparisons["requests"].current_rows == 120
    assert value.comparisons["landed"].current_rows > 0
    assert value.drifted == []
    assert value.checkpoint_id == world.value("drugban_checkpoint")["checkpoint_id"]
    assert world.value("drift_report")["comparisons"]["requests"]["drifted_columns"] == []
    for uri in value.reports.values():
        html = Path(uri).read_text()
        assert "<html" in html.lower() and "mol_weight" in html
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.severity == AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert meta["requests_rows"] == 120 and meta["requests_drifted_columns"] == [] and "landed_report" in meta
    rows = [r.data for r in meta["columns"].records]
    assert {r["comparison"] for r in rows} == {"landed", "requests"} and not any(r["drifted"] for r in rows)
    assert (meta["request_log_files"], meta["request_log_malformed_lines"]) == (1, 2)

    shifted = tmp_path / "shifted"
    alkanes = ["C" * n for n in range(20, 80)] * 2
    _log_requests(shifted, alkanes, ["G" * (900 + i) for i in range(len(alkanes))])
    drifted = world.serve(drift_report, shifted)
    meta = {k: v.value for k, v in drifted.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert meta["request_log_malformed_lines"] == 0
    value = drifted.output_for_node("drift_report")
    assert value.drifted == ["requests"]
    columns = value.comparisons["requests"].drifted_columns
    assert {"mol_weight", "rings", "protein_length", "frac_small"} <= set(columns)
    (check,) = drifted.get_asset_check_evaluations()
    assert not check.passed and check.severity == AssetCheckSeverity.WARN and "requests" in check.description
