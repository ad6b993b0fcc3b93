"""The training location's gates as recorded on the Dagster instance: did every gating check pass on
the latest materialisation of its asset partition? Serving runs apart from training (another code
location, another run), so it reads the checks' outcomes from the instance instead of relying on a
blocking check stopping it inside one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterInstance
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

GATING_CHECKS: tuple[str, ...] = (
    "drugban_checkpoint:drugban_checkpoint_losses_finite",
    "drugban_checkpoint:drugban_checkpoint_reproduces",
    "model_evaluation:model_evaluation_auroc_floor",
)
"""``asset:check`` of every check a checkpoint must pass before it may become the champion."""


@dataclass(frozen=True)
class GateOutcome:
    """One gating check for one partition: ``state`` is passed, failed, not run, planned or stale."""

    check: str
    state: str
    description: str

    @property
    def passed(self) -> bool:
        """True only for a check that passed on the asset partition's latest materialisation."""
        return self.state == "passed"


def _latest_storage_id(instance: DagsterInstance, asset: str, partition: str) -> int | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[partition]), limit=1
    ).records
    return records[0].storage_id if records else None


def gate_outcomes(
    instance: DagsterInstance, partition: str, checks: Sequence[str] = GATING_CHECKS
) -> list[GateOutcome]:
    """The latest evaluation of each ``asset:check`` for ``partition``, judged against the latest materialisation."""
    outcomes = []
    for spec in checks:
        asset, _, name = spec.partition(":")
        key = AssetCheckKey(AssetKey(asset), name)
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [key], partition_filter=PartitionKeyFilter(key=partition)
        ).get(key)
        latest = _latest_storage_id(instance, asset, partition)
        if record is None:
            outcomes.append(GateOutcome(spec, "not run", f"{spec} never ran for {partition}"))
            continue
        evaluation = record.evaluation
        if record.status == AssetCheckExecutionRecordStatus.PLANNED or evaluation is None:
            outcomes.append(GateOutcome(spec, "planned", f"{spec} is planned but has no result yet"))
            continue
        target = evaluation.target_materialization_data
        if target is None or target.storage_id != latest:
            outcomes.append(GateOutcome(spec, "stale", f"{spec} evaluated an older materialisation of {asset}"))
            continue
        state = "passed" if evaluation.passed else "failed"
        outcomes.append(GateOutcome(spec, state, evaluation.description or state))
    return outcomes
