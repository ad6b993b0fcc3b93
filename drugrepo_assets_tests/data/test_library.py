"""Library streaming: every vendor format in one folder, bad rows of every kind, chunking, S3, http, errors."""

from __future__ import annotations

import gzip
import logging
import tracemalloc
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drugrepo_assets.data.library import (
    LibraryChunk,
    iter_library,
    read_library,
)
from drugrepo_assets.data.limits import MAX_LINE_BYTES, InputFileError
from drugrepo_assets.data.rules import MAX_SMILES_CHARS
from drugrepo_assets.location import Location
from drugrepo_assets_tests.data.servers import HttpFolder, S3Bucket

HUGE = 5 * 1024 * 1024  # a 5 MB line
LONG = MAX_SMILES_CHARS + 1  # a SMILES just over the limit, on a line under the line limit

# The files of the mixed folder, as bytes; text files are written from their lines.
A_SMI = [  # .smi, no header: SMILES then the name (the rest of the line)
    b"# a comment",
    b"CCO ethanol",
    b"",
    b"c1ccccc1",
    b"C" * HUGE + b" huge",
    b"CCN  ethyl amine",
    b"CC\xff\xfeO bad-bytes",
    b"CC(=O)O acetic",
]
ZINC = [  # ZINC-style header, whitespace-separated, gzipped, in a subfolder
    b"smiles zinc_id",
    b"Cc1ccccc1 ZINC000001",
    b"CCCl ZINC000002",
    b"CCBr ZINC000003 extra",
    b"C" * LONG + b" ZINC000004",
    b"CCI\tZINC000005",
]
C_CSV = [
    b"SMILES,ID",
    b"CC#N,acn",
    b",no-smiles",
    b'"CC(C)O","iso, propanol"',
    b"CCC,propane,extra",
    b"CCCC,",
]
D_TSV = [  # ChEMBL chemreps style: id first, tab-separated, CRLF line ends
    b"chembl_id\tcanonical_smiles\tstandard_inchi_key",
    b"CHEMBL1\tCO\tKEY1",
    b"CHEMBL2\t\tKEY2",
    b"CHEMBL3\tCS\tKEY3",
]
F_CX = [  # Enamine REAL .cxsmiles: tab-separated, header with idnumber and reagents
    b"smiles\tidnumber\treagent1\treagent2",
    b"C1CC1 |$R;;$|\tZ1\tr1\tr2",
]
PARQUET_IDS = ["Z10", "Z11", None, "Z13", "Z14"]
PARQUET_SMILES = ["CCF", "", "CCS", None, "CCOC"]

GOOD = [  # id, smiles, file, line: in file order
    ("ethanol", "CCO", "a.smi", 2),
    ("a.smi:4", "c1ccccc1", "a.smi", 4),
    ("ethyl amine", "CCN", "a.smi", 6),
    ("acetic", "CC(=O)O", "a.smi", 8),
    ("ZINC000001", "Cc1ccccc1", "b/zinc.smi.gz", 2),
    ("ZINC000002", "CCCl", "b/zinc.smi.gz", 3),
    ("ZINC000005", "CCI", "b/zinc.smi.gz", 6),
    ("acn", "CC#N", "c.csv", 2),
    ("iso, propanol", "CC(C)O", "c.csv", 4),
    ("c.csv:6", "CCCC", "c.csv", 6),
    ("CHEMBL1", "CO", "d.tsv.gz", 2),
    ("CHEMBL3", "CS", "d.tsv.gz", 4),
    ("Z10", "CCF", "e.parquet", 1),
    ("e.parquet:3", "CCS", "e.parquet", 3),
    ("Z14", "CCOC", "e.parquet", 5),
    ("Z1", "C1CC1 |$R;;$|", "f.cxsmiles", 2),
]
REJECTED = [  # file, line, id, value, reason
    ("a.smi", 5, "", "C" * 80 + "…", f"line: {HUGE + 5} bytes, more than the limit of {MAX_LINE_BYTES}"),
    ("a.smi", 7, "", "CC\ufffd\ufffdO bad-bytes", "line: not valid UTF-8 (byte 0xff at byte 3 of the line)"),
    ("b/zinc.smi.gz", 4, "ZINC000003", "CCBr ZINC000003 extra", "fields: 3, the header has 2"),
    (
        "b/zinc.smi.gz",
        5,
        "ZINC000004",
        "C" * 80 + "…",
        f"SMILES: {LONG:,} characters, more than the limit of {MAX_SMILES_CHARS:,}",
    ),
    ("c.csv", 3, "no-smiles", "", "SMILES: value is empty"),
    ("c.csv", 5, "propane", "CCC,propane,extra", "fields: 3, the header has 2"),
    ("d.tsv.gz", 3, "CHEMBL2", "", "SMILES: value is empty"),
    ("e.parquet", 2, "Z11", "", "SMILES: value is empty"),
    ("e.parquet", 4, "Z13", "", "SMILES: value is empty"),
]


