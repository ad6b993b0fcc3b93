"""The text formats of a library (``.smi``, ``.smiles``, ``.txt``, ``.cxsmiles``, ``.csv``, ``.tsv``, each
optionally gzipped) read line by line into rows and refused rows (`text_events`); the row checks and the
SMILES and id column names the Parquet reader shares (`checked_row`, `find_columns`)."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from typing import NamedTuple

from drugrepo_assets.data.input_files import Member
from drugrepo_assets.data.limits import (
    BLOCK_BYTES,
    MAX_BLANK_LINES,
    MAX_LINE_BYTES,
    ByteStream,
    InputFileError,
    binary_refusal,
)
from drugrepo_assets.data.rules import missing_refusal, smiles_refusal

__all__ = ["VALUE_CHARS", "Bad", "checked_row", "find_columns", "shown", "text_events"]

VALUE_CHARS = 80
"""How much of a refused value ``rejected`` shows (then ``…``)."""

_BOM = b"\xef\xbb\xbf"

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


class Bad(NamedTuple):
    """A refused row: its line (Parquet: row), id, the value as shown, and why."""

    line: int
    id: str
    value: str
    reason: str


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
        data = stream.read(BLOCK_BYTES)
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


def shown(value: str) -> str:
    """``value`` as a refusal shows it: at most ``VALUE_CHARS`` characters, then ``…``."""
    return value if len(value) <= VALUE_CHARS else value[:VALUE_CHARS] + "…"


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.strip().strip('"').strip("'").lower())


def find_columns(names: list[str]) -> tuple[int | None, int | None]:
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


def text_events(
    member: Member, stream: ByteStream, default_id: Callable[[int, bool], str], compat: bool
) -> Iterator[tuple[int, str, str] | Bad]:
    """Rows ``(line, id, smiles)`` and refused rows of one text file, in file order (``compat``: `read_library`'s rules)."""
    sep: str | None = None
    width = 0  # fields in the header; 0: no header
    smiles_at, id_at = 0, None
    skipped = 0  # blank and comment lines in a row
    for number, raw, length, head in _physical_lines(stream, MAX_LINE_BYTES, member.uri):
        if raw is None:
            skipped, bad = _long_line(member, number, length, head, sep is None, skipped)
            if bad is not None:
                yield bad
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
            yield Bad(number, "", shown(raw.decode("utf-8", "replace").strip()), f"line: {problem}")
            continue
        if sep is None:
            sep = _sniff(member.fmt, text)
            try:
                names = _split(text, sep)
            except csv.Error:
                names = []
            found_smiles, found_id = find_columns(names)
            if found_smiles is not None:
                width, smiles_at, id_at = len(names), found_smiles, found_id
                continue
            if member.fmt != "text":
                found = ", ".join(repr(n.strip()) for n in names) or "nothing"
                raise InputFileError(
                    member.uri,
                    f"no SMILES column in the header (line {number}; found: {shown(found)}; "
                    f"expected one named {', '.join(_SMILES_NAMES[:3])}, ...)",
                )
        if width:
            try:
                fields = _split(text, sep)
            except csv.Error as exc:
                yield Bad(number, "", shown(text.strip()), f"CSV: {exc}")
                continue
            if len(fields) != width:
                if not (compat and len(fields) < width):
                    ident = fields[id_at].strip() if id_at is not None and id_at < len(fields) else ""
                    yield Bad(number, ident, shown(text.strip()), f"fields: {len(fields)}, the header has {width}")
                    continue
                fields += [""] * (width - len(fields))
            smiles = fields[smiles_at]
            ident = fields[id_at].strip() if id_at is not None else ""
        else:
            pair = _headerless_fields(number, text, sep)
            if isinstance(pair, Bad):
                yield pair
                continue
            smiles, ident = pair
        if not ident:
            ident = default_id(number, bool(width))
        yield checked_row(number, ident, smiles, compat)


def _long_line(
    member: Member, number: int, length: int, head: bytes, in_header: bool, skipped: int
) -> tuple[int, Bad | None]:
    """A line over ``MAX_LINE_BYTES`` (only its ``head`` kept): a comment is one more skipped line, a header
    refuses a table file, anything else is a refused row. Returns the skipped lines in a row and the refusal."""
    if number == 1:
        head = head.removeprefix(_BOM)
    if head.lstrip().startswith(b"#"):
        return _skipped_line(member, number, skipped), None
    if in_header and member.fmt != "text":
        raise InputFileError(
            member.uri, f"line {number}: header of {length} bytes, more than the limit of {MAX_LINE_BYTES}"
        )
    return 0, Bad(
        number,
        "",
        shown(head.decode("utf-8", "replace")),
        f"line: {length} bytes, more than the limit of {MAX_LINE_BYTES}",
    )


def _headerless_fields(number: int, text: str, sep: str) -> tuple[str, str] | Bad:
    """(SMILES, id) of a line of a file without a header, or its refusal (a CSV line that cannot be split)."""
    if "\t" in text or (sep == "," and "," in text):
        # No header: the SMILES is the first field, the id the second (line by line, so
        # a file mixing tabs and spaces reads as it did with whitespace alone).
        try:
            fields = _split(text, "\t" if "\t" in text else ",")
        except csv.Error as exc:
            return Bad(number, "", shown(text.strip()), f"CSV: {exc}")
        return fields[0], fields[1].strip() if len(fields) > 1 else ""
    # whitespace: the SMILES, then the name (the rest of the line)
    parts = text.split(None, 1)  # [] for a line of Unicode blanks only (U+0085, U+2028 ...): an empty SMILES
    return (parts[0] if parts else ""), (parts[1].strip() if len(parts) > 1 else "")


def _skipped_line(member: Member, number: int, skipped: int) -> int:
    """``skipped`` + 1 for one more blank or comment line in a row; past ``MAX_BLANK_LINES`` the file is
    refused (a file of newlines would otherwise be read to its end, line by line)."""
    if skipped >= MAX_BLANK_LINES:
        raise InputFileError(
            member.uri,
            f"line {number}: more than {MAX_BLANK_LINES:,} blank or comment lines in a row (limits.MAX_BLANK_LINES)",
        )
    return skipped + 1


def checked_row(number: int, ident: str, smiles: str, compat: bool) -> tuple[int, str, str] | Bad:
    """A row (its SMILES stripped), or its refusal by the input rules' text checks (`data.rules`: blank, too
    long, too many atom symbols) before a worker parses it; ``smiles`` is the field as read, so a blank
    one is named as blank (``compat``: `read_library` passes every row on)."""
    refusal = None if compat else missing_refusal("SMILES", smiles) or smiles_refusal(smiles.strip())
    if refusal is not None:
        return Bad(number, ident, shown(smiles.strip()), str(refusal))
    return number, ident, smiles.strip()
