"""The training stage in-process on a small real dataset: features → checkpoint → evaluation, tracked
by a real MLflow server on loopback, and the gates that refuse a broken checkpoint."""

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests
import torch
from dagster import (
    AssetExecutionContext,
    AssetSelection,
    DagsterInstance,
    ExecuteInProcessResult,
    asset,
    materialize,
)
from mlflow import MlflowClient

from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.defs.training.training import CHECKPOINT_ID_TAG, load_pairs
from drugrepo_assets.files import uri_of
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.records import CheckpointRecord
from drugrepo_assets.lib.resources import TrainingProfile
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.ml.model.checkpoint import CHECKPOINT_ID_CHARS, checkpoint_id, load_checkpoint, save_checkpoint
from drugrepo_assets.ml.training.pipeline import evaluate_model
from drugrepo_assets.screening.domain import reference_for_checkpoint, reference_path
from drugrepo_assets_tests.api.servers import running_mlflow
from drugrepo_assets_tests.defs.training.training_setup import resources, small_dataset

PROFILE = TrainingProfile(
    name="tiny",
    epochs=2,
    batch_size=32,
    max_train_pairs=128,
    max_eval_pairs=64,
    test_auroc_floor=0.0,
    attention_examples=2,
    model_width=16,
)
TRAINING = AssetSelection.all() - AssetSelection.assets("hpo_study") - AssetSelection.groups("screening")
GATED = {"drugban_checkpoint_losses_finite", "drugban_checkpoint_reproduces", "model_evaluation_auroc_floor"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FEATURE_TABLES = ("dataset_splits", "drug_graphs", "protein_encodings")


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on loopback with a SQLite store; its base URL once /health answers."""
    with running_mlflow(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


class Stage:
    """One materialisation of the training stage and where it wrote."""

    def __init__(self, base: Path, source: Path, instance: DagsterInstance, result: ExecuteInProcessResult) -> None:
        self.base, self.source, self.instance, self.result = base, source, instance, result

    def metadata(self, asset_name: str) -> dict[str, Any]:
        (event,) = [
            e for e in self.result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset_name
        ]
        return {k: v.value for k, v in event.materialization.metadata.items()}

    def value(self, asset_name: str) -> dict[str, Any]:
        return json.loads((self.base / "storage" / asset_name / "human.json").read_text())


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> Iterator[Stage]:
    base = tmp_path_factory.mktemp("training")
    source = base / "source"
    small_dataset(source)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [*all_assets, *all_asset_checks],
            selection=TRAINING,
            partition_key="human",
            resources=resources(base, source, PROFILE, tracking_uri=mlflow_server),
            instance=instance,
            raise_on_error=False,
        )
        yield Stage(base, source, instance, result)


def test_whole_stage_materialises_and_every_gate_passes(stage: Stage) -> None:
    assert stage.result.success
    materialised = {e.asset_key.to_user_string() for e in stage.result.get_asset_materialization_events()}
    assert {"drug_graphs", "protein_encodings", "drugban_checkpoint", "model_evaluation"} <= materialised
    checks = {e.check_name: e.passed for e in stage.result.get_asset_check_evaluations()}
    assert set(checks) >= GATED and all(checks.values()), checks

    checkpoint = stage.value("drugban_checkpoint")
    assert Path(checkpoint["checkpoint"]).is_file()
    assert checkpoint["checkpoint"].startswith(str(stage.base / "storage" / "drugban_checkpoint" / "human" / "random"))
    assert checkpoint["train_pairs"] == 128 and checkpoint["device"] == "cpu"
    assert len(checkpoint["history"]) == 2
    meta = stage.metadata("drugban_checkpoint")
    assert meta["best_epoch"] == checkpoint["best_epoch"] and meta["val_auroc"] == checkpoint["best_val_auroc"]
    assert {"wall_seconds", "device", "checkpoint", "mlflow_run"} <= set(meta)
    assert [row.data["epoch"] for row in meta["history"].records] == [1, 2]
    assert [row.data["train_loss"] for row in meta["history"].records] == [
        h["train_loss"] for h in checkpoint["history"]
    ]


def test_the_checkpoint_record_names_its_file_by_the_files_checkpoint_id(stage: Stage) -> None:
    checkpoint = stage.value("drugban_checkpoint")
    file_id = load_checkpoint(checkpoint["checkpoint"]).checkpoint_id
    assert len(file_id) == CHECKPOINT_ID_CHARS
    assert checkpoint["checkpoint_id"] == file_id == stage.metadata("drugban_checkpoint")["checkpoint_id"]
    evaluation = stage.value("model_evaluation")
    assert evaluation["checkpoint_id"] == file_id == stage.metadata("model_evaluation")["checkpoint_id"]
    assert CheckpointRecord.model_validate(checkpoint).history[0].epoch == 1  # the stored JSON is the record


def test_the_checkpoint_has_the_domain_reference_of_its_training_pairs(stage: Stage) -> None:
    checkpoint = CheckpointRecord.model_validate(stage.value("drugban_checkpoint"))
    assert checkpoint.domain_reference == uri_of(reference_path(checkpoint.checkpoint))
    assert stage.metadata("drugban_checkpoint")["domain_reference"] == checkpoint.domain_reference
    reference = reference_for_checkpoint(checkpoint.checkpoint)
    assert reference is not None
    storage = StorageResource(base_path=str(stage.base / "storage"))
    tables = {name: pd.read_parquet(stage.base / "storage" / name / "human.parquet") for name in FEATURE_TABLES}
    trained = load_pairs(*tables.values(), storage, "random", "train", PROFILE.max_train_pairs, PROFILE.seed)[0]
    assert len(trained) == checkpoint.train_pairs
    assert reference.drug_ids == tuple(sorted(set(trained["drug_id"])))
    assert reference.target_ids == tuple(sorted(set(trained["target_id"])))


def test_evaluation_is_the_pipelines_at_a_probability_threshold(stage: Stage) -> None:
    """model_evaluation is `ml.training.pipeline.evaluate_model` (as drugrepo train): metrics and threshold on probabilities."""
    evaluation = stage.value("model_evaluation")
    checkpoint = CheckpointRecord.model_validate(stage.value("drugban_checkpoint"))
    storage = StorageResource(base_path=str(stage.base / "storage"))
    tables = {name: pd.read_parquet(stage.base / "storage" / name / "human.parquet") for name in FEATURE_TABLES}
    val, test = (
        load_pairs(*tables.values(), storage, "random", split, PROFILE.max_eval_pairs, PROFILE.seed)[1]
        for split in ("val", "test")
    )
    expected = evaluate_model(load_checkpoint(checkpoint.checkpoint).model, val, test)
    assert 0.0 < expected.threshold < 1.0
    assert evaluation["threshold"] == evaluation["val"]["threshold"] == evaluation["test"]["threshold"]
    assert evaluation["threshold"] == pytest.approx(expected.threshold, abs=1e-6)
    for split in ("val", "test"):
        assert evaluation[split] == pytest.approx(expected.metrics.as_dict()[split], abs=1e-6)
    assert stage.metadata("model_evaluation")["threshold"] == evaluation["threshold"]


def test_evaluation_writes_curves_and_attention_pictures(stage: Stage) -> None:
    evaluation = stage.value("model_evaluation")
    assert 0.0 <= evaluation["test"]["auroc"] <= 1.0
    names = set(evaluation["pictures"])
    assert {"roc_test.png", "pr_test.png"} <= names
    assert len([n for n in names if n.startswith("attention_")]) == 2
    for path in evaluation["pictures"].values():
        assert Path(path).read_bytes().startswith(PNG_MAGIC)
    meta = stage.metadata("model_evaluation")
    assert meta["curves"].count("data:image/png;base64,") == 2
    assert meta["attention"].count("data:image/png;base64,") == 2
    assert "reliability_test.png" in names and meta["reliability"].count("data:image/png;base64,") == 1


def test_evaluation_shows_calibration_before_and_after_the_checkpoints_temperature(stage: Stage) -> None:
    checkpoint = CheckpointRecord.model_validate(stage.value("drugban_checkpoint"))
    temperature = load_checkpoint(checkpoint.checkpoint).temperature
    assert temperature.fitted  # training stored the temperature fitted on validation in best.pt
    calibration = stage.metadata("model_evaluation")["calibration"]
    assert set(calibration) == {"val", "test"}
    for split in ("val", "test"):
        row = calibration[split]
        assert row["temperature"] == temperature.value and row["fitted"] is True
        assert {"brier_raw", "brier_calibrated", "ece_raw", "ece_calibrated"} <= set(row)
        assert all(0.0 <= row[k] <= 1.0 for k in ("brier_raw", "brier_calibrated", "ece_raw", "ece_calibrated"))


def test_mlflow_run_has_params_epoch_metrics_checkpoint_and_working_links(stage: Stage, mlflow_server: str) -> None:
    checkpoint = stage.value("drugban_checkpoint")
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(checkpoint["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["dataset"] == "human" and params["strategy"] == "random" and params["profile"] == "tiny"
    assert params["train.epochs"] == "2" and params["train.lr"] == "5e-05" and params["train_pairs"] == "128"
    for metric in ("train_loss", "val_auroc"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, metric)] == [1, 2]
    assert "test_auroc" in run.data.metrics  # logged by model_evaluation into the same run
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")}
    assert artifacts == {"checkpoint/best.pt"}
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/roc_test.png" in evaluation
    downloaded = client.download_artifacts(run.info.run_id, "checkpoint/best.pt", str(stage.base))
    loaded = load_checkpoint(downloaded)
    assert loaded.provenance.epoch == checkpoint["best_epoch"]
    assert run.data.tags[CHECKPOINT_ID_TAG] == loaded.checkpoint_id == checkpoint["checkpoint_id"]

    run_url = stage.metadata("drugban_checkpoint")["mlflow_run"]
    assert run_url == checkpoint["mlflow_run_url"]
    assert run_url == f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert requests.get(run_url, timeout=10).status_code == 200
    api = requests.get(f"{mlflow_server}/api/2.0/mlflow/runs/get", params={"run_id": run.info.run_id}, timeout=10)
    assert api.status_code == 200 and api.json()["run"]["info"]["run_id"] == run.info.run_id

    tags = run.data.tags
    dagster_run_id = stage.result.run_id
    assert tags["dagster.run_id"] == dagster_run_id
    assert tags["dagster.asset_key"] == "drugban_checkpoint" and tags["dagster.partition"] == "human"
    assert re.fullmatch(r"http://localhost:3000/runs/[0-9a-f-]{36}", tags["dagster.run_url"])
    assert tags["dagster.run_url"].rsplit("/", 1)[1] == dagster_run_id
    dagster_run = stage.instance.get_run_by_id(dagster_run_id)
    assert dagster_run is not None and dagster_run.tags["dagster/partition"] == "human"


def _broken_checkpoint_asset(kind: str):
    """A stand-in `drugban_checkpoint` whose file is corrupt (truncated), has NaN weights, or is not the file
    its record's checkpoint id names."""

    @asset(
        name="drugban_checkpoint",
        partitions_def=dataset_partitions,
        group_name="training",
        io_manager_key="json_io_manager",
    )
    def drugban_checkpoint(context: AssetExecutionContext, storage: StorageResource) -> dict[str, Any]:
        good = json.loads((Path(storage.base_path) / "drugban_checkpoint" / "human.json").read_text())
        path = Path(storage.uri("broken", None, context.run.run_id)) / "best.pt"
        path.parent.mkdir(parents=True)
        if kind == "nan_weights":
            loaded = load_checkpoint(good["checkpoint"])
            model, extra = loaded.model, loaded.extra
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))
            extra.pop("checkpoint_id")
            save_checkpoint(str(path), model, **extra)
            return {**good, "checkpoint": str(path), "checkpoint_id": checkpoint_id(model)}
        if kind == "another_checkpoint_id":
            shutil.copyfile(good["checkpoint"], path)
            return {**good, "checkpoint": str(path), "checkpoint_id": "0" * CHECKPOINT_ID_CHARS}
        path.write_bytes(Path(good["checkpoint"]).read_bytes()[:4096])
        return {**good, "checkpoint": str(path)}

    return drugban_checkpoint


BROKEN_REASONS = {
    "nan_weights": "non-finite weights",
    "truncated_file": "does not load",
    "another_checkpoint_id": "is not the record's 0000000000000000",
}


@pytest.mark.parametrize("kind", sorted(BROKEN_REASONS))
def test_gate_refuses_a_broken_checkpoint_and_stops_evaluation(stage: Stage, tmp_path: Path, kind: str) -> None:
    base = tmp_path / "copy"
    shutil.copytree(stage.base / "storage", base / "storage")
    assets = [a for a in all_assets if "drugban_checkpoint" not in {k.to_user_string() for k in a.keys}]
    result = materialize(
        [*assets, _broken_checkpoint_asset(kind), *all_asset_checks],
        selection=AssetSelection.assets("drugban_checkpoint", "model_evaluation"),
        partition_key="human",
        resources=resources(base, stage.source, PROFILE),
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["drugban_checkpoint_reproduces"].passed
    assert BROKEN_REASONS[kind] in checks["drugban_checkpoint_reproduces"].description
    materialised = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "drugban_checkpoint" in materialised and "model_evaluation" not in materialised
    assert "model_evaluation_auroc_floor" not in checks
