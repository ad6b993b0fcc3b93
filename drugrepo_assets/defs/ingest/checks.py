"""Checks of the ingest stage: the Great Expectations suite of the valid pairs, every raw row accounted
for, and splits without leaks. All three block what follows.

Great Expectations 1.x is called directly (dagster-ge pins GX < 1). Its import and context are
slow, so the suite is built lazily, once per process, and reused by every check run.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd
from dagster import AssetCheckResult, AssetIn, MetadataValue, asset_check

from drugrepo_assets.data.rules import PROTEIN_ALPHABET
from drugrepo_assets.lib.partitions import dataset_partitions

PROTEIN_REGEX = f"^[{PROTEIN_ALPHABET}]+$"
_COLD_KEYS = {"cold_drug": "drug_id", "cold_target": "target_id"}


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation of the suite and whether the table met it."""

    expectation: str
    success: bool
    unexpected_count: int


def _expectations() -> list[Any]:
    """The rules a valid-pairs table must meet, as GX 1.x expectation objects."""
    import great_expectations as gx

    rules: list[Any] = [
        gx.expectations.ExpectColumnValuesToNotBeNull(column=column)
        for column in ("smiles", "protein", "label", "drug_id", "target_id")
    ]
    rules += [
        gx.expectations.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
        gx.expectations.ExpectColumnValuesToMatchRegex(column="protein", regex=PROTEIN_REGEX),
        gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["smiles", "protein"]),
    ]
    return rules


@lru_cache(maxsize=1)
def _gx_suite() -> tuple[Any, Any]:
    """(batch definition over a whole in-memory DataFrame, expectation suite), built once."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("drugrepo")
        .add_dataframe_asset(name="validated_pairs")
        .add_batch_definition_whole_dataframe("whole_table")
    )
    suite = gx.ExpectationSuite(name="validated_pairs", expectations=_expectations())
    return batch_definition, suite


def _expectation_name(config: Any) -> str:
    kwargs = config.kwargs
    target = kwargs.get("column") or ",".join(kwargs.get("column_list", []))
    return f"{config.type}[{target}]"


def run_pairs_suite(table: pd.DataFrame) -> list[ExpectationOutcome]:
    """Run the Great Expectations suite of `validated_pairs` on ``table``; one outcome per rule."""
    batch_definition, suite = _gx_suite()
    batch = batch_definition.get_batch(batch_parameters={"dataframe": table})
    report = batch.validate(suite)
    return [
        ExpectationOutcome(
            expectation=_expectation_name(result.expectation_config),
            success=bool(result.success),
            unexpected_count=int((result.result or {}).get("unexpected_count") or 0),
        )
        for result in report.results
    ]


def split_leaks(splits: pd.DataFrame) -> dict[str, int]:
    """Leaks per strategy: pairs in more than one split, and for cold strategies held-out rows
    whose drug (cold_drug) or target (cold_target) also occurs in train."""
    leaks: dict[str, int] = {}
    for strategy, table in splits.groupby("strategy", sort=True):
        pair_splits = table.groupby(["drug_id", "target_id"])["split"].nunique()
        leaks[f"{strategy}/pairs_in_several_splits"] = int((pair_splits > 1).sum())
        key = _COLD_KEYS.get(str(strategy))
        if key is not None:
            seen = set(table.loc[table["split"] == "train", key])
            held_out = table[table["split"] != "train"]
            leaks[f"{strategy}/{key}_seen_in_train"] = int(held_out[key].isin(seen).sum())
    return leaks


@asset_check(
    asset="validated_pairs",
    blocking=True,
    partitions_def=dataset_partitions,
    description="Great Expectations suite: no nulls, 0/1 labels, amino-acid proteins, unique pairs.",
)
def validated_pairs_expectations(validated_pairs: pd.DataFrame) -> AssetCheckResult:
    """Run the GX suite on the valid pairs; downstream splits wait for it and stop if it fails."""
    outcomes = run_pairs_suite(validated_pairs)
    failed = [f"{o.expectation}: {o.unexpected_count} unexpected" for o in outcomes if not o.success]
    return AssetCheckResult(
        passed=not failed,
        description="; ".join(failed) or f"all {len(outcomes)} expectations met",
        metadata={o.expectation: MetadataValue.bool(o.success) for o in outcomes},
    )


@asset_check(
    asset="validated_pairs",
    blocking=True,
    partitions_def=dataset_partitions,
    additional_ins={"raw_pairs": AssetIn("raw_pairs"), "rejected_pairs": AssetIn("rejected_pairs")},
    description="Every raw row is either a valid or a rejected pair: raw = valid + rejected.",
)
def rows_accounted_for(
    validated_pairs: pd.DataFrame, raw_pairs: pd.DataFrame, rejected_pairs: pd.DataFrame
) -> AssetCheckResult:
    """Fail when validation lost or invented rows, so that no row disappears unexplained."""
    raw, valid, rejected = len(raw_pairs), len(validated_pairs), len(rejected_pairs)
    return AssetCheckResult(
        passed=raw == valid + rejected,
        metadata={
            "raw_rows": MetadataValue.int(raw),
            "valid_rows": MetadataValue.int(valid),
            "rejected_rows": MetadataValue.int(rejected),
            "unaccounted": MetadataValue.int(raw - valid - rejected),
        },
    )


@asset_check(
    asset="dataset_splits",
    blocking=True,
    partitions_def=dataset_partitions,
    description="Splits are disjoint per strategy; cold splits share no drug/target with train.",
)
def splits_disjoint(dataset_splits: pd.DataFrame) -> AssetCheckResult:
    """Fail on any pair in two splits of one strategy, or a cold held-out drug/target seen in train."""
    leaks = split_leaks(dataset_splits)
    return AssetCheckResult(
        passed=not any(leaks.values()),
        metadata={name: MetadataValue.int(n) for name, n in leaks.items()},
    )


foundation_checks = [validated_pairs_expectations, rows_accounted_for, splits_disjoint]
