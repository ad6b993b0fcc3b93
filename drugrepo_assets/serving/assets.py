"""Serving-stage assets: the registered model (MLflow Model Registry, alias moved only through the gates)
and the drift report (Evidently), downstream of the training location's assets.

The training location's assets appear here as external `AssetSpec`s with the same keys, partitions
and I/O managers, so the UI draws lineage across the two locations and their values load here, as the
records (`drugrepo_assets.records`) the inputs are annotated with.
"""

from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSpec,
    AutomationCondition,
    MetadataValue,
    Output,
    TableMetadataValue,
    asset,
)

from drugrepo_assets.api.request_log import scan_request_log
from drugrepo_assets.assets.metadata import metadata_table
from drugrepo_assets.ml.descriptors import DESCRIPTOR_COLUMNS, pair_descriptor_table
from drugrepo_assets.partitions import dataset_partitions
from drugrepo_assets.records import CheckpointRecord, DriftReport, DriftSummary, EvaluationRecord, RegisteredModelRecord
from drugrepo_assets.resources import MlflowTracking
from drugrepo_assets.serving.drift import compare
from drugrepo_assets.serving.gates import GateOutcome, gate_outcomes
from drugrepo_assets.serving.registry import (
    CHECKPOINT_ID_TAG,
    alias_version,
    checkpoint_source,
    promote,
    register_checkpoint,
    registered_name,
)
from drugrepo_assets.serving.resources import DriftSettings, RegistrySettings
from drugrepo_assets.storage import StorageResource

TRAINING_LOCATION = "drugrepo_assets"


def _external(key: str, group: str, io_manager_key: str, description: str) -> AssetSpec:
    return AssetSpec(
        key,
        partitions_def=dataset_partitions,
        group_name=group,
        description=description,
        metadata={"code_location": TRAINING_LOCATION},
    ).with_io_manager_key(io_manager_key)


external_assets = [
    _external("drugban_checkpoint", "training", "json_io_manager", "The trained checkpoint's record (asset location)."),
    _external("model_evaluation", "training", "json_io_manager", "Test metrics of the checkpoint (asset location)."),
    _external("dataset_splits", "splits", "io_manager", "Train/val/test splits of every strategy (asset location)."),
    _external("validated_pairs", "validation", "io_manager", "Every valid landed pair (asset location)."),
]

DRIFT_CHECK = "drift_report_no_drift"
GATE_COLUMNS = {"check": "string", "state": "string", "description": "string"}
DRIFT_COLUMNS = {
    "comparison": "string",
    "column": "string",
    "method": "string",
    "score": "float",
    "threshold": "float",
    "drifted": "bool",
    "note": "string",
}


@asset(
    partitions_def=dataset_partitions,
    group_name="serving",
    io_manager_key="json_io_manager",
    kinds={"mlflow"},
    automation_condition=AutomationCondition.eager(),
)
def registered_model(
    context: AssetExecutionContext,
    drugban_checkpoint: CheckpointRecord,
    model_evaluation: EvaluationRecord,
    registry_settings: RegistrySettings,
    mlflow_tracking: MlflowTracking,
    storage: StorageResource,
) -> Output[RegisteredModelRecord]:
    """The checkpoint as a version of ``<prefix>-<dataset>``; the alias moves to it only if every gate passed.

    Gates: the training location's checks (finite losses, reproducible val AUROC, test AUROC floor)
    on the latest materialisations, read from the instance, and an evaluation of this very checkpoint
    (the same `checkpoint_id`). The version is tagged with the checkpoint id.
    """
    ckpt, dataset = drugban_checkpoint, context.partition_key
    name = registered_name(registry_settings.model_prefix, dataset)
    outcomes = gate_outcomes(context.instance, dataset, registry_settings.gating_checks)
    same_checkpoint = model_evaluation.checkpoint_id == ckpt.checkpoint_id
    client = mlflow_tracking.client()
    source = checkpoint_source(client, ckpt.mlflow_run_id, storage.local_copy(ckpt.checkpoint))
    auroc = model_evaluation.test.auroc
    tags = {
        "dataset": dataset,
        "strategy": ckpt.strategy,
        "profile": ckpt.profile,
        "checkpoint_uri": ckpt.checkpoint,
        CHECKPOINT_ID_TAG: ckpt.checkpoint_id,
        "test_auroc": f"{auroc:.6f}",
        "dagster.training_run_id": ckpt.dagster_run_id,
        "dagster.run_id": context.run.run_id,
    }
    version, created = register_checkpoint(
        client,
        name,
        source,
        ckpt.mlflow_run_id,
        tags,
        description=f"DrugBAN {dataset}/{ckpt.strategy}, test AUROC {auroc:.4f}",
    )
    gates_passed = same_checkpoint and all(o.passed for o in outcomes)
    for outcome in outcomes:
        client.set_model_version_tag(name, version.version, f"gate.{outcome.check.split(':')[1]}", outcome.state)
    if gates_passed:
        move = promote(client, name, registry_settings.alias, version.version)
        decision = "promoted" if move.from_version != move.to_version else "already champion"
        context.log.info(f"{name}@{move.alias}: {move.from_version} -> {move.to_version}")
    else:
        failing = [o.check for o in outcomes if not o.passed] + (
            [] if same_checkpoint else ["evaluation of another checkpoint"]
        )
        decision = "held back: " + ", ".join(failing)
        context.log.warning(f"{name} version {version.version} not promoted ({decision})")
    champion = alias_version(client, name, registry_settings.alias)
    record = RegisteredModelRecord(
        name=name,
        version=str(version.version),
        created=created,
        source=source,
        checkpoint=ckpt.checkpoint,
        checkpoint_id=ckpt.checkpoint_id,
        alias=registry_settings.alias,
        champion_version=champion,
        promoted=gates_passed,
        decision=decision,
        gates={o.check: o.state for o in outcomes},
        model_uri=f"models:/{name}@{registry_settings.alias}",
    )
    return Output(
        record,
        metadata={
            "model": MetadataValue.text(name),
            "version": MetadataValue.text(record.version),
            "checkpoint_id": MetadataValue.text(ckpt.checkpoint_id),
            "champion_version": MetadataValue.text(champion or "none"),
            "decision": MetadataValue.text(decision),
            "gates": _gates_table(outcomes),
            "model_uri": MetadataValue.text(record.model_uri),
            "mlflow_run": MetadataValue.url(ckpt.mlflow_run_url),
        },
    )


