"""Every kind of stored value round-trips through S3: moto's server on loopback, real HTTP, s3fs/boto3."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    StaticPartitionsDefinition,
    asset,
    build_output_context,
    materialize,
)
from pandas.testing import assert_frame_equal

from drugrepo_assets import files
from drugrepo_assets.defs.ingest.raw import raw_pairs
from drugrepo_assets.defs.ingest.splits import dataset_splits
from drugrepo_assets.defs.ingest.validated import validated_and_rejected_pairs
from drugrepo_assets.files import storage_path
from drugrepo_assets.lib.io_managers import JsonIOManager, ParquetIOManager, ParquetUPathIOManager
from drugrepo_assets.lib.records import Record
from drugrepo_assets.lib.resources import DataSourceResource, SplitSettings
from drugrepo_assets.location import Location
from drugrepo_assets_tests.data.servers import S3Bucket, moto_endpoint, s3_bucket
from drugrepo_assets_tests.samples import write_sample_source

__all__ = ["moto_endpoint", "s3_bucket"]

DATA_STAGE = [raw_pairs, validated_and_rejected_pairs, dataset_splits]
DATA_KEYS = ["dataset_splits", "raw_pairs", "rejected_pairs", "validated_pairs"]
SOURCE_ROWS = 80


@pytest.fixture
def source_root(tmp_path: Path) -> Path:
    """A source folder holding the first rows of the bundled human/random/train.csv, under its own name."""
    return write_sample_source(tmp_path / "source", SOURCE_ROWS)


def _keys(bucket: S3Bucket, prefix: str = "") -> list[str]:
    listing = bucket.client.list_objects_v2(Bucket=bucket.name, Prefix=prefix)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def _object_table(bucket: S3Bucket, key: str) -> pd.DataFrame:
    body = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read()
    return pd.read_parquet(io.BytesIO(body))


def _data_resources(bucket: S3Bucket, source_root: Path) -> dict:
    return {
        "io_manager": ParquetIOManager(base_path=f"s3://{bucket.name}/assets", s3_endpoint_url=bucket.endpoint_url),
        "data_source": DataSourceResource(root=str(source_root)),
        "split_settings": SplitSettings(seed=0),
    }


def test_the_data_stage_materialises_on_s3_and_reads_back(s3_bucket: S3Bucket, source_root: Path) -> None:
    resources = _data_resources(s3_bucket, source_root)
    first = materialize(DATA_STAGE, partition_key="human", resources=resources, instance=DagsterInstance.ephemeral())
    assert first.success
    assert _keys(s3_bucket) == [f"assets/{name}/human.parquet" for name in DATA_KEYS]
    stored = {name: _object_table(s3_bucket, f"assets/{name}/human.parquet") for name in DATA_KEYS}
    for name in DATA_KEYS:
        assert_frame_equal(stored[name], first.asset_value(AssetKey(name)).reset_index(drop=True))
    assert len(stored["raw_pairs"]) == SOURCE_ROWS
    assert len(stored["validated_pairs"]) + len(stored["rejected_pairs"]) == SOURCE_ROWS
    assert set(stored["dataset_splits"]["strategy"]) >= {"random", "cold_drug", "cold_target"}

    again = materialize(
        DATA_STAGE,
        partition_key="human",
        resources=resources,
        instance=DagsterInstance.ephemeral(),
        selection=[dataset_splits],
    )
    assert again.success
    assert_frame_equal(_object_table(s3_bucket, "assets/dataset_splits/human.parquet"), stored["dataset_splits"])


parts = StaticPartitionsDefinition(["alpha", "beta"])


class Stored(Record):
    """A typed record, as the training and serving assets exchange."""

    partition: str
    auroc: float
    uri: str


@asset(partitions_def=parts, io_manager_key="json_io_manager")
def record(context) -> Stored:
    return Stored(partition=context.partition_key, auroc=0.75, uri="s3://bucket/key")


@asset(partitions_def=parts, io_manager_key="json_io_manager")
def plain(context) -> dict:
    return {"partition": context.partition_key, "values": [1, 2.5, None]}


@asset(partitions_def=parts, io_manager_key="json_io_manager")
def consumer(record: Stored, plain: dict) -> dict:
    return {"record": record.model_dump(), "record_type": type(record).__name__, "plain": plain}


@pytest.mark.parametrize("where", ["s3", "local"])
def test_typed_and_plain_records_round_trip(where: str, s3_bucket: S3Bucket, tmp_path: Path) -> None:
    base = f"s3://{s3_bucket.name}/store" if where == "s3" else str(tmp_path / "store")
    endpoint = s3_bucket.endpoint_url if where == "s3" else None
    resources = {"json_io_manager": JsonIOManager(base_path=base, s3_endpoint_url=endpoint)}
    assets = [record, plain, consumer]
    assert materialize(assets, partition_key="beta", resources=resources, instance=DagsterInstance.ephemeral()).success
    reread = materialize(
        assets, partition_key="beta", resources=resources, instance=DagsterInstance.ephemeral(), selection=[consumer]
    )
    assert reread.success
    value = reread.asset_value("consumer")
    assert value == {
        "record": {"partition": "beta", "auroc": 0.75, "uri": "s3://bucket/key"},
        "record_type": "Stored",
        "plain": {"partition": "beta", "values": [1, 2.5, None]},
    }
    assert json.loads(storage_path(Location.of(f"{base}/consumer/beta.json", endpoint)).read_bytes()) == value
    assert json.loads(storage_path(Location.of(f"{base}/record/beta.json", endpoint)).read_bytes()) == value["record"]
    if where == "s3":
        assert _keys(s3_bucket, "store/") == [f"store/{name}/beta.json" for name in ("consumer", "plain", "record")]


def test_a_table_that_fails_mid_serialisation_leaves_the_stored_version(s3_bucket: S3Bucket) -> None:
    base = storage_path(Location.of(f"s3://{s3_bucket.name}/t", s3_bucket.endpoint_url))
    manager = ParquetUPathIOManager(base_path=base)
    final = base / "table.parquet"
    manager.dump_to_path(build_output_context(), pd.DataFrame({"a": [1, 2]}), final)
    broken = pd.DataFrame({"a": [1, "two", 3.5, object()]})
    with pytest.raises(pa.ArrowInvalid):
        manager.dump_to_path(build_output_context(), broken, final)
    assert _keys(s3_bucket) == ["t/table.parquet"]
    assert _object_table(s3_bucket, "t/table.parquet")["a"].tolist() == [1, 2]


def test_an_upload_cut_off_mid_transfer_leaves_no_object(
    s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from s3fs import S3FileSystem

    big = tmp_path / "checkpoint.pt"
    big.write_bytes(b"\x01" * (11 * 2**20))
    original = S3FileSystem._call_s3
    parts_sent: list[int] = []

    async def cut_after_first_part(self, method, *args, **kwargs):
        if method == "upload_part":
            parts_sent.append(kwargs["PartNumber"])
            if len(parts_sent) > 1:
                raise ConnectionResetError("connection reset by peer")
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(S3FileSystem, "_call_s3", cut_after_first_part)
    target = storage_path(Location.of(f"s3://{s3_bucket.name}/ckpt/best.pt", s3_bucket.endpoint_url))
    with pytest.raises(ConnectionResetError):
        files.upload_file_atomic(big, target, part_size=5 * 2**20)
    assert parts_sent[:1] == [1] and len(parts_sent) >= 2
    assert _keys(s3_bucket) == []
    assert s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []
    monkeypatch.setattr(S3FileSystem, "_call_s3", original)
    files.upload_file_atomic(big, target, part_size=5 * 2**20)
    assert (
        s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="ckpt/best.pt")["ContentLength"] == big.stat().st_size
    )


TERMINATED_UPLOADER = """
import signal, sys
from drugrepo_assets.files import put_multipart, storage_path
from drugrepo_assets.location import Location

