"""Training stage: the DrugBAN checkpoint, its evaluation, and an Optuna study of its hyperparameters.

Thin over the ML core: pairs come from the stored features (no featurisation here), training is
`ml.train.train`, metrics `ml.evaluate`, pictures `ml.plots`. Checkpoints and pictures are files
under `StorageResource` (``<storage>/<asset>/<dataset>/...``); asset values are small JSON records
(URIs and numbers), so every environment stores and loads checkpoints the same way.
"""

import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from dagster import (
    AssetExecutionContext,
    Config,
    DynamicOut,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    asset,
    graph_asset,
    op,
)
from pydantic import Field

from drugrepo_assets.assets.features import feature_store
from drugrepo_assets.assets.metadata import image_markdown
from drugrepo_assets.data.splits import split_subset
from drugrepo_assets.k8s import GPU_OP_TAGS, GPU_POOL
from drugrepo_assets.ml.dataset import PairData
from drugrepo_assets.ml.evaluate import evaluate
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.plots import atom_attention, attention_png, pr_png, roc_png
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.ml.train import EpochRecord, TrainResult, resolve_device, train
from drugrepo_assets.partitions import dataset_partitions
from drugrepo_assets.resources import HpoSettings, MlflowTracking, TrackedRun, TrainingProfile
from drugrepo_assets.storage import StorageResource


class CheckpointConfig(Config):
    """Run configuration of `drugban_checkpoint`."""

    strategy: str = Field(default="random", description="Split strategy to train on (random, cold_drug, ...).")
    use_hpo_params: bool = Field(
        default=False, description="Train with the best parameters of this partition's Optuna study."
    )


class HpoStudyConfig(Config):
    """Run configuration of the `hpo_study` trials."""

    strategy: str = Field(default="random", description="Split strategy the trials train on.")


def load_pairs(
    splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    storage: StorageResource,
    strategy: str,
    split: str,
    max_pairs: int | None,
    seed: int,
) -> tuple[pd.DataFrame, PairData]:
    """The (capped) rows of one split and their `PairData`, built from the stored features."""
    rows = split_subset(splits, strategy, split, max_pairs, seed=seed)
    data = feature_store(storage).pair_data(
        rows["drug_id"].tolist(),
        rows["target_id"].tolist(),
        dict(zip(drug_graphs["drug_id"], drug_graphs["shard"])),
        dict(zip(protein_encodings["target_id"], protein_encodings["shard"])),
        rows["label"].tolist(),
    )
    return rows, data


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
    }


def _run_params(dataset: str, strategy: str, profile: TrainingProfile, extra: dict[str, Any]) -> dict[str, Any]:
    return {"dataset": dataset, "strategy": strategy, "profile": profile.name, **extra}


