"""Targets as a data set: FASTA, CSV, TSV and Parquet files (gzipped too) from a file, a folder, an
http URL or an S3 prefix, streamed in bounded chunks, every bad record refused with its file, line and reason."""

from __future__ import annotations

import gzip
import logging
import tracemalloc
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drugrepo_assets.data.limits import MAX_BLANK_LINES, InputFileError
from drugrepo_assets.data.rules import MAX_PROTEIN_CHARS, protein_refusal
from drugrepo_assets.location import Location
from drugrepo_assets.screening import targets as targets_module
from drugrepo_assets.screening.targets import (
    REJECTED_COLUMNS,
    ROW_COLUMNS,
    TargetChunk,
    iter_targets,
    read_checked_targets,
    read_target_set,
)
from drugrepo_assets_tests.data.servers import HttpFolder, S3Bucket, http_folder, moto_endpoint, s3_bucket

__all__ = ["http_folder", "moto_endpoint", "s3_bucket"]  # the servers' fixtures, used here

SUFFIXES = ".fasta, .fa, .faa, .fas, .csv, .tsv (each optionally .gz), .parquet, .pq"
FOREIGN_J = "Protein: character 'J' not in the amino-acid alphabet ACBEDGFIHKMLONQPSRUTWVYXZ (first at position 3 of 3)"
EMPTY = "Protein: value is empty"


def _kept(chunks: list[TargetChunk]) -> list[tuple]:
    return [tuple(r) for c in chunks for r in c.rows[list(ROW_COLUMNS)].itertuples(index=False)]


def _refused(chunks: list[TargetChunk]) -> list[tuple]:
    """(file, line, id, value, reason) of each refused record."""
    rows = [r for c in chunks for r in c.rejected.itertuples(index=False)]
    assert all(r.kind == "target" for r in rows)
    return [(r.file, r.line, r.id, r.value, r.reason) for r in rows]


def _error(location: Location | str, **kwargs: object) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        read_target_set(location, **kwargs)  # type: ignore[arg-type]
    return info.value


# --- formats -------------------------------------------------------------------------------------

FASTA = (
    b"\xef\xbb\xbf\n>P1 kinase, human\r\nMKV\r\nlla\r\n>P2\nGGG\n\n>P3 unnamed protein\nAC\nDE\nFG\n"
    b">P4 kept after a blank run of one\n\nMKV\n"
)
FASTA_KEPT = [("P1", "MKVLLA", 2), ("P2", "GGG", 5), ("P3", "ACDEFG", 8), ("P4", "MKV", 12)]


def test_fasta_multi_line_records_plain_and_gzipped(tmp_path: Path) -> None:
    plain, gz = tmp_path / "t.fasta", tmp_path / "t.fa.gz"
    plain.write_bytes(FASTA)
    gz.write_bytes(gzip.compress(FASTA))
    for path in (plain, gz):
        chunks = list(iter_targets(str(path)))
        assert _kept(chunks) == [(i, s, str(path), n) for i, s, n in FASTA_KEPT]
        assert _refused(chunks) == []


def test_csv_tsv_and_a_single_file_of_another_name(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_bytes(b'\xef\xbb\xbfID,Protein\r\nP1,MKV\r\n\r\n"P2","MK\nV"\r\nP3,mka\r\n')
    chunks = list(iter_targets(str(table)))
    assert _kept(chunks) == [("P1", "MKV", str(table), 2), ("P3", "MKA", str(table), 6)]
    newline = protein_refusal("MK\nV")
    assert _refused(chunks) == [(str(table), 4, "P2", "MK\nV", str(newline))]  # a record over lines 4-5

    tsv = tmp_path / "t.tsv"
    tsv.write_text("name\tsequence\tid\nkinase, human\tMKV\tP1\n")
    assert _kept(list(iter_targets(str(tsv)))) == [("P1", "MKV", str(tsv), 2)]
    tabs = tmp_path / "tabs.csv"  # a .csv whose header has only tabs is read with tabs
    tabs.write_text("id\tsequence\nP1\tMKV\n")
    assert _kept(list(iter_targets(str(tabs)))) == [("P1", "MKV", str(tabs), 2)]
    for name, data in (("targets.txt", FASTA), ("targets", b"id,sequence\nP1,MKV\n")):
        other = tmp_path / name
        other.write_bytes(data)
        assert [r[0] for r in _kept(list(iter_targets(str(other))))] == (
            [i for i, _, _ in FASTA_KEPT] if data is FASTA else ["P1"]
        )


def test_parquet_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "Sequence": ["MKV", None, "mka", "MKJ", "GGG"],
                "name": ["a", "b", "c", "d", "e"],
                "ID": ["P1", "P2", "P3", "P4", None],
            }
        ),
        path,
        row_group_size=2,
    )
    chunks = list(iter_targets(str(path), chunk_rows=2))
    assert [len(c.rows) + len(c.rejected) for c in chunks] == [2, 2, 1]
    assert _kept(chunks) == [("P1", "MKV", str(path), 1), ("P3", "MKA", str(path), 3)]
    assert _refused(chunks) == [
        (str(path), 2, "P2", "", EMPTY),
        (str(path), 4, "P4", "MKJ", FOREIGN_J),
        (str(path), 5, "", "GGG", "id: empty"),
    ]
    numbers = tmp_path / "numbers.pq"
    pq.write_table(pa.table({"id": [7, 8], "sequence": [b"MKV", b"MK\xff"]}), numbers)
    chunks = list(iter_targets(str(numbers)))
    assert _kept(chunks) == [("7", "MKV", str(numbers), 1)]
    assert _refused(chunks) == [(str(numbers), 2, "8", "MK\ufffd", "sequence: not valid UTF-8 (byte 0xff at byte 3)")]
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"name": ["P1"], "seq": ["MKV"]}), other)
    assert _error(str(other)).problem == "expected columns 'id' and 'sequence' (found: 'name', 'seq')"


