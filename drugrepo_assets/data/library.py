"""Compound libraries read as a stream, and the locations screening inputs are read from.

A compound library of millions to billions of molecules is read as a stream by :func:`iter_library`:
chunks of at most ``chunk_rows`` rows, from one file, a folder or an S3 prefix, in the formats
vendors ship (Enamine REAL, ZINC, ChEMBL, MolPort, eMolecules):

* text: ``.smi``, ``.smiles``, ``.txt``, ``.cxsmiles``, ``.csv``, ``.tsv``, each optionally ``.gz``
  (decompressed as it is read). Fields are separated by whitespace, tabs or commas (``.csv``: commas,
  else tabs, else semicolons; ``.tsv``: tabs). A first line that names a SMILES column is a header
  (``.csv``/``.tsv`` must have one); without one, the SMILES is the first field and the id the
  second (``.smi`` convention; whitespace-separated: the rest of the line). Blank lines and lines
  starting with ``#`` are skipped. Lines are read with a bounded length: a longer one is refused
  without ever being held whole.
* ``.parquet`` / ``.pq``: read batch by batch, only the SMILES and id columns.

No bad row stops the stream and none is dropped silently: each is in a chunk's ``rejected`` table
with its file, 1-based physical line (Parquet: row) and a reason. A file that cannot be used at all
is an :class:`InputFileError` naming it (found midway, e.g. a corrupt gzip, it is raised there):
binary content (a NUL byte, at the first block read), more than ``MAX_BLANK_LINES`` blank or comment
lines in a row, a Parquet row group over ``ReadLimits.row_group_bytes`` (from the metadata).

The files of a location (`members`: a file, a folder or a prefix; local, ``http(s)://`` or ``s3://``,
in the `FileFormats` of one kind of input), opening one (`open_binary`) and reading its Parquet
columns within the limits (`ParquetSource`, `check_parquet_columns`, `batch_values`) are shared with
the target reader, ``screening/targets.py``.

The limits (``MAX_LINE_BYTES``, ``MAX_BLANK_LINES``, `read_limits`, the gzip cap) are defined with
the pair-table readers in ``data/sources.py``; the SMILES length limit ``MAX_SMILES_CHARS`` in
``data/rules.py``.
"""

from __future__ import annotations

import csv
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
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import urllib3.exceptions
from fsspec import AbstractFileSystem

from drugrepo_assets.data.rules import MAX_SMILES_CHARS, missing_refusal, smiles_refusal
from drugrepo_assets.data.sources import (
    HTTP_TIMEOUT_S,
    LIMIT_VARIABLES,
    MAX_BLANK_LINES,
    MAX_LINE_BYTES,
    ByteStream,
    InputFileError,
    TableBudget,
    binary_refusal,
    dictionary_text_bytes,
    dictionary_values,
    gunzip_stream,
    is_text_type,
    parquet_type_problem,
    read_limits,
    s3_problem,
)
from drugrepo_assets.files import storage_path

__all__ = [
    "LIBRARY_FORMATS",
    "LIBRARY_SUFFIXES",
    "MAX_LINE_BYTES",
    "MAX_SMILES_CHARS",
    "READ_ERRORS",
    "FileFormats",
    "LibraryChunk",
    "Member",
    "ParquetSource",
    "batch_values",
    "check_parquet_columns",
    "count_rows",
    "iter_library",
    "library_files",
    "location_kind",
    "members",
    "open_binary",
    "read_library",
    "read_problem",
    "text_stream",
]

logger = logging.getLogger(__name__)

VALUE_CHARS = 80
"""How much of a refused value ``rejected`` shows (then ``…``)."""

_BLOCK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"
_S3_BLOCK_BYTES = 8 << 20
_TEXT_SUFFIXES = (".smi", ".smiles", ".txt", ".cxsmiles")
_TABLE_SUFFIXES = (".csv", ".tsv")
_PARQUET_SUFFIXES = (".parquet", ".pq")
LIBRARY_SUFFIXES: tuple[str, ...] = (
    *(s + gz for s in (*_TEXT_SUFFIXES, *_TABLE_SUFFIXES) for gz in ("", ".gz")),
    *_PARQUET_SUFFIXES,
)
_SUFFIX_TEXT = ".smi, .smiles, .txt, .cxsmiles, .csv, .tsv (each optionally .gz), .parquet"

