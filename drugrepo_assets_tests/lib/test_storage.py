"""StorageResource: files of an asset partition on a local folder or S3 (moto on loopback), atomically."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, asset, materialize
from s3fs import S3FileSystem

from drugrepo_assets.files import remove_partial_writes, storage_path, write_local_atomic
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.location import Location
from drugrepo_assets_tests.data.servers import S3Bucket, moto_endpoint, s3_bucket

__all__ = ["moto_endpoint", "s3_bucket"]


def _resource(where: str, bucket: S3Bucket, tmp_path: Path) -> StorageResource:
    if where == "s3":
        return StorageResource(base_path=f"s3://{bucket.name}/files", s3_endpoint_url=bucket.endpoint_url)
    return StorageResource(base_path=str(tmp_path / "files"))


@pytest.mark.parametrize("where", ["s3", "local"])
def test_files_are_keyed_by_asset_key_partition_and_name(where: str, s3_bucket: S3Bucket, tmp_path: Path) -> None:
    store = _resource(where, s3_bucket, tmp_path)
    local = tmp_path / "best.pt"
    local.write_bytes(b"weights")
    uri = store.upload(local, AssetKey(["training", "drugban_checkpoint"]), "human")
    root = f"s3://{s3_bucket.name}/files" if where == "s3" else str(tmp_path / "files")
    assert uri == f"{root}/training/drugban_checkpoint/human/best.pt"
    assert store.uri("training/drugban_checkpoint", "human", "best.pt") == uri
    assert (
        store.write_bytes(b"{}", ["model_evaluation"], None, "metrics.json") == f"{root}/model_evaluation/metrics.json"
    )
    assert store.exists(uri) and store.read_bytes(uri) == b"weights"
    copy = store.local_copy(uri, tmp_path / "downloads")
    assert copy == tmp_path / "downloads" / "best.pt" and copy.read_bytes() == b"weights"
    assert store.is_local() == (where == "local")


def test_without_a_base_path_files_go_to_the_instance_storage(tmp_path: Path) -> None:
    seen: dict[str, str] = {}

    @asset
    def notes(storage: StorageResource) -> None:
        seen["uri"] = storage.write_bytes(b"x", "notes", None, "a.txt")

    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        assert materialize([notes], resources={"storage": StorageResource()}, instance=instance).success
        assert seen["uri"] == str(Path(instance.storage_directory()) / "notes" / "a.txt")
    assert Path(seen["uri"]).read_bytes() == b"x"


def test_without_an_endpoint_the_store_is_the_one_aws_endpoint_url_s3_names(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # fsspec keeps one S3FileSystem per set of arguments, and the variable is read when one connects.
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_bucket.endpoint_url)
    S3FileSystem.clear_instance_cache()
    try:
        store = StorageResource(base_path=f"s3://{s3_bucket.name}/files")
        uri = store.write_bytes(b"weights", "training/drugban_checkpoint", "human", "best.pt")
        assert store.read_bytes(uri) == b"weights"
    finally:
        S3FileSystem.clear_instance_cache()
    body = s3_bucket.client.get_object(Bucket=s3_bucket.name, Key="files/training/drugban_checkpoint/human/best.pt")
    assert body["Body"].read() == b"weights"


def test_an_endpoint_only_applies_to_s3_paths(tmp_path: Path) -> None:
    assert storage_path(Location.of(str(tmp_path), "http://127.0.0.1:9")).storage_options == {}
    s3 = storage_path(Location.of("s3://bucket/prefix", "http://127.0.0.1:9"))
    assert s3.storage_options["endpoint_url"] == "http://127.0.0.1:9"


def test_a_local_write_that_fails_midway_leaves_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "best.pt"
    write_local_atomic(target, lambda handle: handle.write(b"first"))

    def half_then_fail(handle) -> None:
        handle.write(b"half of the second")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_local_atomic(target, half_then_fail)
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_partial_writes_of_killed_writers_are_removed_only_for_their_file(tmp_path: Path) -> None:
    left = [tmp_path / ".last.pt.0123abcd.tmp", tmp_path / ".last.pt.4567ef.tmp"]
    others = [tmp_path / "last.pt", tmp_path / ".best.pt.89ab.tmp", tmp_path / ".last.pt.keep"]
    for path in left + others:
        path.write_bytes(b"x")
    assert remove_partial_writes(tmp_path / "last.pt") == sorted(left)
    assert sorted(tmp_path.iterdir()) == sorted(others)
    assert remove_partial_writes(tmp_path / "missing" / "last.pt") == []
