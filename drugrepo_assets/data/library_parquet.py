"""A library's Parquet files read batch by batch, only the SMILES and id columns, each row group checked
against ``ReadLimits.row_group_bytes`` from the metadata first; shared with the target reader
(`check_parquet_columns`, `batch_values`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow.parquet as pq

from drugrepo_assets.data.input_files import Member, ParquetSource
from drugrepo_assets.data.library_text import Bad, checked_row, find_columns, shown
from drugrepo_assets.data.limits import LIMIT_VARIABLES, InputFileError, read_limits
from drugrepo_assets.data.parquet_table import (
    dictionary_text_bytes,
    dictionary_values,
    is_text_type,
    parquet_type_problem,
)

__all__ = ["batch_values", "check_parquet_columns", "parquet_events"]


def parquet_events(
    member: Member, default_id: Callable[[int, bool], str], batch_rows: int, compat: bool
) -> Iterator[tuple[int, str, str] | Bad]:
    """Rows ``(row, id, smiles)`` and refused rows of one Parquet file, batch by batch."""
    import pyarrow as pa

    row_group_bytes = read_limits().row_group_bytes
    with ParquetSource(member) as source:
        try:
            handle = pq.ParquetFile(source)
            names = list(handle.schema_arrow.names)
        except (pa.ArrowException, OSError, ValueError) as exc:
            detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
            raise InputFileError(member.uri, f"not a valid Parquet file ({detail})") from None
        smiles_at, id_at = find_columns(names)
        if smiles_at is None:
            raise InputFileError(
                member.uri, f"no SMILES column (found: {shown(', '.join(map(repr, names)) or 'nothing')})"
            )
        read = [smiles_at] + ([id_at] if id_at is not None else [])
        columns = [names[i] for i in read]
        number = 0
        try:
            text = check_parquet_columns(member, handle, read, row_group_bytes)
            handle = pq.ParquetFile(source, metadata=handle.metadata, read_dictionary=text)
            for batch in handle.iter_batches(batch_size=batch_rows, columns=columns):
                smiles_values = batch_values(batch.column(0))
                id_values = batch_values(batch.column(1)) if id_at is not None else [None] * len(smiles_values)
                for smiles, ident in zip(smiles_values, id_values):
                    number += 1
                    ident = (
                        ""
                        if ident is None
                        else ident.decode("utf-8", "replace")
                        if isinstance(ident, bytes)
                        else str(ident).strip()
                    )
                    if not ident:
                        ident = default_id(number, True)
                    if isinstance(smiles, bytes):
                        try:
                            smiles = smiles.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            yield Bad(
                                number,
                                ident,
                                shown(smiles.decode("utf-8", "replace")),
                                f"SMILES: not valid UTF-8 (byte 0x{smiles[exc.start]:02x} at byte {exc.start + 1})",
                            )
                            continue
                    smiles = "" if smiles is None else str(smiles)
                    yield checked_row(number, ident, smiles, compat)
        except (pa.ArrowException, OSError, ValueError) as exc:
            detail = re.sub(r"\s+", " ", str(exc)).strip().rstrip(".")
            raise InputFileError(member.uri, f"not a valid Parquet file ({detail})") from None


_DENSE_TEXT_BYTES = 64 << 20
"""Text of one column of a Parquet batch copied row by row; above it, rows of one value share one
string (a 200 KB file can repeat a long value millions of times)."""


def check_parquet_columns(member: Member, handle: pq.ParquetFile, read: list[int], limit: int) -> list[str]:
    """The text columns among the columns ``read`` (by position), to read as dictionaries, after every
    row group's column data (uncompressed, from the metadata) is checked against ``limit``; a
    column of nested values, or a row group over the limit, refuses the file."""
    schema = handle.schema_arrow
    fields = [schema.field(i) for i in read]
    for field in fields:
        problem = parquet_type_problem(field.type)
        if problem is not None:
            raise InputFileError(member.uri, f"column {field.name!r}: {problem}")
    metadata = handle.metadata
    wanted = {field.name for field in fields}
    leaves = [i for i in range(metadata.num_columns) if metadata.schema.column(i).path.split(".")[0] in wanted]
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        size = sum(max(group.column(i).total_uncompressed_size, 0) for i in leaves)
        if size > limit:
            raise InputFileError(
                member.uri,
                f"row group {g + 1}: {size:,} bytes of column data (uncompressed), more than the limit of "
                f"{limit:,} bytes for a row group read at a time (set {LIMIT_VARIABLES['row_group_bytes']} "
                "to change it)",
            )
    return [field.name for field in fields if is_text_type(field.type)]


def batch_values(column: object) -> list[Any]:
    """One column of a Parquet batch as Python values; a dictionary's rows share their values when
    copying them would pass ``_DENSE_TEXT_BYTES``."""
    import pyarrow as pa

    if isinstance(column, pa.DictionaryArray):
        return dictionary_values(column, shared=dictionary_text_bytes(column) > _DENSE_TEXT_BYTES)
    assert isinstance(column, pa.Array)
    return column.to_pylist()
