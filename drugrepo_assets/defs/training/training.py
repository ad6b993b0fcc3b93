"""Training stage: the DrugBAN checkpoint and its evaluation (the Optuna study of its hyperparameters: `defs.training.hpo`).

Thin over the ML core: pairs come from the stored features (no featurisation here), training is
`ml.training.train.train`, evaluation `ml.training.pipeline.evaluate_model` (as ``drugrepo train``), pictures `ml.training.plots`.
Checkpoints and pictures are files under `StorageResource` (``<storage>/<asset>/<dataset>/...``); asset
values are typed records (`drugrepo_assets.lib.records`: URIs, the checkpoint id and numbers), so every
environment and both code locations load checkpoints the same way.
"""

import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, Failure, MetadataValue, Output, asset
from pydantic import Field

from drugrepo_assets.data.splits import CROSS_DOMAIN_STRATEGIES, TARGET_TRAIN, split_subset
from drugrepo_assets.defs.features.features import feature_store
from drugrepo_assets.files import uri_of
from drugrepo_assets.lib.k8s import GPU_OP_TAGS, GPU_POOL
from drugrepo_assets.lib.metadata import image_markdown, metadata_table
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.records import CheckpointRecord, EvaluationRecord
from drugrepo_assets.lib.resources import HpoSettings, MlflowTracking, TrackedRun, TrainingProfile
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.ml.evaluate import BinaryMetrics
from drugrepo_assets.ml.training.train_config import CDANConfig, EpochRecord

if TYPE_CHECKING:
    import torch

    from drugrepo_assets.ml.features.dataset import PairData
    from drugrepo_assets.ml.model.drugban import DrugBAN
    from drugrepo_assets.ml.training.train import TrainResult

CHECKPOINT_ID_TAG = "drugrepo.checkpoint_id"
"""MLflow tag of the training run: the `checkpoint_id` of the checkpoint it logged."""
RELIABILITY_PICTURE = "reliability_test.png"
"""model_evaluation's reliability diagram of the test pairs, raw and temperature-scaled (`ml.model.calibration`)."""
HISTORY_COLUMNS = {
    "epoch": "int",
    "train_loss": "float",
    "val_auroc": "float",
    "val_auprc": "float",
    "seconds": "float",
    "pairs_per_s": "float",
}
CDAN_HISTORY_COLUMNS = {"model_loss": "float", "da_loss": "float"}
"""The history columns a CDAN training adds (`train_config.CDANEpochRecord`): classification and domain loss."""
DA_METHODS: tuple[str, ...] = ("cdan",)
"""Domain adaptation methods `drugban_checkpoint` trains with (run config ``da``)."""


class CheckpointConfig(Config):
    """Run configuration of `drugban_checkpoint`."""

    strategy: str = Field(default="random", description="Split strategy to train on (random, cold_drug, ...).")
    da: str | None = Field(
        default=None,
        description="Domain adaptation: cdan trains DrugBAN with CDAN on the strategy's target_train pairs, "
        "unlabelled (strategy cluster); none (default): vanilla DrugBAN.",
    )
    use_hpo_params: bool = Field(
        default=False, description="Train with the best parameters of this partition's Optuna study."
    )


def load_pairs(
    splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    storage: StorageResource,
    strategy: str,
    split: str,
    max_pairs: int | None,
    seed: int,
) -> tuple[pd.DataFrame, "PairData"]:
    """The (capped) rows of one split and their `PairData`, built from the stored features."""
    rows = split_subset(splits, strategy, split, max_pairs, seed=seed)
    return rows, _pair_data(rows, drug_graphs, protein_encodings, storage, labelled=True)


def load_training_pairs(
    splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    storage: StorageResource,
    strategy: str,
    profile: TrainingProfile,
) -> tuple["PairData", "PairData"]:
    """The train and validation pairs of one strategy, capped as the profile says: what every training reads."""
    tables = (splits, drug_graphs, protein_encodings, storage, strategy)
    _, train = load_pairs(*tables, "train", profile.max_train_pairs, profile.seed)
    _, val = load_pairs(*tables, "val", profile.max_eval_pairs, profile.seed)
    return train, val