# --- refusals --------------------------------------------------------------------------------------


def test_every_bad_record_is_refused_with_its_file_line_and_reason(tmp_path: Path) -> None:
    long = "M" * (MAX_PROTEIN_CHARS + 1)
    path = tmp_path / "t.csv"
    path.write_text(
        "id,sequence\n"
        "P1,MKV\n"  # 2 kept
        "P2,MKJ\n"  # 3 foreign letter
        "P3,\n"  # 4 empty sequence
        f"P4,{long}\n"  # 5 too long
        ",MKV\n"  # 6 empty id
        "P1,GGG\n"  # 7 id used with another sequence
        "P1, mkv \n"  # 8 the same id and sequence (cleaned)
        "P5,MKV,x\n"  # 9 too many fields
        "P6\n"  # 10 too few
        'P7,"MK"V\n'  # 11 a quoting error
        "P8,MKV\n"  # 12 kept: another id may have the same sequence
        "P2,AAA\n"  # 13 kept: P2 was refused, not kept, on line 3
    )
    table = read_target_set(str(path))
    file = str(path)
    assert table.kept.values.tolist() == [["P1", "MKV", file, 2], ["P8", "MKV", file, 12], ["P2", "AAA", file, 13]]
    assert [tuple(r) for r in table.rejected[list(REJECTED_COLUMNS[1:])].itertuples(index=False)] == [
        (file, 3, "P2", "MKJ", FOREIGN_J),
        (file, 4, "P3", "", EMPTY),
        (file, 5, "P4", "M" * 60, f"Protein: {len(long):,} letters, more than the limit of {MAX_PROTEIN_CHARS:,}"),
        (file, 6, "", "MKV", "id: empty"),
        (file, 7, "P1", "GGG", "id: 'P1' already used on line 2 with another sequence"),
        (file, 8, "P1", "mkv", "duplicate of line 2"),
        (file, 9, "P5", "MKV", "fields: 3, the header has 2"),
        (file, 10, "P6", "", "fields: 1, the header has 2"),
        (file, 11, "", "", "CSV: ',' expected after '\"'"),
    ]
    assert set(table.rejected["kind"]) == {"target"}


def test_fasta_refusals_and_an_over_long_record_counted_not_held(tmp_path: Path) -> None:
    lines = 3400  # 204,000 letters over 3,400 lines: held only up to the limit
    letters = 60 * lines
    body = "\n".join(["ACDEFGHIKLMNPQRSTVWY" * 3] * lines)
    path = tmp_path / "t.faa"
    path.write_text(f">T0 first\nMKV\n>T0 again\nAAA\n>T1\n\n>\nMKV\n>T2 long\n{body}\n>T3\nmKv\n>T3 again\nMKV\n")
    chunks = list(iter_targets(str(path)))
    file = str(path)
    assert _kept(chunks) == [("T0", "MKV", file, 1), ("T3", "MKV", file, 10 + lines)]
    assert _refused(chunks) == [
        (file, 3, "T0", "AAA", "id: 'T0' already used on line 1 with another sequence"),
        (file, 5, "T1", "", EMPTY),
        (file, 7, "", "MKV", "id: empty"),
        (
            file,
            9,
            "T2",
            ("ACDEFGHIKLMNPQRSTVWY" * 3)[:60],
            f"Protein: {letters:,} letters, more than the limit of 40,000",
        ),
        (file, 12 + lines, "T3", "MKV", f"duplicate of line {10 + lines}"),
    ]


# --- locations -------------------------------------------------------------------------------------