# Column names, compared lower-case without spaces, "_" or "-"; the first present wins.
_SMILES_NAMES = (
    "smiles",
    "canonicalsmiles",
    "isomericsmiles",
    "isosmiles",
    "cxsmiles",
    "smilescanonical",
    "smi",
    "smile",
)
_ID_NAMES = (
    "id",
    "idnumber",
    "zincid",
    "chemblid",
    "molportid",
    "mculeid",
    "versionid",
    "catalogid",
    "catalognumber",
    "compoundid",
    "drugid",
    "moleculeid",
    "molid",
    "name",
    "title",
    "identifier",
    "vendorid",
    "emolid",
    "cid",
)

REJECTED_COLUMNS = ("file", "line", "id", "value", "reason")


@dataclass(frozen=True)
class LibraryChunk:
    """Part of a library stream.

    ``rows``: ``id``, ``smiles``, ``file``, ``line`` (str, str, str, int64). ``rejected``: ``file``,
    ``line``, ``id``, ``value`` (shown truncated), ``reason``. ``file`` is the location for a single
    file, else the path relative to the folder or prefix; ``line`` the 1-based physical line
    (Parquet: row).
    """

    rows: pd.DataFrame
    rejected: pd.DataFrame


# --- the stream -------------------------------------------------------------------------------


def library_files(location: str, s3_endpoint_url: str | None = None) -> list[tuple[str, str | None]]:
    """(label, version) of each file of a library, in reading order: the label as the ``file``
    column shows it, the version its size and modification time (local), its ETag (S3), or None
    (http(s): unknown), so a caller can tell a file it has already read."""
    out: list[tuple[str, str | None]] = []
    for member in members(str(location), s3_endpoint_url):
        if member.kind == "local":
            stat = Path(member.uri).stat()
            out.append((member.label, f"{stat.st_size}:{stat.st_mtime_ns}"))
        elif member.fs is not None:
            out.append((member.label, str(member.fs.info(member.uri[len("s3://") :]).get("ETag", "")) or None))
        else:
            out.append((member.label, None))
    return out


def iter_library(
    location: str, chunk_rows: int = 100_000, s3_endpoint_url: str | None = None, only: str | None = None
) -> Iterator[LibraryChunk]:
    """Stream a compound library: a file, a folder or a prefix; local, ``http(s)://`` (a file) or ``s3://``.

    Files of a folder or prefix are read recursively in sorted path order; files that are not in a
    library format (or hidden) are skipped and named in a log warning. A chunk holds at most
    ``chunk_rows`` rows, good and rejected together; it may end inside a file, and may hold rows
    of several files. A library without any row yields nothing. ``only``: read just the file of
    that label (`library_files`).
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    builder = _ChunkBuilder()
    for member in members(str(location), s3_endpoint_url):
        if only is not None and member.label != only:
            continue
        default_id = _generated_id(member.id_prefix)
        for event in _events(member, default_id, batch_rows=min(chunk_rows, 65_536)):
            if isinstance(event, _Bad):
                builder.bad(member.label, event)
            else:
                builder.row(member.label, event)
            if builder.size >= chunk_rows:
                yield builder.take()
    if builder.size:
        yield builder.take()


def count_rows(location: str, s3_endpoint_url: str | None = None) -> int | None:
    """About how many rows a local library holds (its text files' lines, its Parquet files' rows),
    for a progress bar's ETA; None for a library over http(s) or S3, which would have to be fetched."""
    files = members(str(location), s3_endpoint_url)
    if any(m.kind != "local" for m in files):
        return None
    import pyarrow as pa

    total = 0
    for member in files:
        try:
            if member.fmt == "parquet":
                total += pq.ParquetFile(member.uri).metadata.num_rows
                continue
            with open(member.uri, "rb") as raw, gunzip_stream(raw, member.uri) if member.gz else raw as stream:
                lines, offset = 0, 0
                while block := stream.read(_BLOCK_BYTES):
                    refusal = binary_refusal(block, offset, lines + 1)
                    if refusal is not None:
                        raise InputFileError(member.uri, refusal)
                    lines += block.count(b"\n")
                    offset += len(block)
                total += lines
        except pa.ArrowException as exc:
            detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
            raise InputFileError(member.uri, f"not a valid Parquet file ({detail})") from None
        except READ_ERRORS as exc:
            raise read_problem(member, exc) from None
    return total


class _Bad(NamedTuple):
    line: int
    id: str
    value: str
    reason: str


