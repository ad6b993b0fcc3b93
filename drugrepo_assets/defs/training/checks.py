"""Checks of the training stage, the gates of a checkpoint: finite losses, a checkpoint that loads, is the
one its record names and reproduces its val AUROC, and a test AUROC floor.
"""

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetIn, MetadataValue, asset_check

from drugrepo_assets.defs.training.training import load_pairs
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.records import CheckpointRecord, EvaluationRecord
from drugrepo_assets.lib.resources import TrainingProfile
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.ml.evaluate import binary_metrics

if TYPE_CHECKING:
    import torch

REPRODUCE_TOLERANCE = 1e-4


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
    device: "torch.device",
) -> tuple[bool, str, dict[str, MetadataValue]]:
    """Load the checkpoint file and recompute its val AUROC on the same pairs: (passed, why, metadata).

    The file must also be the one the record names: its `checkpoint_id` is the record's.
    """
    import torch

    from drugrepo_assets.ml.model.checkpoint import load_checkpoint
    from drugrepo_assets.ml.predict import predict_logits

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
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.ml.training.train import resolve_device

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
