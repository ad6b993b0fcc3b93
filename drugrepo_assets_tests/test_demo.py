"""`python -m drugrepo_assets.demo`: every dataset materialised into the instance at DAGSTER_HOME."""

from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from drugrepo_assets import demo
from drugrepo_assets.data.sources import DATASETS


def test_demo_materialises_every_dataset_into_the_persistent_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert demo.main() == 0
    out = capsys.readouterr().out
    assert "all assets materialised, all checks passed" in out
    for dataset in DATASETS:
        assert any(line.startswith(dataset) for line in out.splitlines())
        for stage in ("raw_pairs", "validated_pairs", "rejected_pairs", "dataset_splits"):
            assert (tmp_path / "storage" / stage / f"{dataset}.parquet").is_file()
    assert f"{tmp_path}/storage/raw_pairs/<dataset>.parquet" in out
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        runs = instance.get_runs(RunsFilter(job_name="materialize_all_job"))
        assert sorted(run.tags["dagster/partition"] for run in runs) == sorted(DATASETS)
        assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}


def test_summary_lists_rows_per_stage_and_shipped_splits() -> None:
    report = demo.PartitionReport("human", "run-1", 1.25)
    report.rows = {"raw_pairs": 10, "validated_pairs": 7, "rejected_pairs": 3, "dataset_splits": 30}
    report.split_rows = {"random": 7, "cold_drug": 7, "cold_target": 7, "shipped_cold": 5}
    report.paths = {"raw_pairs": "/s/raw_pairs/human.parquet"}
    lines = demo.summary([report]).splitlines()
    assert lines[0].split() == [
        "dataset", "raw", "valid", "rejected", "random", "cold_drug", "cold_target", "shipped", "splits", "run", "s",
    ]
    assert lines[1].split() == ["human", "10", "7", "3", "7", "7", "7", "cold", "5", "1.2"]
    assert "  raw_pairs        /s/raw_pairs/<dataset>.parquet" in lines


def test_demo_without_an_instance_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert demo.main() == 2