class _ChunkBuilder:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.ids: list[str] = []
        self.smiles: list[str] = []
        self.files: list[str] = []
        self.lines: list[int] = []
        self.rejected: list[tuple[str, int, str, str, str]] = []
        self.size = 0

    def row(self, file: str, event: tuple[int, str, str]) -> None:
        line, ident, smiles = event
        self.ids.append(ident)
        self.smiles.append(smiles)
        self.files.append(file)
        self.lines.append(line)
        self.size += 1

    def bad(self, file: str, event: _Bad) -> None:
        self.rejected.append((file, event.line, event.id, event.value, event.reason))
        self.size += 1

    def take(self) -> LibraryChunk:
        rows = pd.DataFrame(
            {
                "id": pd.Series(self.ids, dtype=object),
                "smiles": pd.Series(self.smiles, dtype=object),
                "file": pd.Series(self.files, dtype=object),
                "line": np.asarray(self.lines, dtype=np.int64),
            }
        )
        columns = list(zip(*self.rejected)) or [()] * len(REJECTED_COLUMNS)
        rejected = pd.DataFrame(
            {
                name: np.asarray(values, dtype=np.int64) if name == "line" else pd.Series(values, dtype=object)
                for name, values in zip(REJECTED_COLUMNS, columns)
            }
        )
        self._reset()
        return LibraryChunk(rows=rows, rejected=rejected)


def _generated_id(prefix: str) -> Callable[[int, bool], str]:
    return lambda line, header: f"{prefix}:{line}"


# --- the files of a location ------------------------------------------------------------------


class Member(NamedTuple):
    """One file of a location (`members`), as the readers open it."""

    uri: str  # the full location, for errors
    label: str  # the ``file`` column
    id_prefix: str  # generated ids: ``<id_prefix>:<line>``
    kind: str  # local | http | s3
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


LIBRARY_FORMATS = FileFormats(
    "library",
    (("text", _TEXT_SUFFIXES), ("csv", (".csv",)), ("tsv", (".tsv",)), ("parquet", _PARQUET_SUFFIXES)),
    _SUFFIX_TEXT,
)


def location_kind(location: str) -> str:
    """``http`` (also https), ``s3`` (also s3a) or ``local`` (a path or a ``file:`` URL)."""
    scheme = urlparse(location).scheme.lower()
    if scheme in ("http", "https"):
        return "http"
    if scheme in ("s3", "s3a"):
        return "s3"
    return "local"


def _not_of(location: str, formats: FileFormats) -> InputFileError:
    return InputFileError(location, f"not a {formats.noun} file (expected {formats.listed})")


def _hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in PurePosixPath(rel).parts)


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


def members(location: str, s3_endpoint_url: str | None, formats: FileFormats = LIBRARY_FORMATS) -> list[Member]:
    """The files of a location in reading order: one file, or a folder's or S3 prefix's files in
    ``formats`` (recursively, sorted by path; others and hidden ones skipped, named in a log warning).
    A location without any such file is an :class:`InputFileError` naming it."""
    kind = location_kind(location)
    if kind == "http":
        name = unquote(urlparse(location).path)
        found = formats.format_of(name)
        if found is None:
            raise InputFileError(
                location,
                f"not a {formats.noun} file (expected {formats.listed}); folders cannot be listed over http(s)",
            )
        return [Member(location, location, PurePosixPath(name).name, "http", *found)]
    if kind == "s3":
        return _s3_members(location, s3_endpoint_url, formats)
    path = (
        Path(unquote(urlparse(location).path)) if location.lower().startswith("file:") else Path(location).expanduser()
    )
    if path.is_dir():
        files, skipped = [], []
        for p in path.rglob("*"):
            if not p.is_file():
                continue
            rel = p.relative_to(path).as_posix()
            found = formats.format_of(p.name)
            if found is None or _hidden(rel):
                skipped.append(rel)
            else:
                files.append(Member(str(p), rel, rel, "local", *found))
        _warn_skipped(location, sorted(skipped), formats)
        if not files:
            raise InputFileError(location, f"folder holds no {formats.noun} files ({formats.listed})")
        return sorted(files, key=lambda m: m.label)
    found = formats.format_of(path.name)
    if not path.exists():
        raise InputFileError(location, "file not found" if found else "no such file or folder")
    if found is None:
        raise _not_of(location, formats)
    return [Member(location, location, path.name, "local", *found)]


