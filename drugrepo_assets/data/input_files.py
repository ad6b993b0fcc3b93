"""The files of one input location, and opening one: a file, a folder or an S3 prefix (recursively), or an
http(s) file, in the `FileFormats` of one kind of input (a library, a target list). Shared by the library
stream (``data/library.py``) and the target reader (``screening/targets.py``); where a location is, and
listing it, is `drugrepo_assets.location`'s.
"""

from __future__ import annotations

import gzip
import logging
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import unquote, urlparse

import urllib3.exceptions
from fsspec import AbstractFileSystem

from drugrepo_assets.data.limits import BLOCK_BYTES, ByteStream, InputFileError, gunzip_stream
from drugrepo_assets.data.remote_files import http_get
from drugrepo_assets.files import storage_path
from drugrepo_assets.location import Kind, Location, as_location, folder_files, is_hidden, prefix_files, s3_problem

__all__ = [
    "READ_ERRORS",
    "FileFormats",
    "Member",
    "ParquetSource",
    "members",
    "open_binary",
    "read_problem",
    "text_stream",
]

logger = logging.getLogger(__name__)

_S3_BLOCK_BYTES = 8 << 20


class Member(NamedTuple):
    """One file of a location (`members`), as the readers open it."""

    uri: str  # the full location, for errors
    label: str  # the ``file`` column
    id_prefix: str  # generated ids: ``<id_prefix>:<line>``
    kind: Kind  # how it is reached: local | http | s3
    fmt: str  # a format of its `FileFormats` (libraries: text | csv | tsv | parquet)
    gz: bool
    fs: AbstractFileSystem | None = None  # the S3 file system


@dataclass(frozen=True)
class FileFormats:
    """The file formats one kind of input is read in (a library, a target list): which file names
    it takes, and how messages name it. A ``parquet`` format never ends in ``.gz``; the others may."""

    noun: str  # "library": "not a library file", "no library files"
    suffixes: tuple[tuple[str, tuple[str, ...]], ...]  # (format, its suffixes), the first match wins
    listed: str  # the suffixes as messages list them

    def format_of(self, name: str) -> tuple[str, bool] | None:
        """(format, gzipped) of a file name, or None when it is in none of these formats."""
        lowered = name.lower()
        gz = lowered.endswith(".gz")
        base = lowered[:-3] if gz else lowered
        for fmt, suffixes in self.suffixes:
            if base.endswith(suffixes):
                return None if gz and fmt == "parquet" else (fmt, gz)
        return None


def _not_of(location: str, formats: FileFormats) -> InputFileError:
    return InputFileError(location, f"not a {formats.noun} file (expected {formats.listed})")


def _warn_skipped(location: str, skipped: list[str], formats: FileFormats) -> None:
    if skipped:
        shown = ", ".join(skipped[:20]) + (f", and {len(skipped) - 20} more" if len(skipped) > 20 else "")
        logger.warning(
            "%s: skipped %d file(s) that are not %s files (%s) or are hidden: %s",
            location,
            len(skipped),
            formats.noun,
            formats.listed,
            shown,
        )


def members(location: Location | str, formats: FileFormats) -> list[Member]:
    """The files of a location in reading order: one file, or a folder's or S3 prefix's files in
    ``formats`` (recursively, sorted by path; others and hidden ones skipped, named in a log warning).
    A location without any such file is an :class:`InputFileError` naming it."""
    where = as_location(location)
    location = where.text
    if where.is_http:
        name = unquote(urlparse(location).path)
        found = formats.format_of(name)
        if found is None:
            raise InputFileError(
                location,
                f"not a {formats.noun} file (expected {formats.listed}); folders cannot be listed over http(s)",
            )
        return [Member(location, location, PurePosixPath(name).name, where.kind, *found)]
    if where.is_s3:
        return _s3_members(where, formats)
    path = where.path()
    if path.is_dir():
        files, skipped = [], []
        for rel, p in folder_files(path):
            found = formats.format_of(p.name)
            if found is None or is_hidden(rel):
                skipped.append(rel)
            else:
                files.append(Member(str(p), rel, rel, "local", *found))
        _warn_skipped(location, skipped, formats)
        if not files:
            raise InputFileError(location, f"folder holds no {formats.noun} files ({formats.listed})")
        return files
    found = formats.format_of(path.name)
    if not path.exists():
        raise InputFileError(location, "file not found" if found else "no such file or folder")
    if found is None:
        raise _not_of(location, formats)
    return [Member(location, location, path.name, "local", *found)]


