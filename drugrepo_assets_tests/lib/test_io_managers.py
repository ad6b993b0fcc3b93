"""ParquetIOManager: partitioned round trips keyed by asset key and partition, atomic writes; JsonIOManager:
typed records (pydantic) stored as plain JSON and validated back into the class an input is annotated with."""

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    DagsterInstance,
    DynamicOut,
    DynamicOutput,
    Out,
    StaticPartitionsDefinition,
    asset,
    build_output_context,
    graph_asset,
    materialize,
    op,
)
from pydantic import BaseModel
from upath import UPath

from drugrepo_assets.lib.io_managers import JsonIOManager, ParquetIOManager, ParquetUPathIOManager
from drugrepo_assets.lib.records import Record
from drugrepo_assets.ml.training.train import EpochRecord

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


class Trained(Record):
    """A record with a nested dataclass and a float that may be NaN, like the checkpoint record."""

    name: str
    loss: float
    history: list[EpochRecord]


NAN_EPOCH = EpochRecord(epoch=1, train_loss=float("nan"), val_auroc=0.5, val_auprc=0.5, seconds=1.0, pairs_per_s=2.0)


@asset(io_manager_key="json_io_manager")
def trained() -> Trained:
    return Trained(name="m", loss=float("inf"), history=[NAN_EPOCH])


@asset(io_manager_key="json_io_manager")
def typed_reader(trained: Trained) -> dict:
    assert isinstance(trained, Trained) and isinstance(trained.history[0], EpochRecord)
    return {
        "name": trained.name,
        "loss_is_inf": math.isinf(trained.loss),
        "nan": math.isnan(trained.history[0].train_loss),
    }


@asset(io_manager_key="json_io_manager")
def plain_reader(trained: dict) -> dict:
    assert type(trained) is dict
    return {"keys": sorted(trained)}


def _json(base: Path) -> dict:
    return {"json_io_manager": JsonIOManager(base_path=str(base))}


def test_a_record_is_plain_json_on_disk_and_its_class_again_for_a_typed_input(tmp_path: Path) -> None:
    result = materialize([trained, typed_reader, plain_reader], resources=_json(tmp_path))
    assert result.success
    stored = (tmp_path / "trained.json").read_text()
    assert '"train_loss": NaN' in stored and '"loss": Infinity' in stored  # non-finite floats survive, not null
    assert json.loads((tmp_path / "typed_reader.json").read_text()) == {"name": "m", "loss_is_inf": True, "nan": True}
    assert json.loads((tmp_path / "plain_reader.json").read_text()) == {"keys": ["history", "loss", "name"]}


def test_an_invalid_stored_record_fails_the_typed_input_naming_the_field(tmp_path: Path) -> None:
    assert materialize([trained], resources=_json(tmp_path)).success
    (tmp_path / "trained.json").write_text(json.dumps({"name": "m", "loss": "high", "history": []}))
    result = materialize(
        [trained, typed_reader], selection=[typed_reader], resources=_json(tmp_path), raise_on_error=False
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "loss" in str(failure.step_failure_data.error)


class Part(BaseModel):
    number: int


@op(out=DynamicOut(Part, io_manager_key="json_io_manager"))
def parts_out():
    for i in range(3):
        yield DynamicOutput(Part(number=i), mapping_key=f"p{i}")


@op(out=Out(io_manager_key="json_io_manager"))
def total(parts: list[Part]) -> dict:
    assert all(isinstance(p, Part) for p in parts), [type(p) for p in parts]
    return {"total": sum(p.number for p in parts)}


@graph_asset
def summed() -> dict:
    return total(parts_out().collect())


def test_a_fan_in_of_records_gets_each_as_its_class(tmp_path: Path) -> None:
    assert materialize([summed], resources=_json(tmp_path)).success
    assert json.loads((tmp_path / "summed.json").read_text()) == {"total": 3}
