"""Ingest stage: the raw drug–target pair table of one dataset, exactly as its files hold it."""

import pandas as pd
from dagster import AssetExecutionContext, Failure, MetadataValue, Output, asset

from drugrepo_assets.data.limits import InputFileError
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.resources import DataSourceResource

_PREVIEW_ROWS = 5
_PREVIEW_CHARS = 40


@asset(partitions_def=dataset_partitions, group_name="ingest", kinds={"pandas"})
def raw_pairs(context: AssetExecutionContext, data_source: DataSourceResource) -> Output[pd.DataFrame]:
    """All rows of the dataset's source files as strings, each traceable to its file and row.

    Nothing is dropped or coerced here, so that validation can account for every input row.
    """
    dataset = context.partition_key
    try:
        location = data_source.location(dataset)
        table = data_source.read(dataset)
    except InputFileError as exc:
        raise Failure(description=str(exc)) from None
    return Output(
        table,
        metadata={
            "dagster/row_count": MetadataValue.int(len(table)),
            "location": MetadataValue.text(location),
            "files_read": MetadataValue.int(int(table["source_file"].nunique())),
            "preview": MetadataValue.md(_preview(table)),
        },
    )


def _preview(table: pd.DataFrame) -> str:
    """Markdown of the first rows, long sequences cut so that the table stays readable."""
    head = table.head(_PREVIEW_ROWS).astype(str)
    head = head.apply(
        lambda column: column.map(lambda v: v if len(v) <= _PREVIEW_CHARS else v[: _PREVIEW_CHARS - 1] + "…")
    )
    return head.to_markdown(index=False)
