"""Validation stage: one pass splits the raw pairs into valid and rejected rows."""

import pandas as pd
from dagster import AssetOut, MetadataValue, Output, multi_asset

from drugrepo_assets.data.validate import REASON_CODES, validate_pairs
from drugrepo_assets.defs.automation.automation import REFRESH
from drugrepo_assets.lib.partitions import dataset_partitions


@multi_asset(
    outs={
        "validated_pairs": AssetOut(
            description="Valid pairs with canonical SMILES, stable drug/target ids and 0/1 labels.",
            kinds={"pandas"},
            automation_condition=REFRESH,
        ),
        "rejected_pairs": AssetOut(
            description="Raw rows that failed validation, with a reason code and a readable reason.",
            kinds={"pandas"},
            automation_condition=REFRESH,
        ),
    },
    partitions_def=dataset_partitions,
    group_name="validation",
)
def validated_and_rejected_pairs(
    raw_pairs: pd.DataFrame,
) -> tuple[Output[pd.DataFrame], Output[pd.DataFrame]]:
    """Validate every raw row once: it lands in `validated_pairs` or in `rejected_pairs`.

    Both come from the same pass so that together they always account for all raw rows.
    """
    result = validate_pairs(raw_pairs)
    valid, rejected = result.valid, result.rejected
    by_reason = rejected["reason_code"].value_counts()
    return (
        Output(
            valid,
            output_name="validated_pairs",
            metadata={
                "dagster/row_count": MetadataValue.int(len(valid)),
                "unique_drugs": MetadataValue.int(int(valid["drug_id"].nunique())),
                "unique_targets": MetadataValue.int(int(valid["target_id"].nunique())),
            },
        ),
        Output(
            rejected,
            output_name="rejected_pairs",
            metadata={
                "dagster/row_count": MetadataValue.int(len(rejected)),
                **{f"rejected_{code}": MetadataValue.int(int(by_reason.get(code, 0))) for code in REASON_CODES},
            },
        ),
    )
