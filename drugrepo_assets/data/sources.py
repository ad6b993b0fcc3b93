"""Readers for drug–target pair tables: one file or a folder, on local disk, over http(s) or on S3.

Every reader returns the raw table as strings (nothing coerced, empty cells are ``""``) with the
required columns ``SMILES``, ``Protein``, ``Y`` plus ``source_file`` and ``source_row`` so that every
row can be traced back to its file. Any problem with a file is an :class:`InputFileError`.

A pair table is held whole (validation compares every row with every other), so it is read under
`ReadLimits`: its text (a CSV's bytes after gzip, a Parquet file's values), its rows and its cells
(rows × columns), a folder's files together; a Parquet file's rows, cells and column sizes are checked
from its metadata before any row is read, and a CSV is decoded a block at a time, its text never held whole.

The readers' limits against hostile files live here, for these readers and those of
``data/library.py`` alike: `ReadLimits` (``MAX_TABLE_BYTES``, ``MAX_TABLE_ROWS``, ``MAX_TABLE_CELLS``,
``MAX_ROW_GROUP_BYTES``, each set by its ``DRUGREPO_`` variable), ``MAX_LINE_BYTES``,
``MAX_BLANK_LINES``, ``MAX_GZIP_RATIO`` with ``GZIP_ALLOWANCE_BYTES``, ``MAX_TARGETS_BYTES`` and
``_MAX_HTTP_DEPTH``.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlparse

import pandas as pd

from drugrepo_assets.files import storage_path

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from fsspec import AbstractFileSystem

__all__ = [
    "DATASETS",
    "DATA_SUFFIXES",
    "GZIP_ALLOWANCE_BYTES",
    "LIMIT_VARIABLES",
    "MAX_BLANK_LINES",
    "MAX_GZIP_RATIO",
    "MAX_LINE_BYTES",
    "MAX_ROW_GROUP_BYTES",
    "MAX_TABLE_BYTES",
    "MAX_TABLE_CELLS",
    "MAX_TABLE_ROWS",
    "MAX_TARGETS_BYTES",
    "REQUIRED_COLUMNS",
    "ByteStream",
    "CsvLines",
    "InputFileError",
    "ReadLimits",
    "TableBudget",
    "binary_refusal",
    "bundled_root",
    "dataset_location",
    "dictionary_text_bytes",
    "dictionary_values",
    "gunzip_stream",
    "is_data_file",
    "is_text_type",
    "parquet_type_problem",
    "read_limits",
    "read_source",
    "read_table",
    "s3_problem",
]

DATASETS: tuple[str, ...] = ("bindingdb", "biosnap", "human")
REQUIRED_COLUMNS: tuple[str, ...] = ("SMILES", "Protein", "Y")
DATA_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz", ".parquet", ".pq")

HTTP_TIMEOUT_S = 60.0
_MAX_HTTP_DEPTH = 8
_SUFFIX_TEXT = ", ".join(DATA_SUFFIXES)
_BLOCK_BYTES = 1 << 20

MAX_LINE_BYTES = 1 << 20
"""A longer text line of a library is refused unread (only its first bytes are kept, to show); a longer
row of a pair table (a CSV record, over several lines when quoted) refuses the file."""
MAX_BLANK_LINES = 100_000
"""More blank (or, in a library, comment) lines in a row refuse the file: no table or library holds
them, and a file of newlines would otherwise be read to its end, line by line."""
MAX_TABLE_BYTES = 512 << 20
"""Text a pair table read whole may hold: a CSV's bytes (after gzip), a Parquet file's values as text
(and its column data as stored); a folder's files together. ``DRUGREPO_MAX_TABLE_BYTES``."""
MAX_TABLE_ROWS = 2_000_000
"""Rows a pair table read whole may hold (a folder's files together): ``drugrepo validate`` takes
about 1.4 KB a row (5 M short rows took 7 GB). ``DRUGREPO_MAX_TABLE_ROWS``."""
MAX_TABLE_CELLS = 20_000_000
"""Cells (rows × columns) a pair table read whole may hold: a short row is padded to the header's
width, so rows alone do not bound it (2 M rows of ``valid.parquet``'s 8 columns fit).
``DRUGREPO_MAX_TABLE_CELLS``."""
MAX_ROW_GROUP_BYTES = 512 << 20
"""Column data (uncompressed, as its metadata states) of one Parquet row group a library stream
reads at a time. ``DRUGREPO_MAX_ROW_GROUP_BYTES``."""
LIMIT_VARIABLES: dict[str, str] = {
    "table_bytes": "DRUGREPO_MAX_TABLE_BYTES",
    "table_rows": "DRUGREPO_MAX_TABLE_ROWS",
    "table_cells": "DRUGREPO_MAX_TABLE_CELLS",
    "row_group_bytes": "DRUGREPO_MAX_ROW_GROUP_BYTES",
}
"""The environment variable that sets each `ReadLimits` field."""
MAX_GZIP_RATIO = 100
"""A gzip input may decompress to at most this many times the compressed bytes read so far (plus
``GZIP_ALLOWANCE_BYTES``): real tables and libraries compress 2-10 times, a gzip bomb ~1,000 times."""
GZIP_ALLOWANCE_BYTES = 64 << 20
"""Decompressed bytes any gzip input may reach whatever its ratio (small, very repetitive files)."""
MAX_TARGETS_BYTES = 64 << 20
"""Characters of ids and sequences a target list read whole may hold (`screening.targets.read_target_set`;
1,600 sequences of 40,000 letters, 50,000 of 1,200); a longer list is refused. ``iter_targets`` streams."""


