"""Stage 0, the targets: a target list read as a data set, as a library is.

Targets come from a file, a folder, an ``s3://`` (or ``s3a://``) prefix or an ``http(s)://`` URL of a
file, listed and opened by the library's machinery (`data.input_files.members`, `text_stream`), in:

* FASTA (``.fasta``, ``.fa``, ``.faa``, ``.fas``): ``>id description`` then the sequence's lines;
* CSV or TSV (``.csv``, ``.tsv``) with a header naming the ``id`` and ``sequence`` (or ``Protein``)
  columns (any case); ``.csv`` fields are separated by commas, or by tabs when the header has only tabs;
* Parquet (``.parquet``, ``.pq``) with those columns, read a batch at a time;

the text formats optionally ``.gz``. A text file is FASTA when its first line that is not blank starts
with ``>``, else a table, whatever its suffix; a single local file of another name is read so too.
Text is decoded a block at a time (`data.csv_table.CsvLines`): a NUL byte, bytes that are not UTF-8 or a
line over ``MAX_LINE_BYTES`` refuse the file, as more than ``MAX_BLANK_LINES`` blank lines in a row do.

`iter_targets` streams them: memory holds one chunk, one record (a FASTA record's first
``MAX_PROTEIN_CHARS`` + 1 letters) and, to refuse repeated ids, two 8-byte hashes and a line per id
kept. Every record is kept (its sequence cleaned as the encoder takes it, `data.rules.clean_protein`)
or refused with its file, line and reason, nothing dropped: a row whose shape is wrong (a CSV row of
another width than the header, a quoting error), an empty id, a sequence the input rules refuse
(`data.rules.protein_refusal`: empty, too long, foreign letters), an id already kept with another
sequence, and an exact repeat (the same id and sequence). A file that cannot be used at all is an
:class:`InputFileError` naming it. `read_target_set` collects the stream for callers that need the
list, within ``MAX_TARGETS_BYTES``.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from drugrepo_assets.data.csv_table import CsvLines
from drugrepo_assets.data.input_files import FileFormats, Member, ParquetSource, members, text_stream
from drugrepo_assets.data.library_parquet import batch_values, check_parquet_columns
from drugrepo_assets.data.limits import (
    MAX_BLANK_LINES,
    MAX_TARGETS_BYTES,
    InputFileError,
    ReadLimits,
    TableBudget,
    read_limits,
)
from drugrepo_assets.data.rules import MAX_PROTEIN_CHARS, clean_protein, protein_refusal
from drugrepo_assets.location import Location, as_location

__all__ = [
    "REJECTED_COLUMNS",
    "ROW_COLUMNS",
    "TARGET_FORMATS",
    "VALUE_CHARS",
    "TargetChunk",
    "TargetSet",
    "iter_targets",
    "read_checked_targets",
    "read_target_set",
]

TARGET_FORMATS = FileFormats(
    "targets",
    (
        ("fasta", (".fasta", ".fa", ".faa", ".fas")),
        ("csv", (".csv",)),
        ("tsv", (".tsv",)),
        ("parquet", (".parquet", ".pq")),
    ),
    ".fasta, .fa, .faa, .fas, .csv, .tsv (each optionally .gz), .parquet, .pq",
)
"""The files a target location is read from (others in a folder or prefix are skipped, named in a warning)."""

ROW_COLUMNS = ("id", "sequence", "file", "line")
REJECTED_COLUMNS = ("kind", "file", "line", "id", "value", "reason")
VALUE_CHARS = 60
"""How much of a refused record's sequence ``rejected`` shows, as the screen's other refused rows do."""

_SEQUENCE_NAMES = ("sequence", "protein")
_KEEP_LETTERS = MAX_PROTEIN_CHARS + 1
"""Letters of a FASTA record held: enough for the rules to refuse a longer one, which is counted, not held."""
_SET_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class TargetChunk:
    """Part of a target stream, at most ``chunk_rows`` records kept and refused together.

    ``rows``: ``id``, ``sequence`` (cleaned, `data.rules.clean_protein`), ``file``, ``line`` (str, str,
    str, int64). ``rejected``: ``kind`` (``"target"``), ``file``, ``line``, ``id``, ``value`` (the
    sequence's first ``VALUE_CHARS`` characters), ``reason``. ``file`` is the location for a single
    file, else the path relative to the folder or prefix; ``line`` the 1-based physical line of the
    record's first line (a FASTA header; Parquet: the row).
    """

    rows: pd.DataFrame
    rejected: pd.DataFrame


@dataclass(frozen=True)
class TargetSet:
    """A whole target list: ``kept`` and ``rejected`` as in :class:`TargetChunk`, in reading order."""

    kept: pd.DataFrame
    rejected: pd.DataFrame


def iter_targets(location: Location | str, chunk_rows: int = 2048) -> Iterator[TargetChunk]:
    """Stream a target list from a file, a folder, an S3 prefix or an http(s) URL, ``chunk_rows`` records
    at a time (kept and refused together; a chunk may end inside a file and hold rows of several).

    The files of a folder or prefix are read recursively in sorted path order. A location without any
    record yields nothing; one that cannot be read at all is an :class:`InputFileError` naming it.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
    seen = _SeenIds()
    builder = _ChunkBuilder()
    for member in _target_members(as_location(location)):
        seen.open_file(member.label)
        for record in _records(member, batch_rows=min(chunk_rows, 65_536)):
            sequence = clean_protein(record.sequence)
            reason = record.problem or _refusal(record) or seen.refusal(record.id, sequence, record.line)
            if reason:
                builder.refuse(member.label, record, reason)
            else:
                builder.keep(member.label, record.id, sequence, record.line)
            if builder.size >= chunk_rows:
                yield builder.take()
    if builder.size:
        yield builder.take()


def read_target_set(location: Location | str | Path) -> TargetSet:
    """The whole target list of a location (`iter_targets`), for callers that need it at once.

    A list of more than ``MAX_TARGETS_BYTES`` characters (ids, sequences and refused rows' text) is an
    :class:`InputFileError` (found once a chunk passes it), as is a location without any record ("no
    sequences").
    """
    where = as_location(location)
    kept: list[pd.DataFrame] = []
    rejected: list[pd.DataFrame] = []
    held = 0
    for chunk in iter_targets(where, chunk_rows=_SET_CHUNK_ROWS):
        held += _text_size(chunk)
        if held > MAX_TARGETS_BYTES:
            last = chunk.rows if len(chunk.rows) else chunk.rejected
            raise InputFileError(
                where.text,
                f"more than {MAX_TARGETS_BYTES:,} characters of target ids and sequences by {last['file'].iat[-1]} "
                f"line {last['line'].iat[-1]}, the limit for a target list read whole (limits.MAX_TARGETS_BYTES)",
            )
        kept.append(chunk.rows)
        rejected.append(chunk.rejected)
    if not kept:
        raise InputFileError(where.text, "no sequences")
    return TargetSet(kept=pd.concat(kept, ignore_index=True), rejected=pd.concat(rejected, ignore_index=True))


def read_checked_targets(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`read_target_set` in the shape ``drugrepo screen`` and the screening assets took: the kept
    targets (``id``, ``sequence``, ``line``) and the refused ones (``id``, ``sequence`` shown as its
    first ``VALUE_CHARS`` characters, ``line``, ``reason``)."""
    targets = read_target_set(path)
    refused = targets.rejected.rename(columns={"value": "sequence"})
    return targets.kept[["id", "sequence", "line"]], refused[["id", "sequence", "line", "reason"]]


# --- the files ---------------------------------------------------------------------------------


def _target_members(where: Location) -> list[Member]:
    """The location's files (`data.input_files.members`); a single local file of another name is read as text."""
    if where.kind == "local":
        location = where.text
        path = Path(location).expanduser()
        if path.is_file() and TARGET_FORMATS.format_of(path.name) is None:
            return [Member(location, location, path.name, "local", "text", False)]
    return members(where, TARGET_FORMATS)


class _Record(NamedTuple):
    line: int
    id: str
    sequence: str  # as read; a FASTA record's lines joined, its first _KEEP_LETTERS letters
    length: int | None  # the whole sequence's letters when ``sequence`` holds only its start, else None
    problem: str  # why the file's shape refuses the record, or ""


def _records(member: Member, batch_rows: int) -> Iterator[_Record]:
    """The records of one file in file order."""
    if member.fmt == "parquet":
        yield from _parquet_records(member, batch_rows)
        return
    with text_stream(member) as stream:
        # A streamed list has no total to count against: a file is refused only for its own content.
        lines = CsvLines(member.uri, stream, TableBudget(ReadLimits(table_bytes=sys.maxsize)))
        yield from _text_records(member, lines)


def _blank_run(location: str, number: int, blank: int) -> int:
    """``blank`` + 1 for one more blank line in a row; past ``MAX_BLANK_LINES`` the file is refused."""
    if blank >= MAX_BLANK_LINES:
        raise InputFileError(
            location, f"line {number}: more than {MAX_BLANK_LINES:,} blank lines in a row (limits.MAX_BLANK_LINES)"
        )
    return blank + 1


def _text_records(member: Member, lines: CsvLines) -> Iterator[_Record]:
    """FASTA or a table, as the first line that is not blank says."""
    texts = iter(lines)
    blank = 0
    for number, text in enumerate(texts, start=1):
        lines.record_bytes = 0
        if text.strip():
            rest = itertools.chain([text], texts)
            if text.lstrip().startswith(">"):
                yield from _fasta_records(member.uri, lines, rest, number)
            else:
                yield from _table_records(member, lines, rest, number - 1, text)
            return
        blank = _blank_run(member.uri, number, blank)
    raise InputFileError(member.uri, "empty file")


@dataclass
class _FastaRecord:
    line: int
    id: str
    parts: list[str] = field(default_factory=list)
    held: int = 0
    letters: int = 0

    def add(self, text: str) -> None:
        if self.held < _KEEP_LETTERS:
            part = text[: _KEEP_LETTERS - self.held]
            self.parts.append(part)
            self.held += len(part)
        self.letters += len(text)

    def record(self) -> _Record:
        return _Record(self.line, self.id, "".join(self.parts), self.letters if self.letters > self.held else None, "")


def _fasta_records(location: str, lines: CsvLines, texts: Iterator[str], first: int) -> Iterator[_Record]:
    """Records of a FASTA file whose line ``first`` (the first of ``texts``) is a header."""
    record: _FastaRecord | None = None
    blank = 0
    for number, text in enumerate(texts, start=first):
        lines.record_bytes = 0
        text = text.strip()
        if not text:
            blank = _blank_run(location, number, blank)
            continue
        blank = 0
        if text.startswith(">"):
            if record is not None:
                yield record.record()
            name = text[1:].split(None, 1)
            record = _FastaRecord(number, name[0] if name else "")
        elif record is not None:
            record.add(text)
    if record is not None:
        yield record.record()


def _table_records(member: Member, lines: CsvLines, texts: Iterator[str], before: int, head: str) -> Iterator[_Record]:
    """Records of a CSV or TSV file whose header is ``head``, the first of ``texts`` (after ``before`` blank lines)."""
    sep = "\t" if member.fmt == "tsv" or ("\t" in head and "," not in head) else ","
    reader = csv.reader(texts, delimiter=sep, strict=True)
    start, width, id_at, seq_at, blank = before + 1, 0, 0, 0, 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if not width:
                raise InputFileError(member.uri, f"line {start}: CSV: {exc}") from None
            yield _Record(start, "", "", None, f"CSV: {exc}")
            start = before + reader.line_num + 1
            continue
        finally:
            lines.record_bytes = 0
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            blank = _blank_run(member.uri, start, blank)
        elif not width:
            columns = [c.strip().lower() for c in fields]
            seq_name = next((c for c in _SEQUENCE_NAMES if c in columns), None)
            if "id" not in columns or seq_name is None:
                found = _cut(", ".join(c.strip() for c in fields), 80)
                raise InputFileError(member.uri, f"expected FASTA, or CSV columns 'id' and 'sequence' (found: {found})")
            width, id_at, seq_at = len(fields), columns.index("id"), columns.index(seq_name)
        else:
            blank = 0
            ident = fields[id_at].strip() if id_at < len(fields) else ""
            sequence = fields[seq_at] if seq_at < len(fields) else ""
            problem = f"fields: {len(fields)}, the header has {width}" if len(fields) != width else ""
            yield _Record(start, ident, sequence, None, problem)
        start = before + reader.line_num + 1


def _parquet_records(member: Member, batch_rows: int) -> Iterator[_Record]:
    """Records of a Parquet file: its ``id`` and ``sequence`` (or ``Protein``) columns, a batch at a time."""
    import pyarrow as pa

    with ParquetSource(member) as source:
        try:
            handle = pq.ParquetFile(source)
            names = list(handle.schema_arrow.names)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputFileError(member.uri, f"not a valid Parquet file ({_detail(exc)})") from None
        columns = [n.strip().lower() for n in names]
        seq_name = next((c for c in _SEQUENCE_NAMES if c in columns), None)
        if "id" not in columns or seq_name is None:
            found = _cut(", ".join(map(repr, names)) or "nothing", 80)
            raise InputFileError(member.uri, f"expected columns 'id' and 'sequence' (found: {found})")
        read = [columns.index("id"), columns.index(seq_name)]
        number = 0
        try:
            text = check_parquet_columns(member, handle, read, read_limits().row_group_bytes)
            handle = pq.ParquetFile(source, metadata=handle.metadata, read_dictionary=text)
            for batch in handle.iter_batches(batch_size=batch_rows, columns=[names[i] for i in read]):
                for ident, sequence in zip(batch_values(batch.column(0)), batch_values(batch.column(1))):
                    number += 1
                    yield _parquet_record(number, ident, sequence)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InputFileError(member.uri, f"not a valid Parquet file ({_detail(exc)})") from None


def _parquet_record(number: int, ident: object, sequence: object) -> _Record:
    """One Parquet row as a record: missing values are empty, bytes are decoded (a sequence that is not UTF-8 is refused)."""
    name = ident.decode("utf-8", "replace") if isinstance(ident, bytes) else "" if ident is None else str(ident)
    if not isinstance(sequence, bytes):
        return _Record(number, name.strip(), "" if sequence is None else str(sequence), None, "")
    try:
        return _Record(number, name.strip(), sequence.decode("utf-8"), None, "")
    except UnicodeDecodeError as exc:
        problem = f"sequence: not valid UTF-8 (byte 0x{sequence[exc.start]:02x} at byte {exc.start + 1})"
        return _Record(number, name.strip(), sequence.decode("utf-8", "replace"), None, problem)


def _detail(exc: BaseException) -> str:
    return re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


# --- the checks ------------------------------------------------------------------------------


def _refusal(record: _Record) -> str:
    """Why the record's own values refuse it (an empty id, the input rules' verdict on its sequence), or ""."""
    if not record.id:
        return "id: empty"
    refusal = protein_refusal(record.sequence, record.length)
    return "" if refusal is None else str(refusal)


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


class _SeenIds:
    """The ids kept so far, each held as an 8-byte hash with its sequence's hash and where it was read,
    so a repeat is refused naming the first (two different ids or sequences sharing a hash, about one
    chance in 10⁷ among a million ids, would read as a repeat)."""

    def __init__(self) -> None:
        self._ids: dict[int, tuple[int, int, int]] = {}
        self._files: list[str] = []

    def open_file(self, label: str) -> None:
        """The records that follow are of file ``label``."""
        self._files.append(label)

    def refusal(self, ident: str, sequence: str, line: int) -> str:
        """Why a record is a repeat of one kept (the same id), or "" (the record is then remembered)."""
        key, value, file = _digest(ident), _digest(sequence), len(self._files) - 1
        prior = self._ids.get(key)
        if prior is None:
            self._ids[key] = (value, file, line)
            return ""
        first_value, first_file, first_line = prior
        where = f"line {first_line}" if first_file == file else f"line {first_line} of {self._files[first_file]}"
        if first_value == value:
            return f"duplicate of {where}"
        return f"id: {ident!r} already used on {where} with another sequence"


class _ChunkBuilder:
    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.kept: list[tuple[str, str, str, int]] = []
        self.refused: list[tuple[str, str, int, str, str, str]] = []
        self.size = 0

    def keep(self, file: str, ident: str, sequence: str, line: int) -> None:
        self.kept.append((ident, sequence, file, line))
        self.size += 1

    def refuse(self, file: str, record: _Record, reason: str) -> None:
        value = record.sequence.strip()[:VALUE_CHARS]
        self.refused.append(("target", file, record.line, record.id, value, reason))
        self.size += 1

    def take(self) -> TargetChunk:
        chunk = TargetChunk(rows=_frame(self.kept, ROW_COLUMNS), rejected=_frame(self.refused, REJECTED_COLUMNS))
        self._reset()
        return chunk


def _frame(rows: list[tuple], columns: tuple[str, ...]) -> pd.DataFrame:
    values = list(zip(*rows)) or [()] * len(columns)
    return pd.DataFrame(
        {
            name: np.asarray(column, dtype=np.int64) if name == "line" else pd.Series(column, dtype=object)
            for name, column in zip(columns, values)
        }
    )


def _text_size(chunk: TargetChunk) -> int:
    """Characters a chunk holds: its kept ids and sequences, its refused rows' ids, values and reasons."""
    rows, rejected = chunk.rows, chunk.rejected
    return int(
        sum(rows[c].str.len().sum() for c in ("id", "sequence"))
        + sum(rejected[c].str.len().sum() for c in ("id", "value", "reason"))
    )