def load_target_pairs(
    splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    storage: StorageResource,
    strategy: str,
    profile: TrainingProfile,
) -> "PairData":
    """The ``target_train`` pairs of one strategy without their labels, what CDAN adapts to; capped like the
    train pairs by a seeded draw that does not look at labels (no target label reaches training)."""
    rows = splits[(splits["strategy"] == strategy) & (splits["split"] == TARGET_TRAIN)]
    if rows.empty:
        raise Failure(
            description=f"da needs target-domain training pairs, and split strategy {strategy!r} has no "
            f"{TARGET_TRAIN} rows (strategies that have them: {', '.join(CROSS_DOMAIN_STRATEGIES)})"
        )
    if profile.max_train_pairs is not None and len(rows) > profile.max_train_pairs:
        rows = rows.sample(n=profile.max_train_pairs, random_state=profile.seed).sort_index()
    return _pair_data(rows, drug_graphs, protein_encodings, storage, labelled=False)


def _pair_data(
    rows: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    storage: StorageResource,
    labelled: bool,
) -> "PairData":
    """The `PairData` of split rows from the stored features, with their labels or (``labelled`` false) without."""
    return feature_store(storage).pair_data(
        rows["drug_id"].tolist(),
        rows["target_id"].tolist(),
        dict(zip(drug_graphs["drug_id"], drug_graphs["shard"])),
        dict(zip(protein_encodings["target_id"], protein_encodings["shard"])),
        rows["label"].tolist() if labelled else None,
    )


def study_name(dataset: str, strategy: str, profile: TrainingProfile) -> str:
    """Name of the Optuna study of one dataset, split strategy and profile."""
    return f"drugban-{dataset}-{strategy}-{profile.name}"


def _epoch_metrics(record: EpochRecord) -> dict[str, float]:
    return {
        "train_loss": record.train_loss,
        "val_auroc": record.val_auroc,
        "val_auprc": record.val_auprc,
        "epoch_seconds": record.seconds,
        "pairs_per_s": record.pairs_per_s,
        **{name: getattr(record, name) for name in CDAN_HISTORY_COLUMNS if hasattr(record, name)},
    }


def run_params(dataset: str, strategy: str, profile: TrainingProfile, extra: dict[str, Any]) -> dict[str, Any]:
    """The MLflow parameters every training run has (dataset, strategy, profile), with ``extra``."""
    return {"dataset": dataset, "strategy": strategy, "profile": profile.name, **extra}


def train_tracked(
    run: TrackedRun,
    train_data: "PairData",
    val_data: "PairData",
    out_dir: Path,
    profile: TrainingProfile,
    overrides: dict[str, Any],
    on_epoch: Callable[[EpochRecord], None] | None = None,
    *,
    da: CDANConfig | None = None,
    target_data: "PairData | None" = None,
) -> "TrainResult":
    """Train (with ``da`` and ``target_data``: CDAN's training) with per-epoch metrics going to MLflow (and to
    ``on_epoch``); log the best checkpoint."""
    from drugrepo_assets.ml.training.train import train

    train_config, model_config = profile.train_config(overrides), profile.drugban_config(overrides)
    run.log_params(
        {
            **{f"train.{k}": v for k, v in train_config.to_dict().items()},
            **{f"model.{k}": v for k, v in model_config.to_dict().items()},
            **({f"cdan.{k}": v for k, v in da.to_dict().items()} if da is not None else {}),
            "train_pairs": len(train_data),
            "val_pairs": len(val_data),
            **({"target_train_pairs": len(target_data)} if target_data is not None else {}),
        }
    )

    def logged(record: EpochRecord) -> None:
        run.log_metrics(_epoch_metrics(record), step=record.epoch)
        if on_epoch is not None:
            on_epoch(record)

    try:
        result = train(
            train_data, val_data, out_dir, train_config, model_config, on_epoch=logged, da=da, target_data=target_data
        )
    finally:
        if (out_dir / "best.pt").exists():
            run.log_artifact(out_dir / "best.pt", "checkpoint")
    run.log_metrics(
        {"best_val_auroc": result.best_val_auroc, "best_epoch": result.best_epoch, "wall_seconds": result.wall_seconds}
    )
    return result