def _train_tracked(
    run: TrackedRun,
    train_data: PairData,
    val_data: PairData,
    out_dir: Path,
    profile: TrainingProfile,
    overrides: dict[str, Any],
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train with per-epoch metrics going to MLflow (and to ``on_epoch``); log the best checkpoint."""
    train_config, model_config = profile.train_config(overrides), profile.drugban_config(overrides)
    run.log_params(
        {
            **{f"train.{k}": v for k, v in train_config.to_dict().items()},
            **{f"model.{k}": v for k, v in model_config.to_dict().items()},
            "train_pairs": len(train_data),
            "val_pairs": len(val_data),
        }
    )

    def logged(record: EpochRecord) -> None:
        run.log_metrics(_epoch_metrics(record), step=record.epoch)
        if on_epoch is not None:
            on_epoch(record)

    try:
        result = train(train_data, val_data, out_dir, train_config, model_config, on_epoch=logged)
    finally:
        if (out_dir / "best.pt").exists():
            run.log_artifact(out_dir / "best.pt", "checkpoint")
    run.log_metrics(
        {"best_val_auroc": result.best_val_auroc, "best_epoch": result.best_epoch, "wall_seconds": result.wall_seconds}
    )
    return result


def _history_md(history: list[EpochRecord]) -> str:
    lines = ["| epoch | train loss | val AUROC | val AUPRC | s |", "| --- | --- | --- | --- | --- |"]
    lines += [
        f"| {h.epoch} | {h.train_loss:.4f} | {h.val_auroc:.4f} | {h.val_auprc:.4f} | {h.seconds:.1f} |" for h in history
    ]
    return "\n".join(lines)


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
) -> Output[dict[str, Any]]:
    """DrugBAN trained on one split strategy (CUDA when present), best epoch by val AUROC, as a file.

    Value: the checkpoint's URI, its metrics and history, and the MLflow run that logged it.
    """
    profile, dataset, strategy = training_profile, context.partition_key, config.strategy
    configure_cpu(profile.threads)
    overrides: dict[str, Any] = {}
    if config.use_hpo_params:
        name = study_name(dataset, strategy, profile)
        study = hpo_settings.study(name)
        if not any(t.state.name == "COMPLETE" for t in study.trials):
            raise Failure(description=f"use_hpo_params is set but study {name!r} has no completed trial")
        overrides = dict(study.best_params)
    _, train_data = load_pairs(
        dataset_splits,
        drug_graphs,
        protein_encodings,
        storage,
        strategy,
        "train",
        profile.max_train_pairs,
        profile.seed,
    )
    _, val_data = load_pairs(
        dataset_splits, drug_graphs, protein_encodings, storage, strategy, "val", profile.max_eval_pairs, profile.seed
    )
    folder = f"{strategy}/{context.run.run_id}"
    # Locally train straight into the final folder (last.pt stays there for resuming); else stage and upload.
    local = storage.is_local()
    out_dir = Path(storage.uri("drugban_checkpoint", dataset, folder)) if local else Path(tempfile.mkdtemp())
    with mlflow_tracking.start_run(context, f"drugban {dataset} {strategy}", "drugban_checkpoint") as run:
        run.log_params(_run_params(dataset, strategy, profile, {f"hpo.{k}": v for k, v in overrides.items()}))
        result = _train_tracked(run, train_data, val_data, out_dir, profile, overrides)
    uri = storage.upload(result.best_path, "drugban_checkpoint", dataset, f"{folder}/best.pt")
    value = {
        "checkpoint": uri,
        "dataset": dataset,
        "strategy": strategy,
        "profile": profile.name,
        "seed": profile.seed,
        "max_eval_pairs": profile.max_eval_pairs,
        "train_pairs": len(train_data),
        "val_pairs": len(val_data),
        "best_epoch": result.best_epoch,
        "best_val_auroc": result.best_val_auroc,
        "device": result.device,
        "wall_seconds": result.wall_seconds,
        "stopped_early": result.stopped_early,
        "history": [asdict(h) for h in result.history],
        "hpo_params": overrides,
        "mlflow_run_id": run.run_id,
        "mlflow_experiment_id": run.experiment_id,
        "mlflow_run_url": run.url,
        "dagster_run_id": context.run.run_id,
    }
    return Output(
        value,
        metadata={
            "best_epoch": MetadataValue.int(result.best_epoch),
            "val_auroc": MetadataValue.float(result.best_val_auroc),
            "wall_seconds": MetadataValue.float(round(result.wall_seconds, 2)),
            "device": MetadataValue.text(result.device),
            "checkpoint": MetadataValue.path(uri),
            "mlflow_run": MetadataValue.url(run.url),
            "strategy": MetadataValue.text(strategy),
            "profile": MetadataValue.text(profile.name),
            "train_pairs": MetadataValue.int(len(train_data)),
            "hpo_params": MetadataValue.json(overrides),
            "history": MetadataValue.md(_history_md(result.history)),
        },
    )


@asset(
    partitions_def=dataset_partitions,
    group_name="training",
    io_manager_key="json_io_manager",
    kinds={"pytorch", "mlflow"},
)
def model_evaluation(
    context: AssetExecutionContext,
    drugban_checkpoint: dict[str, Any],
    dataset_splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    training_profile: TrainingProfile,
    storage: StorageResource,
    mlflow_tracking: MlflowTracking,
) -> Output[dict[str, Any]]:
    """Test metrics at the threshold chosen on validation, ROC/PR curves and attention on molecules.

    Pictures are PNG files under the storage folder, shown in the UI and logged to the training's MLflow run.
    """
    ckpt = drugban_checkpoint
    configure_cpu(training_profile.threads)
    device = resolve_device(training_profile.device)
    model, _ = load_checkpoint(str(storage.local_copy(ckpt["checkpoint"])), map_location=device)
    sets = {}
    for split in ("val", "test"):
        rows, data = load_pairs(
            dataset_splits,
            drug_graphs,
            protein_encodings,
            storage,
            ckpt["strategy"],
            split,
            ckpt["max_eval_pairs"],
            ckpt["seed"],
        )
        sets[split] = (rows, data, predict_logits(model, data, 256, device))
    metrics = evaluate(sets["val"][1].labels.numpy(), sets["val"][2], sets["test"][1].labels.numpy(), sets["test"][2])
    test, val = metrics["test"], metrics["val"]
    test_rows, test_data, test_scores = sets["test"]
    labels = test_data.labels.numpy()
    pictures = {
        "roc_test.png": roc_png(labels, test_scores, f"{ckpt['dataset']} test ROC", test.auroc),
        "pr_test.png": pr_png(labels, test_scores, f"{ckpt['dataset']} test PR", test.auprc),
    }
    positives = np.flatnonzero(labels == 1)
    top = positives[np.argsort(-test_scores[positives], kind="stable")][: training_profile.attention_examples]
    if len(top):
        graphs, proteins = test_data.batch(torch.as_tensor(top))
        for rank, (row, weights) in enumerate(zip(top, atom_attention(model, graphs.to(device), proteins.to(device)))):
            pair = test_rows.iloc[int(row)]
            name = f"attention_{rank + 1}_{pair['drug_id']}_{pair['target_id']}.png"
            pictures[name] = attention_png(pair["smiles"], weights)
    paths = {
        name: storage.write_bytes(png, "model_evaluation", ckpt["dataset"], f"{context.run.run_id}/{name}")
        for name, png in pictures.items()
    }
    run = mlflow_tracking.existing_run(ckpt["mlflow_run_id"], ckpt["mlflow_experiment_id"])
    run.log_metrics({f"test_{k}": v for k, v in test.as_dict().items()})
    for name, png in pictures.items():
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            local.write_bytes(png)
            run.log_artifact(local, "evaluation")
    value = {
        "val": val.as_dict(),
        "test": test.as_dict(),
        "pictures": paths,
        "checkpoint": ckpt["checkpoint"],
        "mlflow_run_url": run.url,
    }
    curves = [
        image_markdown(name.removesuffix(".png"), png)
        for name, png in pictures.items()
        if not name.startswith("attention")
    ]
    attention = [
        image_markdown(name.removesuffix(".png"), png) for name, png in pictures.items() if name.startswith("attention")
    ]
    return Output(
        value,
        metadata={
            "test_auroc": MetadataValue.float(test.auroc),
            "test_auprc": MetadataValue.float(test.auprc),
            "val_auroc": MetadataValue.float(val.auroc),
            "threshold": MetadataValue.float(test.threshold),
            "test_metrics": MetadataValue.json(test.as_dict()),
            "curves": MetadataValue.md("\n\n".join(curves)),
            "attention": MetadataValue.md("\n\n".join(attention) or "no positive test pair"),
            "pictures": MetadataValue.path(str(Path(next(iter(paths.values()))).parent)),
            "mlflow_run": MetadataValue.url(run.url),
        },
    )


def _suggest(trial: Any) -> dict[str, Any]:
    """The search space: learning rate, batch size and the bilinear attention's dropout."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64]),
        "ban_dropout": trial.suggest_float("ban_dropout", 0.0, 0.4),
    }


