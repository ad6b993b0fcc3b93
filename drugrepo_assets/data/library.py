"""Compound libraries read as a stream of row chunks (`iter_library`), and one small library file read whole (`read_library`).

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
in the `FileFormats` of one kind of input) and opening one (``data/input_files.py``), the text formats
(``data/library_text.py``) and Parquet (``data/library_parquet.py``, its columns read within the limits)
are shared with the target reader, ``screening/targets.py``.

The limits (``MAX_LINE_BYTES``, ``MAX_BLANK_LINES``, `read_limits`, the gzip cap) are defined in
``data/limits.py``; the SMILES length limit ``MAX_SMILES_CHARS`` in ``data/rules.py``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from drugrepo_assets.data.input_files import (
    READ_ERRORS,
    FileFormats,
    Member,
    members,
    read_problem,
    text_stream,
)
from drugrepo_assets.data.library_parquet import parquet_events
from drugrepo_assets.data.library_text import Bad, text_events
from drugrepo_assets.data.limits import (
    BLOCK_BYTES,
    InputFileError,
    TableBudget,
    binary_refusal,
    gunzip_stream,
    read_limits,
)
from drugrepo_assets.location import Location

__all__ = [
    "LIBRARY_FORMATS",
    "REJECTED_COLUMNS",
    "LibraryChunk",
    "count_rows",
    "iter_library",
    "library_files",
    "read_library",
]

_TEXT_SUFFIXES = (".smi", ".smiles", ".txt", ".cxsmiles")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_SUFFIX_TEXT = ".smi, .smiles, .txt, .cxsmiles, .csv, .tsv (each optionally .gz), .parquet"

LIBRARY_FORMATS = FileFormats(
    "library",
    (("text", _TEXT_SUFFIXES), ("csv", (".csv",)), ("tsv", (".tsv",)), ("parquet", _PARQUET_SUFFIXES)),
    _SUFFIX_TEXT,
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


def library_files(location: Location | str) -> list[tuple[str, str | None]]:
    """(label, version) of each file of a library, in reading order: the label as the ``file``
    column shows it, the version its size and modification time (local), its ETag (S3), or None
    (http(s): unknown), so a caller can tell a file it has already read."""
    out: list[tuple[str, str | None]] = []
    for member in members(location, LIBRARY_FORMATS):
        if member.kind == "local":
            stat = Path(member.uri).stat()
            out.append((member.label, f"{stat.st_size}:{stat.st_mtime_ns}"))
        elif member.fs is not None:
            out.append((member.label, str(member.fs.info(Location.of(member.uri).s3_path).get("ETag", "")) or None))
        else:
            out.append((member.label, None))
    return out


def iter_library(
    location: Location | str, chunk_rows: int = 100_000, only: str | None = None
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
    for member in members(location, LIBRARY_FORMATS):
        if only is not None and member.label != only:
            continue
        default_id = _generated_id(member.id_prefix)
        for event in _events(member, default_id, batch_rows=min(chunk_rows, 65_536)):
            if isinstance(event, Bad):
                builder.bad(member.label, event)
            else:
                builder.row(member.label, event)
            if builder.size >= chunk_rows:
                yield builder.take()
    if builder.size:
        yield builder.take()


def count_rows(location: Location | str) -> int | None:
    """About how many rows a local library holds (its text files' lines, its Parquet files' rows),
    for a progress bar's ETA; None for a library over http(s) or S3, which would have to be fetched."""
    files = members(location, LIBRARY_FORMATS)
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
                while block := stream.read(BLOCK_BYTES):
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

    def bad(self, file: str, event: Bad) -> None:
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


def _events(
    member: Member, default_id: Callable[[int, bool], str], *, batch_rows: int, compat: bool = False
) -> Iterator[tuple[int, str, str] | Bad]:
    """Rows ``(line, id, smiles)`` and refused rows (:class:`Bad`) of one file, in file order."""
    if member.fmt == "parquet":
        yield from parquet_events(member, default_id, batch_rows, compat)
        return
    with text_stream(member) as stream:
        yield from text_events(member, stream, default_id, compat)


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
    local = Location.of(location).kind == "local"
    if local and Path(location).is_dir():
        raise InputFileError(location, "is a folder, not a file")
    if local and not Path(location).exists():
        raise InputFileError(location, "file not found")
    if local and Path(location).is_file() and LIBRARY_FORMATS.format_of(location) is None:
        member = Member(location, location, Path(location).name, "local", "csv", False)
    else:
        found = members(location, LIBRARY_FORMATS)
        if len(found) != 1:
            raise InputFileError(location, "is a folder, not a file")
        member = found[0]

    def default_id(line: int, header: bool) -> str:
        return "" if header else f"line{line}"

    rows = []
    budget = TableBudget(read_limits())
    for event in _events(member, default_id, batch_rows=65_536, compat=True):
        if isinstance(event, Bad):
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
