"""Sensors that keep the pipeline alive: new data in the landing location, and retraining on growth.

`landing_sensor` watches ``<landing>/<dataset>/<file>`` (a local folder or an ``s3://`` prefix) and turns
every new or changed data file into one run of `raw_pairs` for partition ``<dataset>``, reading that
partition from the landing location (run config of ``data_source``). Its cursor maps every file seen to
its version (ETag on S3, size and modification time locally), so a file is ingested once per version.
A file that cannot belong to a dataset (outside a dataset folder, unknown dataset, not a data file)
requests no run: it is logged as an error and named in the tick's skip reason, and the cursor still
moves past it. A file whose *content* is unusable (malformed CSV, missing columns) fails its run in
`raw_pairs`, and the failure names the file. Deleted files are forgotten without a run.

Validation and features then refresh by declarative automation (`drugrepo_assets.automation`);
`retrain_sensor` retrains `drugban_checkpoint` (and re-evaluates it) only when the valid pairs of a
partition grew by `RetrainPolicy.min_growth` since the checkpoint was last trained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetSelection,
    ConfigurableResource,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    EventLogRecord,
    InitResourceContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    sensor,
)
from pydantic import Field, PrivateAttr
from upath import UPath

from drugrepo_assets.data.sources import DATASETS, is_data_file
from drugrepo_assets.files import storage_path, uri_of

LANDING_FILES_TAG = "drugrepo/landing_files"
"""Run tag of a landing-triggered run: the URIs of the files that triggered it, one per line."""
RETRAIN_REASON_TAG = "drugrepo/retrain_reason"
PARTITION_TAG = "dagster/partition"
IN_PROGRESS = [
    DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING,
]  # fmt: skip

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets("raw_pairs"),
    description="Read one dataset partition into raw_pairs (launched by landing_sensor for new files).",
)
retrain_job = define_asset_job(
    "retrain_job",
    selection=AssetSelection.assets("drugban_checkpoint", "model_evaluation"),
    description="Retrain and re-evaluate DrugBAN for one dataset partition (launched by retrain_sensor).",
)


class LandingZone(ConfigurableResource):
    """Where new data lands: ``<root>/<dataset>/<file>``, a local folder or an ``s3://`` prefix."""

    root: Optional[str] = Field(
        default=None, description="Local folder or s3:// prefix; default $DAGSTER_HOME/landing."
    )
    s3_endpoint_url: Optional[str] = Field(
        default=None, description="S3 endpoint instead of AWS (MinIO, moto, ...); only for s3:// roots."
    )
    _instance_root: Optional[str] = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        """Fall back on ``$DAGSTER_HOME/landing`` when no root is configured."""
        if self.root is None and context.instance is not None:
            self._instance_root = str(Path(context.instance.root_directory) / "landing")

    def uri(self) -> str:
        """The landing root in use (a plain path when local)."""
        root = self.root or self._instance_root
        if root is None:
            raise ValueError("LandingZone needs root when no Dagster instance is at hand")
        return uri_of(self.base_of(root))

    def base_of(self, root: str) -> UPath:
        """`UPath` of ``root`` with this resource's S3 endpoint."""
        return storage_path(root, self.s3_endpoint_url)

    def file_uri(self, relative: str) -> str:
        """URI of one landed file given its path relative to the root."""
        return uri_of(self.base_of(self.uri()).joinpath(*relative.split("/")))

    def files(self) -> dict[str, str]:
        """Every visible file below the root (relative path → version); empty when the root is missing."""
        base = self.base_of(self.uri())
        if not base.exists():
            return {}
        prefix = base.path.rstrip("/") + "/"
        found: dict[str, str] = {}
        for name, info in base.fs.find(base.path, withdirs=False, detail=True).items():
            relative = name[len(prefix):] if name.startswith(prefix) else name
            if relative and not any(part.startswith(".") for part in relative.split("/")):
                found[relative] = file_version(info)
        return found

    def source_config(self) -> dict[str, Any]:
        """Run config of ``data_source`` that reads every dataset partition from the landing location."""
        config: dict[str, Any] = {"root": self.uri()}
        if self.s3_endpoint_url:
            config["s3_endpoint_url"] = self.s3_endpoint_url
        return config


