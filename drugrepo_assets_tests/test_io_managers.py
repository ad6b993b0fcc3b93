"""ParquetIOManager: partitioned round trips keyed by asset key and partition, atomic writes."""

import os
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    DagsterInstance,
    StaticPartitionsDefinition,
    asset,
    build_output_context,
    materialize,
)
from upath import UPath

from drugrepo_assets.io_managers import ParquetIOManager, ParquetUPathIOManager

parts = StaticPartitionsDefinition(["alpha", "beta"])


@asset(partitions_def=parts, key_prefix=["stage"])
def table(context: AssetExecutionContext) -> pd.DataFrame:
    return pd.DataFrame({"name": [context.partition_key, "x"], "label": pd.Series([0, 1], dtype="int8")})


@asset(partitions_def=parts, key_prefix=["stage"], ins={"table": AssetIn(["stage", "table"])})
def doubled(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, table], ignore_index=True)


def _materialize(base: str, partition: str):
    return materialize(
        [table, doubled],
        partition_key=partition,
        resources={"io_manager": ParquetIOManager(base_path=base)},
        instance=DagsterInstance.ephemeral(),
    )


def test_partitioned_round_trip_on_a_local_folder(tmp_path: Path) -> None:
    for partition in ("alpha", "beta"):
        result = _materialize(str(tmp_path), partition)
        assert result.success
    stored = pd.read_parquet(tmp_path / "stage" / "table" / "beta.parquet")
    assert stored["name"].tolist() == ["beta", "x"]
    assert str(stored["label"].dtype) == "int8"
    assert len(pd.read_parquet(tmp_path / "stage" / "doubled" / "alpha.parquet")) == 4
    assert sorted(p.name for p in (tmp_path / "stage" / "table").iterdir()) == [
        "alpha.parquet",
        "beta.parquet",
    ]
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey(["stage", "doubled"])]
    metadata = event.materialization.metadata
    assert metadata["dagster/row_count"].value == 4
    assert metadata["path"].value == str(tmp_path / "stage" / "doubled" / "beta.parquet")


def test_round_trip_on_an_fsspec_object_store() -> None:
    base = "memory://drugrepo-test/io"
    assert _materialize(base, "alpha").success
    stored = UPath(base) / "stage" / "doubled" / "alpha.parquet"
    assert stored.exists()
    UPath(base).fs.rm("/drugrepo-test", recursive=True)


def _manager(base: Path) -> ParquetUPathIOManager:
    return ParquetUPathIOManager(base_path=UPath(base))


def _failing_fsync(fd: int) -> None:
    raise OSError(28, "No space left on device")


def test_a_failed_write_leaves_no_file_at_the_final_path(tmp_path: Path, monkeypatch) -> None:
    final = UPath(tmp_path / "table.parquet")
    monkeypatch.setattr(os, "fsync", _failing_fsync)
    with pytest.raises(OSError, match="No space left"):
        _manager(tmp_path).dump_to_path(build_output_context(), pd.DataFrame({"a": [1, 2]}), final)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_version(tmp_path: Path, monkeypatch) -> None:
    final = UPath(tmp_path / "table.parquet")
    manager = _manager(tmp_path)
    manager.dump_to_path(build_output_context(), pd.DataFrame({"a": [1, 2]}), final)
    monkeypatch.setattr(os, "fsync", _failing_fsync)
    with pytest.raises(OSError):
        manager.dump_to_path(build_output_context(), pd.DataFrame({"a": [7, 8, 9]}), final)
    assert [p.name for p in tmp_path.iterdir()] == ["table.parquet"]
    assert pd.read_parquet(tmp_path / "table.parquet")["a"].tolist() == [1, 2]


def test_only_dataframes_are_stored(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="stores pandas DataFrames"):
        _manager(tmp_path).dump_to_path(
            build_output_context(asset_key=AssetKey("t")), {"a": 1}, UPath(tmp_path / "t.parquet")
        )
    assert list(tmp_path.iterdir()) == []