@op(out=DynamicOut(dict, io_manager_key="json_io_manager"))
def hpo_trials(
    context: OpExecutionContext,
    config: HpoStudyConfig,
    training_profile: TrainingProfile,
    hpo_settings: HpoSettings,
    mlflow_tracking: MlflowTracking,
) -> Iterator[DynamicOutput[dict]]:
    """Create (or open) the partition's study and fan out one trial per slot, each asking the storage."""
    name = study_name(context.partition_key, config.strategy, training_profile)
    hpo_settings.study(name)
    with mlflow_tracking.start_run(context, f"hpo {name}", "hpo_study", tags={"optuna.study": name}) as parent:
        parent.log_params({"study": name, "n_trials": hpo_settings.n_trials, "profile": training_profile.name})
    for slot in range(hpo_settings.n_trials):
        yield DynamicOutput(
            {"study": name, "strategy": config.strategy, "parent_run_id": parent.run_id, "slot": slot},
            mapping_key=f"slot_{slot}",
        )


@op(out=Out(dict, io_manager_key="json_io_manager"), tags=GPU_OP_TAGS, pool=GPU_POOL)
def hpo_trial(
    context: OpExecutionContext,
    slot: dict,
    dataset_splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    training_profile: TrainingProfile,
    storage: StorageResource,
    hpo_settings: HpoSettings,
    mlflow_tracking: MlflowTracking,
) -> dict:
    """One Optuna trial: ask the shared storage for parameters, train with pruning, tell the outcome."""
    import optuna

    profile, dataset, strategy = training_profile, context.partition_key, slot["strategy"]
    configure_cpu(profile.threads)
    study = hpo_settings.study(slot["study"])
    trial = study.ask()
    params = _suggest(trial)
    _, train_data = load_pairs(
        dataset_splits,
        drug_graphs,
        protein_encodings,
        storage,
        strategy,
        "train",
        profile.max_train_pairs,
        profile.seed,
    )
    _, val_data = load_pairs(
        dataset_splits, drug_graphs, protein_encodings, storage, strategy, "val", profile.max_eval_pairs, profile.seed
    )

    def report(record: EpochRecord) -> None:
        if math.isfinite(record.val_auroc):
            trial.report(record.val_auroc, record.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record.epoch}")

    tags = {"optuna.study": slot["study"], "optuna.trial": str(trial.number)}
    state, value = "COMPLETE", None
    with (
        tempfile.TemporaryDirectory() as work,
        mlflow_tracking.start_run(
            context,
            f"trial {trial.number} {slot['study']}",
            "hpo_study",
            tags=tags,
            parent_run_id=slot["parent_run_id"],
        ) as run,
    ):
        run.log_params(_run_params(dataset, strategy, profile, {f"hpo.{k}": v for k, v in params.items()}))
        try:
            result = _train_tracked(run, train_data, val_data, Path(work), profile, params, on_epoch=report)
            value = result.best_val_auroc
            study.tell(trial, value)
        except optuna.TrialPruned:
            state = "PRUNED"
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except RuntimeError as exc:  # no finite validation AUROC: a diverged configuration
            state = "FAIL"
            context.log.warning(f"trial {trial.number} failed: {exc}")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    context.log.info(f"trial {trial.number}: {state} {value} {params}")
    return {
        "study": slot["study"],
        "number": trial.number,
        "state": state,
        "value": value,
        "params": params,
        "mlflow_run_url": run.url,
    }