def terminate(*_):
    raise KeyboardInterrupt  # how a run reacts to SIGTERM: Dagster raises an interrupt (a BaseException)

signal.signal(signal.SIGTERM, terminate)
with open(sys.argv[3], "rb") as source:
    try:
        put_multipart(source, storage_path(Location.of(sys.argv[1], sys.argv[2])), 5 * 2**20)
    except KeyboardInterrupt:
        sys.exit(3)
"""


def test_a_terminated_run_leaves_no_multipart_upload_behind(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    """SIGTERM while a checkpoint goes up in parts (its source still being read): the upload is aborted."""
    import os
    import signal
    import subprocess
    import sys
    import time

    fifo = tmp_path / "checkpoint.fifo"
    os.mkfifo(fifo)
    uri = f"s3://{s3_bucket.name}/ckpt/best.pt"
    child = subprocess.Popen([sys.executable, "-c", TERMINATED_UPLOADER, uri, s3_bucket.endpoint_url, str(fifo)])
    try:
        with open(fifo, "wb") as writer:
            writer.write(b"\x01" * (6 * 2**20))  # returns once the child has read it: part 1 and a second part begun
            writer.flush()

            def uploaded_parts() -> int:
                uploads = s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", [])
                if not uploads:
                    return 0
                listing = s3_bucket.client.list_parts(
                    Bucket=s3_bucket.name, Key="ckpt/best.pt", UploadId=uploads[0]["UploadId"]
                )
                return len(listing.get("Parts", []))

            deadline = time.monotonic() + 120  # a condition waited on, not a speed: generous for a loaded machine
            while uploaded_parts() < 1:
                assert child.poll() is None and time.monotonic() < deadline, "the first part never reached S3"
                time.sleep(0.05)
            child.send_signal(signal.SIGTERM)  # the child is blocked reading part 2
            assert child.wait(timeout=120) == 3
    finally:
        child.kill()
    assert s3_bucket.client.list_multipart_uploads(Bucket=s3_bucket.name).get("Uploads", []) == []
    assert _keys(s3_bucket) == []
