"""Where stored values live: `StorageResource`, a local folder or an ``s3://`` URI (AWS, MinIO or any
S3-compatible store), over the atomic file functions of `drugrepo_assets.files`; `S3Endpoint`, the one
S3 endpoint setting of every resource that reaches S3."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from dagster import AssetKey, Config, ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from upath import UPath

from drugrepo_assets.files import (
    download_atomic,
    is_local,
    storage_path,
    upload_file_atomic,
    uri_of,
    write_bytes_atomic,
)
from drugrepo_assets.location import Location

AssetKeyLike = AssetKey | str | Sequence[str]


def asset_key_parts(asset_key: AssetKeyLike) -> list[str]:
    """The path components of an asset key given as `AssetKey`, ``"a/b"`` string or sequence."""
    if isinstance(asset_key, AssetKey):
        return list(asset_key.path)
    if isinstance(asset_key, str):
        return list(AssetKey.from_user_string(asset_key).path)
    return list(asset_key)


class S3Endpoint(Config):
    """The S3 endpoint setting, defined once for every resource that reads or writes ``s3://`` locations.

    Left unset, s3fs resolves the endpoint as boto3 does: ``AWS_ENDPOINT_URL_S3`` (then
    ``AWS_ENDPOINT_URL``), else AWS. That variable is how a deployment points everything at one store
    (MinIO in staging): these resources, Dagster's S3 compute logs and MLflow's artifacts alike. The
    field is for a resource whose store is another one than the process's (a data source on a
    partner's bucket; tests on a local S3 server).
    """

    s3_endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO, moto, ...) for s3:// locations; "
        "default: $AWS_ENDPOINT_URL_S3, else AWS.",
    )

    def location_of(self, uri: str) -> Location:
        """The `Location` of a local path, URL or ``s3://`` URI, on this resource's S3 endpoint."""
        return Location.of(uri, self.s3_endpoint_url)

    def path_of(self, uri: str) -> UPath:
        """`UPath` of a local path or ``s3://`` URI, on this resource's S3 endpoint."""
        return storage_path(self.location_of(uri))


class InstanceHome(ConfigurableResource):
    """A resource whose default lives in a folder of the Dagster instance (``$DAGSTER_HOME/<name>``): the
    instance's folder is remembered at setup, for the defaults to be resolved under it."""

    _home: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Remember the instance folder for the defaults under it."""
        if context.instance is not None:
            self._home = context.instance.root_directory

    def instance_folder(self, name: str, setting: str) -> Path:
        """``$DAGSTER_HOME/<name>``; ValueError naming the ``setting`` to give when no Dagster instance is at hand."""
        if self._home is None:
            raise ValueError(f"{type(self).__name__} needs {setting} when no Dagster instance is at hand")
        return Path(self._home) / name


class StorageResource(S3Endpoint, ConfigurableResource):
    """Files of file-valued assets (checkpoints, feature arrays, reports) on a local folder or S3.

    A file lives at ``<base>/<asset key path...>/<partition>/<filename>`` (no partition folder for
    unpartitioned assets). Writes are atomic; URIs returned here can be stored in asset values.
    """

    base_path: str | None = Field(
        default=None,
        description="Local folder or s3:// URI; default: the instance storage folder ($DAGSTER_HOME/storage).",
    )
    _instance_base: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Fall back on the instance's storage folder when no base path is configured."""
        if self.base_path is None and context.instance is not None:
            self._instance_base = context.instance.storage_directory()

    def base(self) -> UPath:
        """The base folder as a `UPath`."""
        base = self.base_path or self._instance_base
        if base is None:
            raise ValueError("StorageResource needs base_path when no Dagster instance is at hand")
        return self.path_of(base)

    def is_local(self) -> bool:
        """True when the files live on this machine's file system."""
        return is_local(self.base())

    def path(self, asset_key: AssetKeyLike, partition: str | None, filename: str) -> UPath:
        """`UPath` of ``<base>/<asset key...>/<partition>/<filename>``."""
        parts = asset_key_parts(asset_key) + ([partition] if partition else []) + [filename]
        return self.base().joinpath(*parts)

    def uri(self, asset_key: AssetKeyLike, partition: str | None, filename: str) -> str:
        """URI (a plain path when local) of one file of an asset partition."""
        return uri_of(self.path(asset_key, partition, filename))

    def upload(
        self, local_file: Path, asset_key: AssetKeyLike, partition: str | None, filename: str | None = None
    ) -> str:
        """Publish ``local_file`` (under its own name unless ``filename``) atomically; return its URI."""
        target = self.path(asset_key, partition, filename or Path(local_file).name)
        upload_file_atomic(Path(local_file), target)
        return uri_of(target)

    def write_bytes(self, data: bytes, asset_key: AssetKeyLike, partition: str | None, filename: str) -> str:
        """Publish ``data`` as one file atomically; return its URI."""
        target = self.path(asset_key, partition, filename)
        write_bytes_atomic(target, data)
        return uri_of(target)

    def read_bytes(self, uri: str) -> bytes:
        """The content of a stored file."""
        return self.path_of(uri).read_bytes()

    def exists(self, uri: str) -> bool:
        """Whether a stored file exists."""
        return self.path_of(uri).exists()

    def local_copy(self, uri: str, dest_dir: Path | None = None) -> Path:
        """A local path holding the file at ``uri``: the file itself when local, else a downloaded copy.

        Copies go to ``dest_dir`` (default: a fresh temporary folder the caller may delete).
        """
        path = self.path_of(uri)
        if is_local(path) and dest_dir is None:
            return Path(path.path)
        folder = dest_dir if dest_dir is not None else Path(tempfile.mkdtemp(prefix="drugrepo-"))
        return download_atomic(path, folder / path.name)