def _s3_members(location: str, endpoint_url: str | None, formats: FileFormats) -> list[Member]:
    root = storage_path(location, endpoint_url)
    fs, key = root.fs, root.path.rstrip("/")
    bucket_only = "/" not in key
    try:
        if not bucket_only and not location.endswith("/") and fs.isfile(key):
            found = formats.format_of(key)
            if found is None:
                raise _not_of(location, formats)
            return [Member(location, location, PurePosixPath(key).name, "s3", *found, fs)]
        keys = fs.find(key)
    except InputFileError:
        raise
    except Exception as exc:  # s3fs and botocore raise many types; s3_problem names them
        raise InputFileError(location, s3_problem(exc, fs, key.split("/")[0])) from None
    files, skipped = [], []
    for full in sorted(keys):
        if not full.startswith(key + "/"):
            continue
        rel = full[len(key) + 1 :]
        found = formats.format_of(rel)
        if found is None or _hidden(rel):
            skipped.append(rel)
        else:
            files.append(Member(f"s3://{full}", rel, rel, "s3", *found, fs))
    _warn_skipped(location, skipped, formats)
    if not files and not keys and not location.endswith("/") and formats.format_of(key) is not None:
        raise InputFileError(location, "no such S3 key")
    if not files:
        raise InputFileError(location, f"no {formats.noun} files ({formats.listed}) under this S3 prefix")
    return files


# --- opening a file ---------------------------------------------------------------------------


def open_binary(member: Member) -> ByteStream:
    """The file's bytes as sent (gzip not undone), for sequential reading."""
    try:
        if member.kind == "local":
            return open(member.uri, "rb")
        if member.fs is not None:
            return member.fs.open(member.uri[len("s3://") :], "rb", block_size=_S3_BLOCK_BYTES)
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
        raise InputFileError(member.uri, s3_problem(exc, member.fs, urlparse(member.uri).netloc)) from None
    return _http_stream(member)


def _http_stream(member: Member) -> ByteStream:
    import requests

    try:
        response = requests.get(member.uri, stream=True, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise InputFileError(member.uri, f"cannot download ({type(exc).__name__})") from None
    if response.status_code >= 400:
        response.close()
        reason = f" {response.reason}" if response.reason else ""
        raise InputFileError(member.uri, f"HTTP error {response.status_code}{reason}")
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


def _events(
    member: Member, default_id: Callable[[int, bool], str], *, batch_rows: int, compat: bool = False
) -> Iterator[tuple[int, str, str] | _Bad]:
    """Rows ``(line, id, smiles)`` and refused rows (:class:`_Bad`) of one file, in file order."""
    if member.fmt == "parquet":
        yield from _parquet_events(member, default_id, batch_rows, compat)
        return
    with text_stream(member) as stream:
        yield from _text_events(member, stream, default_id, compat)


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


# --- text formats -----------------------------------------------------------------------------


def _physical_lines(stream: ByteStream, limit: int, location: str) -> Iterator[tuple[int, bytes | None, int, bytes]]:
    """``(number, line, length, head)``: each line without its end; ``line`` is None when it is longer
    than ``limit`` bytes (then only ``head``, its first bytes, is kept). Holds at most a block plus
    ``limit`` bytes. A NUL byte refuses the file (``location``) as binary content, with its line."""
    keep = VALUE_CHARS * 4
    buffer = b""
    number = 0
    offset = 0  # bytes read before ``data``
    skipping, skipped, head = False, 0, b""
    while True:
        data = stream.read(_BLOCK_BYTES)
        if not data:
            break
        refusal = binary_refusal(data, offset, number + 1)
        if refusal is not None:
            raise InputFileError(location, refusal)
        offset += len(data)
        buffer = buffer + data if buffer else data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            number += 1
            if skipping:
                yield number, None, skipped + end, head
                skipping = False
            elif end - start > limit:
                yield number, None, end - start, buffer[start : start + keep]
            else:
                yield number, buffer[start:end], end - start, b""
            start = end + 1
        rest = len(buffer) - start
        if skipping:
            skipped += rest
            buffer = b""
        elif rest > limit:
            skipping, skipped, head = True, rest, buffer[start : start + keep]
            buffer = b""
        else:
            buffer = buffer[start:] if start else buffer
    if skipping:
        yield number + 1, None, skipped, head
    elif buffer:
        yield number + 1, buffer, len(buffer), b""


def _shown(value: str) -> str:
    return value if len(value) <= VALUE_CHARS else value[:VALUE_CHARS] + "…"


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.strip().strip('"').strip("'").lower())