def _text(lines: list[bytes], end: bytes = b"\n") -> bytes:
    return b"".join(line + end for line in lines)


def _parquet_bytes(path: Path) -> bytes:
    table = pa.table({"idnumber": PARQUET_IDS, "smiles": PARQUET_SMILES, "mw": [1.0, 2.0, 3.0, 4.0, 5.0]})
    pq.write_table(table, path, row_group_size=2)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    return path.read_bytes()


def _library_files(scratch: Path) -> dict[str, bytes]:
    scratch.mkdir(parents=True, exist_ok=True)
    return {
        "a.smi": _text(A_SMI),
        "b/zinc.smi.gz": gzip.compress(_text(ZINC)),
        "c.csv": _text(C_CSV),
        "d.tsv.gz": gzip.compress(_text(D_TSV, b"\r\n")),
        "e.parquet": _parquet_bytes(scratch / "e.parquet"),
        "f.cxsmiles": _text(F_CX),
        "README.md": b"# Library\nCCO is not a molecule of this library.\n",
    }


def _data_lines() -> int:
    """Rows of the folder counted from the sources: non-blank, non-comment lines less headers, Parquet rows."""
    count = 0
    for lines, header in ((A_SMI, False), (ZINC, True), (C_CSV, True), (D_TSV, True), (F_CX, True)):
        count += sum(1 for line in lines if line.strip() and not line.startswith(b"#")) - header
    return count + len(PARQUET_IDS)


@pytest.fixture
def library_folder(tmp_path: Path) -> Path:
    root = tmp_path / "lib"
    for name, data in _library_files(tmp_path / "scratch").items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _rows(chunks: list[LibraryChunk]) -> list[tuple]:
    rows = pd.concat([c.rows for c in chunks], ignore_index=True)
    return list(rows.itertuples(index=False, name=None))


def _rejected(chunks: list[LibraryChunk]) -> list[tuple]:
    rejected = pd.concat([c.rejected for c in chunks], ignore_index=True)
    return list(rejected.itertuples(index=False, name=None))


def _error(location: Location | str, **kwargs: object) -> str:
    with pytest.raises(InputFileError) as info:
        list(iter_library(location, **kwargs))
    return str(info.value)


# --- the mixed folder -------------------------------------------------------------------------


def test_every_good_row_and_every_bad_row_of_a_mixed_folder(
    library_folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="drugrepo_assets.data.input_files"):
        chunks = list(iter_library(str(library_folder)))
    assert len(chunks) == 1
    assert _rows(chunks) == GOOD
    assert _rejected(chunks) == REJECTED
    assert len(GOOD) + len(REJECTED) == _data_lines() == 25
    assert [r.getMessage() for r in caplog.records] == [
        f"{library_folder}: skipped 1 file(s) that are not library files (.smi, .smiles, .txt, .cxsmiles, .csv, "
        ".tsv (each optionally .gz), .parquet) or are hidden: README.md"
    ]


def test_columns_and_dtypes(library_folder: Path) -> None:
    chunk = next(iter_library(str(library_folder)))
    assert list(chunk.rows.columns) == ["id", "smiles", "file", "line"]
    assert list(chunk.rejected.columns) == ["file", "line", "id", "value", "reason"]
    assert chunk.rows["line"].dtype == "int64" and chunk.rejected["line"].dtype == "int64"
    assert {type(v) for c in ("id", "smiles", "file") for v in chunk.rows[c]} == {str}
    assert {type(v) for c in ("file", "id", "value", "reason") for v in chunk.rejected[c]} == {str}