class InputFileError(Exception):
    """A source file that cannot be used at all; ``str(e)`` is one line: ``<path>: <problem>``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


ByteStream = IO[bytes] | io.RawIOBase
"""A binary stream the readers read front to back: an open file, a response body, a gunzip stream."""


@dataclass(frozen=True)
class ReadLimits:
    """What one pair table read whole (or one Parquet row group of a library) may hold; see the constants."""

    table_bytes: int = MAX_TABLE_BYTES
    table_rows: int = MAX_TABLE_ROWS
    table_cells: int = MAX_TABLE_CELLS
    row_group_bytes: int = MAX_ROW_GROUP_BYTES


def read_limits(environ: Mapping[str, str] | None = None) -> ReadLimits:
    """The limits in force: each default, or the whole number its variable (`LIMIT_VARIABLES`) holds.

    Read at each call, so a process sets them in its environment; a value that is not a positive
    whole number is a ValueError naming the variable.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, int] = {}
    for field, variable in LIMIT_VARIABLES.items():
        raw = environ.get(variable, "").strip().replace("_", "")
        if not raw:
            continue
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{variable}={environ[variable]!r} is not a positive whole number")
        values[field] = int(raw)
    return ReadLimits(**values)


def binary_refusal(data: bytes, offset: int, line: int) -> str | None:
    """Why ``data`` is binary content and not text (a NUL byte, named with its offset and line), or None.

    ``offset`` is the file offset of ``data[0]`` and ``line`` the number of the line it starts in
    (only ``\\n`` ends a line here, as in every text format read).
    """
    at = data.find(b"\x00")
    if at < 0:
        return None
    line += data.count(b"\n", 0, at)
    return f"binary content, not text (NUL byte at offset {offset + at}, line {line})"


class TableBudget:
    """What the files of one table read whole have taken of its `ReadLimits` (a folder's files share one);
    each method refuses, naming the file and the limit, what passes it."""

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self.bytes = 0
        self.rows = 0
        self.cells = 0
        self.files = 0

    def _refusal(self, location: str, what: str, field: str, unit: str) -> InputFileError:
        limit = getattr(self.limits, field)
        together = ", the files read before it included" if self.files else ""
        return InputFileError(
            location,
            f"{what}{together}: more than the limit of {limit:,} {unit} for a table read whole "
            f"(set {LIMIT_VARIABLES[field]} to change it)",
        )

    def check_size(self, location: str, size: int, what: str = "") -> None:
        """Refuse a file whose stored bytes alone pass what is left of the text limit (nothing read)."""
        if self.bytes + size > self.limits.table_bytes:
            raise self._refusal(location, what or f"{size:,} bytes", "table_bytes", "bytes")

    def room(self, width: int) -> int:
        """How many more rows of ``width`` cells fit both the row and the cell limit."""
        cells = (self.limits.table_cells - self.cells) // max(width, 1)
        return max(0, min(self.limits.table_rows - self.rows, cells))

    def add_bytes(self, location: str, count: int) -> None:
        """Count ``count`` more bytes of text; refuse past the limit."""
        self.bytes += count
        if self.bytes > self.limits.table_bytes:
            raise self._refusal(location, f"over {self.bytes:,} bytes read", "table_bytes", "bytes")

    def add_rows(self, location: str, rows: int, cells: int, where: str = "") -> None:
        """Count ``rows`` more rows of ``cells`` cells in all; refuse past either limit (``where``: e.g. ``line 9``)."""
        self.rows += rows
        self.cells += cells
        what = f"{where}: " if where else ""
        if self.rows > self.limits.table_rows:
            raise self._refusal(location, f"{what}{self.rows:,} rows", "table_rows", "rows")
        if self.cells > self.limits.table_cells:
            raise self._refusal(location, f"{what}{self.cells:,} cells (rows × columns)", "table_cells", "cells")