def _find_columns(names: list[str]) -> tuple[int | None, int | None]:
    """Indexes of the SMILES and id columns (by name; the id else the other of two columns)."""
    normal = [_norm(n) for n in names]
    smiles = next((normal.index(n) for n in _SMILES_NAMES if n in normal), None)
    if smiles is None:
        return None, None
    ident = next((normal.index(n) for n in _ID_NAMES if n in normal), None)
    if ident is None and len(names) == 2:
        ident = 1 - smiles
    return smiles, ident


def _sniff(fmt: str, line: str) -> str:
    """The field separator: ``"\\t"``, ``","``, ``";"`` or ``" "`` (any run of whitespace)."""
    if fmt == "tsv":
        return "\t"
    if fmt == "csv":
        return next((s for s in (",", "\t", ";") if s in line), ",")
    if "\t" in line:
        return "\t"
    stripped = line.strip()
    if "," in stripped and not any(c.isspace() for c in stripped):
        return ","
    return " "


def _split(line: str, sep: str) -> list[str]:
    if sep == " ":
        return line.split()
    if sep == "," and '"' in line:
        return next(csv.reader((line,), strict=True))
    return line.split(sep)


def _text_events(
    member: Member, stream: ByteStream, default_id: Callable[[int, bool], str], compat: bool
) -> Iterator[tuple[int, str, str] | _Bad]:
    sep: str | None = None
    width = 0  # fields in the header; 0: no header
    smiles_at, id_at = 0, None
    skipped = 0  # blank and comment lines in a row
    for number, raw, length, head in _physical_lines(stream, MAX_LINE_BYTES, member.uri):
        if raw is None:
            if number == 1:
                head = head.removeprefix(_BOM)
            if head.lstrip().startswith(b"#"):
                skipped = _skipped_line(member, number, skipped)
                continue
            skipped = 0
            if sep is None and member.fmt != "text":
                raise InputFileError(
                    member.uri, f"line {number}: header of {length} bytes, more than the limit of {MAX_LINE_BYTES}"
                )
            yield _Bad(
                number,
                "",
                _shown(head.decode("utf-8", "replace")),
                f"line: {length} bytes, more than the limit of {MAX_LINE_BYTES}",
            )
            continue
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        stripped = raw.strip()
        if not stripped or stripped.startswith(b"#"):
            skipped = _skipped_line(member, number, skipped)
            continue
        skipped = 0
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            problem = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the line)"
            if sep is None and member.fmt != "text":
                raise InputFileError(member.uri, f"line {number}: header {problem}") from None
            yield _Bad(number, "", _shown(raw.decode("utf-8", "replace").strip()), f"line: {problem}")
            continue
        if sep is None:
            sep = _sniff(member.fmt, text)
            try:
                names = _split(text, sep)
            except csv.Error:
                names = []
            found_smiles, found_id = _find_columns(names)
            if found_smiles is not None:
                width, smiles_at, id_at = len(names), found_smiles, found_id
                continue
            if member.fmt != "text":
                found = ", ".join(repr(n.strip()) for n in names) or "nothing"
                raise InputFileError(
                    member.uri,
                    f"no SMILES column in the header (line {number}; found: {_shown(found)}; "
                    f"expected one named {', '.join(_SMILES_NAMES[:3])}, ...)",
                )
        if width:
            try:
                fields = _split(text, sep)
            except csv.Error as exc:
                yield _Bad(number, "", _shown(text.strip()), f"CSV: {exc}")
                continue
            if len(fields) != width:
                if not (compat and len(fields) < width):
                    ident = fields[id_at].strip() if id_at is not None and id_at < len(fields) else ""
                    yield _Bad(number, ident, _shown(text.strip()), f"fields: {len(fields)}, the header has {width}")
                    continue
                fields += [""] * (width - len(fields))
            smiles = fields[smiles_at]
            ident = fields[id_at].strip() if id_at is not None else ""
        elif "\t" in text or (sep == "," and "," in text):
            # No header: the SMILES is the first field, the id the second (line by line, so
            # a file mixing tabs and spaces reads as it did with whitespace alone).
            try:
                fields = _split(text, "\t" if "\t" in text else ",")
            except csv.Error as exc:
                yield _Bad(number, "", _shown(text.strip()), f"CSV: {exc}")
                continue
            smiles = fields[0]
            ident = fields[1].strip() if len(fields) > 1 else ""
        else:  # whitespace: the SMILES, then the name (the rest of the line)
            parts = text.split(None, 1)  # [] for a line of Unicode blanks only (U+0085, U+2028 ...): an empty SMILES
            smiles = parts[0] if parts else ""
            ident = parts[1].strip() if len(parts) > 1 else ""
        if not ident:
            ident = default_id(number, bool(width))
        yield _checked(number, ident, smiles, compat)


