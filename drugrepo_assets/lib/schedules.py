"""Schedules, per environment: periodic retraining (asset location; its schedule, built on `environment_schedule`, is
`drugrepo_assets.defs.automation.schedules.retrain_schedule`) and the champion/challenger comparison (serving
location), one run per dataset partition that has something to do.

Each cron expression is a setting of the environment (``deployments/<env>/drugrepo.env``:
``DRUGREPO_RETRAIN_CRON``, ``DRUGREPO_CHALLENGER_CRON``), read when the code location loads: a
schedule's cron is part of its definition, so it cannot be an `EnvVar` resolved at launch. Times are
UTC. Schedules start STOPPED locally (a laptop does not retrain on its own) and RUNNING in staging
and prod; either can be switched in the UI.

Retraining on a schedule complements `retrain_sensor`: the sensor retrains as soon as the valid pairs
of a partition grew by the policy's threshold; the schedule retrains, at its cadence, every partition
whose valid pairs changed at all since its checkpoint (smaller growth, corrections). A partition whose
data did not change is not retrained: the same seed on the same rows gives the same checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterInvalidDefinitionError,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from drugrepo_assets.data.sources import DATASETS

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

RETRAIN_CRON_VAR = "DRUGREPO_RETRAIN_CRON"
DEFAULT_RETRAIN_CRON = "0 3 * * 0"
"""Sundays at 03:00 UTC, when no environment setting says otherwise."""
CHALLENGER_CRON_VAR = "DRUGREPO_CHALLENGER_CRON"
DEFAULT_CHALLENGER_CRON = "0 6 * * *"
"""Every day at 06:00 UTC: a challenger is judged on the traffic of the day before."""
TIMEZONE = "UTC"
RUNNING_ENVS: tuple[str, ...] = ("staging", "prod")
"""Environments whose schedules run from the start; elsewhere they start stopped."""


def default_status(env: str) -> DefaultScheduleStatus:
    """RUNNING in staging and prod, STOPPED elsewhere (locally)."""
    return DefaultScheduleStatus.RUNNING if env in RUNNING_ENVS else DefaultScheduleStatus.STOPPED


def challenger_schedule(
    env: str, job: UnresolvedAssetJobDefinition, cron: str = DEFAULT_CHALLENGER_CRON
) -> ScheduleDefinition:
    """``job`` (the champion/challenger comparison) at ``cron`` for every partition with a registered model."""

    def compare(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
        registered = _partitions_with(context, "registered_model", DATASETS)
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
        requests = [RunRequest(run_key=f"challenger:{d}:{tick}", partition_key=d) for d in registered]
        return requests or SkipReason("no dataset has a registered model yet")

    return environment_schedule(
        compare,
        "challenger_schedule",
        job,
        cron,
        env,
        CHALLENGER_CRON_VAR,
        "Compare each dataset's challenger with its champion; promote it when it is not worse.",
    )


def _partitions_with(context: ScheduleEvaluationContext, asset: str, partitions: Sequence[str]) -> list[str]:
    """The partitions of ``asset`` materialised at least once."""
    return [
        p
        for p in partitions
        if context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[p]), limit=1
        ).records
    ]


def environment_schedule(
    fn: Callable[..., list[RunRequest] | SkipReason],
    name: str,
    job: UnresolvedAssetJobDefinition,
    cron: str,
    env: str,
    var: str,
    description: str,
) -> ScheduleDefinition:
    """``fn`` as schedule ``name`` of ``job`` in environment ``env``; a bad cron is an error naming its setting."""
    try:
        return schedule(
            cron_schedule=cron,
            name=name,
            job=job,
            execution_timezone=TIMEZONE,
            default_status=default_status(env),
            description=f"{description} Cron from {var}.",
        )(fn)
    except DagsterInvalidDefinitionError as exc:
        raise ValueError(f"{var}={cron!r} is not a cron expression Dagster accepts: {exc}") from exc