def _s3_members(where: Location, formats: FileFormats) -> list[Member]:
    """The files of an S3 key or prefix (`members`)."""
    location = where.text
    root = storage_path(where)
    fs, key = root.fs, root.path.rstrip("/")
    bucket_only = "/" not in key
    try:
        if not bucket_only and not location.endswith("/") and fs.isfile(key):
            found = formats.format_of(key)
            if found is None:
                raise _not_of(location, formats)
            return [Member(location, location, PurePosixPath(key).name, where.kind, *found, fs)]
        entries = prefix_files(fs, key)
    except InputFileError:
        raise
    except Exception as exc:  # s3fs and botocore raise many types; s3_problem names them
        raise InputFileError(location, s3_problem(exc, fs, key.split("/")[0])) from None
    files, skipped = [], []
    for rel, uri in entries:
        found = formats.format_of(rel)
        if found is None or is_hidden(rel):
            skipped.append(rel)
        else:
            files.append(Member(uri, rel, rel, where.kind, *found, fs))
    _warn_skipped(location, skipped, formats)
    if not files and not entries and not location.endswith("/") and formats.format_of(key) is not None:
        raise InputFileError(location, "no such S3 key")
    if not files:
        raise InputFileError(location, f"no {formats.noun} files ({formats.listed}) under this S3 prefix")
    return files


def open_binary(member: Member) -> ByteStream:
    """The file's bytes as sent (gzip not undone), for sequential reading."""
    try:
        if member.kind == "local":
            return open(member.uri, "rb")
        if member.fs is not None:
            return member.fs.open(Location.of(member.uri).s3_path, "rb", block_size=_S3_BLOCK_BYTES)
    except FileNotFoundError:
        raise InputFileError(member.uri, "file not found") from None
    except IsADirectoryError:
        raise InputFileError(member.uri, "is a folder, not a file") from None
    except PermissionError:
        raise InputFileError(member.uri, "permission denied") from None
    except OSError as exc:
        raise InputFileError(member.uri, f"cannot read file ({exc.strerror or exc})") from None
    except Exception as exc:  # s3fs and botocore raise many types; s3_problem names them
        if member.fs is None:
            raise
        raise InputFileError(member.uri, s3_problem(exc, member.fs, Location.of(member.uri).bucket)) from None
    return _http_stream(member)


def _http_stream(member: Member) -> ByteStream:
    """The body of an http(s) file as a stream; a ``Content-Encoding: gzip`` the file's name does not say is undone."""
    response = http_get(member.uri, stream=True)
    raw = response.raw
    encoded = "gzip" in response.headers.get("Content-Encoding", "").lower()
    # A .gz file sent with "Content-Encoding: gzip" is one gzip layer, undone by the reader.
    return gunzip_stream(raw, member.uri) if encoded and not member.gz else raw


READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, urllib3.exceptions.HTTPError)
"""What reading a file's bytes may raise: the file system's, gzip's, and urllib3's for a stream cut over http."""


def read_problem(member: Member, exc: BaseException) -> InputFileError:
    """The :class:`InputFileError` for one of `READ_ERRORS` met while reading ``member``."""
    detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".") or type(exc).__name__
    if member.gz and isinstance(exc, (gzip.BadGzipFile, EOFError, zlib.error)):
        return InputFileError(member.uri, f"not a valid gzip file ({detail})")
    return InputFileError(member.uri, f"cannot read file ({detail})")


@contextmanager
def text_stream(member: Member) -> Iterator[ByteStream]:
    """A text file's bytes, gzip undone; a read failure in the ``with`` block becomes an `InputFileError`
    naming the file (`read_problem`)."""
    raw = open_binary(member)
    try:
        yield gunzip_stream(raw, member.uri) if member.gz else raw
    except InputFileError:
        raise
    except READ_ERRORS as exc:
        raise read_problem(member, exc) from None
    finally:
        raw.close()


class ParquetSource:
    """A context manager giving a seekable source for ParquetFile: the local path, an S3 file, or an http download on disk."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.closers: list[Callable[[], None]] = []

    def __enter__(self) -> object:
        member = self.member
        if member.kind == "local":
            if not Path(member.uri).is_file():
                raise InputFileError(member.uri, "file not found")
            return member.uri
        raw = open_binary(member)
        self.closers.append(raw.close)
        if member.kind != "http":  # an S3 file: seekable
            return raw
        spool = tempfile.TemporaryFile(prefix="drugrepo-library-")
        self.closers.append(spool.close)
        try:
            shutil.copyfileobj(raw, spool, BLOCK_BYTES)
        except Exception as exc:
            raise InputFileError(member.uri, f"cannot download ({type(exc).__name__})") from None
        spool.seek(0)
        return spool

    def __exit__(self, *exc: object) -> None:
        for close in reversed(self.closers):
            close()