def file_version(info: dict[str, Any]) -> str:
    """A file's version from its listing: the ETag on S3, else size and modification time."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return str(etag).strip('"')
    return f"{info.get('size')}:{info.get('mtime') or info.get('LastModified')}"


def landing_problem(relative: str) -> Optional[str]:
    """Why a landed file cannot be ingested from its path alone (None when it can)."""
    parts = relative.split("/")
    if len(parts) < 2:
        return "not inside a dataset folder (expected <dataset>/<file>)"
    if parts[0] not in DATASETS:
        return f"unknown dataset folder {parts[0]!r} (known: {', '.join(DATASETS)})"
    if not is_data_file(parts[-1]):
        return "unsupported file type (expected .csv, .csv.gz, .parquet or .pq)"
    return None


@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def landing_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult:
    """One `raw_pairs` run per dataset with new or changed files; bad paths are named, never retried."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = landing.files()
    changed = sorted(relative for relative, version in current.items() if seen.get(relative) != version)
    by_dataset: dict[str, list[str]] = {}
    problems: list[str] = []
    for relative in changed:
        problem = landing_problem(relative)
        if problem:
            problems.append(f"{landing.file_uri(relative)}: {problem}")
            context.log.error(f"landing file not ingested: {problems[-1]}")
        else:
            by_dataset.setdefault(relative.split("/")[0], []).append(relative)
    requests = [
        RunRequest(
            run_key=_run_key(dataset, {relative: current[relative] for relative in files}),
            partition_key=dataset,
            run_config={"resources": {"data_source": {"config": landing.source_config()}}},
            tags={LANDING_FILES_TAG: "\n".join(landing.file_uri(relative) for relative in files)},
        )
        for dataset, files in sorted(by_dataset.items())
    ]
    cursor = json.dumps(current, sort_keys=True)
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    return SensorResult(skip_reason=SkipReason("; ".join(problems) or "no new or changed file"), cursor=cursor)


def _run_key(dataset: str, versions: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
    return f"landing:{dataset}:{digest}"


class RetrainPolicy(ConfigurableResource):
    """When `retrain_sensor` retrains a partition: valid pairs grew by ``min_growth`` since the last training."""

    min_growth: float = Field(
        default=0.10,
        ge=0.0,
        description="Relative growth of validated_pairs rows that triggers retraining (0.1 = 10%).",
    )
    train_when_missing: bool = Field(
        default=False,
        description="Also train partitions without a checkpoint (off: the first training is a deliberate launch).",
    )


@dataclass(frozen=True)
class RetrainDecision:
    """Whether one partition should be retrained now, and why."""

    dataset: str
    retrain: bool
    reason: str
    validated_storage_id: Optional[int] = None


def _latest(
    instance: DagsterInstance, asset: str, dataset: str, before: Optional[int] = None
) -> Optional[EventLogRecord]:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[dataset], before_storage_id=before), limit=1
    ).records
    return records[0] if records else None


def _row_count(record: EventLogRecord) -> int:
    materialization = record.asset_materialization
    value = materialization.metadata.get("dagster/row_count") if materialization else None
    return int(value.value) if value is not None else 0


def retrain_decision(instance: DagsterInstance, dataset: str, policy: RetrainPolicy) -> RetrainDecision:
    """Retrain when the features are fresh, nothing runs for the partition and valid rows grew enough."""
    validated = _latest(instance, "validated_pairs", dataset)
    if validated is None:
        return RetrainDecision(dataset, False, "no validated_pairs yet")
    stale = [
        asset for asset in ("dataset_splits", "drug_graphs", "protein_encodings")
        if (record := _latest(instance, asset, dataset)) is None or record.storage_id < validated.storage_id
    ]  # fmt: skip
    if stale:
        return RetrainDecision(dataset, False, f"waiting for {', '.join(stale)} to refresh")
    running = instance.get_runs(RunsFilter(statuses=IN_PROGRESS, tags={PARTITION_TAG: dataset}), limit=1)
    if running:
        return RetrainDecision(dataset, False, f"run {running[0].run_id} is in progress")
    rows = _row_count(validated)
    checkpoint = _latest(instance, "drugban_checkpoint", dataset)
    if checkpoint is None:
        reason = f"no checkpoint yet, {rows} valid rows"
        return RetrainDecision(dataset, policy.train_when_missing, reason, validated.storage_id)
    if checkpoint.storage_id > validated.storage_id:
        return RetrainDecision(dataset, False, "checkpoint is newer than validated_pairs")
    baseline_record = _latest(instance, "validated_pairs", dataset, before=checkpoint.storage_id)
    baseline = _row_count(baseline_record) if baseline_record else 0
    growth = (rows - baseline) / baseline if baseline else float("inf")
    reason = f"valid rows {baseline} → {rows} ({growth:+.1%}) vs threshold {policy.min_growth:.1%}"
    return RetrainDecision(dataset, growth >= policy.min_growth, reason, validated.storage_id)


@sensor(job=retrain_job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING)
def retrain_sensor(context: SensorEvaluationContext, retrain_policy: RetrainPolicy) -> SensorResult:
    """One retraining run per partition whose valid pairs grew past the policy's threshold."""
    decisions = [retrain_decision(context.instance, dataset, retrain_policy) for dataset in DATASETS]
    requests = [
        RunRequest(
            run_key=f"retrain:{d.dataset}:{d.validated_storage_id}",
            partition_key=d.dataset,
            tags={RETRAIN_REASON_TAG: d.reason},
        )
        for d in decisions
        if d.retrain
    ]
    if requests:
        return SensorResult(run_requests=requests)
    return SensorResult(skip_reason=SkipReason("; ".join(f"{d.dataset}: {d.reason}" for d in decisions)))