def _folder_files() -> dict[str, bytes]:
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": ["E1", "A1"], "sequence": ["MKE", "GGG"]}), buffer)
    return {
        "a.fasta": b">A1 first\nMKV\n>A2\nMKA\n",
        "b/c.csv.gz": gzip.compress(b"id,sequence\nC1,MKC\nA2,MKA\n"),
        "d.tsv": b"id\tsequence\nD1\tmkd\nD2\tMKJ\n",
        "e.parquet": buffer.getvalue().to_pybytes(),
        "README.md": b"not targets\n",
        ".hidden.fasta": b">H1\nMKV\n",
    }


FOLDER_KEPT = [("A1", "MKV", "a.fasta", 1), ("A2", "MKA", "a.fasta", 3), ("C1", "MKC", "b/c.csv.gz", 2)]
FOLDER_KEPT += [("D1", "MKD", "d.tsv", 2), ("E1", "MKE", "e.parquet", 1)]
FOLDER_REFUSED = [
    ("b/c.csv.gz", 3, "A2", "MKA", "duplicate of line 3 of a.fasta"),
    ("d.tsv", 3, "D2", "MKJ", FOREIGN_J),
    ("e.parquet", 2, "A1", "GGG", "id: 'A1' already used on line 1 of a.fasta with another sequence"),
]


def test_a_folder_of_mixed_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name, data in _folder_files().items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    with caplog.at_level(logging.WARNING):
        chunks = list(iter_targets(str(tmp_path), chunk_rows=3))
    assert [len(c.rows) + len(c.rejected) for c in chunks] == [3, 3, 2]
    assert _kept(chunks) == FOLDER_KEPT
    assert _refused(chunks) == FOLDER_REFUSED
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path}: skipped 2 file(s) that are not targets files ({SUFFIXES}) or are hidden: .hidden.fasta, README.md"
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert str(_error(str(empty))) == f"{empty}: folder holds no targets files ({SUFFIXES})"


def test_an_s3_prefix_and_key(s3_bucket: S3Bucket) -> None:
    client, bucket, endpoint = s3_bucket
    for name, data in _folder_files().items():
        client.put_object(Bucket=bucket, Key=f"targets/v1/{name}", Body=data)
    client.put_object(Bucket=bucket, Key="targets/v10/x.fasta", Body=b">X\nMKV\n")
    for scheme in ("s3", "s3a"):
        chunks = list(iter_targets(Location.of(f"{scheme}://{bucket}/targets/v1", endpoint), chunk_rows=2))
        assert _kept(chunks) == FOLDER_KEPT
        assert _refused(chunks) == FOLDER_REFUSED
    key = f"s3://{bucket}/targets/v1/b/c.csv.gz"
    assert read_target_set(Location.of(key, endpoint)).kept.values.tolist() == [
        ["C1", "MKC", key, 2],
        ["A2", "MKA", key, 3],
    ]
    nothing = f"s3://{bucket}/nothing"
    assert (
        str(_error(Location.of(nothing, endpoint))) == f"{nothing}: no targets files ({SUFFIXES}) under this S3 prefix"
    )


def test_an_http_url(http_folder: HttpFolder) -> None:
    (http_folder.root / "t.fa.gz").write_bytes(gzip.compress(FASTA))
    (http_folder.root / "t.parquet").write_bytes(_folder_files()["e.parquet"])
    url = http_folder.url + "t.fa.gz"
    assert _kept(list(iter_targets(url, chunk_rows=1))) == [(i, s, url, n) for i, s, n in FASTA_KEPT]
    url = http_folder.url + "t.parquet"
    assert read_target_set(url).kept.values.tolist() == [["E1", "MKE", url, 1], ["A1", "GGG", url, 2]]
    missing = http_folder.url + "nope.fasta"
    assert str(_error(missing)) == f"{missing}: HTTP error 404 File not found"
    folder = http_folder.url
    assert str(_error(folder)) == (
        f"{folder}: not a targets file (expected {SUFFIXES}); folders cannot be listed over http(s)"
    )


# --- bounds ------------------------------------------------------------------------------------------


def test_chunks_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "many.fasta"
    path.write_text("".join(f">T{i} protein {i}\nMKV\nLLA{'ACDEFGHIKLMNPQRSTVWY'[i % 20]}\n" for i in range(10_000)))
    sizes, kept = [], 0
    for chunk in iter_targets(str(path), chunk_rows=500):
        sizes.append(len(chunk.rows) + len(chunk.rejected))
        kept += len(chunk.rows)
    assert sizes == [500] * 20 and kept == 10_000