@asset(
    partitions_def=dataset_partitions,
    group_name="training",
    io_manager_key="json_io_manager",
    op_tags=GPU_OP_TAGS,
    pool=GPU_POOL,
    kinds={"pytorch", "mlflow"},
)
def drugban_checkpoint(
    context: AssetExecutionContext,
    config: CheckpointConfig,
    dataset_splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    training_profile: TrainingProfile,
    storage: StorageResource,
    mlflow_tracking: MlflowTracking,
    hpo_settings: HpoSettings,
) -> Output[CheckpointRecord]:
    """DrugBAN trained on one split strategy (CUDA when present), best epoch by val AUROC, as a file.

    With run config ``da: cdan`` the training is CDAN's, adapting to the strategy's unlabelled
    ``target_train`` pairs (the profile's `TrainingProfile.cdan_config`); the file then holds CDAN's
    discriminator beside the one-logit model. Value: the checkpoint's URI and id, its metrics and
    history, and the MLflow run that logged it (tagged with the same id).
    """
    from drugrepo_assets.ml.model.checkpoint import checkpoint_id
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.screening.domain import record_reference

    profile, dataset, strategy = training_profile, context.partition_key, config.strategy
    da = _da_config(config, profile)
    configure_cpu(profile.threads)
    overrides = _hpo_overrides(hpo_settings, study_name(dataset, strategy, profile)) if config.use_hpo_params else {}
    train_data, val_data = load_training_pairs(
        dataset_splits, drug_graphs, protein_encodings, storage, strategy, profile
    )
    target_data = (
        None
        if da is None
        else load_target_pairs(dataset_splits, drug_graphs, protein_encodings, storage, strategy, profile)
    )
    folder = f"{strategy}/{context.run.run_id}"
    # Locally train straight into the final folder (last.pt stays there for resuming); else stage and upload.
    local = storage.is_local()
    out_dir = Path(storage.uri("drugban_checkpoint", dataset, folder)) if local else Path(tempfile.mkdtemp())
    train_rows = split_subset(dataset_splits, strategy, "train", profile.max_train_pairs, seed=profile.seed)
    checkpoint_path = storage.path("drugban_checkpoint", dataset, f"{folder}/best.pt")
    domain = uri_of(record_reference(checkpoint_path, train_rows))  # the rows trained on, before best.pt exists
    with mlflow_tracking.start_run(
        context.op_execution_context, f"drugban {dataset} {strategy}", "drugban_checkpoint"
    ) as run:
        run.log_params(
            run_params(
                dataset,
                strategy,
                profile,
                {"da": "none" if da is None else "cdan", **{f"hpo.{k}": v for k, v in overrides.items()}},
            )
        )
        result = train_tracked(run, train_data, val_data, out_dir, profile, overrides, da=da, target_data=target_data)
        ckpt_id = checkpoint_id(result.model)  # the weights of best.pt, as load_checkpoint checked them
        run.client.set_tag(run.run_id, CHECKPOINT_ID_TAG, ckpt_id)
    uri = storage.upload(result.best_path, "drugban_checkpoint", dataset, f"{folder}/best.pt")
    record = CheckpointRecord(
        checkpoint=uri,
        checkpoint_id=ckpt_id,
        domain_reference=domain,
        dataset=dataset,
        strategy=strategy,
        profile=profile.name,
        seed=profile.seed,
        max_eval_pairs=profile.max_eval_pairs,
        train_pairs=len(train_data),
        val_pairs=len(val_data),
        best_epoch=result.best_epoch,
        best_val_auroc=result.best_val_auroc,
        device=result.device,
        wall_seconds=result.wall_seconds,
        stopped_early=result.stopped_early,
        history=result.history,
        hpo_params=overrides,
        mlflow_run_id=run.run_id,
        mlflow_experiment_id=run.experiment_id,
        mlflow_run_url=run.url,
        dagster_run_id=context.run.run_id,
    )
    return Output(record, metadata=_checkpoint_metadata(record, result, da, target_data))


def _checkpoint_metadata(
    record: CheckpointRecord, result: "TrainResult", da: CDANConfig | None, target_data: "PairData | None"
) -> dict[str, Any]:
    """What the UI shows of a checkpoint: its id and numbers, its files, its MLflow run, how it was trained."""
    return {
        "checkpoint_id": MetadataValue.text(record.checkpoint_id),
        "best_epoch": MetadataValue.int(result.best_epoch),
        "val_auroc": MetadataValue.float(result.best_val_auroc),
        "wall_seconds": MetadataValue.float(round(result.wall_seconds, 2)),
        "device": MetadataValue.text(result.device),
        "checkpoint": MetadataValue.path(record.checkpoint),
        "domain_reference": MetadataValue.path(str(record.domain_reference)),
        "mlflow_run": MetadataValue.url(record.mlflow_run_url),
        "strategy": MetadataValue.text(record.strategy),
        "profile": MetadataValue.text(record.profile),
        "train_pairs": MetadataValue.int(record.train_pairs),
        "hpo_params": MetadataValue.json(record.hpo_params),
        "da": MetadataValue.text("none") if da is None else MetadataValue.json({"method": "cdan", **da.to_dict()}),
        **({} if target_data is None else {"target_train_pairs": MetadataValue.int(len(target_data))}),
        "history": metadata_table(
            [asdict(h) for h in result.history],
            HISTORY_COLUMNS if da is None else {**HISTORY_COLUMNS, **CDAN_HISTORY_COLUMNS},
        ),
    }


