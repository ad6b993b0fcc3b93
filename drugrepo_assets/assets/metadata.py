"""Asset metadata rendered for the UI: tables (Dagster's table metadata) and pictures as Markdown."""

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from dagster import MetadataValue, TableColumn, TableMetadataValue, TableRecord, TableSchema


def metadata_table(rows: Sequence[Mapping[str, Any]], columns: Mapping[str, str]) -> TableMetadataValue:
    """``rows`` as a table for asset metadata: ``columns`` maps each shown field to its type (string, int, float, bool)."""
    return MetadataValue.table(
        [TableRecord(data={name: row.get(name) for name in columns}) for row in rows],
        schema=TableSchema(columns=[TableColumn(name, kind) for name, kind in columns.items()]),
    )


def image_markdown(title: str, png: bytes) -> str:
    """A PNG inlined as Markdown (the UI shows it in the asset's metadata)."""
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"