@op(out=Out(io_manager_key="json_io_manager"))
def hpo_summary(
    context: OpExecutionContext, trials: list[dict], hpo_settings: HpoSettings, mlflow_tracking: MlflowTracking
) -> Output[dict[str, Any]]:
    """The study after this materialisation's trials: its best parameters and trial counts."""
    study = hpo_settings.study(trials[0]["study"])
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    value = {
        "study": study.study_name,
        "storage": _redacted(hpo_settings.resolved_storage_url()),
        "states": states,
        "best_value": best.value if best else None,
        "best_params": best.params if best else {},
        "best_trial": best.number if best else None,
        "this_run": sorted(trials, key=lambda t: t["number"]),
    }
    return Output(
        value,
        metadata={
            "study": MetadataValue.text(study.study_name),
            "trials": MetadataValue.int(len(study.trials)),
            "states": MetadataValue.json(states),
            "best_val_auroc": MetadataValue.float(best.value) if best else MetadataValue.text("none"),
            "best_params": MetadataValue.json(best.params if best else {}),
            "this_run": MetadataValue.md(_trials_md(value["this_run"])),
        },
    )


def _redacted(url: str) -> str:
    """A storage URL without its password, for metadata."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _trials_md(trials: list[dict]) -> str:
    lines = ["| trial | state | val AUROC | params | MLflow |", "| --- | --- | --- | --- | --- |"]
    for t in trials:
        value = "-" if t["value"] is None else f"{t['value']:.4f}"
        lines.append(f"| {t['number']} | {t['state']} | {value} | {t['params']} | [run]({t['mlflow_run_url']}) |")
    return "\n".join(lines)


@graph_asset(partitions_def=dataset_partitions, group_name="training", kinds={"optuna", "mlflow"})
def hpo_study(dataset_splits: pd.DataFrame, drug_graphs: pd.DataFrame, protein_encodings: pd.DataFrame) -> dict:
    """An Optuna study of DrugBAN's lr, batch size and attention dropout, trials in parallel ops.

    Each trial op (own GPU pod under k8s) asks the shared RDB storage for its parameters, reports
    val AUROC per epoch for median pruning and tells the result; the value is the best parameters.
    """
    slots = hpo_trials()
    outcomes = slots.map(lambda slot: hpo_trial(slot, dataset_splits, drug_graphs, protein_encodings))
    return hpo_summary(outcomes.collect())
