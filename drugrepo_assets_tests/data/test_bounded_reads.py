"""Bounded reads: a pair table read whole stays under `ReadLimits` (text, rows, cells; a folder's files
together), a Parquet file is refused from its metadata, a CSV is streamed and refused at its first
NUL byte, over-long row or run of blank lines; libraries and targets refuse binary content, runs of
blank lines and over-large Parquet row groups, and a repeated long value is held once.

The limits are lowered through their environment variables so the files stay small; the CLI tests
(``cli/test_bounded_reads.py``) run the real defaults on a 4 GB sparse file and 20 M Parquet rows.
"""

from __future__ import annotations

import gzip
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from drugrepo_assets.data.library import count_rows, iter_library, read_library
from drugrepo_assets.data.limits import (
    LIMIT_VARIABLES,
    MAX_BLANK_LINES,
    MAX_LINE_BYTES,
    MAX_TABLE_BYTES,
    InputFileError,
    ReadLimits,
    read_limits,
)
from drugrepo_assets.data.sources import read_source
from drugrepo_assets_tests.data.rows import real_rows, write_csv

HUMAN = real_rows("human/random/train.csv", [1, 2, 3])


def _error(read: object, *args: object) -> InputFileError:
    with pytest.raises(InputFileError) as info:
        read(*args)  # type: ignore[operator]
    return info.value


def _limit_text(field: str, limit: int, unit: str) -> str:
    return f"more than the limit of {limit:,} {unit} for a table read whole (set {LIMIT_VARIABLES[field]} to change it)"


def _sparse(path: Path, head: bytes, size: int) -> Path:
    """``head`` then NUL bytes up to ``size``, written sparsely (no disk taken)."""
    path.write_bytes(head)
    subprocess.run(["truncate", "-s", str(size), str(path)], check=True)
    return path


# --- the limits and their settings ----------------------------------------------------------------


def test_read_limits_come_from_their_variables_or_the_defaults() -> None:
    assert read_limits({}) == ReadLimits()
    assert read_limits({"DRUGREPO_MAX_TABLE_ROWS": "1_000", "DRUGREPO_MAX_TABLE_BYTES": " 4096 "}) == ReadLimits(
        table_bytes=4096, table_rows=1000
    )
    for bad in ("0", "-5", "1e6", "lots"):
        with pytest.raises(ValueError, match=r"^DRUGREPO_MAX_TABLE_CELLS="):
            read_limits({"DRUGREPO_MAX_TABLE_CELLS": bad})


# --- pair tables --------------------------------------------------------------------------------


def test_a_sparse_4_gb_csv_is_refused_from_its_size_unread(tmp_path: Path) -> None:
    path = _sparse(tmp_path / "big.csv", b"SMILES,Protein,Y\n", 4 << 30)
    error = _error(read_source, str(path))
    assert (error.path, error.problem) == (
        str(path),
        f"{4 << 30:,} bytes: {_limit_text('table_bytes', MAX_TABLE_BYTES, 'bytes')}",
    )


def test_csv_rows_past_the_row_limit_refuse_the_file_at_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_ROWS", "3")
    exact = write_csv(tmp_path / "three.csv", HUMAN)
    assert len(read_source(str(exact))) == 3
    over = write_csv(tmp_path / "four.csv", [*HUMAN, HUMAN[0]])
    assert _error(read_source, str(over)).problem == f"line 5: 4 rows: {_limit_text('table_rows', 3, 'rows')}"


def test_short_rows_padded_to_a_wide_header_count_as_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_CELLS", "1000")
    path = tmp_path / "wide.csv"
    path.write_text("SMILES,Protein,Y," + ",".join(f"c{i}" for i in range(97)) + "\n" + "x\n" * 11)
    assert _error(read_source, str(path)).problem == (
        f"line 12: 1,100 cells (rows × columns): {_limit_text('table_cells', 1000, 'cells')}"
    )


def test_a_folders_files_share_the_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_ROWS", "4")
    write_csv(tmp_path / "a.csv", HUMAN[:2])
    write_csv(tmp_path / "b.csv", HUMAN[:2])
    assert len(read_source(str(tmp_path))) == 4
    write_csv(tmp_path / "c.csv", HUMAN[:1])
    error = _error(read_source, str(tmp_path))
    assert error.path == str(tmp_path / "c.csv")
    assert error.problem == f"line 2: 5 rows, the files read before it included: {_limit_text('table_rows', 4, 'rows')}"