class _Counted:
    """A binary stream that counts the bytes read from it (the compressed side of a gzip stream)."""

    def __init__(self, raw: ByteStream) -> None:
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self.raw.read(size) or b""
        self.count += len(data)
        return data

    def seek(self, offset: int, /) -> int:
        """Refused: the stream is read once, front to back (gzip seeks only to rewind, which is never asked)."""
        raise io.UnsupportedOperation("seek")


class _GunzipStream(io.RawIOBase):
    """Gzip decompression that stops with an :class:`InputFileError` past the ratio cap (a gzip bomb)."""

    def __init__(self, raw: ByteStream, location: str) -> None:
        super().__init__()
        self._counted = _Counted(raw)
        self._gzip = gzip.GzipFile(fileobj=self._counted, mode="rb")
        self._location = location
        self._out = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(_BLOCK_BYTES), b""))
        data = self._gzip.read(min(size, _BLOCK_BYTES))
        self._out += len(data)
        if self._out > MAX_GZIP_RATIO * self._counted.count + GZIP_ALLOWANCE_BYTES:
            raise InputFileError(
                self._location,
                f"gzip data expands more than {MAX_GZIP_RATIO} times (over {self._out:,} bytes from "
                f"{self._counted.count:,}): refused as a gzip bomb",
            )
        return data

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._gzip.close()
        super().close()


def gunzip_stream(raw: ByteStream, location: str) -> io.RawIOBase:
    """``raw`` gzip-decompressed as it is read, refused as a gzip bomb past ``MAX_GZIP_RATIO`` (see there).

    Errors of the gzip data itself are those of :mod:`gzip` (``BadGzipFile``, ``EOFError``, ``zlib.error``).
    """
    return _GunzipStream(raw, location)


def _gunzip(location: str, data: bytes, limit: int) -> bytes:
    """``data`` decompressed under the gzip cap and ``limit`` bytes; a corrupt or cut file is an :class:`InputFileError`."""
    try:
        with gunzip_stream(io.BytesIO(data), location) as stream:
            return _read_at_most(location, stream, limit)
    except (OSError, EOFError, zlib.error):
        raise InputFileError(location, "not a valid gzip file") from None


def _read_at_most(location: str, stream: ByteStream, limit: int) -> bytes:
    """All of ``stream``, refused as soon as it passes ``limit`` bytes (held: at most ``limit`` plus a block)."""
    parts: list[bytes] = []
    size = 0
    while block := stream.read(_BLOCK_BYTES):
        size += len(block)
        if size > limit:
            raise InputFileError(
                location,
                f"over {size:,} bytes: more than the limit of {limit:,} bytes for a table read whole "
                f"(set {LIMIT_VARIABLES['table_bytes']} to change it)",
            )
        parts.append(block)
    return b"".join(parts)


def bundled_root() -> Path:
    """The folder of the DrugBAN benchmark files shipped inside the package."""
    return Path(str(resources.files("drugrepo_assets") / "bundled" / "drugban"))


def dataset_location(root: str, dataset: str) -> str:
    """Location of one dataset under ``root``: ``"bundled"`` or any folder, URL or S3 prefix."""
    if root == "bundled":
        folder = bundled_root() / dataset
        if not folder.is_dir():
            known = ", ".join(p.name for p in sorted(bundled_root().iterdir()) if p.is_dir())
            raise ValueError(f"no bundled dataset {dataset!r} (bundled: {known})")
        return str(folder)
    return root.rstrip("/") + "/" + dataset


def is_data_file(name: str) -> bool:
    """True when ``name`` ends with one of the readable suffixes (.csv, .csv.gz, .parquet, .pq)."""
    lowered = name.lower()
    return any(lowered.endswith(s) for s in DATA_SUFFIXES)


