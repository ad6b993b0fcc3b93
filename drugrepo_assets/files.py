"""Files on a local folder or an ``s3://`` URI, written atomically; no Dagster, so the ML core uses it too.

One path type serves both: `upath.UPath`, with s3fs underneath for ``s3://``. Every write is atomic:
a local file is written to a hidden temporary sibling, flushed and renamed over the final path; an
object is sent whole, in one PUT or in a multipart upload that S3 only publishes on completion (and
that is aborted on any error), so a reader never sees half a file. Nothing is ever streamed into an
open S3 file handle: s3fs commits such a handle on ``close()`` even when an exception is unwinding.
"""

from __future__ import annotations

import glob
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias

from drugrepo_assets.location import Location, as_location, is_local_protocol

if TYPE_CHECKING:
    from upath import UPath

StoragePath: TypeAlias = "UPath"
"""A stored file or folder, local or ``s3://``: the `UPath` of `storage_path` (a local one is also a `pathlib.Path`)."""


def storage_path(location: Location | str) -> UPath:
    """`UPath` of a local path or object-store URI: every S3 access of the package goes through here.

    An ``s3://`` location's `Location.endpoint` points s3fs at MinIO, moto, ...; without one s3fs (like
    boto3) honours ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, else AWS (a plain string has none).
    S3 listings are not cached, so objects written by other pods are seen.
    """
    # upath is imported here and below, not at the top: training on exported features (`ml.features.exported`) needs none
    from upath import UPath

    where = as_location(location)
    options: dict[str, Any] = {}
    if where.is_s3:
        options["use_listings_cache"] = False
        if where.endpoint:
            options["endpoint_url"] = where.endpoint
    return UPath(where.text, **options)


def is_local(path: UPath) -> bool:
    """True when ``path`` (a `UPath` or a plain `Path`) is on this machine's file system."""
    return is_local_protocol(getattr(path, "protocol", ""))


def uri_of(path: UPath) -> str:
    """A plain path for a local `UPath`, the full URI (``s3://bucket/key``) otherwise."""
    return path.path if is_local(path) else str(path)


def _temp_sibling(final: Path) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")


def remove_partial_writes(final: str | Path) -> list[Path]:
    """Delete the temporary siblings of the local file ``final`` that killed writers left; returns them.

    Only for a file one process writes at a time (a training run's checkpoints): another writer's
    temporary file would be deleted under it.
    """
    final = Path(final)
    stale = sorted(final.parent.glob(f".{glob.escape(final.name)}.*.tmp")) if final.parent.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _replace_from(final: Path, write: Any) -> None:
    """Call ``write(handle)`` on a temporary sibling of ``final``, fsync it, rename it over ``final``, fsync the folder."""
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
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_local_atomic(path: str | Path, write: Callable[[BinaryIO], Any]) -> None:
    """Publish the local file ``path`` as ``write(handle)`` writes it, atomically: written to a temporary
    sibling, fsynced and renamed over ``path``, so a reader (or a process killed mid-write) never sees half a file."""
    _replace_from(Path(path), write)


def write_bytes_atomic(path: UPath | Path, data: bytes) -> None:
    """Publish ``data`` at ``path`` (a `UPath` or a plain local `Path`) in one atomic step (rename locally,
    one PUT or multipart on S3)."""
    from upath import UPath

    if not isinstance(path, UPath):
        _replace_from(path, lambda handle: handle.write(data))
    elif is_local(path):
        _replace_from(Path(path.path), lambda handle: handle.write(data))
    else:
        path.fs.pipe_file(path.path, data)


DEFAULT_PART_SIZE = 50 * 2**20
"""Size of one part of an S3 multipart upload (s3fs's default); a file under two parts goes in one PUT."""


def upload_file_atomic(local_file: Path, path: UPath, part_size: int | None = None) -> None:
    """Publish a copy of ``local_file`` at ``path`` atomically.

    On S3 a file of at least twice ``part_size`` bytes goes up in parts (`put_multipart`).
    """
    if is_local(path):
        final = Path(path.path)
        if final.resolve() == Path(local_file).resolve():
            return
        with open(local_file, "rb") as source:
            _replace_from(final, lambda handle: shutil.copyfileobj(source, handle))
        return
    part_size = part_size or DEFAULT_PART_SIZE
    if os.path.getsize(local_file) < 2 * part_size:
        path.fs.put_file(str(local_file), path.path)
        return
    with open(local_file, "rb") as source:
        put_multipart(source, path, part_size)


def put_multipart(source: BinaryIO, path: UPath, part_size: int = DEFAULT_PART_SIZE) -> None:
    """Upload ``source`` to the S3 object ``path`` in parts, published only on completion.

    The upload is aborted on *any* way out, a run's termination (SIGTERM raised as an interrupt, a
    BaseException) included: s3fs's own multipart upload aborts on an Exception only, and runs in its
    I/O thread, so a terminated run left its parts behind, billed until a lifecycle rule removed them.
    """
    from fsspec.asyn import sync

    fs = path.fs
    bucket, key, _ = fs.split_path(path.path)

    def s3(method: str, **kwargs: Any) -> Any:
        return sync(fs.loop, fs._call_s3, method, Bucket=bucket, Key=key, **kwargs)

    upload_id = s3("create_multipart_upload")["UploadId"]
    try:
        parts: list[dict[str, Any]] = []
        while chunk := source.read(part_size):
            out = s3("upload_part", UploadId=upload_id, PartNumber=len(parts) + 1, Body=chunk)
            parts.append({"PartNumber": len(parts) + 1, "ETag": out["ETag"]})
        s3("complete_multipart_upload", UploadId=upload_id, MultipartUpload={"Parts": parts})
    except BaseException:
        s3("abort_multipart_upload", UploadId=upload_id)
        raise
    fs.invalidate_cache(path.path)


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
