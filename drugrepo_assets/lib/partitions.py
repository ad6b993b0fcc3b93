"""Partitions shared by every asset of the pipeline: one partition per benchmark dataset."""

import warnings

from dagster import PreviewWarning, StaticPartitionsDefinition

from drugrepo_assets.data.sources import DATASETS

# The checks are partitioned like their assets so that a run checks (and loads) only its own
# dataset partition; an unpartitioned check of a partitioned asset loads every partition. Partitioned
# checks are a preview feature of Dagster 1.13, which the project pins, so only that one warning is
# silenced, here, where every check module takes its partitions from.
warnings.filterwarnings(
    "ignore",
    message="Specifying a partitions_def on an AssetCheckSpec",
    category=PreviewWarning,
)

dataset_partitions = StaticPartitionsDefinition(list(DATASETS))
