"""Property tests of the readers: random bytes, random text, SMILES-like strings and random CSV shapes
(ragged rows, quotes, BOMs, NULs, CR/LF mixes, empty fields) never raise anything but the documented
:class:`InputFileError`, and every input row is either read or refused with its line; a NUL byte is
binary content, and refuses the whole file.

The expected rows come from an oracle written from the documented rules (a row is a physical line,
``\\n``-separated, ``\\r`` before it dropped, a first-line BOM dropped, blank and ``#`` lines skipped),
not from the readers' code.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drugrepo_assets.data.library import iter_library, read_library
from drugrepo_assets.data.limits import InputFileError
from drugrepo_assets.data.rules import MAX_SMILES_CHARS, protein_refusal
from drugrepo_assets.data.sources import read_source
from drugrepo_assets.screening.targets import read_checked_targets

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOM = b"\xef\xbb\xbf"

# Characters that make CSV and line parsing hard, mixed with ordinary ones.
_TRICKY = ['"', "'", ",", ";", "\t", " ", "\r", "\n", "\x00", "\ufeff", "#", "\\", "é", "\u2028", "\x85", "\x0b"]
tricky_text = st.text(alphabet=st.one_of(st.sampled_from(_TRICKY), st.characters(codec="utf-8")), max_size=40)
field_text = st.text(
    alphabet=st.one_of(st.sampled_from(_TRICKY), st.sampled_from("CNOcn()=#[]@+-123SMILES")), max_size=12
)
smiles_like = st.text(alphabet=st.sampled_from("CNOSPFIBrcnos()[]=#@+-.%/\\0123456789Hl*"), min_size=0, max_size=60)
line_end = st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n", b"\r\n\r\n"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module; each example overwrites its own file name."""
    return tmp_path_factory.mktemp("properties")