def _da_config(config: CheckpointConfig, profile: TrainingProfile) -> CDANConfig | None:
    """The CDAN settings of a ``da: cdan`` run (the profile's), None for vanilla; a `Failure` for another method."""
    if config.da is None or config.da.lower() == "none":
        return None
    if config.da.lower() not in DA_METHODS:
        raise Failure(
            description=f"drugban_checkpoint config da: {config.da!r} is not one of none, {', '.join(DA_METHODS)}"
        )
    return profile.cdan_config()


def _hpo_overrides(hpo_settings: HpoSettings, name: str) -> dict[str, Any]:
    """The best parameters of study ``name``; a `Failure` when it has no completed trial."""
    study = hpo_settings.study(name)
    if not any(t.state.name == "COMPLETE" for t in study.trials):
        raise Failure(description=f"use_hpo_params is set but study {name!r} has no completed trial")
    return dict(study.best_params)


@asset(
    partitions_def=dataset_partitions,
    group_name="training",
    io_manager_key="json_io_manager",
    kinds={"pytorch", "mlflow"},
)
def model_evaluation(
    context: AssetExecutionContext,
    drugban_checkpoint: CheckpointRecord,
    dataset_splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    training_profile: TrainingProfile,
    storage: StorageResource,
    mlflow_tracking: MlflowTracking,
) -> Output[EvaluationRecord]:
    """Test metrics at the probability threshold chosen on validation (`ml.training.pipeline.evaluate_model`, as
    ``drugrepo train``), ROC/PR curves and attention on molecules.

    Pictures are PNG files under the storage folder, shown in the UI and logged to the training's MLflow run.
    """
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.ml.training.pipeline import evaluate_model
    from drugrepo_assets.ml.training.plots import reliability_png
    from drugrepo_assets.ml.training.train import resolve_device

    ckpt = drugban_checkpoint
    configure_cpu(training_profile.threads)
    device = resolve_device(training_profile.device)
    loaded = load_checkpoint(str(storage.local_copy(ckpt.checkpoint)), map_location=device)
    model, temperature = loaded.model, loaded.temperature  # fitted on validation by training; T = 1 where none
    if (note := temperature.note()) is not None:
        context.log.warning(f"{ckpt.checkpoint}: {note}")
    sets = {
        split: load_pairs(
            dataset_splits,
            drug_graphs,
            protein_encodings,
            storage,
            ckpt.strategy,
            split,
            ckpt.max_eval_pairs,
            ckpt.seed,
        )
        for split in ("val", "test")
    }
    evaluation = evaluate_model(
        model, sets["val"][1], sets["test"][1], device, training_profile.train_config().eval_batch_size, temperature
    )
    calibrated = {name: c.as_dict() for name, c in evaluation.calibration().items()}
    val, test = evaluation.metrics.val, evaluation.metrics.test
    test_rows, test_data = sets["test"]
    pictures = _pictures(
        ckpt.dataset, model, device, test_rows, test_data, evaluation.scores["test"], test, training_profile
    )
    pictures[RELIABILITY_PICTURE] = reliability_png(evaluation.reliability("test"), f"{ckpt.dataset} test reliability")
    paths = {
        name: storage.write_bytes(png, "model_evaluation", ckpt.dataset, f"{context.run.run_id}/{name}")
        for name, png in pictures.items()
    }
    domains = _domain_aurocs(ckpt.strategy, val, test)
    run = mlflow_tracking.existing_run(ckpt.mlflow_run_id, ckpt.mlflow_experiment_id)
    _log_evaluation(run, test, domains, calibrated["test"], pictures)
    record = EvaluationRecord(
        checkpoint=ckpt.checkpoint,
        checkpoint_id=ckpt.checkpoint_id,
        threshold=evaluation.threshold,
        val=val,
        test=test,
        pictures=paths,
        mlflow_run_url=run.url,
    )
    return Output(record, metadata=_evaluation_metadata(record, domains, calibrated, pictures))