def _skipped_line(member: Member, number: int, skipped: int) -> int:
    """``skipped`` + 1 for one more blank or comment line in a row; past ``MAX_BLANK_LINES`` the file is
    refused (a file of newlines would otherwise be read to its end, line by line)."""
    if skipped >= MAX_BLANK_LINES:
        raise InputFileError(
            member.uri,
            f"line {number}: more than {MAX_BLANK_LINES:,} blank or comment lines in a row (sources.MAX_BLANK_LINES)",
        )
    return skipped + 1


def _checked(number: int, ident: str, smiles: str, compat: bool) -> tuple[int, str, str] | _Bad:
    """A row (its SMILES stripped), or its refusal by the input rules' text checks (`data.rules`: blank, too
    long, too many atom symbols) before a worker parses it; ``smiles`` is the field as read, so a blank
    one is named as blank (``compat``: `read_library` passes every row on)."""
    refusal = None if compat else missing_refusal("SMILES", smiles) or smiles_refusal(smiles.strip())
    if refusal is not None:
        return _Bad(number, ident, _shown(smiles.strip()), str(refusal))
    return number, ident, smiles.strip()


# --- Parquet ----------------------------------------------------------------------------------


def _parquet_events(
    member: Member, default_id: Callable[[int, bool], str], batch_rows: int, compat: bool
) -> Iterator[tuple[int, str, str] | _Bad]:
    import pyarrow as pa

    row_group_bytes = read_limits().row_group_bytes
    with ParquetSource(member) as source:
        try:
            handle = pq.ParquetFile(source)
            names = list(handle.schema_arrow.names)
        except (pa.ArrowException, OSError, ValueError) as exc:
            detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
            raise InputFileError(member.uri, f"not a valid Parquet file ({detail})") from None
        smiles_at, id_at = _find_columns(names)
        if smiles_at is None:
            raise InputFileError(
                member.uri, f"no SMILES column (found: {_shown(', '.join(map(repr, names)) or 'nothing')})"
            )
        read = [smiles_at] + ([id_at] if id_at is not None else [])
        columns = [names[i] for i in read]
        number = 0
        try:
            text = check_parquet_columns(member, handle, read, row_group_bytes)
            handle = pq.ParquetFile(source, metadata=handle.metadata, read_dictionary=text)
            for batch in handle.iter_batches(batch_size=batch_rows, columns=columns):
                smiles_values = batch_values(batch.column(0))
                id_values = batch_values(batch.column(1)) if id_at is not None else [None] * len(smiles_values)
                for smiles, ident in zip(smiles_values, id_values):
                    number += 1
                    ident = (
                        ""
                        if ident is None
                        else ident.decode("utf-8", "replace")
                        if isinstance(ident, bytes)
                        else str(ident).strip()
                    )
                    if not ident:
                        ident = default_id(number, True)
                    if isinstance(smiles, bytes):
                        try:
                            smiles = smiles.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            yield _Bad(
                                number,
                                ident,
                                _shown(smiles.decode("utf-8", "replace")),
                                f"SMILES: not valid UTF-8 (byte 0x{smiles[exc.start]:02x} at byte {exc.start + 1})",
                            )
                            continue
                    smiles = "" if smiles is None else str(smiles)
                    yield _checked(number, ident, smiles, compat)
        except (pa.ArrowException, OSError, ValueError) as exc:
            detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
            raise InputFileError(member.uri, f"not a valid Parquet file ({detail})") from None


_DENSE_TEXT_BYTES = 64 << 20
"""Text of one column of a Parquet batch copied row by row; above it, rows of one value share one
string (a 200 KB file can repeat a long value millions of times)."""