def _countable_lines(data: bytes) -> list[int]:
    """1-based numbers of the physical lines a library reader must read or refuse."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, raw in enumerate(lines, start=1):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if number == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        stripped = raw.strip()
        if stripped and not stripped.startswith(b"#"):
            out.append(number)
    return out


def _stream(path: Path, chunk_rows: int = 1000) -> tuple[list[int], list[int], pd.DataFrame, pd.DataFrame]:
    chunks = list(iter_library(str(path), chunk_rows=chunk_rows))
    rows = (
        pd.concat([c.rows for c in chunks], ignore_index=True)
        if chunks
        else pd.DataFrame(columns=["id", "smiles", "file", "line"])
    )
    rejected = (
        pd.concat([c.rejected for c in chunks], ignore_index=True)
        if chunks
        else pd.DataFrame(columns=["file", "line", "id", "value", "reason"])
    )
    assert all(len(c.rows) + len(c.rejected) <= chunk_rows for c in chunks)
    return rows["line"].tolist(), rejected["line"].tolist(), rows, rejected


def _assert_accounted(data: bytes, read: list[int], refused: list[int], header: bool | None) -> None:
    """Every countable line is read or refused exactly once, but a header (``None``: maybe one)."""
    reported = read + refused
    assert len(reported) == len(set(reported)), "a line reported twice"
    countable = _countable_lines(data)
    assert set(reported) <= set(countable)
    missing = [n for n in countable if n not in set(reported)]
    if header is None:
        assert missing in ([], countable[:1]), missing
    else:
        assert missing == (countable[:1] if header else [])


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
    return path


# --- the library stream -----------------------------------------------------------------------


@BOUNDED
@given(data=st.binary(max_size=400), name=st.sampled_from(["r.smi", "r.txt", "r.csv", "r.tsv", "r.smi.gz", "r.csv.gz"]))
def test_random_bytes_are_read_refused_or_an_input_file_error(folder: Path, data: bytes, name: str) -> None:
    path = _write(folder, name, data)
    try:
        read, refused, rows, rejected = _stream(path)
    except InputFileError as exc:
        assert exc.path == str(path)
        return
    _assert_accounted(data, read, refused, header=True if name.startswith(("r.csv", "r.tsv")) else None)
    assert all(0 < len(s) <= MAX_SMILES_CHARS for s in rows["smiles"])
    assert all(r.split(":", 1)[0] in ("line", "fields", "CSV", "SMILES") for r in rejected["reason"])


@BOUNDED
@given(data=st.binary(max_size=200), name=st.sampled_from(["b.smi.gz", "b.csv.gz"]))
def test_bytes_that_are_not_gzip_are_an_input_file_error(folder: Path, data: bytes, name: str) -> None:
    path = folder / name
    path.write_bytes(data)
    try:
        _stream(path)
    except InputFileError as exc:
        assert exc.path == str(path)


@BOUNDED
@given(text=tricky_text, bom=st.booleans(), name=st.sampled_from(["u.smi", "u.csv", "u.tsv"]))
def test_random_text_is_read_refused_or_an_input_file_error(folder: Path, text: str, bom: bool, name: str) -> None:
    data = (BOM if bom else b"") + text.encode("utf-8")
    path = _write(folder, name, data)
    try:
        read, refused, _, _ = _stream(path, chunk_rows=2)
    except InputFileError as exc:
        assert exc.path == str(path)
        return
    _assert_accounted(data, read, refused, header=True if name != "u.smi" else None)


@BOUNDED
@given(
    molecules=st.lists(st.tuples(smiles_like, st.text(alphabet="abcXYZ019-_ ", max_size=8)), max_size=12),
    ends=st.lists(line_end, min_size=12, max_size=12),
)
def test_smiles_like_lines_keep_their_smiles_and_name(
    folder: Path, molecules: list[tuple[str, str]], ends: list[bytes]
) -> None:
    data = b"".join(f"{smiles} {name}".encode() + end for (smiles, name), end in zip(molecules, ends))
    path = _write(folder, "s.smi", data)
    read, refused, rows, rejected = _stream(path, chunk_rows=3)
    _assert_accounted(data, read, refused, header=None)
    for smiles, line in zip(rows["smiles"], rows["line"]):
        assert smiles == data.split(b"\n")[line - 1].decode().split()[0]
    assert all(r.startswith(("SMILES: ", "fields: ")) for r in rejected["reason"])


def _csv_bytes(header: list[str], records: list[list[str]], ends: list[bytes], quote_all: bool, bom: bool) -> bytes:
    out = io.StringIO()
    # "\r\n": the writer quotes a field holding either character, so one record stays one record
    writer = csv.writer(out, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL, lineterminator="\r\n")
    parts = [BOM if bom else b""]
    for record, end in zip([header, *records], [b"\n", *ends]):
        out.seek(0)
        out.truncate()
        writer.writerow(record)
        parts.append(out.getvalue()[:-2].encode("utf-8") + end)
    return b"".join(parts)


one_line_field = st.text(
    alphabet=st.sampled_from(['"', ",", ";", " ", "\t", "\x00", "\ufeff", "é", "C", "N", "O", "1", "("]), max_size=8
)


@BOUNDED
@given(
    extra=st.lists(st.sampled_from(["mw", "note", "x"]), max_size=2, unique=True),
    records=st.lists(st.lists(one_line_field, min_size=0, max_size=5), max_size=10),
    ends=st.lists(st.sampled_from([b"\n", b"\r\n", b"\n\n", b"\n# comment\n"]), min_size=10, max_size=10),
    quote_all=st.booleans(),
    bom=st.booleans(),
)
def test_csv_shapes_every_row_is_read_or_refused(
    folder: Path, extra: list[str], records: list[list[str]], ends: list[bytes], quote_all: bool, bom: bool
) -> None:
    header = ["id", "smiles", *extra]
    data = _csv_bytes(header, records, ends, quote_all, bom)
    path = _write(folder, "shape.csv", data)
    if _refused_as_binary(data, lambda: _stream(path, chunk_rows=4), path):
        return
    read, refused, _, rejected = _stream(path, chunk_rows=4)
    _assert_accounted(data, read, refused, header=True)
    width_errors = [r for r in rejected["reason"] if r.startswith("fields: ")]
    assert len(width_errors) <= sum(1 for r in records if len(r) != len(header))
    try:
        table = read_library(path)
    except InputFileError as exc:
        assert exc.path == str(path)
        return
    assert set(table["line"]) == set(_countable_lines(data)[1:])


def _refused_as_binary(data: bytes, read: Callable[[], object], path: Path) -> bool:
    """True when ``data`` holds a NUL byte and ``read`` refuses ``path`` for it, naming the byte's offset."""
    if b"\x00" not in data:
        return False
    with pytest.raises(InputFileError) as info:
        read()
    assert info.value.path == str(path)
    assert info.value.problem.startswith("binary content, not text (NUL byte at offset "), info.value.problem
    return True


# --- targets ----------------------------------------------------------------------------------


@BOUNDED
@given(
    data=st.one_of(st.binary(max_size=300), tricky_text.map(lambda t: t.encode("utf-8"))),
    name=st.sampled_from(["t.fasta", "t.csv"]),
)
def test_targets_random_input_is_a_table_or_an_input_file_error(folder: Path, data: bytes, name: str) -> None:
    path = _write(folder, name, data)
    try:
        kept, refused = read_checked_targets(path)
    except InputFileError as exc:
        assert exc.path == str(path)
        return
    assert kept["id"].is_unique and all(ident for ident in kept["id"])
    assert all(protein_refusal(s) is None for s in kept["sequence"])
    assert set(kept["line"]).isdisjoint(set(refused["line"]))


