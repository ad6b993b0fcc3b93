"""The retraining schedule (`lib.schedules` holds the crons and what both code locations' schedules share)."""

from __future__ import annotations

from dagster import RunRequest, ScheduleDefinition, ScheduleEvaluationContext, SkipReason

from drugrepo_assets.data.sources import DATASETS
from drugrepo_assets.defs.automation.jobs import retrain_job
from drugrepo_assets.defs.automation.sensors import RETRAIN_REASON_TAG, retrain_decision
from drugrepo_assets.lib.automation_resources import RetrainPolicy
from drugrepo_assets.lib.schedules import DEFAULT_RETRAIN_CRON, RETRAIN_CRON_VAR, environment_schedule


def retrain_schedule(env: str, cron: str = DEFAULT_RETRAIN_CRON) -> ScheduleDefinition:
    """`retrain_job` at ``cron`` for every partition whose valid pairs changed since its checkpoint (any growth)."""

    def retrain(context: ScheduleEvaluationContext, retrain_policy: RetrainPolicy) -> list[RunRequest] | SkipReason:
        policy = RetrainPolicy(min_growth=0.0, train_when_missing=retrain_policy.train_when_missing)
        decisions = [retrain_decision(context.instance, dataset, policy) for dataset in DATASETS]
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
        requests = [
            RunRequest(
                run_key=f"scheduled-retrain:{d.dataset}:{tick}",
                partition_key=d.dataset,
                tags={RETRAIN_REASON_TAG: f"schedule {cron}: {d.reason}"},
            )
            for d in decisions
            if d.retrain
        ]
        return requests or SkipReason("; ".join(f"{d.dataset}: {d.reason}" for d in decisions))

    return environment_schedule(
        retrain,
        "retrain_schedule",
        retrain_job,
        cron,
        env,
        RETRAIN_CRON_VAR,
        "Retrain and re-evaluate every dataset partition whose valid pairs changed since its checkpoint.",
    )
