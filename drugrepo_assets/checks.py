"""Asset checks: the foundation stage's (the Great Expectations suite of the valid pairs lives here)
and the training stage's gates (finite losses, a checkpoint that loads, is the one its record names and
reproduces its val AUROC, a test AUROC floor).

Great Expectations 1.x is called directly (dagster-ge pins GX < 1). Its import and context are
slow, so the suite is built lazily, once per process, and reused by every check run.
"""

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import torch
from dagster import AssetCheckResult, AssetIn, MetadataValue, PreviewWarning, asset_check

from drugrepo_assets.assets.training import load_pairs
from drugrepo_assets.data.rules import PROTEIN_ALPHABET
from drugrepo_assets.ml.evaluate import binary_metrics
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.ml.training.train import resolve_device
from drugrepo_assets.partitions import dataset_partitions
from drugrepo_assets.records import CheckpointRecord, EvaluationRecord
from drugrepo_assets.resources import TrainingProfile
from drugrepo_assets.storage import StorageResource

# The checks are partitioned like their assets so that a run checks (and loads) only its own
# dataset partition; an unpartitioned check of a partitioned asset loads every partition. Partitioned
# checks are a preview feature of Dagster 1.13, which the project pins, so only that one warning is
# silenced.
warnings.filterwarnings(
    "ignore",
    message="Specifying a partitions_def on an AssetCheckSpec",
    category=PreviewWarning,
)

PROTEIN_REGEX = f"^[{PROTEIN_ALPHABET}]+$"
_COLD_KEYS = {"cold_drug": "drug_id", "cold_target": "target_id"}
REPRODUCE_TOLERANCE = 1e-4


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


@asset_check(
    asset="drugban_checkpoint",
    blocking=True,
    partitions_def=dataset_partitions,
    description="Every epoch's training loss and validation AUROC is finite (no NaN).",
)
def drugban_checkpoint_losses_finite(drugban_checkpoint: CheckpointRecord) -> AssetCheckResult:
    """Fail on a NaN or infinite loss or validation AUROC anywhere in the training history."""
    history = drugban_checkpoint.history
    bad = [h.epoch for h in history if not (math.isfinite(h.train_loss) and math.isfinite(h.val_auroc))]
    return AssetCheckResult(
        passed=bool(history) and not bad,
        description=f"non-finite loss or AUROC at epochs {bad}" if bad else f"{len(history)} finite epochs",
        metadata={"epochs": MetadataValue.int(len(history)), "non_finite_epochs": MetadataValue.json(bad)},
    )


def reproduce_val_auroc(
    ckpt: CheckpointRecord,
    splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    storage: StorageResource,
    device: torch.device,
) -> tuple[bool, str, dict[str, MetadataValue]]:
    """Load the checkpoint file and recompute its val AUROC on the same pairs: (passed, why, metadata).

    The file must also be the one the record names: its `checkpoint_id` is the record's.
    """
    try:
        loaded = load_checkpoint(str(storage.local_copy(ckpt.checkpoint)), map_location=device)
    except Exception as exc:  # any unreadable or foreign file is a refusal, not a crash of the check
        return False, f"checkpoint does not load: {type(exc).__name__}: {exc}", {}
    model = loaded.model
    non_finite = sum(int((~torch.isfinite(p)).sum()) for p in model.state_dict().values() if p.is_floating_point())
    if non_finite:
        return False, f"{non_finite} non-finite weights", {"non_finite_weights": MetadataValue.int(non_finite)}
    if loaded.checkpoint_id != ckpt.checkpoint_id:
        why = f"the file's checkpoint id {loaded.checkpoint_id} is not the record's {ckpt.checkpoint_id}"
        return False, why, {"file_checkpoint_id": MetadataValue.text(loaded.checkpoint_id)}
    _, val = load_pairs(
        splits, drug_graphs, protein_encodings, storage, ckpt.strategy, "val", ckpt.max_eval_pairs, ckpt.seed
    )
    scores = predict_logits(model, val, 256, device)
    if not np.isfinite(scores).all() or val.labels is None:
        return False, "non-finite or unlabelled validation scores", {}
    auroc = binary_metrics(val.labels.numpy(), scores, 0.0).auroc
    diff = abs(auroc - ckpt.best_val_auroc)
    metadata: dict[str, MetadataValue] = {
        "logged_val_auroc": MetadataValue.float(ckpt.best_val_auroc),
        "reproduced_val_auroc": MetadataValue.float(auroc),
        "abs_diff": MetadataValue.float(diff),
    }
    why = f"val AUROC {auroc:.6f} vs logged {ckpt.best_val_auroc:.6f} (|diff| {diff:.2e})"
    return diff <= REPRODUCE_TOLERANCE, why, metadata


@asset_check(
    asset="drugban_checkpoint",
    blocking=True,
    partitions_def=dataset_partitions,
    additional_ins={
        "dataset_splits": AssetIn("dataset_splits"),
        "drug_graphs": AssetIn("drug_graphs"),
        "protein_encodings": AssetIn("protein_encodings"),
    },
    description=f"The checkpoint loads, has finite weights, carries its record's checkpoint id and reproduces "
    f"its logged val AUROC (within {REPRODUCE_TOLERANCE:g}).",
)
def drugban_checkpoint_reproduces(
    drugban_checkpoint: CheckpointRecord,
    dataset_splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    storage: StorageResource,
    training_profile: TrainingProfile,
) -> AssetCheckResult:
    """Refuse a checkpoint file that is corrupt, holds NaN weights or does not score as logged."""
    configure_cpu(training_profile.threads)
    passed, why, metadata = reproduce_val_auroc(
        drugban_checkpoint,
        dataset_splits,
        drug_graphs,
        protein_encodings,
        storage,
        resolve_device(training_profile.device),
    )
    metadata["checkpoint"] = MetadataValue.path(drugban_checkpoint.checkpoint)
    metadata["checkpoint_id"] = MetadataValue.text(drugban_checkpoint.checkpoint_id)
    return AssetCheckResult(passed=passed, description=why, metadata=metadata)


@asset_check(
    asset="model_evaluation",
    blocking=True,
    partitions_def=dataset_partitions,
    description="Test AUROC (threshold-free) is at least the training profile's floor.",
)
def model_evaluation_auroc_floor(
    model_evaluation: EvaluationRecord, training_profile: TrainingProfile
) -> AssetCheckResult:
    """Gate what uses the model (screening, serving) on a minimum test AUROC."""
    auroc, floor = model_evaluation.test.auroc, training_profile.test_auroc_floor
    return AssetCheckResult(
        passed=auroc >= floor,
        description=f"test AUROC {auroc:.4f} vs floor {floor:.4f}",
        metadata={"test_auroc": MetadataValue.float(auroc), "floor": MetadataValue.float(floor)},
    )


foundation_checks = [validated_pairs_expectations, rows_accounted_for, splits_disjoint]
