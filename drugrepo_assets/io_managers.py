"""I/O managers for every kind of asset value, on a local folder or an ``s3://`` URI.

- `ParquetIOManager`: pandas DataFrames at ``<base>/<asset key...>/<partition>.parquet``.
- `JsonIOManager`: small JSON-able records at ``<base>/<asset key...>/<partition>.json``.
- `FileIOManager`: a local file or folder (`pathlib.Path`: a checkpoint, feature arrays, a report)
  uploaded under ``<base>/<asset key...>/<partition>/<version>/``; loading gives a local `Path`.

Every write is atomic (see `drugrepo_assets.storage`): tables and records are serialised fully in
memory and then published in one step, and a file-valued output becomes visible only when its
manifest ``<partition>.files.json`` (written last, atomically) names the new version.
"""

from __future__ import annotations

import io
import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import (
    ConfigurableIOManagerFactory,
    InitResourceContext,
    InputContext,
    MetadataValue,
    OutputContext,
    UPathIOManager,
)
from pydantic import Field
from upath import UPath

from drugrepo_assets.files import download_atomic, is_local, storage_path, upload_file_atomic, write_bytes_atomic


class _StorageUPathIOManager(UPathIOManager):
    """A `UPathIOManager` that creates no "directories" on object stores (s3fs may create buckets)."""

    def make_directory(self, path: UPath) -> None:
        """Create local folders only; object stores have none."""
        if is_local(path):
            path.mkdir(parents=True, exist_ok=True)


class ParquetUPathIOManager(_StorageUPathIOManager):
    """Stores pandas DataFrames as Parquet files (without the index) under a `UPath` base."""

    extension: str = ".parquet"

    def dump_to_path(self, context: OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        """Serialise ``obj`` fully in memory, then publish it at ``path`` in one atomic step."""
        if not isinstance(obj, pd.DataFrame):
            source = context.asset_key.to_user_string() if context.has_asset_key else "the output"
            raise TypeError(f"{type(self).__name__} stores pandas DataFrames; {source} is a {type(obj).__name__}")
        write_bytes_atomic(path, obj.to_parquet(index=False))

    def load_from_path(self, context: InputContext, path: UPath) -> pd.DataFrame:
        """Read the Parquet file at ``path``; a missing file raises `FileNotFoundError`."""
        if is_local(path):
            return pd.read_parquet(Path(path.path))
        return pd.read_parquet(io.BytesIO(path.read_bytes()))

    def get_metadata(self, context: OutputContext, obj: pd.DataFrame) -> dict[str, MetadataValue]:
        """Row count of the stored table, shown by the UI as the asset's row count."""
        return {"dagster/row_count": MetadataValue.int(len(obj))}


class JsonUPathIOManager(_StorageUPathIOManager):
    """Stores small JSON-able records (a checkpoint's URI and metrics, a study's best parameters)."""

    extension: str = ".json"

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        """Serialise ``obj`` as indented JSON (a TypeError for anything JSON cannot hold) and publish it."""
        write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True, allow_nan=True).encode())

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        """Parse the JSON file at ``path``; a missing file raises `FileNotFoundError`."""
        return json.loads(path.read_bytes())