def read_table(
    location: str,
    *,
    s3_endpoint_url: str | None = None,
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    """Read one CSV or Parquet file (local path, http(s) URL or ``s3://bucket/key``) as strings.

    Adds ``source_file`` (the location) and ``source_row`` (1-based data row, header not counted).
    ``required``: the columns the file must have; they come first unless ``keep_order`` keeps the
    file's own column order. S3 is reached through s3fs (`drugrepo_assets.files.storage_path`):
    ``s3_endpoint_url`` names an S3-compatible store, else AWS or ``$AWS_ENDPOINT_URL_S3``.
    The file is held whole, so it is read under `read_limits` (a file past one is refused, named).
    """
    budget = TableBudget(read_limits())
    return _read_table(str(location), budget, s3_endpoint_url, tuple(required), keep_order)


def read_source(
    location: str,
    *,
    s3_endpoint_url: str | None = None,
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    """Read a file, a local folder, an http(s) file or folder index, or an S3 key or prefix.

    Folders and prefixes are read recursively in sorted relative-path order; ``source_file`` is
    then the path relative to the folder (e.g. ``random/train.csv``). ``required`` and
    ``keep_order`` as for :func:`read_table`; each file must have the required columns. A folder's
    files share one `read_limits` budget: the file that passes it is refused, named.
    """
    location = str(location)
    kind = _kind(location)
    required = tuple(required)
    budget = TableBudget(read_limits())

    def table(uri: str) -> pd.DataFrame:
        return _read_table(uri, budget, s3_endpoint_url, required, keep_order)

    def tables(parts: list[tuple[str, str]]) -> pd.DataFrame:
        return _concat(location, [(rel, table(uri)) for rel, uri in parts], required, keep_order)

    if kind == "s3":
        _bucket, key = _split_s3(location)
        if key and not key.endswith("/") and is_data_file(key):
            return table(location)
        return tables(_s3_members(location, s3_endpoint_url))
    if kind == "http":
        if is_data_file(urlparse(location).path):
            return table(location)
        return tables(_http_members(location))
    path = _local_path(location)
    if path.is_dir():
        files = sorted(
            (p.relative_to(path).as_posix(), str(p))
            for p in path.rglob("*")
            if p.is_file() and is_data_file(p.name) and not _hidden(p.relative_to(path))
        )
        if not files:
            raise InputFileError(location, f"folder holds no data files ({_SUFFIX_TEXT})")
        return tables(files)
    return table(location)


def _read_table(
    location: str, budget: TableBudget, s3_endpoint_url: str | None, required: tuple[str, ...], keep_order: bool
) -> pd.DataFrame:
    """One file of a pair table, its bytes counted in ``budget``: http(s) and S3 bodies are fetched
    (at most the text limit), a local file is read as a stream."""
    kind = _kind(location)
    limit = budget.limits.table_bytes
    decoded = False
    source: bytes | Path
    if kind == "http":
        name = urlparse(location).path
        _check_suffix(location, name)
        source, decoded = _http_body(location, limit)
    elif kind == "s3":
        name = location
        _check_suffix(location, name)
        source = _s3_bytes(location, s3_endpoint_url, limit)
    else:
        source = _local_path(location)
        name = source.name
        if source.is_dir():
            raise InputFileError(location, "is a folder, not a file")
        if source.exists():
            _check_suffix(location, name)
    table = _parse(location, name, source, budget, gzip_decoded=decoded, required=required, keep_order=keep_order)
    budget.files += 1
    return table


def _kind(location: str) -> str:
    scheme = urlparse(location).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme == "s3":
        return "s3"
    return "local"


def _local_path(location: str) -> Path:
    parsed = urlparse(location)
    if parsed.scheme.lower() == "file":
        return Path(unquote(parsed.path))
    return Path(location).expanduser()


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _open_local(location: str, path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        problem = "file not found" if is_data_file(path.name) else "no such file or folder"
        raise InputFileError(location, problem) from None
    except IsADirectoryError:
        raise InputFileError(location, "is a folder, not a file") from None
    except PermissionError:
        raise InputFileError(location, "permission denied") from None
    except OSError as exc:
        raise InputFileError(location, f"cannot read file ({exc.strerror or exc})") from None


def _http_get(url: str, stream: bool = False):
    import requests

    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT_S, stream=stream)
    except requests.RequestException as exc:
        raise InputFileError(url, f"cannot download ({type(exc).__name__})") from None
    if response.status_code >= 400:
        response.close()
        reason = f" {response.reason}" if response.reason else ""
        raise InputFileError(url, f"HTTP error {response.status_code}{reason}")
    return response


def _http_body(url: str, limit: int) -> tuple[bytes, bool]:
    """The body of a GET (at most ``limit`` bytes, a larger ``Content-Length`` refused unread) and
    whether a ``Content-Encoding: gzip`` was undone (under the gzip cap and ``limit``)."""
    import requests
    import urllib3.exceptions

    response = _http_get(url, stream=True)
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    with response:
        length = response.headers.get("Content-Length", "").strip()
        if length.isdigit() and int(length) > limit:
            raise InputFileError(
                url,
                f"Content-Length {int(length):,} bytes: more than the limit of {limit:,} bytes for a table "
                f"read whole (set {LIMIT_VARIABLES['table_bytes']} to change it)",
            )
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            raise InputFileError(url, f"unsupported Content-Encoding {encoding!r} (expected gzip or none)")
        try:
            data = _read_at_most(url, _RawBody(response.raw), limit)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise InputFileError(url, f"cannot download ({type(exc).__name__})") from None
    if encoding in ("", "identity"):
        return data, False
    return _gunzip(url, data, limit), True


class _RawBody(io.RawIOBase):
    """A response body as sent (``Content-Encoding`` not undone), read a block at a time."""

    def __init__(self, raw: object) -> None:
        super().__init__()
        self.raw = raw

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1, /) -> bytes:
        return self.raw.read(size, decode_content=False) or b""  # type: ignore[attr-defined]


class _LinkParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag.lower() == "a":
            for name, value in attrs:
                if name.lower() == "href" and value:
                    self.links.append(value)


def _http_members(location: str) -> list[tuple[str, str]]:
    base = location if location.endswith("/") else location + "/"
    found: dict[str, str] = {}
    _http_walk(location, base, base, found, visited=set(), depth=0)
    if not found:
        raise InputFileError(location, f"no data files ({_SUFFIX_TEXT}) listed in the folder index at this URL")
    return sorted(found.items())


def _http_walk(location: str, base: str, folder: str, found: dict[str, str], visited: set[str], depth: int) -> None:
    """Collect the data files of an HTML folder index: only links strictly below ``folder`` are
    followed (never ``../`` or an absolute link elsewhere), each folder fetched at most once."""
    visited.add(folder)
    response = _http_get(folder)
    if "html" not in response.headers.get("Content-Type", "").lower():
        raise InputFileError(
            location,
            f"not a data file ({_SUFFIX_TEXT}) and not an HTML folder index",
        )
    parser = _LinkParser()
    parser.feed(response.text)
    for link in parser.links:
        target = urljoin(folder, link).split("#", 1)[0].split("?", 1)[0]
        if not target.startswith(folder) or target == folder or target in visited:
            continue
        rel = unquote(target[len(base) :])
        if any(part in ("", ".", "..") for part in rel.rstrip("/").split("/")):
            continue
        if target.endswith("/"):
            if depth < _MAX_HTTP_DEPTH and not _hidden(Path(rel)):
                _http_walk(location, base, target, found, visited, depth + 1)
        elif is_data_file(rel) and not _hidden(Path(rel)):
            visited.add(target)
            found[rel] = target


def _split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


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


def _s3_bytes(uri: str, endpoint_url: str | None, limit: int) -> bytes:
    bucket, key = _split_s3(uri)
    if not bucket or not key:
        raise InputFileError(uri, "not an S3 object URI (expected s3://bucket/key)")
    fs = storage_path(uri, endpoint_url).fs
    try:
        size = int(fs.size(f"{bucket}/{key}") or 0)
        if size > limit:
            raise InputFileError(
                uri,
                f"{size:,} bytes: more than the limit of {limit:,} bytes for a table read whole "
                f"(set {LIMIT_VARIABLES['table_bytes']} to change it)",
            )
        if not size:
            return b""
        data = fs.cat_file(f"{bucket}/{key}", start=0, end=limit + 1)
        if len(data) > limit:  # grown since its size was asked
            raise InputFileError(
                uri,
                f"over {limit:,} bytes: more than the limit of {limit:,} bytes for a table read whole "
                f"(set {LIMIT_VARIABLES['table_bytes']} to change it)",
            )
        return data
    except InputFileError:
        raise
    except Exception as exc:  # s3fs and botocore raise many types; s3_problem names them
        raise InputFileError(uri, s3_problem(exc, fs, bucket)) from None


def _s3_members(uri: str, endpoint_url: str | None) -> list[tuple[str, str]]:
    bucket, key = _split_s3(uri)
    if not bucket:
        raise InputFileError(uri, "not an S3 URI (expected s3://bucket/prefix)")
    folder = f"{bucket}/{key.strip('/')}" if key.strip("/") else bucket
    fs = storage_path(uri, endpoint_url).fs
    try:
        keys = fs.find(folder)
    except Exception as exc:  # s3fs and botocore raise many types; s3_problem names them
        raise InputFileError(uri, s3_problem(exc, fs, bucket)) from None
    members = []
    for full in keys:
        rel = full[len(folder) + 1 :]
        if full.startswith(folder + "/") and is_data_file(rel) and not _hidden(Path(rel)):
            members.append((rel, f"s3://{full}"))
    if not members:
        raise InputFileError(uri, f"no data files ({_SUFFIX_TEXT}) under this S3 prefix")
    return sorted(members)


def _concat(
    location: str,
    parts: list[tuple[str, pd.DataFrame]],
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    frames = []
    for rel, frame in parts:
        frame["source_file"] = rel
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True, sort=False)
    extras = [c for c in table.columns if c not in (*required, "source_file", "source_row")]
    for column in extras:
        table[column] = table[column].fillna("")
    if keep_order:
        return table[
            [*[c for c in table.columns if c not in ("source_file", "source_row")], "source_file", "source_row"]
        ]
    return table[[*required, *extras, "source_file", "source_row"]]


def _check_suffix(location: str, name: str) -> None:
    if not is_data_file(name):
        raise InputFileError(location, f"unsupported file type (expected {_SUFFIX_TEXT})")


def _parse(
    location: str,
    name: str,
    source: bytes | Path,
    budget: TableBudget,
    *,
    gzip_decoded: bool = False,
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    lowered = name.lower()
    with io.BytesIO(source) if isinstance(source, bytes) else _open_local(location, source) as stream:
        size = len(source) if isinstance(source, bytes) else os.fstat(stream.fileno()).st_size
        if not size:
            raise InputFileError(location, "empty file")
        gz = lowered.endswith(".csv.gz") and not (
            gzip_decoded and isinstance(source, bytes) and not source.startswith(b"\x1f\x8b")
        )
        if lowered.endswith((".parquet", ".pq")):
            budget.check_size(location, size)
            table = _parse_parquet(location, stream, budget)
        elif gz:
            table = _parse_gzip_csv(location, stream, budget)
        else:
            budget.check_size(location, size)
            table = _parse_csv(location, stream, budget)
    missing = [c for c in required if c not in table.columns]
    if missing:
        found = ", ".join(str(c) for c in table.columns) or "no columns"
        names = ", ".join(repr(c) for c in missing)
        label = "column" if len(missing) == 1 else "columns"
        raise InputFileError(location, f"missing {label} {names} (found: {found})")
    if len(table) == 0:
        raise InputFileError(location, "no data rows (only a header)")
    if not keep_order:
        extras = [c for c in table.columns if c not in (*required, "source_file", "source_row")]
        table = table[[*required, *extras]]
    table = table.copy()
    table["source_file"] = location
    table["source_row"] = pd.RangeIndex(1, len(table) + 1).to_numpy(dtype="int64")
    return table.reset_index(drop=True)


def _parse_gzip_csv(location: str, raw: ByteStream, budget: TableBudget) -> pd.DataFrame:
    """A gzip CSV decompressed as it is parsed: its decompressed bytes count against the text limit."""
    try:
        with gunzip_stream(raw, location) as stream:
            return _parse_csv(location, stream, budget)
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise InputFileError(location, "not a valid gzip file") from None


def _parse_csv(location: str, stream: ByteStream, budget: TableBudget) -> pd.DataFrame:
    """A CSV as strings, read record by record with :mod:`csv` (strict quoting) from a stream of its
    lines (`CsvLines`): blank lines are skipped (more than ``MAX_BLANK_LINES`` in a row refuse the
    file), a short row is padded with empty cells, a row wider than the header refuses the file naming
    its line, and rows past the row or cell limit refuse it. (pandas' C tokenizer was left: ``""\\r``
    turns 30 bytes into 262,145 rows.)"""
    lines = CsvLines(location, stream, budget)
    reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    room = 0
    start = 1
    blank = 0
    try:
        for record in reader:
            lines.record_bytes = 0
            if not record or (len(record) == 1 and not record[0].strip()):
                blank += 1
                if blank > MAX_BLANK_LINES:
                    raise InputFileError(
                        location,
                        f"line {reader.line_num}: more than {MAX_BLANK_LINES:,} blank lines in a row "
                        "(sources.MAX_BLANK_LINES)",
                    )
            elif header is None:
                header, blank = _column_names(record), 0
                room = budget.room(len(header))
            elif len(record) > len(header):
                raise InputFileError(
                    location, f"cannot parse CSV (line {start}: {len(record)} fields, the header has {len(header)})"
                )
            else:
                blank = 0
                if len(rows) == room:
                    budget.add_rows(location, room + 1, (room + 1) * len(header), f"line {start}")
                rows.append(record + [""] * (len(header) - len(record)) if len(record) < len(header) else record)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputFileError(location, f"cannot parse CSV (line {start}: {exc})") from None
    if header is None:
        raise InputFileError(location, "empty file")
    budget.add_rows(location, len(rows), len(rows) * len(header))
    return pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)


_UTF8_BOM = b"\xef\xbb\xbf"


class CsvLines:
    """The lines of a CSV byte stream as text, each with its end (``\\n``, ``\\r\\n`` or ``\\r``, as
    ``csv.reader`` wants them), decoded a block at a time: nothing but a block and one row is held.

    The file is refused, named, at its first NUL byte (binary content) or byte that is not UTF-8 (with
    its offset), when a row (a record, over several lines when quoted; counted by the caller through
    ``record_bytes``) passes ``MAX_LINE_BYTES``, or when its text passes the budget's limit.
    """

    def __init__(self, location: str, stream: ByteStream, budget: TableBudget) -> None:
        self.location = location
        self.stream = stream
        self.budget = budget
        self.record_bytes = 0
        self.lines = 0

    def _too_long(self) -> InputFileError:
        return InputFileError(
            self.location,
            f"line {self.lines + 1}: a row of more than {MAX_LINE_BYTES:,} bytes, the limit (sources.MAX_LINE_BYTES)",
        )

    def __iter__(self) -> Iterator[str]:
        pending = b""
        offset = 0  # the file offset of pending[0]
        first = True
        while True:
            block = self.stream.read(_BLOCK_BYTES)
            if block:
                self.budget.add_bytes(self.location, len(block))
            if first and block.startswith(_UTF8_BOM):
                block, offset = block[len(_UTF8_BOM) :], len(_UTF8_BOM)
            first = False
            data = pending + block if pending else block
            if block and data.endswith(b"\r"):  # a \r\n may be split between two blocks
                cut = max(data.rfind(b"\n", 0, len(data) - 1), data.rfind(b"\r", 0, len(data) - 1)) + 1
            else:
                cut = len(data) if not block else max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
            text = self._decode(data, cut, offset)
            pending, offset = data[cut:], offset + cut
            for line in io.StringIO(text, newline=""):
                self.record_bytes += len(line)
                if self.record_bytes > MAX_LINE_BYTES:
                    raise self._too_long()
                self.lines += 1
                yield line
            if self.record_bytes + len(pending) > MAX_LINE_BYTES:
                raise self._too_long()
            if not block:
                return

    def _decode(self, data: bytes, cut: int, offset: int) -> str:
        """``data[:cut]`` as text; the first NUL byte or non-UTF-8 byte of ``data`` refuses the file."""
        nul = data.find(b"\x00")
        try:
            text = data[:cut].decode("utf-8")
        except UnicodeDecodeError as exc:
            if nul < 0 or nul > exc.start:
                raise InputFileError(
                    self.location, f"not valid UTF-8 text (byte 0x{data[exc.start]:02x} at offset {offset + exc.start})"
                ) from None
        if nul >= 0:
            raise InputFileError(self.location, str(binary_refusal(data, offset, self.lines + 1)))
        return text


def _column_names(record: list[str]) -> list[str]:
    """Header names as pandas gives them: ``Unnamed: i`` for an empty one, ``name.1`` for a repeat."""
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(record):
        name = raw if raw.strip() else f"Unnamed: {i}"
        base, count = name, seen.get(name, 0)
        while name in seen:
            count += 1
            name = f"{base}.{count}"
        seen[base] = count
        seen[name] = 0
        names.append(name)
    return names


_PARQUET_BATCH_ROWS = 65_536


def _parquet_error(location: str, exc: BaseException) -> InputFileError:
    detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
    return InputFileError(location, f"cannot parse Parquet ({detail})")


def _parse_parquet(location: str, source: IO[bytes], budget: TableBudget) -> pd.DataFrame:
    """A Parquet file as strings, read batch by batch after its metadata passed the limits (rows,
    cells, column data), each batch's text counted before it is copied out (a repeated long value of
    a small file would otherwise expand to gigabytes); a pandas index stored with it is left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(source)
        schema = handle.schema_arrow
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        fields = [f for f in schema if f.name not in index]
        for field in fields:
            problem = parquet_type_problem(field.type)
            if problem is not None:
                raise InputFileError(location, f"column {field.name!r}: {problem}")
        names = [f.name for f in fields]
        _check_parquet_metadata(location, handle.metadata, names, budget)
        text = [f.name for f in fields if is_text_type(f.type)]
        handle = pq.ParquetFile(source, metadata=handle.metadata, read_dictionary=text)
        values: list[list[str]] = [[] for _ in names]
        for batch in handle.iter_batches(
            batch_size=_PARQUET_BATCH_ROWS, columns=names if index else None, use_pandas_metadata=False
        ):
            for j, column in enumerate(batch.columns):
                values[j].extend(_column_text(location, column, budget))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _parquet_error(location, exc) from None
    table = pd.DataFrame({j: pd.Series(column, dtype=object) for j, column in enumerate(values)})
    table.columns = [str(c) for c in names]
    return table


def parquet_type_problem(arrow_type: object) -> str | None:
    """Why a Parquet column of this Arrow type cannot be read as text a batch at a time, or None:
    text, bytes, dictionaries of them and fixed-width values (numbers, dates, decimals) can; nested
    values (lists, structs, maps) cannot: their size per row is not bounded by the row count."""
    import pyarrow as pa

    assert isinstance(arrow_type, pa.DataType)
    if pa.types.is_dictionary(arrow_type):
        return parquet_type_problem(arrow_type.value_type)
    if is_text_type(arrow_type) or pa.types.is_null(arrow_type):
        return None
    try:
        if arrow_type.bit_width <= 256:
            return None
    except ValueError:
        pass
    return f"holds {arrow_type} values, not text or numbers"


def is_text_type(arrow_type: object) -> bool:
    """True for an Arrow type of text or bytes (read from Parquet as a dictionary, so a repeated value is held once)."""
    import pyarrow as pa

    assert isinstance(arrow_type, pa.DataType)
    return any(
        check(arrow_type)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_string_view,
            pa.types.is_binary_view,
        )
    )


def _check_parquet_metadata(location: str, metadata: object, names: list[str], budget: TableBudget) -> None:
    """Refuse a Parquet file from its metadata alone: its rows, its cells (values of the columns
    read) and their column data as stored uncompressed, each against what is left of the limits."""
    import pyarrow.parquet as pq

    assert isinstance(metadata, pq.FileMetaData)
    wanted = set(names)
    leaves = [i for i in range(metadata.num_columns) if metadata.schema.column(i).path.split(".")[0] in wanted]
    cells = stored = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for i in leaves:
            chunk = group.column(i)
            cells += max(chunk.num_values, 0)
            stored += max(chunk.total_uncompressed_size, 0)
    budget.add_rows(location, max(metadata.num_rows, 0), cells)
    budget.check_size(location, stored, f"{stored:,} bytes of column data (uncompressed)")


def dictionary_text_bytes(column: object) -> int:
    """Bytes of text a dictionary-encoded column of a batch holds once every row has its value
    (counted on the dictionary, nothing copied); 0 for a dictionary of numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    assert isinstance(column, pa.DictionaryArray)
    if not is_text_type(column.dictionary.type):
        return 0
    lengths = pc.binary_length(column.dictionary)
    return int(pc.sum(pc.take(lengths, column.indices)).as_py() or 0)


def dictionary_values(column: object, *, shared: bool = False) -> list[object]:
    """The Python values of a dictionary-encoded column of a batch, row by row (None for a null);
    ``shared``: rows of one value share one object, so a long value repeated is held once."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    assert isinstance(column, pa.DictionaryArray)
    if not shared:
        return column.dictionary.take(column.indices).to_pylist()
    valid = column.indices.is_valid().to_numpy(zero_copy_only=False)
    codes = pc.fill_null(column.indices, 0).to_numpy(zero_copy_only=False)
    distinct, inverse = np.unique(codes, return_inverse=True)
    objects = np.empty(len(distinct), dtype=object)
    objects[:] = column.dictionary.take(pa.array(distinct)).to_pylist()
    rows = objects[inverse]
    rows[~valid] = None
    return rows.tolist()


def _column_text(location: str, column: object, budget: TableBudget) -> list[str]:
    """One column of a Parquet batch as strings (`_as_text`), its text counted in ``budget`` first."""
    import pyarrow as pa

    if isinstance(column, pa.DictionaryArray):
        budget.add_bytes(location, dictionary_text_bytes(column))
        return [_as_text(v) for v in dictionary_values(column)]
    assert isinstance(column, pa.Array)
    texts = [_as_text(v) for v in column.to_pylist()]
    budget.add_bytes(location, sum(map(len, texts)))
    return texts


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
