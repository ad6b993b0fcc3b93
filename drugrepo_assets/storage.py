"""Where stored values live: a local folder or an ``s3://`` URI (AWS, MinIO or any S3-compatible store).

One path type serves both: `upath.UPath`, with s3fs underneath for ``s3://``. Every write is atomic:
a local file is written to a hidden temporary sibling, flushed and renamed over the final path; an
object is sent whole, in one PUT or in a multipart upload that S3 only publishes on completion (and
that is aborted on any error), so a reader never sees half a file. Nothing is ever streamed into an
open S3 file handle: s3fs commits such a handle on ``close()`` even when an exception is unwinding.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from dagster import AssetKey, ConfigurableResource, InitResourceContext
from pydantic import Field, PrivateAttr
from upath import UPath

LOCAL_PROTOCOLS = ("", "file", "local")
S3_SCHEMES = ("s3://", "s3a://")

AssetKeyLike = Union[AssetKey, str, Sequence[str]]


def storage_path(uri: str, s3_endpoint_url: Optional[str] = None) -> UPath:
    """`UPath` of a local path or object-store URI; ``s3_endpoint_url`` points s3fs at MinIO, moto, ...

    Without an explicit endpoint, s3fs (like boto3) honours ``AWS_ENDPOINT_URL_S3`` /
    ``AWS_ENDPOINT_URL``. S3 listings are not cached, so objects written by other pods are seen.
    """
    options: dict[str, Any] = {}
    if uri.startswith(S3_SCHEMES):
        options["use_listings_cache"] = False
        if s3_endpoint_url:
            options["endpoint_url"] = s3_endpoint_url
    return UPath(uri, **options)


def is_local(path: UPath) -> bool:
    """True when ``path`` is on this machine's file system."""
    return path.protocol in LOCAL_PROTOCOLS


def uri_of(path: UPath) -> str:
    """A plain path for a local `UPath`, the full URI (``s3://bucket/key``) otherwise."""
    return path.path if is_local(path) else str(path)


def _temp_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")


def _replace_from(final: Path, write: Any) -> None:
    """Call ``write(handle)`` on a temporary sibling of ``final``, fsync it, then rename it over ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(final)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: UPath, data: bytes) -> None:
    """Publish ``data`` at ``path`` in one atomic step (rename locally, one PUT or multipart on S3)."""
    if is_local(path):
        _replace_from(Path(path.path), lambda handle: handle.write(data))
    else:
        path.fs.pipe_file(path.path, data)


def upload_file_atomic(local_file: Path, path: UPath, part_size: Optional[int] = None) -> None:
    """Publish a copy of ``local_file`` at ``path`` atomically.

    On S3 a file of at least twice ``part_size`` bytes (s3fs's default: 50 MiB) goes up in parts.
    """
    if is_local(path):
        final = Path(path.path)
        if final.resolve() == Path(local_file).resolve():
            return
        with open(local_file, "rb") as source:
            _replace_from(final, lambda handle: shutil.copyfileobj(source, handle))
    else:
        kwargs = {"chunksize": part_size} if part_size else {}
        path.fs.put_file(str(local_file), path.path, **kwargs)


def download_atomic(path: UPath, dest: Path) -> Path:
    """Copy the file at ``path`` to the local file ``dest`` (written to a temporary sibling, then renamed)."""
    if is_local(path):
        with open(path.path, "rb") as source:
            _replace_from(dest, lambda handle: shutil.copyfileobj(source, handle))
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_sibling(dest)
        try:
            path.fs.get_file(path.path, str(tmp))
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return dest


def asset_key_parts(asset_key: AssetKeyLike) -> list[str]:
    """The path components of an asset key given as `AssetKey`, ``"a/b"`` string or sequence."""
    if isinstance(asset_key, AssetKey):
        return list(asset_key.path)
    if isinstance(asset_key, str):
        return AssetKey.from_user_string(asset_key).path
    return list(asset_key)


class StorageResource(ConfigurableResource):
    """Files of file-valued assets (checkpoints, feature arrays, reports) on a local folder or S3.

    A file lives at ``<base>/<asset key path...>/<partition>/<filename>`` (no partition folder for
    unpartitioned assets). Writes are atomic; URIs returned here can be stored in asset values.
    """

    base_path: Optional[str] = Field(
        default=None,
        description="Local folder or s3:// URI; default: the instance storage folder ($DAGSTER_HOME/storage).",
    )
    s3_endpoint_url: Optional[str] = Field(
        default=None, description="S3 endpoint instead of AWS (MinIO, moto, ...); only for s3:// bases."
    )
    _instance_base: Optional[str] = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Fall back on the instance's storage folder when no base path is configured."""
        if self.base_path is None and context.instance is not None:
            self._instance_base = context.instance.storage_directory()

    def base(self) -> UPath:
        """The base folder as a `UPath`."""
        base = self.base_path or self._instance_base
        if base is None:
            raise ValueError("StorageResource needs base_path when no Dagster instance is at hand")
        return storage_path(base, self.s3_endpoint_url)

    def is_local(self) -> bool:
        """True when the files live on this machine's file system."""
        return is_local(self.base())

    def path(self, asset_key: AssetKeyLike, partition: Optional[str], filename: str) -> UPath:
        """`UPath` of ``<base>/<asset key...>/<partition>/<filename>``."""
        parts = asset_key_parts(asset_key) + ([partition] if partition else []) + [filename]
        return self.base().joinpath(*parts)

    def uri(self, asset_key: AssetKeyLike, partition: Optional[str], filename: str) -> str:
        """URI (a plain path when local) of one file of an asset partition."""
        return uri_of(self.path(asset_key, partition, filename))

    def path_of(self, uri: str) -> UPath:
        """`UPath` of a URI returned by this resource, with this resource's S3 endpoint."""
        return storage_path(uri, self.s3_endpoint_url)

    def upload(self, local_file: Path, asset_key: AssetKeyLike, partition: Optional[str],
               filename: Optional[str] = None) -> str:
        """Publish ``local_file`` (under its own name unless ``filename``) atomically; return its URI."""
        target = self.path(asset_key, partition, filename or Path(local_file).name)
        upload_file_atomic(Path(local_file), target)
        return uri_of(target)

    def write_bytes(self, data: bytes, asset_key: AssetKeyLike, partition: Optional[str], filename: str) -> str:
        """Publish ``data`` as one file atomically; return its URI."""
        target = self.path(asset_key, partition, filename)
        write_bytes_atomic(target, data)
        return uri_of(target)

    @contextmanager
    def writer(self, asset_key: AssetKeyLike, partition: Optional[str], filename: str) -> Iterator[Path]:
        """A local path to write one file to; published atomically only if the block exits cleanly."""
        with tempfile.TemporaryDirectory(prefix="drugrepo-") as folder:
            local = Path(folder) / filename
            yield local
            self.upload(local, asset_key, partition, filename)

    def read_bytes(self, uri: str) -> bytes:
        """The content of a stored file."""
        return self.path_of(uri).read_bytes()

    def exists(self, uri: str) -> bool:
        """Whether a stored file exists."""
        return self.path_of(uri).exists()

    def local_copy(self, uri: str, dest_dir: Optional[Path] = None) -> Path:
        """A local path holding the file at ``uri``: the file itself when local, else a downloaded copy.

        Copies go to ``dest_dir`` (default: a fresh temporary folder the caller may delete).
        """
        path = self.path_of(uri)
        if is_local(path) and dest_dir is None:
            return Path(path.path)
        folder = dest_dir if dest_dir is not None else Path(tempfile.mkdtemp(prefix="drugrepo-"))
        return download_atomic(path, folder / path.name)
