"""Partitions shared by every asset of the pipeline: one partition per benchmark dataset."""

from dagster import StaticPartitionsDefinition

from drugrepo_assets.data.sources import DATASETS

dataset_partitions = StaticPartitionsDefinition(list(DATASETS))
