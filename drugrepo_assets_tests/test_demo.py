"""`python -m drugrepo_assets.demo`: every dataset materialised, training included, into the instance at
DAGSTER_HOME (with the tiny profile here; `make demo` uses the demo profile)."""

from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from drugrepo_assets import demo
from drugrepo_assets.data.sources import DATASETS


@pytest.mark.slow(50)
def test_demo_materialises_every_dataset_into_the_persistent_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert demo.main(["--profile", "tiny", "--max-library", "150"]) == 0
    out = capsys.readouterr().out
    assert "all assets materialised, all checks passed" in out
    lines = out.splitlines()
    for dataset in DATASETS:
        (row,) = [line for line in lines if line.startswith(dataset + " ")]
        val_auroc, test_auroc = row.split()[-3:-1]
        assert 0.0 <= float(val_auroc) <= 1.0 and 0.0 <= float(test_auroc) <= 1.0
        for stage in ("raw_pairs", "validated_pairs", "rejected_pairs", "dataset_splits", "drug_graphs"):
            assert (tmp_path / "storage" / stage / f"{dataset}.parquet").is_file()
        for stage in ("drugban_checkpoint", "model_evaluation"):
            assert (tmp_path / "storage" / stage / f"{dataset}.json").is_file()
        (checkpoint,) = (tmp_path / "storage" / "drugban_checkpoint" / dataset / "random").glob("*/best.pt")
        assert f"  {dataset:<18} {checkpoint}" in lines
    assert f"{tmp_path}/storage/raw_pairs/<dataset>.parquet" in out
    assert sum("/#/experiments/" in line for line in lines) == len(DATASETS)
    assert f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow/mlflow.db" in out
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        runs = instance.get_runs(RunsFilter(job_name="materialize_all_job"))
        assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(DATASETS)
        assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
        screened = instance.get_runs(RunsFilter(job_name="screening_job"))
        assert sorted(run.tags["dagster/partition"] for run in screened) == sorted(DATASETS)
        assert {run.status for run in screened} == {DagsterRunStatus.SUCCESS}
    assert "screening: 150 molecules × 4 targets per checkpoint" in out
    for dataset in DATASETS:
        (root,) = (tmp_path / "storage" / "screening_scores" / dataset).iterdir()
        refused = len(pd.read_csv(root / "rejected.csv"))  # lone ions among the datasets' drugs: not candidates
        assert f"  {dataset}: {4 * (150 - refused)} pairs scored;" in out
        scores = pd.read_parquet(tmp_path / "storage" / "screening_scores" / f"{dataset}.parquet")
        assert (
            len(scores) == 4 * 25 and scores.groupby("target_id")["rank_in_target"].min().tolist() == [1] * 4
        )  # top_k 25 per target


def test_summary_lists_rows_per_stage_and_shipped_splits() -> None:
    report = demo.PartitionReport("human", "run-1", 1.25)
    report.rows = {"raw_pairs": 10, "validated_pairs": 7, "rejected_pairs": 3, "dataset_splits": 30}
    report.split_rows = {"random": 7, "cold_drug": 7, "cold_target": 7, "shipped_cold": 5}
    report.paths = {"raw_pairs": "/s/raw_pairs/human.parquet"}
    report.val_auroc, report.test_auroc = 0.71234, 0.65
    report.checkpoint, report.mlflow_run = "/s/checkpoints/human/random/r1/best.pt", "http://m/#/experiments/1/runs/a"
    lines = demo.summary([report], "mlflow ui ...").splitlines()
    assert lines[0].split() == [
        "dataset",
        "raw",
        "valid",
        "rejected",
        "random",
        "cold_drug",
        "cold_target",
        "shipped",
        "splits",
        "val",
        "AUROC",
        "test",
        "AUROC",
        "run",
        "s",
    ]
    assert lines[1].split() == ["human", "10", "7", "3", "7", "7", "7", "cold", "5", "0.712", "0.650", "1.2"]
    assert "  raw_pairs          /s/raw_pairs/<dataset>.parquet" in lines
    assert "  human              /s/checkpoints/human/random/r1/best.pt" in lines
    assert "                     http://m/#/experiments/1/runs/a" in lines
    assert lines[-1] == "MLflow UI: mlflow ui ..."


def test_demo_without_an_instance_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert demo.main() == 2


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(SystemExit):
        demo.main(["--profile", "huge"])