class FileUPathIOManager(_StorageUPathIOManager):
    """Stores a local file or folder (a `Path` output) as a new version, committed by its manifest.

    ``<partition>.files.json`` names the version folder and its files; it is written last, so a
    failed upload leaves the previous version in place. Old versions are kept (readers may hold
    them); expire them with a bucket lifecycle rule or by age.
    """

    extension: str = ".files.json"

    def dump_to_path(self, context: OutputContext, obj: Path | str, path: UPath) -> None:
        """Upload every file of ``obj`` under a fresh version folder, then publish the manifest."""
        source = Path(obj) if isinstance(obj, (str, Path)) else None
        if source is None or not source.exists():
            raise TypeError(f"{type(self).__name__} stores an existing local file or folder; got {obj!r}")
        files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        relative = [p.relative_to(source).as_posix() for p in files] if source.is_dir() else [source.name]
        version = uuid.uuid4().hex
        folder = _version_folder(path, version)
        for local, rel in zip(files, relative):
            upload_file_atomic(local, folder.joinpath(*rel.split("/")))
        manifest = {
            "version": version,
            "kind": "folder" if source.is_dir() else "file",
            "files": relative,
            "bytes": sum(p.stat().st_size for p in files),
        }
        write_bytes_atomic(path, json.dumps(manifest, indent=2).encode())

    def load_from_path(self, context: InputContext, path: UPath) -> Path:
        """The stored file or folder as a local `Path` (a downloaded copy when the store is remote)."""
        manifest = json.loads(path.read_bytes())
        folder = _version_folder(path, manifest["version"])
        if is_local(folder):
            root = Path(folder.path)
        else:
            root = Path(tempfile.mkdtemp(prefix="drugrepo-"))
            for rel in manifest["files"]:
                download_atomic(folder.joinpath(*rel.split("/")), root.joinpath(*rel.split("/")))
        return root / manifest["files"][0] if manifest["kind"] == "file" else root

    def get_metadata(self, context: OutputContext, obj: Path | str) -> dict[str, MetadataValue]:
        """How many files the output holds."""
        source = Path(obj)
        count = sum(1 for p in source.rglob("*") if p.is_file()) if source.is_dir() else 1
        return {"files": MetadataValue.int(count)}


def _version_folder(manifest: UPath, version: str) -> UPath:
    """``<asset key...>/<partition>/<version>`` beside ``<asset key...>/<partition>.files.json``."""
    return manifest.parent / manifest.name[: -len(FileUPathIOManager.extension)] / version


class _StorageIOManagerFactory(ConfigurableIOManagerFactory):
    """Configuration shared by the I/O managers: where the values live."""

    base_path: str | None = Field(
        default=None,
        description="Local folder or s3:// URI under which assets are stored; "
        "default: the instance storage folder ($DAGSTER_HOME/storage).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint to use instead of AWS (MinIO, moto, ...); only for s3:// bases.",
    )

    def base_upath(self, context: InitResourceContext | None = None) -> UPath:
        """The base path as a `UPath`, with the S3 endpoint as storage option where set."""
        if self.base_path is not None:
            base = self.base_path
        elif context is not None and context.instance is not None:
            base = context.instance.storage_directory()
        else:
            raise ValueError(f"{type(self).__name__} needs base_path when no Dagster instance is at hand")
        return storage_path(base, self.s3_endpoint_url)


class ParquetIOManager(_StorageIOManagerFactory):
    """I/O manager for DataFrame assets: Parquet files on a local folder or an ``s3://`` URI.

    Without ``base_path`` the files go to the Dagster instance's storage folder
    (``$DAGSTER_HOME/storage`` for a local instance).
    """

    def create_io_manager(self, context: InitResourceContext) -> ParquetUPathIOManager:
        """Build the UPath-backed manager for the configured (or the instance's) base path."""
        return ParquetUPathIOManager(base_path=self.base_upath(context))


class JsonIOManager(_StorageIOManagerFactory):
    """I/O manager for small JSON-able values, at ``<base>/<asset key>/<partition>.json``.

    Large things (checkpoints, arrays) are files written by the assets; their values here are the
    files' URIs and a few numbers, so every environment loads the same plain record.
    """

    def create_io_manager(self, context: InitResourceContext) -> JsonUPathIOManager:
        """Build the UPath-backed JSON manager for the configured (or the instance's) base path."""
        return JsonUPathIOManager(base_path=self.base_upath(context))


class FileIOManager(_StorageIOManagerFactory):
    """I/O manager for file-valued assets: the asset returns a local `Path`, inputs get a local `Path`."""

    def create_io_manager(self, context: InitResourceContext) -> FileUPathIOManager:
        """Build the UPath-backed file manager for the configured (or the instance's) base path."""
        return FileUPathIOManager(base_path=self.base_upath(context))