def _log_evaluation(
    run: TrackedRun,
    test: BinaryMetrics,
    domains: dict[str, float],
    calibrated: dict[str, Any],
    pictures: dict[str, bytes],
) -> None:
    """The test metrics (raw, per domain and calibrated) and the pictures, logged to the training's MLflow run."""
    run.log_metrics({f"test_{k}": v for k, v in test.as_dict().items()})
    run.log_metrics(domains)
    run.log_metrics({f"test_{k}": float(v) for k, v in calibrated.items() if k not in ("n", "fitted")})
    for name, png in pictures.items():
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            local.write_bytes(png)
            run.log_artifact(local, "evaluation")


def _evaluation_metadata(
    record: EvaluationRecord,
    domains: dict[str, float],
    calibrated: dict[str, dict[str, Any]],
    pictures: dict[str, bytes],
) -> dict[str, Any]:
    """What the UI shows of an evaluation: the metrics, the curves, calibration and attention pictures, the run."""
    val, test = record.val, record.test
    curves = [
        image_markdown(name.removesuffix(".png"), png)
        for name, png in pictures.items()
        if not name.startswith("attention") and name != RELIABILITY_PICTURE
    ]
    attention = [
        image_markdown(name.removesuffix(".png"), png) for name, png in pictures.items() if name.startswith("attention")
    ]
    return {
        "checkpoint_id": MetadataValue.text(record.checkpoint_id),
        "test_auroc": MetadataValue.float(test.auroc),
        "test_auprc": MetadataValue.float(test.auprc),
        "val_auroc": MetadataValue.float(val.auroc),
        **{name: MetadataValue.float(auroc) for name, auroc in domains.items()},
        "threshold": MetadataValue.float(record.threshold),
        "test_metrics": MetadataValue.json(test.as_dict()),
        "curves": MetadataValue.md("\n\n".join(curves)),
        "calibration": MetadataValue.json(calibrated),
        "reliability": MetadataValue.md(image_markdown("reliability_test", pictures[RELIABILITY_PICTURE])),
        "attention": MetadataValue.md("\n\n".join(attention) or "no positive test pair"),
        "pictures": MetadataValue.path(str(Path(next(iter(record.pictures.values()))).parent)),
        "mlflow_run": MetadataValue.url(record.mlflow_run_url),
    }


def _domain_aurocs(strategy: str, val: BinaryMetrics, test: BinaryMetrics) -> dict[str, float]:
    """For a cross-domain strategy (a cluster split), the AUROC on the source domain (its val pairs) and on the
    target domain (its test pairs), the two numbers DrugBAN's cross-domain evaluation compares; else none."""
    if strategy not in CROSS_DOMAIN_STRATEGIES:
        return {}
    return {"source_val_auroc": val.auroc, "target_test_auroc": test.auroc}


def _pictures(
    dataset: str,
    model: "DrugBAN",
    device: "torch.device",
    rows: pd.DataFrame,
    data: "PairData",
    probabilities: np.ndarray,
    metrics: BinaryMetrics,
    profile: TrainingProfile,
) -> dict[str, bytes]:
    """ROC and PR curves of the test probabilities, and the attention of the best-scored positive pairs, as PNGs."""
    import torch

    from drugrepo_assets.ml.training.plots import atom_attention, attention_png, pr_png, roc_png

    if data.labels is None:
        raise ValueError("pictures of an evaluation need labelled test pairs")
    labels = data.labels.numpy()
    pictures = {
        "roc_test.png": roc_png(labels, probabilities, f"{dataset} test ROC", metrics.auroc),
        "pr_test.png": pr_png(labels, probabilities, f"{dataset} test PR", metrics.auprc),
    }
    positives = np.flatnonzero(labels == 1)
    top = positives[np.argsort(-probabilities[positives], kind="stable")][: profile.attention_examples]
    if len(top):
        graphs, proteins = data.batch(torch.as_tensor(top))
        for rank, (row, weights) in enumerate(zip(top, atom_attention(model, graphs.to(device), proteins.to(device)))):
            pair = rows.iloc[int(row)]
            name = f"attention_{rank + 1}_{pair['drug_id']}_{pair['target_id']}.png"
            pictures[name] = attention_png(pair["smiles"], weights)
    return pictures
