"""Hyperparameter search: `hpo_study`, an Optuna study of DrugBAN's learning rate, batch size and attention
dropout whose trials run as mapped ops (each its own GPU pod under k8s) sharing the study's RDB storage;
`drugban_checkpoint` trains with its best parameters when asked (``use_hpo_params``).

Each trial trains as `drugban_checkpoint` does (`training.train_tracked`: MLflow run, per-epoch metrics),
on the same capped pairs (`training.load_training_pairs`), reporting val AUROC per epoch for pruning.
"""

import json
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import Config, DynamicOut, DynamicOutput, MetadataValue, OpExecutionContext, Out, Output, graph_asset, op
from pydantic import Field

from drugrepo_assets.defs.training.training import load_training_pairs, run_params, study_name, train_tracked
from drugrepo_assets.lib.k8s import GPU_OP_TAGS, GPU_POOL
from drugrepo_assets.lib.metadata import metadata_table
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.records import HpoSlot, HpoSummary, HpoTrialOutcome
from drugrepo_assets.lib.resources import HpoSettings, MlflowTracking, TrainingProfile
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.ml.training.train_config import EpochRecord

TRIAL_COLUMNS = {"number": "int", "state": "string", "value": "float", "params": "string", "mlflow_run_url": "string"}


class HpoStudyConfig(Config):
    """Run configuration of the `hpo_study` trials."""

    strategy: str = Field(default="random", description="Split strategy the trials train on.")


def _suggest(trial: Any) -> dict[str, Any]:
    """The search space: learning rate, batch size and the bilinear attention's dropout."""
    return {
        "lr": trial.suggest_float("lr", 1e-5, 1e-3, log=True),
        "batch_size": trial.suggest_categorical("batch_size", [32, 64]),
        "ban_dropout": trial.suggest_float("ban_dropout", 0.0, 0.4),
    }


@op(out=DynamicOut(HpoSlot, io_manager_key="json_io_manager"))
def hpo_trials(
    context: OpExecutionContext,
    config: HpoStudyConfig,
    training_profile: TrainingProfile,
    hpo_settings: HpoSettings,
    mlflow_tracking: MlflowTracking,
) -> Iterator[DynamicOutput[HpoSlot]]:
    """Create (or open) the partition's study and fan out one trial per slot, each asking the storage."""
    name = study_name(context.partition_key, config.strategy, training_profile)
    hpo_settings.study(name)
    with mlflow_tracking.start_run(context, f"hpo {name}", "hpo_study", tags={"optuna.study": name}) as parent:
        parent.log_params({"study": name, "n_trials": hpo_settings.n_trials, "profile": training_profile.name})
    for slot in range(hpo_settings.n_trials):
        yield DynamicOutput(
            HpoSlot(study=name, strategy=config.strategy, parent_run_id=parent.run_id, slot=slot),
            mapping_key=f"slot_{slot}",
        )


@op(out=Out(HpoTrialOutcome, io_manager_key="json_io_manager"), tags=GPU_OP_TAGS, pool=GPU_POOL)
def hpo_trial(
    context: OpExecutionContext,
    slot: HpoSlot,
    dataset_splits: pd.DataFrame,
    drug_graphs: pd.DataFrame,
    protein_encodings: pd.DataFrame,
    training_profile: TrainingProfile,
    storage: StorageResource,
    hpo_settings: HpoSettings,
    mlflow_tracking: MlflowTracking,
) -> HpoTrialOutcome:
    """One Optuna trial: ask the shared storage for parameters, train with pruning, tell the outcome."""
    import optuna

    from drugrepo_assets.ml.runtime import configure_cpu

    profile, dataset, strategy = training_profile, context.partition_key, slot.strategy
    configure_cpu(profile.threads)
    study = hpo_settings.study(slot.study)
    trial = study.ask()
    params = _suggest(trial)
    train_data, val_data = load_training_pairs(
        dataset_splits, drug_graphs, protein_encodings, storage, strategy, profile
    )

    def report(record: EpochRecord) -> None:
        if math.isfinite(record.val_auroc):
            trial.report(record.val_auroc, record.epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {record.epoch}")

    tags = {"optuna.study": slot.study, "optuna.trial": str(trial.number)}
    state, value = "COMPLETE", None
    with (
        tempfile.TemporaryDirectory() as work,
        mlflow_tracking.start_run(
            context,
            f"trial {trial.number} {slot.study}",
            "hpo_study",
            tags=tags,
            parent_run_id=slot.parent_run_id,
        ) as run,
    ):
        run.log_params(run_params(dataset, strategy, profile, {f"hpo.{k}": v for k, v in params.items()}))
        try:
            result = train_tracked(run, train_data, val_data, Path(work), profile, params, on_epoch=report)
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
    return HpoTrialOutcome(
        study=slot.study, number=trial.number, state=state, value=value, params=params, mlflow_run_url=run.url
    )


@op(out=Out(HpoSummary, io_manager_key="json_io_manager"))
def hpo_summary(
    context: OpExecutionContext,
    trials: list[HpoTrialOutcome],
    hpo_settings: HpoSettings,
    mlflow_tracking: MlflowTracking,
) -> Output[HpoSummary]:
    """The study after this materialisation's trials: its best parameters and trial counts."""
    study = hpo_settings.study(trials[0].study)
    states: dict[str, int] = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    best = study.best_trial if complete else None
    summary = HpoSummary(
        study=study.study_name,
        storage=_redacted(hpo_settings.resolved_storage_url()),
        states=states,
        best_value=best.value if best else None,
        best_params=best.params if best else {},
        best_trial=best.number if best else None,
        this_run=sorted(trials, key=lambda t: t.number),
    )
    rows = [{**t.model_dump(), "params": json.dumps(t.params, sort_keys=True)} for t in summary.this_run]
    return Output(
        summary,
        metadata={
            "study": MetadataValue.text(study.study_name),
            "trials": MetadataValue.int(len(study.trials)),
            "states": MetadataValue.json(states),
            "best_val_auroc": (
                MetadataValue.float(summary.best_value)
                if summary.best_value is not None
                else MetadataValue.text("none")
            ),
            "best_params": MetadataValue.json(summary.best_params),
            "this_run": metadata_table(rows, TRIAL_COLUMNS),
        },
    )


def _redacted(url: str) -> str:
    """A storage URL without its password, for metadata."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@graph_asset(partitions_def=dataset_partitions, group_name="training", kinds={"optuna", "mlflow"})
def hpo_study(dataset_splits: pd.DataFrame, drug_graphs: pd.DataFrame, protein_encodings: pd.DataFrame) -> HpoSummary:
    """An Optuna study of DrugBAN's lr, batch size and attention dropout, trials in parallel ops.

    Each trial op (own GPU pod under k8s) asks the shared RDB storage for its parameters, reports
    val AUROC per epoch for median pruning and tells the result; the value is the best parameters.
    """
    slots = hpo_trials()
    outcomes = slots.map(lambda slot: hpo_trial(slot, dataset_splits, drug_graphs, protein_encodings))
    return hpo_summary(outcomes.collect())