def _csv_shapes(alphabet: str) -> dict[str, st.SearchStrategy]:
    """Strategies of a small CSV: records of short fields from ``alphabet``, line ends, quoting and a BOM."""
    return {
        "records": st.lists(
            st.lists(st.text(alphabet=st.sampled_from(list(alphabet)), max_size=6), min_size=1, max_size=4),
            max_size=10,
        ),
        "ends": st.lists(st.sampled_from([b"\n", b"\r\n", b"\r", b"\n\n"]), min_size=10, max_size=10),
        "quote_all": st.booleans(),
        "bom": st.booleans(),
    }


@BOUNDED
@given(**_csv_shapes('MKVAGLJ ,"\n\r\t\x00é'))
def test_targets_csv_shapes_every_record_is_kept_or_refused(
    folder: Path, records: list[list[str]], ends: list[bytes], quote_all: bool, bom: bool
) -> None:
    data = _csv_bytes(["id", "sequence"], records, ends, quote_all, bom)
    path = _write(folder, "shape.csv", data)
    if _refused_as_binary(data, lambda: read_checked_targets(path), path):
        return
    expected = [r for r in records if not (len(r) == 1 and not r[0].strip())]
    if not expected:
        with pytest.raises(InputFileError) as info:
            read_checked_targets(path)
        assert info.value.problem == "no sequences"
        return
    kept, refused = read_checked_targets(path)
    assert len(kept) + len(refused) == len(expected)
    assert sorted([*kept["line"], *refused["line"]]) == sorted({*kept["line"], *refused["line"]})
    assert refused[refused["reason"].str.startswith("fields: ")].shape[0] == sum(1 for r in expected if len(r) != 2)


@BOUNDED
@given(
    records=st.lists(
        st.tuples(st.text(alphabet="ABCxyz12 _-|", max_size=6), st.text(alphabet="MKVAGLJ \t", max_size=20)), max_size=8
    ),
    ends=st.lists(st.sampled_from([b"\n", b"\r\n", b"\n\n"]), min_size=16, max_size=16),
)
def test_targets_fasta_every_record_is_kept_or_refused(
    folder: Path, records: list[tuple[str, str]], ends: list[bytes]
) -> None:
    parts = []
    for (name, sequence), head_end, body_end in zip(records, ends[::2], ends[1::2]):
        parts.append(f">{name}".encode() + head_end + sequence.encode() + body_end)
    data = b"".join(parts)
    path = _write(folder, "shape.fasta", data)
    if not records:
        with pytest.raises(InputFileError):
            read_checked_targets(path)
        return
    kept, refused = read_checked_targets(path)
    assert len(kept) + len(refused) == len(records)


# --- pair tables (validate, train, predict) ------------------------------------------------------


@BOUNDED
@given(
    data=st.one_of(st.binary(max_size=300), tricky_text.map(lambda t: ("SMILES,Protein,Y\n" + t).encode("utf-8"))),
    name=st.sampled_from(["p.csv", "p.csv.gz", "p.parquet"]),
)
def test_pair_tables_random_input_is_a_table_or_an_input_file_error(folder: Path, data: bytes, name: str) -> None:
    path = _write(folder, name, data)
    try:
        table = read_source(str(path))
    except InputFileError as exc:
        assert exc.path == str(path)
        return
    assert list(table.columns[:3]) == ["SMILES", "Protein", "Y"]
    assert table["source_row"].tolist() == list(range(1, len(table) + 1))
    assert all(isinstance(v, str) for column in table.columns[:-1] for v in table[column])


@BOUNDED
@given(**_csv_shapes("CNOMKV01 ;\té\ufeff"))
def test_pair_tables_csv_shapes_every_row_is_read_or_the_file_refused(
    folder: Path, records: list[list[str]], ends: list[bytes], quote_all: bool, bom: bool
) -> None:
    data = _csv_bytes(["SMILES", "Protein", "Y"], records, ends, quote_all, bom)
    path = _write(folder, "shape.csv", data)
    expected = [r for r in records if not (len(r) == 1 and not r[0].strip())]  # a blank line, quoted or not, is no row
    try:
        table = read_source(str(path))
    except InputFileError as exc:
        assert exc.path == str(path)
        assert any(len(r) > 3 for r in expected) or not expected, exc.problem
        return
    assert not any(len(r) > 3 for r in expected)
    assert len(table) == len(expected)
    padded = [[*r, *[""] * (3 - len(r))] for r in expected]
    assert table[["SMILES", "Protein", "Y"]].values.tolist() == padded
