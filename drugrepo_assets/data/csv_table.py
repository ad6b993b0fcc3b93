"""A CSV pair table parsed as strings, record by record, under its `TableBudget`; a gzip one decompressed as it is parsed."""

from __future__ import annotations

import csv
import gzip
import io
import zlib
from collections.abc import Iterator

import pandas as pd

from drugrepo_assets.data.limits import (
    BLOCK_BYTES,
    MAX_BLANK_LINES,
    MAX_LINE_BYTES,
    ByteStream,
    InputFileError,
    TableBudget,
    binary_refusal,
    gunzip_stream,
)

__all__ = ["CsvLines", "parse_csv", "parse_gzip_csv"]


def parse_gzip_csv(location: str, raw: ByteStream, budget: TableBudget) -> pd.DataFrame:
    """A gzip CSV decompressed as it is parsed: its decompressed bytes count against the text limit."""
    try:
        with gunzip_stream(raw, location) as stream:
            return parse_csv(location, stream, budget)
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise InputFileError(location, "not a valid gzip file") from None


def parse_csv(location: str, stream: ByteStream, budget: TableBudget) -> pd.DataFrame:
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
                        "(limits.MAX_BLANK_LINES)",
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


_BOM = b"\xef\xbb\xbf"


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
            f"line {self.lines + 1}: a row of more than {MAX_LINE_BYTES:,} bytes, the limit (limits.MAX_LINE_BYTES)",
        )

    def __iter__(self) -> Iterator[str]:
        pending = b""
        offset = 0  # the file offset of pending[0]
        first = True
        while True:
            block = self.stream.read(BLOCK_BYTES)
            if block:
                self.budget.add_bytes(self.location, len(block))
            if first and block.startswith(_BOM):
                block, offset = block[len(_BOM) :], len(_BOM)
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