def test_memory_holds_a_chunk_not_the_file(tmp_path: Path) -> None:
    """30 MB of FASTA (1,000 records of 30,000 letters, one line each) read with a peak of traced
    memory under half the file: what is held is a chunk, a block of text and a few bytes per id."""
    base = ("ACDEFGHIKLMNPQRSTVWY" * 1500).encode()
    path = tmp_path / "long.fasta"
    with open(path, "wb") as handle:
        for i in range(1000):
            handle.write(b">T%d\n%s\n" % (i, base[i:] + base[:i]))
    size = path.stat().st_size
    tracemalloc.start()
    try:
        kept = sum(len(chunk.rows) for chunk in iter_targets(str(path), chunk_rows=50))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kept == 1000
    assert peak < size / 2, f"peak {peak:,} bytes for a file of {size:,}"


def test_a_target_list_read_whole_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.fasta"
    path.write_text("".join(f">T{i}\n{'MKV' * 100}\n" for i in range(10_000)))
    monkeypatch.setattr(targets_module, "MAX_TARGETS_BYTES", 1_000_000)
    error = _error(str(path))
    assert error.path == str(path)
    assert error.problem == (
        f"more than 1,000,000 characters of target ids and sequences by {path} line 16383, the limit for a "
        "target list read whole (limits.MAX_TARGETS_BYTES)"
    )


# --- files that cannot be used -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("empty.fasta", b"", "empty file"),
        ("blank.fasta", b"\xef\xbb\xbf \r\n\n", "empty file"),
        ("latin1.csv", b"id,sequence\nP1,MK\xe9\n", "not valid UTF-8 text (byte 0xe9 at offset 17)"),
        ("header.csv", b"id,sequence\n", "no sequences"),
        ("other.csv", b"name,seq\nP1,MKV\n", "expected FASTA, or CSV columns 'id' and 'sequence' (found: name, seq)"),
        ("quote.csv", b'"id,sequence\nP1,MKV\n', "line 1: CSV: unexpected end of data"),
        ("binary.fasta", b">P1\nMKV\n>P2\nMK\x00V\n", "binary content, not text (NUL byte at offset 14, line 4)"),
        ("bad.fasta.gz", b"not gzip", "not a valid gzip file (Not a gzipped file (b'no'))"),
        ("missing.fasta", None, "file not found"),
        ("missing", None, "no such file or folder"),
        ("README.md", b"id,sequence\nP1,MKV\n", None),
    ],
)
def test_unusable_files_are_input_file_errors(
    tmp_path: Path, name: str, content: bytes | None, problem: str | None
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    if name == "README.md":  # a named file of another name is read; in a folder it is skipped
        assert read_target_set(str(path)).kept["id"].tolist() == ["P1"]
        return
    error = _error(str(path))
    assert (error.path, error.problem) == (str(path), problem)


def test_blank_runs_refuse_a_file(tmp_path: Path) -> None:
    fasta = tmp_path / "blank.fasta"
    fasta.write_bytes(b">P1\nMKV\n" + b"\n" * (MAX_BLANK_LINES + 1) + b">P2\nMKA\n")
    assert _error(str(fasta)).problem == (
        f"line {MAX_BLANK_LINES + 3}: more than {MAX_BLANK_LINES:,} blank lines in a row (limits.MAX_BLANK_LINES)"
    )
    table = tmp_path / "blank.csv"
    table.write_bytes(b"id,sequence\nP1,MKV\n" + b"\n" * (MAX_BLANK_LINES + 1) + b"P2,MKA\n")
    assert _error(str(table)).problem.startswith(f"line {MAX_BLANK_LINES + 3}: more than ")
    kept = tmp_path / "kept.csv"  # a run at the limit is read on
    kept.write_bytes(b"\n" * MAX_BLANK_LINES + b"id,sequence\nP1,MKV\n" + b"\n" * MAX_BLANK_LINES + b"P2,MKA\n")
    assert read_target_set(str(kept)).kept[["id", "line"]].values.tolist() == [
        ["P1", MAX_BLANK_LINES + 2],
        ["P2", 2 * MAX_BLANK_LINES + 3],
    ]


def test_chunk_rows_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_rows must be at least 1, not 0"):
        next(iter_targets(str(tmp_path), chunk_rows=0))


def test_read_checked_targets_keeps_the_shape_its_callers_take(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,sequence\nP1,MKV\nP2,MKJ\n")
    kept, refused = read_checked_targets(path)
    assert kept.values.tolist() == [["P1", "MKV", 2]] and kept["line"].dtype == "int64"
    assert refused.values.tolist() == [["P2", "MKJ", 3, FOREIGN_J]]
    assert list(refused.columns) == ["id", "sequence", "line", "reason"]
    empty = read_target_set(str(path)).rejected.iloc[:0]
    assert list(empty.columns) == list(REJECTED_COLUMNS)
    assert pd.api.types.is_integer_dtype(empty["line"])
