"""Asset metadata rendered for the UI: tables (Dagster's table metadata) and pictures as Markdown."""

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from dagster import MetadataValue, TableColumn, TableMetadataValue, TableRecord, TableSchema
from pandas.api.types import is_bool_dtype, is_float_dtype, is_integer_dtype


def metadata_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> TableMetadataValue:
    """``rows`` as a table for asset metadata: ``columns`` maps each shown field to its type (string, int, float, bool)."""
    return MetadataValue.table(
        [TableRecord(data={name: row.get(name) for name in columns}) for row in rows],
        schema=TableSchema(columns=[TableColumn(name, kind) for name, kind in columns.items()]),
    )


def _column_type(dtype: Any) -> str:
    """A column's type in table metadata (bool, int, float or string)."""
    if is_bool_dtype(dtype):
        return "bool"
    if is_integer_dtype(dtype):
        return "int"
    return "float" if is_float_dtype(dtype) else "string"


def table_metadata(table: pd.DataFrame) -> TableMetadataValue:
    """A small table as table metadata, each column typed by its dtype (the UI sorts it; Slack reads its rows)."""
    rows = [{str(name): value for name, value in row.items()} for row in table.to_dict("records")]
    return metadata_table(rows, {str(name): _column_type(dtype) for name, dtype in table.dtypes.items()})


def image_markdown(title: str, png: bytes) -> str:
    """A PNG inlined as Markdown (the UI shows it in the asset's metadata)."""
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