def _gates_table(outcomes: list[GateOutcome]) -> TableMetadataValue:
    """The gating checks' states as a metadata table."""
    return metadata_table([asdict(o) for o in outcomes], GATE_COLUMNS)


def _sample(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    return table if len(table) <= n else table.sample(n=n, random_state=seed)


def _drift_table(summaries: list[DriftSummary]) -> TableMetadataValue:
    """Every compared column's test and verdict (or, for a comparison not made, why) as a metadata table."""
    rows: list[dict[str, Any]] = []
    for summary in summaries:
        if not summary.columns:
            rows.append({"comparison": summary.name, "note": summary.note})
        rows += [{"comparison": summary.name, "column": name, **c.model_dump()} for name, c in summary.columns.items()]
    return metadata_table(rows, DRIFT_COLUMNS)


@asset(
    partitions_def=dataset_partitions,
    group_name="serving",
    io_manager_key="json_io_manager",
    kinds={"evidently"},
    check_specs=[
        AssetCheckSpec(
            DRIFT_CHECK,
            asset="drift_report",
            description="Warns when landed data or API requests drift from the training set.",
        )
    ],
)
def drift_report(
    context: AssetExecutionContext,
    drugban_checkpoint: CheckpointRecord,
    dataset_splits: pd.DataFrame,
    validated_pairs: pd.DataFrame,
    drift_settings: DriftSettings,
    storage: StorageResource,
) -> Iterator[Any]:
    """Evidently drift of the inputs: the checkpoint's training pairs against landed pairs it was not
    trained on, and against the pairs the API scored (its request log); HTML reports under storage."""
    s = drift_settings
    train = dataset_splits[
        (dataset_splits["strategy"] == drugban_checkpoint.strategy) & (dataset_splits["split"] == "train")
    ]
    seen = set(zip(train["smiles"], train["protein"]))
    landed = validated_pairs[[pair not in seen for pair in zip(validated_pairs["smiles"], validated_pairs["protein"])]]
    train = _sample(train, s.max_rows, s.seed)
    landed = _sample(landed, s.max_rows, s.seed)
    reference = pair_descriptor_table(train["smiles"], train["protein"])
    request_log = scan_request_log(s.resolved_request_log_dir(), s.s3_endpoint_url)
    if request_log.malformed_lines:
        context.log.warning(f"request log: skipped {request_log.malformed_lines} malformed lines")
    requests = pd.DataFrame(request_log.records)
    requests = _sample(requests.reindex(columns=list(DESCRIPTOR_COLUMNS)), s.max_rows, s.seed)
    comparisons = {
        "landed": pair_descriptor_table(landed["smiles"], landed["protein"]),
        "requests": requests,
    }
    summaries, html_uris = [], {}
    for name, current in comparisons.items():
        summary, html = compare(name, reference, current, s.drift_share, s.min_rows)
        summaries.append(summary)
        if html is not None:
            html_uris[name] = storage.write_bytes(
                html.encode(), "drift_report", context.partition_key, f"{context.run.run_id}/{name}.html"
            )
    drifted = [x.name for x in summaries if x.dataset_drift]
    report = DriftReport(
        dataset=context.partition_key,
        strategy=drugban_checkpoint.strategy,
        checkpoint=drugban_checkpoint.checkpoint,
        checkpoint_id=drugban_checkpoint.checkpoint_id,
        created=datetime.now(UTC).isoformat(),
        comparisons={x.name: x for x in summaries},
        reports=html_uris,
        drifted=drifted,
    )
    metadata: dict[str, Any] = {
        "drifted": MetadataValue.json(drifted),
        "checkpoint_id": MetadataValue.text(drugban_checkpoint.checkpoint_id),
        "reference_rows": MetadataValue.int(len(reference)),
        "columns": _drift_table(summaries),
        "request_log_files": MetadataValue.int(request_log.files),
        "request_log_malformed_lines": MetadataValue.int(request_log.malformed_lines),
    }
    for x in summaries:
        metadata[f"{x.name}_rows"] = MetadataValue.int(x.current_rows)
        metadata[f"{x.name}_share_drifted"] = MetadataValue.float(x.share_drifted)
        metadata[f"{x.name}_drifted_columns"] = MetadataValue.json(x.drifted_columns)
    for name, uri in html_uris.items():
        metadata[f"{name}_report"] = MetadataValue.path(uri)
    yield Output(report, metadata=metadata)
    yield AssetCheckResult(
        check_name=DRIFT_CHECK,
        passed=not drifted,
        severity=AssetCheckSeverity.WARN,
        description=f"drift in {', '.join(drifted)}" if drifted else "no drift in landed data or requests",
        metadata={f"{x.name}_share_drifted": MetadataValue.float(x.share_drifted) for x in summaries},
    )
