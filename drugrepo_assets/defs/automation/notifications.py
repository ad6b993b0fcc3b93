"""Slack messages when a model or a screening table is materialised, and when a run fails.

Every message links to what it is about: the asset page and the run page in the Dagster UI
(`SlackNotifier.dagster_url`), the MLflow run and the stored object (``s3://`` URI or local
``file://`` URI) from the materialisation's metadata. `slack_on_materialization` follows the asset
keys of `NOTIFY_ASSETS` in the event log (keys that do not exist yet are simply quiet until they do);
`slack_on_run_failure` reports any failed run of the location with its error and the files a landing
run was reading. Without a token nothing is sent and one warning is logged per process.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    EventLogRecord,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    TableMetadataValue,
    run_failure_sensor,
    sensor,
)

from drugrepo_assets.defs.automation.sensors import LANDING_FILES_TAG, PARTITION_TAG
from drugrepo_assets.lib.automation_resources import SlackMessage, SlackNotifier
from drugrepo_assets.location import local_path

NOTIFY_ASSETS: tuple[str, ...] = (
    "drugban_checkpoint",
    "model_evaluation",
    "screening_scores",
    "repurposing_candidates",
)
"""Assets whose materialisations are announced; screening tables may not exist in every deployment."""
FIGURES: tuple[tuple[str, str], ...] = (
    ("val_auroc", "val AUROC"),
    ("test_auroc", "test AUROC"),
    ("test_auprc", "test AUPRC"),
)
OBJECT_KEYS: tuple[str, ...] = ("checkpoint", "uri", "path", "table", "pictures")
"""Metadata entries that hold the stored object, in order of preference."""
CANDIDATE_KEYS: tuple[str, ...] = ("top_candidates", "best_per_target")
"""Table metadata entries (`lib.metadata.table_metadata`) listing the best candidates, in order of preference."""
MAX_CANDIDATES = 5
MAX_ERROR_CHARS = 600


def object_uri(location: str) -> str:
    """An object's URI: ``s3://...`` (any remote location) as it is, a local path as ``file://``."""
    path = local_path(location)
    return location if path is None else path.resolve().as_uri()


def _metadata_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {name: getattr(value, "value", value) for name, value in metadata.items()}


def _candidate_lines(table: TableMetadataValue) -> list[str]:
    """Up to `MAX_CANDIDATES` lines of a top-candidates table, one per row, each cell as ``column value``."""
    columns = [column.name for column in table.schema.columns]
    return [
        f"{rank}. " + ", ".join(f"{name} {_fmt(record.data.get(name))}" for name in columns)
        for rank, record in enumerate(table.records[:MAX_CANDIDATES], start=1)
    ]


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def materialization_message(notifier: SlackNotifier, record: EventLogRecord) -> SlackMessage:
    """The message announcing one materialisation: key figures, top candidates and links."""
    materialization = record.asset_materialization
    assert materialization is not None
    key, partition = materialization.asset_key, materialization.partition
    raw = materialization.metadata
    metadata = _metadata_values(raw)
    where = f" for partition `{partition}`" if partition else ""
    message = SlackMessage(f":white_check_mark: *{key.to_user_string()}* materialised{where}")
    figures = [f"{label} {float(metadata[name]):.4f}" for name, label in FIGURES if name in metadata]
    if figures:
        message.lines.append(", ".join(figures))
    tables = [value for name in CANDIDATE_KEYS if isinstance(value := raw.get(name), TableMetadataValue)]
    if tables:
        message.lines.append("*Top candidates*")
        message.lines.extend(_candidate_lines(tables[0]))
    message.links["asset"] = notifier.asset_url(key, partition)
    message.links["run"] = notifier.run_url(record.run_id)
    if "mlflow_run" in metadata:
        message.links["MLflow run"] = str(metadata["mlflow_run"])
    for name in OBJECT_KEYS:
        if name in metadata:
            message.links[name] = object_uri(str(metadata[name]))
            break
    return message


@sensor(minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def slack_on_materialization(context: SensorEvaluationContext, slack: SlackNotifier) -> SensorResult:
    """Post one message per new materialisation of `NOTIFY_ASSETS`; the first tick only sets the cursor."""
    instance = context.instance
    if context.cursor is None:
        start = instance.event_log_storage.get_maximum_record_id() or 0
        cursor = dict.fromkeys(NOTIFY_ASSETS, start)
        return SensorResult(
            skip_reason=SkipReason(f"following materialisations after event {start}"), cursor=json.dumps(cursor)
        )
    cursor = json.loads(context.cursor)
    start = min(cursor.values(), default=0)
    posted = 0
    for name in NOTIFY_ASSETS:
        after = int(cursor.get(name, start))
        records = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(name), after_storage_id=after), limit=50, ascending=True
        ).records
        for record in records:
            posted += slack.post(materialization_message(slack, record), context.log)
            cursor[name] = record.storage_id
    return SensorResult(skip_reason=SkipReason(f"{posted} message(s) posted"), cursor=json.dumps(cursor))


def failure_message(notifier: SlackNotifier, context: RunFailureSensorContext) -> SlackMessage:
    """The message reporting a failed run: job, partition, step errors, links to the failed assets and the run."""
    run = context.dagster_run
    partition = run.tags.get(PARTITION_TAG)
    where = f" for partition `{partition}`" if partition else ""
    message = SlackMessage(f":x: run of *{run.job_name}* failed{where}")
    errors = [f"`{event.step_key}`: {_step_error(event)}" for event in context.get_step_failure_events()]
    text = "\n".join(errors) or (context.failure_event.message or "")
    message.lines.append(text[:MAX_ERROR_CHARS])
    for key in sorted(_failed_assets(context), key=lambda k: k.to_user_string()):
        message.links[key.to_user_string()] = notifier.asset_url(key, partition)
    message.links["run"] = notifier.run_url(run.run_id)
    for uri in filter(None, run.tags.get(LANDING_FILES_TAG, "").split("\n")):
        message.links[uri.rsplit("/", 1)[-1]] = object_uri(uri)
    return message


def _failed_assets(context: RunFailureSensorContext) -> set[AssetKey]:
    """Asset keys of the failed steps' outputs, read from the run's execution plan."""
    run = context.dagster_run
    failed = {event.step_key for event in context.get_step_failure_events()}
    if not run.execution_plan_snapshot_id:
        return set(run.asset_selection or [])
    plan = context.instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    return {
        output.properties.asset_key
        for step in plan.steps
        if step.key in failed
        for output in step.outputs
        if output.properties is not None and output.properties.asset_key is not None
    }


def _step_error(event: Any) -> str:
    """A failed step's reason: the description of a raised `Failure`, else the error's message."""
    data = event.step_failure_data
    if data is None:
        return event.message or "failed"
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    return data.error.message.strip() if data.error else (event.message or "failed")


@run_failure_sensor(minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def slack_on_run_failure(context: RunFailureSensorContext, slack: SlackNotifier) -> None:
    """Post one message per failed run of this code location."""
    slack.post(failure_message(slack, context), context.log)