def test_chunks_of_three_give_the_same_rows(library_folder: Path) -> None:
    chunks = list(iter_library(str(library_folder), chunk_rows=3))
    sizes = [len(c.rows) + len(c.rejected) for c in chunks]
    assert sizes == [3] * 8 + [1]
    assert _rows(chunks) == GOOD
    assert _rejected(chunks) == REJECTED
    # a chunk may end inside a file: the rows of a.smi span the first two chunks
    assert list(chunks[0].rows["line"]) == [2, 4] and list(chunks[1].rows["line"]) == [6, 8]
    for chunk in chunks:  # an empty part keeps its columns and types
        assert list(chunk.rejected.columns) == ["file", "line", "id", "value", "reason"]
        assert chunk.rejected["line"].dtype == "int64" and chunk.rows["line"].dtype == "int64"


def test_a_single_file_is_labelled_by_its_location(library_folder: Path) -> None:
    location = str(library_folder / "c.csv")
    chunks = list(iter_library(location))
    assert _rows(chunks) == [(i, s, location, n) for i, s, f, n in GOOD if f == "c.csv"]
    assert [r[:2] for r in _rejected(chunks)] == [(location, 3), (location, 5)]


def test_a_hostile_line_is_never_held_whole(tmp_path: Path) -> None:
    path = tmp_path / "hostile.smi.gz"
    path.write_bytes(gzip.compress(b"CCO first\n" + b"C" * (40 << 20) + b" x\nCCN last"))
    tracemalloc.start()
    try:
        chunks = list(iter_library(str(path)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 << 20, f"peak {peak} bytes while reading a 40 MB line"
    assert _rows(chunks) == [("first", "CCO", str(path), 1), ("last", "CCN", str(path), 3)]
    assert _rejected(chunks) == [
        (str(path), 2, "", "C" * 80 + "…", f"line: {(40 << 20) + 2} bytes, more than the limit of {MAX_LINE_BYTES}")
    ]


def test_separators_headers_and_comments(tmp_path: Path) -> None:
    cases = {
        "comma.smi": b"CCO,m1\nCCN,m2\n",
        "tabs.txt": b"CCO\tm1\nCCN m2\n",  # a line without a tab reads as whitespace-separated
        "header.smiles": b"# exported\nSMILES,ID\n",  # only a header: no rows
        "emol.smi": b"isosmiles version_id parent_id\nCCO 11 1\nCCN 12 2\n",
        "molport.txt": b"SMILES\tSMILES_CANONICAL\tMOLPORTID\nC(O)C\tCCO\tMolPort-1\n",
        "two.csv": b"\xef\xbb\xbfSmiles;Catalog Number\nCCO;cat-1\n",
        "other.csv": b"smiles,code\nCCO,X9\n",  # two columns: the other one is the id
        "many.csv": b"smiles,mw,logp\nCCO,46,0.1\n",  # no id column among several: generated
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    rows = {
        name: [r[:2] for r in _rows(list(iter_library(str(tmp_path / name))))]
        for name in cases
        if name != "header.smiles"
    }
    assert rows == {
        "comma.smi": [("m1", "CCO"), ("m2", "CCN")],
        "tabs.txt": [("m1", "CCO"), ("m2", "CCN")],
        "emol.smi": [("11", "CCO"), ("12", "CCN")],
        "molport.txt": [("MolPort-1", "C(O)C")],
        "two.csv": [("cat-1", "CCO")],
        "other.csv": [("X9", "CCO")],
        "many.csv": [("many.csv:2", "CCO")],
    }
    assert list(iter_library(str(tmp_path / "header.smiles"))) == []


def test_a_csv_quoting_error_is_a_refused_row(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b'id,smiles\n"open,CCO\nm2,CCN\n')
    chunks = list(iter_library(str(path)))
    assert _rows(chunks) == [("m2", "CCN", str(path), 3)]
    assert _rejected(chunks) == [(str(path), 2, "", '"open,CCO', "CSV: unexpected end of data")]


# --- S3 and http ------------------------------------------------------------------------------


def test_the_mixed_folder_from_an_s3_prefix(
    s3_bucket: S3Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, bucket, endpoint = s3_bucket
    for name, data in _library_files(tmp_path / "scratch").items():
        client.put_object(Bucket=bucket, Key=f"libs/v1/{name}", Body=data)
    client.put_object(Bucket=bucket, Key="libs/v10/other.smi", Body=b"CCO not-in-v1\n")
    client.put_object(Bucket=bucket, Key="libs/v1.smi", Body=b"CCO not-in-v1\n")
    prefix = f"s3://{bucket}/libs/v1"
    with caplog.at_level(logging.WARNING, logger="drugrepo_assets.data.input_files"):
        chunks = list(iter_library(Location.of(prefix, endpoint), chunk_rows=4))
    assert _rows(chunks) == GOOD
    assert _rejected(chunks) == REJECTED
    assert "README.md" in caplog.text
    assert _rows(list(iter_library(Location.of(prefix + "/", endpoint)))) == GOOD

    key = f"s3://{bucket}/libs/v1/b/zinc.smi.gz"
    single = list(iter_library(Location.of(key, endpoint)))
    assert _rows(single) == [(i, s, key, n) for i, s, f, n in GOOD if f == "b/zinc.smi.gz"]
    assert [r[1] for r in _rejected(single)] == [4, 5]


def test_s3_errors(s3_bucket: S3Bucket) -> None:
    client, bucket, endpoint = s3_bucket
    client.put_object(Bucket=bucket, Key="docs/README.md", Body=b"x")
    client.put_object(Bucket=bucket, Key="bad/x.smi.gz", Body=b"not gzip")
    nothing = f"s3://{bucket}/nothing"
    assert _error(Location.of(nothing, endpoint)) == f"{nothing}: no library files ({_SUFFIXES}) under this S3 prefix"
    missing = f"s3://{bucket}/nothing/x.smi"
    assert _error(Location.of(missing, endpoint)) == f"{missing}: no such S3 key"
    readme = f"s3://{bucket}/docs/README.md"
    assert _error(Location.of(readme, endpoint)) == f"{readme}: not a library file (expected {_SUFFIXES})"
    assert _error(Location.of(f"s3://{bucket}/bad", endpoint)).startswith(
        f"s3://{bucket}/bad/x.smi.gz: not a valid gzip file"
    )


def test_one_file_over_http(http_folder: HttpFolder) -> None:
    files = _library_files(http_folder.root.parent / "scratch")
    for name in ("b/zinc.smi.gz", "e.parquet", "c.csv"):
        (http_folder.root / name).parent.mkdir(parents=True, exist_ok=True)
        (http_folder.root / name).write_bytes(files[name])
    for name in ("b/zinc.smi.gz", "e.parquet", "c.csv"):
        url = http_folder.url + name
        chunks = list(iter_library(url, chunk_rows=2))
        assert _rows(chunks) == [
            (i.replace(f"{name}:", f"{Path(name).name}:"), s, url, n) for i, s, f, n in GOOD if f == name
        ]
        assert _rejected(chunks) == [(url, *r[1:]) for r in REJECTED if r[0] == name]


def test_http_errors(http_folder: HttpFolder) -> None:
    (http_folder.root / "sub").mkdir()
    (http_folder.root / "sub" / "x.smi").write_bytes(b"CCO a\n")
    folder = http_folder.url + "sub/"
    assert (
        _error(folder) == f"{folder}: not a library file (expected {_SUFFIXES}); folders cannot be listed over http(s)"
    )
    missing = http_folder.url + "nope.smi"
    assert _error(missing) == f"{missing}: HTTP error 404 File not found"


# --- files that cannot be used ----------------------------------------------------------------

_SUFFIXES = ".smi, .smiles, .txt, .cxsmiles, .csv, .tsv (each optionally .gz), .parquet"


def test_unusable_files_are_input_file_errors(tmp_path: Path) -> None:
    def case(name: str, data: bytes) -> str:
        path = tmp_path / name
        path.write_bytes(data)
        return str(path)

    missing = str(tmp_path / "missing.smi")
    assert _error(missing) == f"{missing}: file not found"
    nowhere = str(tmp_path / "nowhere")
    assert _error(nowhere) == f"{nowhere}: no such file or folder"
    readme = case("README.md", b"CCO\n")
    assert _error(readme) == f"{readme}: not a library file (expected {_SUFFIXES})"
    no_smiles = case("x.csv", b"id,structure\nm1,CCO\n")
    assert _error(no_smiles) == (
        f"{no_smiles}: no SMILES column in the header (line 1; found: 'id', 'structure'; "
        "expected one named smiles, canonicalsmiles, isomericsmiles, ...)"
    )
    not_gzip = case("y.smi.gz", b"CCO plain text\n")
    assert _error(not_gzip) == f"{not_gzip}: not a valid gzip file (Not a gzipped file (b'CC'))"
    cut = case("z.csv.gz", gzip.compress(b"smiles,id\n" + b"CCO,m\n" * 1000)[:-20])
    assert _error(cut) == (
        f"{cut}: not a valid gzip file (Compressed file ended before the end-of-stream marker was reached)"
    )
    parquet = case("p.parquet", b"PAR1 this is not parquet")
    assert _error(parquet).startswith(f"{parquet}: not a valid Parquet file (")
    no_column = tmp_path / "q.parquet"
    pq.write_table(pa.table({"id": ["a"], "mol": ["CCO"]}), no_column)
    assert _error(str(no_column)) == f"{no_column}: no SMILES column (found: 'id', 'mol')"
    empty = tmp_path / "empty"
    (empty / "docs").mkdir(parents=True)
    (empty / "docs" / "notes.md").write_bytes(b"x")
    assert _error(str(empty)) == f"{empty}: folder holds no library files ({_SUFFIXES})"
    with pytest.raises(ValueError):
        list(iter_library(str(tmp_path), chunk_rows=0))


def test_a_corrupt_file_midway_raises_naming_it(library_folder: Path) -> None:
    (library_folder / "c.csv").write_bytes(b"smiles,id\nCCO,m\n")
    (library_folder / "d.tsv.gz").write_bytes(gzip.compress(_text(D_TSV))[:-30])
    stream = iter_library(str(library_folder), chunk_rows=2)
    seen = [next(stream) for _ in range(3)]
    assert [r[0] for r in _rows(seen)] == ["ethanol", "a.smi:4", "ethyl amine", "acetic"]
    with pytest.raises(InputFileError) as info:
        list(stream)
    assert info.value.path == str(library_folder / "d.tsv.gz")


# --- read_library: the small-file reader on top of the stream ---------------------------------


def test_read_library_keeps_its_contract(tmp_path: Path) -> None:
    smi = tmp_path / "lib.smi"
    smi.write_bytes(b"CCO ethanol\n# note\n\nc1ccccc1\nCC(=O)O acetic acid\n")
    table = read_library(smi)
    assert list(table.columns) == ["id", "smiles", "line"]
    assert table.values.tolist() == [["ethanol", "CCO", 1], ["line4", "c1ccccc1", 4], ["acetic acid", "CC(=O)O", 5]]
    assert table["line"].dtype == "int64"

    csv_file = tmp_path / "lib.csv"
    long = "C" * LONG
    csv_file.write_text(f"id,SMILES\naspirin,CC(=O)Oc1ccccc1C(=O)O\nno-smiles,\n,CCN\nshort\nlong,{long}\n")
    table = read_library(str(csv_file))
    assert table.values.tolist() == [
        ["aspirin", "CC(=O)Oc1ccccc1C(=O)O", 2],
        ["no-smiles", "", 3],
        ["", "CCN", 4],
        ["short", "", 5],
        ["long", long, 6],
    ]

    other = tmp_path / "library.dat"  # any other name reads as a CSV, as it always did
    other.write_text("ID,smiles\nm1,CCO\n")
    assert read_library(other).values.tolist() == [["m1", "CCO", 2]]


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("empty.smi", b"", "no molecules"),
        ("header.csv", b"id,smiles\n", "no molecules"),
        ("missing.csv", None, "file not found"),
        ("latin1.csv", b"id,smiles\nm1,CCO\nm2,CC\xe9\n", "line 3: not valid UTF-8 (byte 0xe9 at byte 6 of the line)"),
        ("wide.csv", b"id,smiles\nm1,CCO,x\n", "line 2: fields: 3, the header has 2"),
        ("x.csv", b"name,structure\nm1,CCO\n", None),
    ],
)
def test_read_library_refuses_unusable_files(
    tmp_path: Path, name: str, content: bytes | None, problem: str | None
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputFileError) as info:
        read_library(path)
    assert info.value.path == str(path)
    if problem is not None:
        assert info.value.problem == problem
    else:
        assert info.value.problem.startswith("no SMILES column in the header")


def test_read_library_refuses_a_folder(library_folder: Path) -> None:
    with pytest.raises(InputFileError) as info:
        read_library(library_folder)
    assert str(info.value) == f"{library_folder}: is a folder, not a file"


# --- byte-order marks, gzip bombs, row counts ---------------------------------------------------


@pytest.mark.parametrize("name", ["bom.smi", "bom.csv", "bom.smi.gz"])
def test_a_bom_only_file_is_an_empty_library(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    data = b"\xef\xbb\xbf"
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    assert list(iter_library(str(path))) == []
    with pytest.raises(InputFileError) as info:
        read_library(path)
    assert str(info.value) == f"{path}: no molecules"


def test_a_bom_before_a_first_row_or_comment_is_skipped(tmp_path: Path) -> None:
    row = tmp_path / "row.smi"
    row.write_bytes(b"\xef\xbb\xbfCCO m1\n")
    comment = tmp_path / "comment.smi"
    comment.write_bytes(b"\xef\xbb\xbf# exported\r\nCCN m2\r\n")
    assert _rows(list(iter_library(str(row)))) == [("m1", "CCO", str(row), 1)]
    assert _rows(list(iter_library(str(comment)))) == [("m2", "CCN", str(comment), 2)]


def _bomb(path: Path, megabytes: int, byte: bytes = b"C") -> Path:
    """A gzip file of ``megabytes`` MiB of one repeated byte (~1,000 times smaller), written block by block."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = byte * (1 << 20)
    with open(path, "wb") as handle:
        for _ in range(megabytes):
            handle.write(packer.compress(block))
        handle.write(packer.flush())
    return path


def test_a_gzip_bomb_is_refused_naming_it_without_reading_it_all(tmp_path: Path) -> None:
    from drugrepo_assets.data.library import count_rows
    from drugrepo_assets.data.limits import GZIP_ALLOWANCE_BYTES, MAX_GZIP_RATIO

    bomb = _bomb(tmp_path / "bomb.smi.gz", 400)
    assert bomb.stat().st_size * MAX_GZIP_RATIO + GZIP_ALLOWANCE_BYTES < 400 << 20
    tracemalloc.start()
    try:
        message = _error(str(bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert message.startswith(f"{bomb}: gzip data expands more than {MAX_GZIP_RATIO} times")
    assert "gzip bomb" in message
    assert peak < 16 << 20, f"peak {peak} bytes while refusing a gzip bomb"
    with pytest.raises(InputFileError) as info:
        count_rows(str(bomb))
    assert info.value.path == str(bomb) and "gzip bomb" in info.value.problem
    with pytest.raises(InputFileError) as info:
        read_library(bomb)
    assert info.value.path == str(bomb) and "gzip bomb" in info.value.problem


def test_a_large_ordinary_gzip_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "real.smi.gz"
    lines = [f"{'C' * (1 + i % 40)}{'O' * (i % 7)} mol{i}\n" for i in range(200_000)]
    path.write_bytes(gzip.compress("".join(lines).encode()))
    chunks = list(iter_library(str(path), chunk_rows=50_000))
    assert sum(len(c.rows) for c in chunks) == 200_000 and not any(len(c.rejected) for c in chunks)


def test_count_rows_names_a_file_it_cannot_read(tmp_path: Path) -> None:
    from drugrepo_assets.data.library import count_rows

    (tmp_path / "a.smi").write_bytes(b"CCO a\nCCN b\n")
    assert count_rows(str(tmp_path)) == 2
    (tmp_path / "b.smi.gz").write_bytes(b"not gzip")
    with pytest.raises(InputFileError) as info:
        count_rows(str(tmp_path))
    assert info.value.path == str(tmp_path / "b.smi.gz") and info.value.problem.startswith("not a valid gzip file")
    (tmp_path / "b.smi.gz").unlink()
    (tmp_path / "c.parquet").write_bytes(b"PAR1 not parquet")
    with pytest.raises(InputFileError) as info:
        count_rows(str(tmp_path))
    assert info.value.path == str(tmp_path / "c.parquet") and info.value.problem.startswith("not a valid Parquet file")


def test_a_table_written_by_validate_or_screen_keeps_its_drug_ids(tmp_path: Path) -> None:
    table = pd.DataFrame({"drug_id": ["D1", "D2"], "target_id": ["T1", "T1"], "smiles": ["CCO", "c1ccccc1"]})
    table.to_parquet(tmp_path / "valid.parquet", index=False)
    table.to_csv(tmp_path / "top.csv", index=False)
    for name in ("valid.parquet", "top.csv"):
        rows = pd.concat([chunk.rows for chunk in iter_library(str(tmp_path / name))])
        assert rows[["id", "smiles"]].values.tolist() == [["D1", "CCO"], ["D2", "c1ccccc1"]], name
