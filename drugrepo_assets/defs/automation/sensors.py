"""Sensors that keep the pipeline alive: new data in the landing location, and retraining on growth.

`landing_sensor` watches ``<landing>/<dataset>/<file>`` (a local folder or an ``s3://`` prefix) and turns
every change of a dataset's landed data files (a file new, changed, reverted or removed) into one run
of `raw_pairs` for partition ``<dataset>``, reading that partition from the landing location (run
config of ``data_source``). Its cursor keeps every file seen with its version (ETag on S3, size and
modification time locally) and, per dataset, a generation counted up at every run it requests; the
run key is the dataset's generation and all its files' versions, so a return to an earlier state is
a new run, while a replayed tick asks for the same run again (which Dagster skips).
A file that cannot belong to a dataset (outside a dataset folder, unknown dataset, not a data file)
requests no run: it is logged as an error and named in the tick's skip reason, and the cursor still
moves past it. A file whose *content* is unusable (malformed CSV, missing columns) fails its run in
`raw_pairs`, and the failure names the file; removing it re-ingests the dataset from the files left.
Removing a dataset's last file requests a run too, which fails naming the empty dataset folder, so
the partition's stale rows are flagged rather than kept silently.

Validation and features then refresh by declarative automation (`drugrepo_assets.defs.automation.automation`);
`retrain_sensor` retrains `drugban_checkpoint` (and re-evaluates it) only when the valid pairs of a
partition grew by `RetrainPolicy.min_growth` since the checkpoint was last trained.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    EventLogRecord,
    IntMetadataValue,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from drugrepo_assets.data.sources import DATASETS, is_data_file
from drugrepo_assets.defs.automation.jobs import ingest_job, retrain_job
from drugrepo_assets.lib.automation_resources import LandingZone, RetrainPolicy

LANDING_FILES_TAG = "drugrepo/landing_files"
"""Run tag of a landing-triggered run: the URIs of the files new or changed since the last run, one per line."""
LANDING_REMOVED_TAG = "drugrepo/landing_removed"
"""Run tag of a landing-triggered run: the URIs of the files removed since the last run, one per line."""
RETRAIN_REASON_TAG = "drugrepo/retrain_reason"
PARTITION_TAG = "dagster/partition"
IN_PROGRESS = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def landing_problem(relative: str) -> str | None:
    """Why a landed file cannot be ingested from its path alone (None when it can)."""
    parts = relative.split("/")
    if len(parts) < 2:
        return "not inside a dataset folder (expected <dataset>/<file>)"
    if parts[0] not in DATASETS:
        return f"unknown dataset folder {parts[0]!r} (known: {', '.join(DATASETS)})"
    if not is_data_file(parts[-1]):
        return "unsupported file type (expected .csv, .csv.gz, .parquet or .pq)"
    return None


@dataclass(frozen=True)
class LandingCursor:
    """What `landing_sensor` has seen: every file's version, and per dataset the runs it requested."""

    files: dict[str, str]
    generations: dict[str, int]

    @classmethod
    def parse(cls, text: str | None) -> LandingCursor:
        """Read a cursor; one of the old format (a bare path → version mapping) starts every generation at 0."""
        raw = json.loads(text) if text else {}
        if isinstance(raw.get("files"), dict):
            generations = {dataset: int(n) for dataset, n in raw.get("generations", {}).items()}
            return cls({relative: str(v) for relative, v in raw["files"].items()}, generations)
        return cls({relative: str(version) for relative, version in raw.items()}, {})

    def dumps(self) -> str:
        """The cursor's JSON text."""
        return json.dumps({"files": self.files, "generations": self.generations}, sort_keys=True)


def dataset_states(files: dict[str, str]) -> dict[str, dict[str, str]]:
    """The ingestible files of each dataset (relative path → version); datasets without any are absent."""
    states: dict[str, dict[str, str]] = {}
    for relative, version in files.items():
        if landing_problem(relative) is None:
            states.setdefault(relative.split("/")[0], {})[relative] = version
    return states


@sensor(job=ingest_job, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING)
def landing_sensor(context: SensorEvaluationContext, landing: LandingZone) -> SensorResult:
    """One `raw_pairs` run per dataset whose landed files changed (new, changed or removed); bad paths are named."""
    seen = LandingCursor.parse(context.cursor)
    current = landing.files()
    problems: list[str] = []
    for relative in sorted(current):
        problem = None if seen.files.get(relative) == current[relative] else landing_problem(relative)
        if problem:
            problems.append(f"{landing.file_uri(relative)}: {problem}")
            context.log.error(f"landing file not ingested: {problems[-1]}")
    before, now = dataset_states(seen.files), dataset_states(current)
    generations = dict(seen.generations)
    requests = []
    for dataset in sorted(before.keys() | now.keys()):
        old, new = before.get(dataset, {}), now.get(dataset, {})
        if old == new:
            continue
        generations[dataset] = generations.get(dataset, 0) + 1
        if not new:
            context.log.warning(f"every landed file of {dataset} was removed: its raw_pairs run will fail on it")
        landed = sorted(relative for relative, version in new.items() if old.get(relative) != version)
        removed = sorted(old.keys() - new.keys())
        tags = {
            tag: "\n".join(landing.file_uri(relative) for relative in files)
            for tag, files in ((LANDING_FILES_TAG, landed), (LANDING_REMOVED_TAG, removed))
            if files
        }
        requests.append(
            RunRequest(
                run_key=_run_key(dataset, generations[dataset], new),
                partition_key=dataset,
                run_config={"resources": {"data_source": {"config": landing.source_config()}}},
                tags=tags,
            )
        )
    cursor = LandingCursor(current, generations).dumps()
    if requests:
        return SensorResult(run_requests=requests, cursor=cursor)
    return SensorResult(skip_reason=SkipReason("; ".join(problems) or "no new or changed file"), cursor=cursor)


def _run_key(dataset: str, generation: int, versions: dict[str, str]) -> str:
    """Key of a dataset's run: its generation (never reused) and the versions of all its files."""
    digest = hashlib.sha256(json.dumps(versions, sort_keys=True).encode()).hexdigest()[:16]
    return f"landing:{dataset}:{generation}:{digest}"


@dataclass(frozen=True)
class RetrainDecision:
    """Whether one partition should be retrained now, and why."""

    dataset: str
    retrain: bool
    reason: str
    validated_storage_id: int | None = None


def _latest(instance: DagsterInstance, asset: str, dataset: str, before: int | None = None) -> EventLogRecord | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[dataset], before_storage_id=before), limit=1
    ).records
    return records[0] if records else None


def _row_count(record: EventLogRecord) -> int:
    materialization = record.asset_materialization
    value = materialization.metadata.get("dagster/row_count") if materialization else None
    return (value.value or 0) if isinstance(value, IntMetadataValue) else 0


def retrain_decision(instance: DagsterInstance, dataset: str, policy: RetrainPolicy) -> RetrainDecision:
    """Retrain when the features are fresh, nothing runs for the partition and valid rows grew enough."""
    validated = _latest(instance, "validated_pairs", dataset)
    if validated is None:
        return RetrainDecision(dataset, False, "no validated_pairs yet")
    stale = [
        asset
        for asset in ("dataset_splits", "drug_graphs", "protein_encodings")
        if (record := _latest(instance, asset, dataset)) is None or record.storage_id < validated.storage_id
    ]
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
