"""What every input reader shares: the refusal of a file that cannot be used (`InputFileError`) and the
limits against hostile files, for the pair-table readers (``data/sources.py``), the library stream
(``data/library.py``) and the target reader (``screening/targets.py``) alike.

`ReadLimits` (``MAX_TABLE_BYTES``, ``MAX_TABLE_ROWS``, ``MAX_TABLE_CELLS``, ``MAX_ROW_GROUP_BYTES``, each
set by its ``DRUGREPO_`` variable) and the `TableBudget` a table read whole spends, ``MAX_LINE_BYTES``,
``MAX_BLANK_LINES``, the gzip cap (``MAX_GZIP_RATIO`` with ``GZIP_ALLOWANCE_BYTES``, `gunzip_stream`),
``MAX_TARGETS_BYTES`` and ``HTTP_TIMEOUT_S``.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "BLOCK_BYTES",
    "GZIP_ALLOWANCE_BYTES",
    "HTTP_TIMEOUT_S",
    "LIMIT_VARIABLES",
    "MAX_BLANK_LINES",
    "MAX_GZIP_RATIO",
    "MAX_LINE_BYTES",
    "MAX_ROW_GROUP_BYTES",
    "MAX_TABLE_BYTES",
    "MAX_TABLE_CELLS",
    "MAX_TABLE_ROWS",
    "MAX_TARGETS_BYTES",
    "ByteStream",
    "InputFileError",
    "ReadLimits",
    "TableBudget",
    "binary_refusal",
    "gunzip_bytes",
    "gunzip_stream",
    "read_at_most",
    "read_limits",
]

HTTP_TIMEOUT_S = 60.0
"""Seconds an http(s) read waits for the server (to connect, and between bytes)."""
BLOCK_BYTES = 1 << 20
"""The block a reader reads a stream by."""

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
            return b"".join(iter(lambda: self.read(BLOCK_BYTES), b""))
        data = self._gzip.read(min(size, BLOCK_BYTES))
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


def gunzip_bytes(location: str, data: bytes, limit: int) -> bytes:
    """``data`` decompressed under the gzip cap and ``limit`` bytes; a corrupt or cut file is an :class:`InputFileError`."""
    try:
        with gunzip_stream(io.BytesIO(data), location) as stream:
            return read_at_most(location, stream, limit)
    except (OSError, EOFError, zlib.error):
        raise InputFileError(location, "not a valid gzip file") from None


def read_at_most(location: str, stream: ByteStream, limit: int) -> bytes:
    """All of ``stream``, refused as soon as it passes ``limit`` bytes (held: at most ``limit`` plus a block)."""
    parts: list[bytes] = []
    size = 0
    while block := stream.read(BLOCK_BYTES):
        size += len(block)
        if size > limit:
            raise InputFileError(
                location,
                f"over {size:,} bytes: more than the limit of {limit:,} bytes for a table read whole "
                f"(set {LIMIT_VARIABLES['table_bytes']} to change it)",
            )
        parts.append(block)
    return b"".join(parts)
