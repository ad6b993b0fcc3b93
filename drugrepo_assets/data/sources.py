"""Readers for drug–target pair tables: one file or a folder, on local disk, over http(s) or on S3.

Every reader returns the raw table as strings (nothing coerced, empty cells are ``""``) with the
required columns ``SMILES``, ``Protein``, ``Y`` plus ``source_file`` and ``source_row`` so that every
row can be traced back to its file. Any problem with a file is an :class:`InputFileError`.

The readers' limits against hostile files live here, for these readers and those of
``data/library.py`` alike: ``MAX_LINE_BYTES``, ``MAX_GZIP_RATIO`` with ``GZIP_ALLOWANCE_BYTES``,
``MAX_TARGETS_BYTES`` and ``_MAX_HTTP_DEPTH``.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Sequence
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
    "MAX_GZIP_RATIO",
    "MAX_LINE_BYTES",
    "MAX_TARGETS_BYTES",
    "REQUIRED_COLUMNS",
    "ByteStream",
    "InputFileError",
    "bundled_root",
    "dataset_location",
    "gunzip_stream",
    "is_data_file",
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
"""A longer text line of a library is refused unread: only its first bytes are kept, to show."""
MAX_GZIP_RATIO = 100
"""A gzip input may decompress to at most this many times the compressed bytes read so far (plus
``GZIP_ALLOWANCE_BYTES``): real tables and libraries compress 2-10 times, a gzip bomb ~1,000 times."""
GZIP_ALLOWANCE_BYTES = 64 << 20
"""Decompressed bytes any gzip input may reach whatever its ratio (small, very repetitive files)."""
MAX_TARGETS_BYTES = 64 << 20
"""A targets file (FASTA or CSV) is read whole: a larger one is refused (1,600 sequences of 40,000 letters)."""


class InputFileError(Exception):
    """A source file that cannot be used at all; ``str(e)`` is one line: ``<path>: <problem>``."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


ByteStream = IO[bytes] | io.RawIOBase
"""A binary stream the readers read front to back: an open file, a response body, a gunzip stream."""


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


def _gunzip(location: str, data: bytes) -> bytes:
    """``data`` decompressed under the gzip cap; a corrupt or cut file is an :class:`InputFileError`."""
    import zlib

    try:
        with gunzip_stream(io.BytesIO(data), location) as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error):
        raise InputFileError(location, "not a valid gzip file") from None


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
    """
    location = str(location)
    kind = _kind(location)
    decoded = False
    if kind == "http":
        name = urlparse(location).path
        _check_suffix(location, name)
        data, decoded = _http_body(location)
    elif kind == "s3":
        name = location
        _check_suffix(location, name)
        data = _s3_bytes(location, s3_endpoint_url)
    else:
        path = _local_path(location)
        name = path.name
        if path.is_dir():
            raise InputFileError(location, "is a folder, not a file")
        if path.exists():
            _check_suffix(location, name)
        data = _local_bytes(location, path)
    return _parse(
        location, name, data, source_file=location, gzip_decoded=decoded, required=required, keep_order=keep_order
    )


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
    ``keep_order`` as for :func:`read_table`; each file must have the required columns.
    """
    location = str(location)
    kind = _kind(location)
    required = tuple(required)

    def table(uri: str) -> pd.DataFrame:
        return read_table(uri, s3_endpoint_url=s3_endpoint_url, required=required, keep_order=keep_order)

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


def _local_bytes(location: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
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


def _http_body(url: str) -> tuple[bytes, bool]:
    """The body of a GET and whether a ``Content-Encoding: gzip`` was undone (under the gzip cap)."""
    import requests
    import urllib3.exceptions

    response = _http_get(url, stream=True)
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    try:
        with response:
            data = response.raw.read(decode_content=False)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise InputFileError(url, f"cannot download ({type(exc).__name__})") from None
    if encoding in ("", "identity"):
        return data, False
    if encoding in ("gzip", "x-gzip"):
        return _gunzip(url, data), True
    raise InputFileError(url, f"unsupported Content-Encoding {encoding!r} (expected gzip or none)")


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


def _s3_bytes(uri: str, endpoint_url: str | None) -> bytes:
    bucket, key = _split_s3(uri)
    if not bucket or not key:
        raise InputFileError(uri, "not an S3 object URI (expected s3://bucket/key)")
    fs = storage_path(uri, endpoint_url).fs
    try:
        return fs.cat_file(f"{bucket}/{key}")
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
    data: bytes,
    *,
    source_file: str,
    gzip_decoded: bool = False,
    required: Sequence[str] = REQUIRED_COLUMNS,
    keep_order: bool = False,
) -> pd.DataFrame:
    lowered = name.lower()
    if not data:
        raise InputFileError(location, "empty file")
    if lowered.endswith(".csv.gz") and not (gzip_decoded and not data.startswith(b"\x1f\x8b")):
        data = _gunzip(location, data)
        if not data:
            raise InputFileError(location, "empty file")
    table = _parse_parquet(location, data) if lowered.endswith((".parquet", ".pq")) else _parse_csv(location, data)
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
    table["source_file"] = source_file
    table["source_row"] = pd.RangeIndex(1, len(table) + 1).to_numpy(dtype="int64")
    return table.reset_index(drop=True)


def _parse_csv(location: str, data: bytes) -> pd.DataFrame:
    """A CSV as strings, read record by record with :mod:`csv` (strict quoting): blank lines are
    skipped, a short row is padded with empty cells, a row wider than the header refuses the file
    naming its line. (pandas' C tokenizer was left: ``""\r`` turns 30 bytes into 262,145 rows.)"""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = exc.start + (3 if data.startswith(b"\xef\xbb\xbf") else 0)
        byte = data[offset]
        raise InputFileError(location, f"not valid UTF-8 text (byte 0x{byte:02x} at offset {offset})") from None
    if not text.strip():
        raise InputFileError(location, "empty file")
    if "\x00" in text:
        raise InputFileError(location, f"not a CSV text file (NUL byte at offset {text.index(chr(0))})")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    start = 1
    try:
        for record in reader:
            if not record or (len(record) == 1 and not record[0].strip()):
                pass
            elif header is None:
                header = _column_names(record)
            elif len(record) > len(header):
                raise InputFileError(
                    location, f"cannot parse CSV (line {start}: {len(record)} fields, the header has {len(header)})"
                )
            else:
                rows.append(record + [""] * (len(header) - len(record)) if len(record) < len(header) else record)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputFileError(location, f"cannot parse CSV (line {start}: {exc})") from None
    if header is None:
        raise InputFileError(location, "empty file")
    return pd.DataFrame(rows, columns=header, dtype=object) if rows else pd.DataFrame(columns=header, dtype=object)


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


def _parse_parquet(location: str, data: bytes) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data)).to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
        raise InputFileError(location, f"cannot parse Parquet ({detail})") from None
    table.columns = [str(c) for c in table.columns]
    for column in table.columns:
        table[column] = table[column].map(_as_text).astype(object)
    return table


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
