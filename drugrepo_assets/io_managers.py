"""Parquet storage of DataFrame assets on a local folder or an S3 URI.

Each output lands at ``<base>/<asset key path...>/<partition>.parquet``. Writes are atomic: a local
file is written to a hidden temporary sibling and renamed over the final path; an object store
receives the whole file in one PUT, so readers never see half a table.
"""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any, Optional

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

_LOCAL_PROTOCOLS = ("", "file", "local")


class ParquetUPathIOManager(UPathIOManager):
    """Stores pandas DataFrames as Parquet files (without the index) under a `UPath` base."""

    extension: str = ".parquet"

    def dump_to_path(self, context: OutputContext, obj: pd.DataFrame, path: UPath) -> None:
        """Serialise ``obj`` fully in memory, then publish it at ``path`` in one atomic step."""
        if not isinstance(obj, pd.DataFrame):
            source = context.asset_key.to_user_string() if context.has_asset_key else "the output"
            raise TypeError(
                f"{type(self).__name__} stores pandas DataFrames; {source} is a {type(obj).__name__}"
            )
        data = obj.to_parquet(index=False)
        if path.protocol in _LOCAL_PROTOCOLS:
            _replace_atomically(Path(path.path), data)
        else:
            path.write_bytes(data)

    def load_from_path(self, context: InputContext, path: UPath) -> pd.DataFrame:
        """Read the Parquet file at ``path``; a missing file raises `FileNotFoundError`."""
        if path.protocol in _LOCAL_PROTOCOLS:
            return pd.read_parquet(Path(path.path))
        return pd.read_parquet(io.BytesIO(path.read_bytes()))

    def get_metadata(self, context: OutputContext, obj: pd.DataFrame) -> dict[str, MetadataValue]:
        """Row count of the stored table, shown by the UI as the asset's row count."""
        return {"dagster/row_count": MetadataValue.int(len(obj))}


def _replace_atomically(final: Path, data: bytes) -> None:
    """Write ``data`` to a temporary sibling of ``final`` and rename it over ``final``."""
    tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ParquetIOManager(ConfigurableIOManagerFactory):
    """I/O manager for DataFrame assets: Parquet files on a local folder or an ``s3://`` URI.

    Without ``base_path`` the files go to the Dagster instance's storage folder
    (``$DAGSTER_HOME/storage`` for a local instance).
    """

    base_path: Optional[str] = Field(
        default=None,
        description="Local folder or s3:// URI under which assets are stored; "
        "default: the instance storage folder ($DAGSTER_HOME/storage).",
    )
    s3_endpoint_url: Optional[str] = Field(
        default=None,
        description="S3 endpoint to use instead of AWS (MinIO, moto, ...); only for s3:// bases.",
    )

    def create_io_manager(self, context: InitResourceContext) -> ParquetUPathIOManager:
        """Build the UPath-backed manager for the configured (or the instance's) base path."""
        return ParquetUPathIOManager(base_path=self.base_upath(context))

    def base_upath(self, context: Optional[InitResourceContext] = None) -> UPath:
        """The base path as a `UPath`, with the S3 endpoint as storage option where set."""
        if self.base_path is not None:
            base = self.base_path
        elif context is not None and context.instance is not None:
            base = context.instance.storage_directory()
        else:
            raise ValueError("ParquetIOManager needs base_path when no Dagster instance is at hand")
        options: dict[str, Any] = {}
        if self.s3_endpoint_url and base.startswith("s3://"):
            options["endpoint_url"] = self.s3_endpoint_url
        return UPath(base, **options)
