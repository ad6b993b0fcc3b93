"""Serving-stage assets: the registered model (MLflow Model Registry, aliases moved only through the gates),
the champion/challenger comparison that promotes or holds a challenger, and the drift report (Evidently),
downstream of the training location's assets.

The training location's assets appear here as external `AssetSpec`s with the same keys, partitions
and I/O managers, so the UI draws lineage across the two locations and their values load here, as the
records (`drugrepo_assets.lib.records`) the inputs are annotated with.
"""

import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

from drugrepo_assets.data.splits import split_subset
from drugrepo_assets.lib.gates import GateOutcome, gate_outcomes
from drugrepo_assets.lib.metadata import metadata_table
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.records import (
    ChallengerRecord,
    CheckpointRecord,
    DriftReport,
    DriftSummary,
    EvaluationRecord,
    OnlineComparison,
    RegisteredModelRecord,
    VersionMetrics,
)
from drugrepo_assets.lib.resources import MlflowTracking
from drugrepo_assets.lib.serving_resources import ChallengerSettings, DriftSettings, RegistrySettings
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.ml.features.descriptors import DESCRIPTOR_COLUMNS, pair_descriptor_table
from drugrepo_assets.request_records import CHALLENGER, CHAMPION, ROLES, SHADOW, scan_request_log
from drugrepo_assets.serving.drift import compare
from drugrepo_assets.serving.registry import (
    CHECKPOINT_ID_TAG,
    alias_version,
    checkpoint_source,
    promote,
    promote_challenger,
    register_checkpoint,
    registered_name,
    set_challenger,
    version_checkpoint,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from drugrepo_assets.ml.features.dataset import PairData

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
OFFLINE_COLUMNS = {
    "role": "string",
    "version": "string",
    "checkpoint_id": "string",
    "strategy": "string",
    "threshold": "float",
    "auroc": "float",
    "auprc": "float",
    "f1": "float",
    "accuracy": "float",
    "sensitivity": "float",
    "specificity": "float",
    "n": "int",
}
TRAFFIC_COLUMNS = {"role": "string", "version": "string", "requests": "int", "pairs": "int"}
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
    """The checkpoint as a version of ``<prefix>-<dataset>``; only if every gate passed does it get an alias:
    the champion's when there is no champion yet (or ``promote_directly``), else the challenger's.

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
    version, created = register_checkpoint(
        client,
        name,
        source,
        ckpt.mlflow_run_id,
        _version_tags(ckpt, dataset, auroc, context.run.run_id),
        description=f"DrugBAN {dataset}/{ckpt.strategy}, test AUROC {auroc:.4f}",
    )
    gates_passed = same_checkpoint and all(o.passed for o in outcomes)
    for outcome in outcomes:
        client.set_model_version_tag(name, version.version, f"gate.{outcome.check.split(':')[1]}", outcome.state)
    if gates_passed:
        decision = _place_passing_version(client, name, str(version.version), registry_settings)
        context.log.info(f"{name} version {version.version}: {decision}")
    else:
        failing = [o.check for o in outcomes if not o.passed] + (
            [] if same_checkpoint else ["evaluation of another checkpoint"]
        )
        decision = "held back: " + ", ".join(failing)
        context.log.warning(f"{name} version {version.version} not promoted ({decision})")
    champion = alias_version(client, name, registry_settings.alias)
    challenger = alias_version(client, name, registry_settings.challenger_alias)
    record = RegisteredModelRecord(
        name=name,
        version=str(version.version),
        created=created,
        source=source,
        checkpoint=ckpt.checkpoint,
        checkpoint_id=ckpt.checkpoint_id,
        alias=registry_settings.alias,
        champion_version=champion,
        promoted=gates_passed and champion == str(version.version),
        decision=decision,
        gates={o.check: o.state for o in outcomes},
        model_uri=f"models:/{name}@{registry_settings.alias}",
        challenger_alias=registry_settings.challenger_alias,
        challenger_version=challenger,
    )
    return Output(
        record,
        metadata={
            "model": MetadataValue.text(name),
            "version": MetadataValue.text(record.version),
            "checkpoint_id": MetadataValue.text(ckpt.checkpoint_id),
            "champion_version": MetadataValue.text(champion or "none"),
            "challenger_version": MetadataValue.text(challenger or "none"),
            "decision": MetadataValue.text(decision),
            "gates": _gates_table(outcomes),
            "model_uri": MetadataValue.text(record.model_uri),
            "mlflow_run": MetadataValue.url(ckpt.mlflow_run_url),
        },
    )


def _version_tags(ckpt: CheckpointRecord, dataset: str, test_auroc: float, run_id: str) -> dict[str, str]:
    """The tags of a registered version: where its checkpoint comes from (dataset, run, file, id) and its test AUROC."""
    return {
        "dataset": dataset,
        "strategy": ckpt.strategy,
        "profile": ckpt.profile,
        "checkpoint_uri": ckpt.checkpoint,
        CHECKPOINT_ID_TAG: ckpt.checkpoint_id,
        "test_auroc": f"{test_auroc:.6f}",
        "dagster.training_run_id": ckpt.dagster_run_id,
        "dagster.run_id": run_id,
    }


def _place_passing_version(client: "MlflowClient", name: str, version: str, settings: RegistrySettings) -> str:
    """Give a version whose gates passed its alias: the champion's when there is none (or ``promote_directly``),
    else the challenger's, for `champion_challenger` to judge; the decision in words."""
    champion = alias_version(client, name, settings.alias)
    if champion == version:
        return "already champion"
    if champion is None or settings.promote_directly:
        move = promote(client, name, settings.alias, version)
        if alias_version(client, name, settings.challenger_alias) == version:
            client.delete_registered_model_alias(name, settings.challenger_alias)
        return f"promoted: {name}@{move.alias} {move.from_version or 'none'} -> {move.to_version}"
    move = set_challenger(client, name, version, settings.challenger_alias)
    if move.from_version == move.to_version:
        return f"already challenger of champion version {champion}"
    return f"challenger of champion version {champion} (replacing {move.from_version or 'none'})"


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
    request_log = scan_request_log(s.location_of(s.resolved_request_log_dir()))
    if request_log.malformed_lines:
        context.log.warning(f"request log: skipped {request_log.malformed_lines} malformed lines")
    # A shadow record repeats a pair the champion answered: the requests' inputs are the answered pairs only.
    requests = pd.DataFrame([r.descriptors for r in request_log.records if r.role != SHADOW])
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


@asset(
    partitions_def=dataset_partitions,
    group_name="serving",
    io_manager_key="json_io_manager",
    kinds={"mlflow", "pytorch"},
    deps=[registered_model],
)
def champion_challenger(
    context: AssetExecutionContext,
    dataset_splits: pd.DataFrame,
    registry_settings: RegistrySettings,
    challenger_settings: ChallengerSettings,
    drift_settings: DriftSettings,
    mlflow_tracking: MlflowTracking,
    storage: StorageResource,
) -> Output[ChallengerRecord]:
    """The challenger against the champion: test metrics on the same rows, agreement and score drift on live
    traffic (the request log); the challenger replaces the champion only when the gate says it is not worse.

    Promotion records the previous champion (``drugrepo rollback`` goes back to it) and removes the
    challenger alias; either way both versions are tagged with the decision (`challenger.*`).
    """
    from drugrepo_assets.ml.training.pipeline import pair_data
    from drugrepo_assets.serving.challenger import challenger_verdict, online_comparison

    dataset = context.partition_key
    name = registered_name(registry_settings.model_prefix, dataset)
    client = mlflow_tracking.client()
    champion = alias_version(client, name, registry_settings.alias)
    challenger = alias_version(client, name, registry_settings.challenger_alias)
    if champion is None or challenger is None or champion == challenger:
        return _no_comparison(name, dataset, champion, challenger)
    s = challenger_settings
    strategy = client.get_model_version(name, challenger).tags.get("strategy")
    if not strategy:
        raise ValueError(f"{name} version {challenger} has no 'strategy' tag: no split to compare the two on")
    val, test = (
        pair_data(split_subset(dataset_splits, strategy, split, s.max_eval_pairs, seed=s.seed))
        for split in ("val", "test")
    )
    metrics = {
        version: _version_metrics(client, name, version, val, test, s.device) for version in (champion, challenger)
    }
    scan = scan_request_log(drift_settings.location_of(drift_settings.resolved_request_log_dir()))
    online, html = online_comparison(
        scan.records, name, metrics[champion], metrics[challenger], drift_settings.drift_share, drift_settings.min_rows
    )
    verdict = challenger_verdict(metrics[champion], metrics[challenger], online, s)
    if verdict.promote:
        move = promote_challenger(client, name, registry_settings.alias, registry_settings.challenger_alias)
        context.log.info(f"{name}@{move.alias}: {move.from_version} -> {move.to_version} ({'; '.join(verdict.passed)})")
    else:
        context.log.warning(f"{name} version {challenger} held as challenger: {'; '.join(verdict.failed)}")
    record = ChallengerRecord(
        name=name,
        dataset=dataset,
        created=datetime.now(UTC).isoformat(),
        champion_version=champion,
        challenger_version=challenger,
        split=f"{strategy}/test, {len(test)} pairs (at most {s.max_eval_pairs}, seed {s.seed})",
        champion=metrics[champion],
        challenger=metrics[challenger],
        online=online,
        decision="promoted" if verdict.promote else "held",
        reasons=verdict.passed if verdict.promote else verdict.failed,
        promoted=verdict.promote,
        champion_after=alias_version(client, name, registry_settings.alias),
    )
    _tag_decision(client, record, champion, challenger)
    metadata = _comparison_metadata(record, online) | {"request_log_files": MetadataValue.int(scan.files)}
    if html is not None:
        uri = storage.write_bytes(html.encode(), "champion_challenger", dataset, f"{context.run.run_id}/scores.html")
        metadata["score_drift_report"] = MetadataValue.path(uri)
    return Output(record, metadata=metadata)


def _no_comparison(name: str, dataset: str, champion: str | None, challenger: str | None) -> Output[ChallengerRecord]:
    """The record when there is nothing to compare: no challenger, no champion, or both aliases on one version."""
    reason = (
        "no challenger"
        if challenger is None
        else "no champion to compare with"
        if champion is None
        else "the challenger alias names the champion"
    )
    record = ChallengerRecord(
        name=name,
        dataset=dataset,
        created=datetime.now(UTC).isoformat(),
        champion_version=champion,
        challenger_version=challenger,
        decision="no challenger" if challenger is None else "held",
        reasons=[reason],
        promoted=False,
        champion_after=champion,
    )
    return Output(
        record, metadata={"decision": MetadataValue.text(record.decision), "reasons": MetadataValue.json([reason])}
    )


def _version_metrics(
    client: "MlflowClient", name: str, version: str, val: "PairData", test: "PairData", device: str
) -> VersionMetrics:
    """One registry version's offline metrics: its checkpoint downloaded, loaded and evaluated."""
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint
    from drugrepo_assets.serving.challenger import offline_metrics

    with tempfile.TemporaryDirectory(prefix="drugrepo-compare-") as folder:
        loaded = load_checkpoint(str(version_checkpoint(client, name, version, Path(folder))), map_location=device)
    strategy = client.get_model_version(name, version).tags.get("strategy", "")
    return offline_metrics(loaded.model, version, loaded.checkpoint_id, strategy, val, test, device)


def _tag_decision(client: "MlflowClient", record: ChallengerRecord, champion: str, challenger: str) -> None:
    """The decision on both versions: the challenger's outcome and reasons, and on the champion what challenged it."""
    tags = {
        "challenger.decision": record.decision,
        "challenger.reasons": "; ".join(record.reasons),
        "challenger.compared_with": champion,
        "challenger.compared_at": record.created,
    }
    for key, value in tags.items():
        client.set_model_version_tag(record.name, challenger, key, value)
    summary = f"{record.decision}: version {challenger} at {record.created}"
    client.set_model_version_tag(record.name, champion, "challenger.last_challenge", summary)


def _comparison_metadata(record: ChallengerRecord, online: OnlineComparison) -> dict[str, Any]:
    """The comparison for the UI: each version's test metrics and the traffic per role as tables, the rest as values."""
    versions = [(role, m) for role, m in (("champion", record.champion), ("challenger", record.challenger)) if m]
    offline = [{"role": role, **m.model_dump(exclude={"test"}), **m.test.as_dict()} for role, m in versions]
    served = {
        CHAMPION: record.champion_version,
        CHALLENGER: record.challenger_version,
        SHADOW: record.challenger_version,
    }
    traffic = [
        {"role": role, "version": served[role], "requests": online.requests[role], "pairs": online.pairs[role]}
        for role in ROLES
    ]
    metadata: dict[str, Any] = {
        "decision": MetadataValue.text(record.decision),
        "reasons": MetadataValue.json(record.reasons),
        "champion_after": MetadataValue.text(record.champion_after or "none"),
        "offline": metadata_table(offline, OFFLINE_COLUMNS),
        "traffic": metadata_table(traffic, TRAFFIC_COLUMNS),
        "shadow_pairs": MetadataValue.int(online.shadow_pairs),
        "score_drift_share": MetadataValue.float(online.score_drift.share_drifted),
        "score_drift_note": MetadataValue.text(online.score_drift.note or "compared"),
    }
    for name in ("mean_abs_score_diff", "decision_disagreement", "spearman"):
        value = getattr(online, name)
        if value is not None:
            metadata[name] = MetadataValue.float(value)
    return metadata
