"""I/O managers for every kind of asset value, on a local folder or an ``s3://`` URI.

- `ParquetIOManager`: pandas DataFrames at ``<base>/<asset key...>/<partition>.parquet``.
- `JsonIOManager`: small records at ``<base>/<asset key...>/<partition>.json``: a pydantic model
  (`drugrepo_assets.lib.records`) or anything JSON holds. Large things (checkpoints, pictures) are files the
  assets write under `StorageResource`; records name them by URI.

Every write is atomic (see `drugrepo_assets.files`): a value is serialised fully in memory and then
published in one step, so a failed write leaves the previous version in place.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, get_args, get_origin

import pandas as pd
from dagster import (
    ConfigurableIOManagerFactory,
    InitResourceContext,
    InputContext,
    MetadataValue,
    OutputContext,
    UPathIOManager,
)
from pydantic import BaseModel, Field, TypeAdapter
from upath import UPath

from drugrepo_assets.files import is_local, write_bytes_atomic
from drugrepo_assets.lib.storage import S3Endpoint


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


def _record_class(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an input is annotated with, or that of its items (a fan-in collects one record per output)."""
    if get_origin(annotation) is list:
        annotation = next(iter(get_args(annotation)), None)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


class JsonUPathIOManager(_StorageUPathIOManager):
    """Stores small records: pydantic models (`drugrepo_assets.lib.records`) and plain JSON values.

    A model is stored as ``model_dump(mode="json")``; an input annotated with a model class (or a list of
    them) is validated back into it, any other input gets the plain JSON value.
    """

    extension: str = ".json"

    def dump_to_path(self, context: OutputContext, obj: Any, path: UPath) -> None:
        """Serialise ``obj`` as indented JSON (a TypeError for anything JSON cannot hold) and publish it."""
        value = obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj
        write_bytes_atomic(path, json.dumps(value, indent=2, sort_keys=True, allow_nan=True).encode())

    def load_from_path(self, context: InputContext, path: UPath) -> Any:
        """The JSON at ``path``, validated into the input's record class if it has one; missing: `FileNotFoundError`."""
        value = json.loads(path.read_bytes())
        annotation = context.dagster_type.typing_type
        record = _record_class(annotation)
        if record is None:
            return value
        return (
            TypeAdapter(annotation).validate_python(value) if isinstance(value, list) else record.model_validate(value)
        )


class _StorageIOManagerFactory(S3Endpoint, ConfigurableIOManagerFactory):
    """Configuration shared by the I/O managers: where the values live."""

    base_path: str | None = Field(
        default=None,
        description="Local folder or s3:// URI under which assets are stored; "
        "default: the instance storage folder ($DAGSTER_HOME/storage).",
    )

    def base_upath(self, context: InitResourceContext | None = None) -> UPath:
        """The base path as a `UPath`, with the S3 endpoint as storage option where set."""
        if self.base_path is not None:
            base = self.base_path
        elif context is not None and context.instance is not None:
            base = context.instance.storage_directory()
        else:
            raise ValueError(f"{type(self).__name__} needs base_path when no Dagster instance is at hand")
        return self.path_of(base)


class ParquetIOManager(_StorageIOManagerFactory):
    """I/O manager for DataFrame assets: Parquet files on a local folder or an ``s3://`` URI.

    Without ``base_path`` the files go to the Dagster instance's storage folder
    (``$DAGSTER_HOME/storage`` for a local instance).
    """

    def create_io_manager(self, context: InitResourceContext) -> ParquetUPathIOManager:
        """Build the UPath-backed manager for the configured (or the instance's) base path."""
        return ParquetUPathIOManager(base_path=self.base_upath(context))


class JsonIOManager(_StorageIOManagerFactory):
    """I/O manager for records (`drugrepo_assets.lib.records`) and small JSON values, at ``<base>/<asset key>/<partition>.json``.

    Large things (checkpoints, pictures) are files written by the assets; records hold their URIs and a
    few numbers, so every environment and both code locations load the same record.
    """

    def create_io_manager(self, context: InitResourceContext) -> JsonUPathIOManager:
        """Build the UPath-backed JSON manager for the configured (or the instance's) base path."""
        return JsonUPathIOManager(base_path=self.base_upath(context))
