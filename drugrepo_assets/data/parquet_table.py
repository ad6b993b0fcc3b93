"""A Parquet pair table read as strings under its `TableBudget`, and the Parquet helpers every reader shares:
which column types can be read a batch at a time (`parquet_type_problem`, `is_text_type`) and a
dictionary column's values without copying a repeated long value (`dictionary_values`)."""

from __future__ import annotations

import re
from typing import IO

import pandas as pd

from drugrepo_assets.data.limits import InputFileError, TableBudget

__all__ = ["dictionary_text_bytes", "dictionary_values", "is_text_type", "parquet_type_problem", "parse_parquet"]

_PARQUET_BATCH_ROWS = 65_536


def _parquet_error(location: str, exc: BaseException) -> InputFileError:
    detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
    return InputFileError(location, f"cannot parse Parquet ({detail})")


def parse_parquet(location: str, source: IO[bytes], budget: TableBudget) -> pd.DataFrame:
    """A Parquet file as strings, read batch by batch after its metadata passed the limits (rows,
    cells, column data), each batch's text counted before it is copied out (a repeated long value of
    a small file would otherwise expand to gigabytes); a pandas index stored with it is left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(source)
        schema = handle.schema_arrow
        index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
        fields = [f for f in schema if f.name not in index]
        for field in fields:
            problem = parquet_type_problem(field.type)
            if problem is not None:
                raise InputFileError(location, f"column {field.name!r}: {problem}")
        names = [f.name for f in fields]
        _check_parquet_metadata(location, handle.metadata, names, budget)
        text = [f.name for f in fields if is_text_type(f.type)]
        handle = pq.ParquetFile(source, metadata=handle.metadata, read_dictionary=text)
        values: list[list[str]] = [[] for _ in names]
        for batch in handle.iter_batches(
            batch_size=_PARQUET_BATCH_ROWS, columns=names if index else None, use_pandas_metadata=False
        ):
            for j, column in enumerate(batch.columns):
                values[j].extend(_column_text(location, column, budget))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _parquet_error(location, exc) from None
    table = pd.DataFrame({j: pd.Series(column, dtype=object) for j, column in enumerate(values)})
    table.columns = [str(c) for c in names]
    return table


def parquet_type_problem(arrow_type: object) -> str | None:
    """Why a Parquet column of this Arrow type cannot be read as text a batch at a time, or None:
    text, bytes, dictionaries of them and fixed-width values (numbers, dates, decimals) can; nested
    values (lists, structs, maps) cannot: their size per row is not bounded by the row count."""
    import pyarrow as pa

    assert isinstance(arrow_type, pa.DataType)
    if pa.types.is_dictionary(arrow_type):
        return parquet_type_problem(arrow_type.value_type)
    if is_text_type(arrow_type) or pa.types.is_null(arrow_type):
        return None
    try:
        if arrow_type.bit_width <= 256:
            return None
    except ValueError:
        pass
    return f"holds {arrow_type} values, not text or numbers"


def is_text_type(arrow_type: object) -> bool:
    """True for an Arrow type of text or bytes (read from Parquet as a dictionary, so a repeated value is held once)."""
    import pyarrow as pa

    assert isinstance(arrow_type, pa.DataType)
    return any(
        check(arrow_type)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
            pa.types.is_string_view,
            pa.types.is_binary_view,
        )
    )


def _check_parquet_metadata(location: str, metadata: object, names: list[str], budget: TableBudget) -> None:
    """Refuse a Parquet file from its metadata alone: its rows, its cells (values of the columns
    read) and their column data as stored uncompressed, each against what is left of the limits."""
    import pyarrow.parquet as pq

    assert isinstance(metadata, pq.FileMetaData)
    wanted = set(names)
    leaves = [i for i in range(metadata.num_columns) if metadata.schema.column(i).path.split(".")[0] in wanted]
    cells = stored = 0
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for i in leaves:
            chunk = group.column(i)
            cells += max(chunk.num_values, 0)
            stored += max(chunk.total_uncompressed_size, 0)
    budget.add_rows(location, max(metadata.num_rows, 0), cells)
    budget.check_size(location, stored, f"{stored:,} bytes of column data (uncompressed)")


def dictionary_text_bytes(column: object) -> int:
    """Bytes of text a dictionary-encoded column of a batch holds once every row has its value
    (counted on the dictionary, nothing copied); 0 for a dictionary of numbers."""
    import pyarrow as pa
    import pyarrow.compute as pc

    assert isinstance(column, pa.DictionaryArray)
    if not is_text_type(column.dictionary.type):
        return 0
    lengths = pc.binary_length(column.dictionary)
    return int(pc.sum(pc.take(lengths, column.indices)).as_py() or 0)


def dictionary_values(column: object, *, shared: bool = False) -> list[object]:
    """The Python values of a dictionary-encoded column of a batch, row by row (None for a null);
    ``shared``: rows of one value share one object, so a long value repeated is held once."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    assert isinstance(column, pa.DictionaryArray)
    if not shared:
        return column.dictionary.take(column.indices).to_pylist()
    valid = column.indices.is_valid().to_numpy(zero_copy_only=False)
    codes = pc.fill_null(column.indices, 0).to_numpy(zero_copy_only=False)
    distinct, inverse = np.unique(codes, return_inverse=True)
    objects = np.empty(len(distinct), dtype=object)
    objects[:] = column.dictionary.take(pa.array(distinct)).to_pylist()
    rows = objects[inverse]
    rows[~valid] = None
    return rows.tolist()


def _column_text(location: str, column: object, budget: TableBudget) -> list[str]:
    """One column of a Parquet batch as strings (`_as_text`), its text counted in ``budget`` first."""
    import pyarrow as pa

    if isinstance(column, pa.DictionaryArray):
        budget.add_bytes(location, dictionary_text_bytes(column))
        return [_as_text(v) for v in dictionary_values(column)]
    assert isinstance(column, pa.Array)
    texts = [_as_text(v) for v in column.to_pylist()]
    budget.add_bytes(location, sum(map(len, texts)))
    return texts


def _as_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