def test_gzip_text_is_counted_as_it_is_decompressed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_BYTES", str(3 << 20))
    row = ",".join(HUMAN[0]) + "\n"
    path = tmp_path / "pairs.csv.gz"
    path.write_bytes(gzip.compress(("SMILES,Protein,Y\n" + row * ((4 << 20) // len(row))).encode()))
    assert path.stat().st_size < 3 << 20
    error = _error(read_source, str(path))
    assert error.problem.startswith("over ") and error.problem.endswith(_limit_text("table_bytes", 3 << 20, "bytes"))


def test_a_csv_row_over_the_line_limit_refuses_the_file(tmp_path: Path) -> None:
    long_line = tmp_path / "long.csv"
    long_line.write_bytes(b"SMILES,Protein,Y\nCCO,MKV,1\n" + b"C" * (MAX_LINE_BYTES + 1) + b",MKV,1\n")
    quoted = tmp_path / "quoted.csv"  # one record over many short lines, each field under csv's own limit
    field = b'"' + b"C\n" * 30_000 + b'"'
    quoted.write_bytes(
        b"SMILES,Protein,Y," + b",".join(b"c%d" % i for i in range(17)) + b"\n" + b",".join([field] * 20)
    )
    limit = f"a row of more than {MAX_LINE_BYTES:,} bytes, the limit (limits.MAX_LINE_BYTES)"
    assert _error(read_source, str(long_line)).problem == f"line 3: {limit}"
    assert _error(read_source, str(quoted)).problem.endswith(limit)


def test_a_run_of_blank_lines_refuses_the_file_at_its_limit(tmp_path: Path) -> None:
    row = ",".join(HUMAN[0]).encode() + b"\n"
    kept = tmp_path / "kept.csv"
    kept.write_bytes(b"SMILES,Protein,Y\n" + b"\n" * MAX_BLANK_LINES + row)
    assert len(read_source(str(kept))) == 1
    refused = tmp_path / "refused.csv"
    refused.write_bytes(b"SMILES,Protein,Y\n" + b"\r\n" * (MAX_BLANK_LINES + 1) + row)
    assert _error(read_source, str(refused)).problem == (
        f"line {MAX_BLANK_LINES + 2}: more than {MAX_BLANK_LINES:,} blank lines in a row (limits.MAX_BLANK_LINES)"
    )


def test_a_nul_byte_refuses_a_pair_table_with_its_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "nul.csv"
    path.write_bytes(b"SMILES,Protein,Y\nCCO,MKV,1\nCC\x00O,MKV,1\n")
    assert _error(read_source, str(path)).problem == "binary content, not text (NUL byte at offset 29, line 3)"


def _constant_parquet(path: Path, rows: int, value: str, row_group: int | None = None) -> Path:
    """A Parquet file of ``rows`` rows of one SMILES, protein and label, dictionary-encoded (a few KB)."""
    index = pa.array(np.zeros(rows, dtype=np.int32))
    table = pa.table(
        {
            name: pa.DictionaryArray.from_arrays(index, pa.array([text]))
            for name, text in zip("SPY", ("CCO", value, "1"))
        }
    ).rename_columns(["SMILES", "Protein", "Y"])
    pq.write_table(table, path, compression="zstd", store_schema=False, row_group_size=row_group)
    return path


def test_parquet_rows_and_cells_are_refused_from_the_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _constant_parquet(tmp_path / "rows.parquet", 2_000, "MKV")
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_ROWS", "1999")
    assert _error(read_source, str(path)).problem == f"2,000 rows: {_limit_text('table_rows', 1999, 'rows')}"
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_ROWS", "2000")
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_CELLS", "5999")
    assert _error(read_source, str(path)).problem == (
        f"6,000 cells (rows × columns): {_limit_text('table_cells', 5999, 'cells')}"
    )
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_CELLS", "6000")
    assert read_source(str(path))["Protein"].tolist() == ["MKV"] * 2_000


def test_parquet_text_is_counted_before_it_is_copied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """20,000 rows of one 10,000-letter protein: 200 MB once every row has it, from a file of a few KB."""
    path = _constant_parquet(tmp_path / "repeated.parquet", 20_000, "M" * 10_000)
    assert path.stat().st_size < 100_000
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_BYTES", str(64 << 20))
    error = _error(read_source, str(path))
    assert error.problem.startswith("over ") and error.problem.endswith(_limit_text("table_bytes", 64 << 20, "bytes"))


def test_a_nested_parquet_column_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"SMILES": ["CCO"], "Protein": ["MKV"], "Y": ["1"], "tags": [["a", "b"]]}), path)
    assert _error(read_source, str(path)).problem == (
        "column 'tags': holds list<element: string> values, not text or numbers"
    )


def test_parquet_values_and_the_pandas_index_read_as_before(tmp_path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame({"SMILES": ["CCO", None], "Protein": ["MKV", "MKA"], "Y": [1, 0]}, index=[7, 9])
    frame.to_parquet(tmp_path / "indexed.parquet")
    table = read_source(str(tmp_path / "indexed.parquet"))
    assert table.values.tolist() == [
        ["CCO", "MKV", "1", str(tmp_path / "indexed.parquet"), 1],
        ["", "MKA", "0", str(tmp_path / "indexed.parquet"), 2],
    ]


# --- libraries and targets ----------------------------------------------------------------------


def test_a_sparse_4_gb_library_is_refused_at_its_first_block(tmp_path: Path) -> None:
    path = _sparse(tmp_path / "big.smi", b"CCO m1\nCCN m2\n", 4 << 30)
    problem = "binary content, not text (NUL byte at offset 14, line 3)"
    assert _error(lambda: list(iter_library(str(path)))).problem == problem
    assert _error(count_rows, str(path)).problem == problem
    assert _error(read_library, path).problem == problem


def test_a_binary_file_as_a_library_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "image.smi"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4)
    error = _error(lambda: list(iter_library(str(path))))
    assert (error.path, error.problem) == (str(path), "binary content, not text (NUL byte at offset 8, line 3)")


def test_a_run_of_blank_or_comment_lines_refuses_a_library(tmp_path: Path) -> None:
    kept = tmp_path / "kept.smi"
    kept.write_bytes(b"#\n" * MAX_BLANK_LINES + b"CCO m1\n")
    assert [c.rows["id"].tolist() for c in iter_library(str(kept))] == [["m1"]]
    refused = tmp_path / "refused.smi.gz"
    refused.write_bytes(gzip.compress(b"CCO m1\n" + b" \n#x\n" * MAX_BLANK_LINES))
    assert _error(lambda: list(iter_library(str(refused)))).problem == (
        f"line {MAX_BLANK_LINES + 2}: more than {MAX_BLANK_LINES:,} blank or comment lines in a row "
        "(limits.MAX_BLANK_LINES)"
    )


def test_read_library_is_under_the_table_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRUGREPO_MAX_TABLE_ROWS", "2")
    path = tmp_path / "lib.smi"
    path.write_text("CCO m1\nCCN m2\nCCC m3\n")
    assert _error(read_library, path).problem == f"line 3: 3 rows: {_limit_text('table_rows', 2, 'rows')}"


def test_a_library_row_group_over_its_limit_is_refused_from_the_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "lib.parquet"
    pq.write_table(pa.table({"smiles": [f"C{'C' * i}O" for i in range(2_000)]}), path, row_group_size=1_000)
    sizes = [pq.ParquetFile(path).metadata.row_group(g).column(0).total_uncompressed_size for g in range(2)]
    monkeypatch.setenv("DRUGREPO_MAX_ROW_GROUP_BYTES", str(sizes[1] - 1))
    assert sizes[0] < sizes[1]
    error = _error(lambda: list(iter_library(str(path))))
    assert error.problem == (
        f"row group 2: {sizes[1]:,} bytes of column data (uncompressed), more than the limit of {sizes[1] - 1:,} "
        "bytes for a row group read at a time (set DRUGREPO_MAX_ROW_GROUP_BYTES to change it)"
    )
    monkeypatch.setenv("DRUGREPO_MAX_ROW_GROUP_BYTES", str(sizes[1]))
    assert sum(len(c.rows) + len(c.rejected) for c in iter_library(str(path))) == 2_000


def test_a_repeated_long_library_value_is_held_once(tmp_path: Path) -> None:
    """200,000 rows of one 100,000-character SMILES (20 GB if each row had its copy) from a file of
    ~0.5 MB: every row refused, in a fresh process whose peak RSS stays under 2 GiB (held per copy it would be 20 GB)."""
    path = tmp_path / "repeated.parquet"
    index = pa.array(np.zeros(200_000, dtype=np.int32))
    smiles = pa.DictionaryArray.from_arrays(index, pa.array(["C" * 100_000]))
    pq.write_table(pa.table({"smiles": smiles}), path, compression="zstd", store_schema=False)
    assert path.stat().st_size < 2 << 20
    script = textwrap.dedent(
        f"""
        import resource
        from drugrepo_assets.data.library import iter_library
        chunks = list(iter_library({str(path)!r}))
        reasons = {{r for c in chunks for r in c.rejected["reason"]}}
        print(sum(len(c.rows) for c in chunks), sum(len(c.rejected) for c in chunks), sorted(reasons))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    counts, peak = done.stdout.splitlines()
    assert counts == "0 200000 ['SMILES: 100,000 characters, more than the limit of 10,000']"
    assert int(peak) < 2 << 30, f"peak RSS {int(peak):,} bytes"
