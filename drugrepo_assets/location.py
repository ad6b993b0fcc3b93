"""Where an input lives: the one module that tells a local path (or a ``file:`` URL) from an ``s3://`` (or
``s3a://``) or ``http(s)://`` location, or a packaged dataset's ``bundled:<dataset>[/<file>]`` name, carries
the S3 endpoint a location is reached at, lists a folder's or an S3 prefix's files, and says why S3 refused.

No Dagster and no reader rules: which files a reader takes (suffixes, hidden files, order of reading)
stays with the reader, which filters what is listed here. Every other module asks here instead of
comparing URL schemes itself, so ``s3a://`` (Hadoop's name for the same store) is read as ``s3://``
everywhere alike.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "Kind",
    "Location",
    "as_location",
    "bundled_name",
    "folder_files",
    "is_hidden",
    "is_local_protocol",
    "is_remote",
    "local_path",
    "location_kind",
    "prefix_files",
    "s3_problem",
    "s3_uri",
]

Kind = Literal["local", "s3", "http"]
"""How a reader reaches a location: a path on this machine, an S3 object or prefix, an http(s) URL."""

_KINDS: dict[str, Kind] = {"http": "http", "https": "http", "s3": "s3", "s3a": "s3"}
_LOCAL_PROTOCOLS = ("", "file", "local")
_S3A = re.compile(r"^s3a://", re.IGNORECASE)
_BUNDLED = "bundled:"


def _scheme(location: str) -> str:
    """The URL scheme, lower-case; "" for none (a one-letter scheme is a Windows drive, not a URL)."""
    scheme = urlparse(location).scheme.lower()
    return scheme if len(scheme) > 1 else ""


def location_kind(location: str) -> Kind:
    """``http`` (also https), ``s3`` (also s3a), else ``local``: a path or a ``file:`` URL (a URL of a
    scheme no reader takes is read as a path, and so not found)."""
    return _KINDS.get(_scheme(location), "local")


def is_remote(location: str) -> bool:
    """True for a URL with a scheme other than ``file`` (``s3://``, ``https://``, ``bundled:`` ...); a Windows drive is local."""
    return _scheme(location) not in ("", "file")


def bundled_name(location: str) -> tuple[str, str] | None:
    """(dataset, file or folder within it, "" for the whole dataset) that a ``bundled:<dataset>[/<file>]``
    name gives, or None for any other location; `data.sources.dataset_location` says where it lies."""
    if not location.startswith(_BUNDLED):
        return None
    dataset, _, rest = location[len(_BUNDLED) :].partition("/")
    return dataset, rest


def local_path(location: str) -> Path | None:
    """The path on this machine a location names (a ``file:`` URL's path too, as `Location.path` reads
    it), or None for a remote one (``s3://``, ``https://``, ``bundled:`` ...)."""
    return None if is_remote(location) else Location.of(location).path()


def is_local_protocol(protocol: str | tuple[str, ...]) -> bool:
    """True for the fsspec protocol of this machine's file system (a `UPath`'s ``protocol``)."""
    return protocol in _LOCAL_PROTOCOLS


def s3_uri(path: str) -> str:
    """The ``s3://`` URI of an S3 path as s3fs names it (``bucket/key``)."""
    return f"s3://{path}"


def is_hidden(rel: str) -> bool:
    """True when a relative path has a hidden part (a file or folder whose name starts with a dot)."""
    return any(part.startswith(".") for part in PurePosixPath(rel).parts)


@dataclass(frozen=True)
class Location:
    """One location as given, what kind of place it is, and the S3 endpoint it is reached at."""

    text: str
    """The location as the user wrote it (kept for messages)."""
    kind: Kind
    endpoint: str | None = None
    """The S3-compatible endpoint (MinIO, moto, ...) of an ``s3://`` location; None: s3fs's own choice,
    ``$AWS_ENDPOINT_URL_S3`` (then ``$AWS_ENDPOINT_URL``), else AWS. Other kinds ignore it."""

    @classmethod
    def of(cls, text: str, endpoint: str | None = None) -> Location:
        """The location ``text`` names, on ``endpoint`` when it is in S3 ("" counts as none)."""
        return cls(str(text), location_kind(str(text)), endpoint or None)

    def at(self, text: str) -> Location:
        """Another location on this one's endpoint: a file of this folder or prefix, a resolved name."""
        return Location.of(text, self.endpoint)

    @property
    def is_s3(self) -> bool:
        """True for an ``s3://`` or ``s3a://`` location."""
        return self.kind == "s3"

    @property
    def is_http(self) -> bool:
        """True for an ``http://`` or ``https://`` location."""
        return self.kind == "http"

    @property
    def uri(self) -> str:
        """The location as s3fs and text comparisons want it: ``s3a://`` read as ``s3://``."""
        return _S3A.sub("s3://", self.text)

    def path(self) -> Path:
        """The local path: a ``file:`` URL's path, ``~`` expanded."""
        if _scheme(self.text) == "file":
            return Path(unquote(urlparse(self.text).path))
        return Path(self.text).expanduser()

    @property
    def s3_path(self) -> str:
        """``bucket/key`` as s3fs names an S3 location (the URI without its scheme)."""
        return self.text.split("://", 1)[1] if "://" in self.text else self.text

    @property
    def bucket(self) -> str:
        """The S3 bucket."""
        return self.s3_path.split("/", 1)[0]

    @property
    def key(self) -> str:
        """The S3 key or prefix, without a leading slash ("" for a whole bucket)."""
        return self.s3_path.partition("/")[2].lstrip("/")


def as_location(where: Location | str | os.PathLike[str]) -> Location:
    """``where`` as a `Location`: a plain string or path is `Location.of` it, on the default S3 endpoint."""
    return where if isinstance(where, Location) else Location.of(os.fspath(where))


def folder_files(folder: Path) -> list[tuple[str, Path]]:
    """Every file below ``folder``, recursively: (its path relative to ``folder``, POSIX style; its path),
    sorted by the relative path."""
    return sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file())


def prefix_files(fs: AbstractFileSystem, folder: str) -> list[tuple[str, str]]:
    """Every object below the S3 ``folder`` (``bucket/prefix``, no trailing slash): (its key relative
    to ``folder``; its ``s3://`` URI), sorted by key. S3 errors are s3fs's (see `s3_problem`)."""
    return [
        (full[len(folder) + 1 :], s3_uri(full)) for full in sorted(fs.find(folder)) if full.startswith(folder + "/")
    ]


def s3_problem(exc: BaseException, fs: AbstractFileSystem, bucket: str) -> str:
    """Why an S3 object or prefix of ``bucket`` could not be read, in the words of every reader's refusal.

    s3fs turns S3's answers into Python errors (a missing key or bucket is a `FileNotFoundError`, a
    refusal a `PermissionError`); which of key or bucket is missing is asked of the store, since a
    HEAD request's 404 does not say.
    """
    if isinstance(exc, FileNotFoundError):
        try:
            bucket_exists = fs.exists(bucket)
        except Exception:  # the store cannot say (e.g. no right to list): name both
            return "no such S3 bucket or key"
        return "no such S3 key" if bucket_exists else "no such S3 bucket"
    if isinstance(exc, PermissionError):
        return "access denied"
    detail = re.sub(r"\s+", " ", str(exc)).strip()
    return f"S3 error: {type(exc).__name__}" + (f" ({detail})" if detail else "")