def check_parquet_columns(member: Member, handle: pq.ParquetFile, read: list[int], limit: int) -> list[str]:
    """The text columns among the columns ``read`` (by position), to read as dictionaries, after every
    row group's column data (uncompressed, from the metadata) is checked against ``limit``; a
    column of nested values, or a row group over the limit, refuses the file."""
    schema = handle.schema_arrow
    fields = [schema.field(i) for i in read]
    for field in fields:
        problem = parquet_type_problem(field.type)
        if problem is not None:
            raise InputFileError(member.uri, f"column {field.name!r}: {problem}")
    metadata = handle.metadata
    wanted = {field.name for field in fields}
    leaves = [i for i in range(metadata.num_columns) if metadata.schema.column(i).path.split(".")[0] in wanted]
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        size = sum(max(group.column(i).total_uncompressed_size, 0) for i in leaves)
        if size > limit:
            raise InputFileError(
                member.uri,
                f"row group {g + 1}: {size:,} bytes of column data (uncompressed), more than the limit of "
                f"{limit:,} bytes for a row group read at a time (set {LIMIT_VARIABLES['row_group_bytes']} "
                "to change it)",
            )
    return [field.name for field in fields if is_text_type(field.type)]


def batch_values(column: object) -> list[Any]:
    """One column of a Parquet batch as Python values; a dictionary's rows share their values when
    copying them would pass ``_DENSE_TEXT_BYTES``."""
    import pyarrow as pa

    if isinstance(column, pa.DictionaryArray):
        return dictionary_values(column, shared=dictionary_text_bytes(column) > _DENSE_TEXT_BYTES)
    assert isinstance(column, pa.Array)
    return column.to_pylist()


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
        if member.kind == "s3":
            return raw
        spool = tempfile.TemporaryFile(prefix="drugrepo-library-")
        self.closers.append(spool.close)
        try:
            shutil.copyfileobj(raw, spool, _BLOCK_BYTES)
        except Exception as exc:
            raise InputFileError(member.uri, f"cannot download ({type(exc).__name__})") from None
        spool.seek(0)
        return spool

    def __exit__(self, *exc: object) -> None:
        for close in reversed(self.closers):
            close()


# --- small files, whole ---------------------------------------------------------------------


_READ_LIBRARY_COLUMNS = ("id", "smiles", "line")


def read_library(path: str | Path) -> pd.DataFrame:
    """One small library file as columns ``id``, ``smiles``, ``line``, read by the stream's parser.

    Rows go on to the caller's own checks as before: a row with an empty SMILES (or a CSV row
    with missing cells) keeps its empty value, an empty id cell stays empty, a ``.smi`` line
    without a name gets ``line<n>``, and an over-long SMILES is passed on. A file whose name is no
    library format is read as a CSV with a header. A row that cannot be passed on (bytes that are
    not UTF-8, more fields than the header, a line over ``MAX_LINE_BYTES``) makes the whole file
    an :class:`InputFileError` naming its line, as such files always were; so is a file without
    any molecule ("no molecules"), and one past the limits of a table read whole (`read_limits`).
    """
    location = str(path)
    if location_kind(location) == "local" and Path(location).is_dir():
        raise InputFileError(location, "is a folder, not a file")
    if location_kind(location) == "local" and not Path(location).exists():
        raise InputFileError(location, "file not found")
    if location_kind(location) == "local" and Path(location).is_file() and LIBRARY_FORMATS.format_of(location) is None:
        member = Member(location, location, Path(location).name, "local", "csv", False)
    else:
        found = members(location, None)
        if len(found) != 1:
            raise InputFileError(location, "is a folder, not a file")
        member = found[0]

    def default_id(line: int, header: bool) -> str:
        return "" if header else f"line{line}"

    rows = []
    budget = TableBudget(read_limits())
    for event in _events(member, default_id, batch_rows=65_536, compat=True):
        if isinstance(event, _Bad):
            raise InputFileError(location, f"line {event.line}: {event.reason.removeprefix('line: ')}")
        line, ident, smiles = event
        budget.add_rows(location, 1, len(_READ_LIBRARY_COLUMNS), f"line {line}")
        budget.add_bytes(location, len(ident) + len(smiles))
        rows.append((ident, smiles, line))
    if not rows:
        raise InputFileError(location, "no molecules")
    table = pd.DataFrame(rows, columns=list(_READ_LIBRARY_COLUMNS))
    table["line"] = table["line"].astype("int64")
    return table
