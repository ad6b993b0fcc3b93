"""Split stage: train/val/test splits of the valid pairs under every strategy, in one long table."""

import pandas as pd
from dagster import MetadataValue, Output, asset

from drugrepo_assets.data.splits import make_splits
from drugrepo_assets.defs.automation.automation import REFRESH
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.resources import SplitSettings


@asset(partitions_def=dataset_partitions, group_name="splits", kinds={"pandas"}, automation_condition=REFRESH)
def dataset_splits(
    validated_pairs: pd.DataFrame,
    rejected_pairs: pd.DataFrame,
    split_settings: SplitSettings,
) -> Output[pd.DataFrame]:
    """Random, cold-drug, cold-target, cluster and DrugBAN's shipped splits (one row per pair and strategy).

    Rejected duplicates are passed along so shipped splits still place every listed pair. The cluster
    split (DrugBAN's cross-domain one) has a fourth split value, ``target_train``: the target-domain pairs
    CDAN trains on without their labels; its clusters and dropped pairs are in the metadata (``cluster``).
    """
    splits = make_splits(validated_pairs, rejected_pairs, seed=split_settings.seed)
    counts = splits.groupby(["strategy", "split"]).size()
    per_strategy = {
        strategy: {split: int(n) for split, n in counts[strategy].items()}
        for strategy in counts.index.get_level_values("strategy").unique()
    }
    return Output(
        splits,
        metadata={
            "dagster/row_count": MetadataValue.int(len(splits)),
            "seed": MetadataValue.int(split_settings.seed),
            "counts": MetadataValue.json(per_strategy),
            "shipped_dropped": MetadataValue.json(splits.attrs.get("shipped_dropped", {})),
            "cluster": MetadataValue.json(splits.attrs.get("cluster_summary", {})),
        },
    )
