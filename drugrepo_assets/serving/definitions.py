"""`defs` of the serving code location: the registered model, the champion/challenger comparison and the
drift report, downstream (across locations) of the training location's checkpoint, evaluation, splits
and valid pairs.

Resources are the environment's (``DRUGREPO_ENV``, `environments.serving_resources`): the same storage and
MLflow store the asset location writes; in staging/prod a challenger is promoted only on shadow traffic
(``require_online``). ``DRUGREPO_CHALLENGER_CRON`` times the comparison's schedule (`drugrepo_assets.schedules`).
"""

from __future__ import annotations

import os

from dagster import AssetSelection, Definitions, define_asset_job

from drugrepo_assets.environments import current_env, serving_resources
from drugrepo_assets.schedules import CHALLENGER_CRON_VAR, DEFAULT_CHALLENGER_CRON, challenger_schedule
from drugrepo_assets.serving.assets import champion_challenger, drift_report, external_assets, registered_model

serving_assets = [registered_model, champion_challenger, drift_report]

serving_job = define_asset_job(
    "serving_job",
    selection=AssetSelection.assets(registered_model, drift_report),
    description="Register the checkpoint (champion or challenger, through the gates) and report drift, for one dataset.",
)
challenger_job = define_asset_job(
    "challenger_job",
    selection=AssetSelection.assets(champion_challenger),
    description="Compare the challenger with the champion (offline and on live traffic); promote it if not worse.",
)


def build_defs(env: str, challenger_cron: str | None = None) -> Definitions:
    """The serving location's definitions for one environment (``local``, ``staging`` or ``prod``);
    ``challenger_cron`` times the comparison's schedule (default `DEFAULT_CHALLENGER_CRON`)."""
    resources = serving_resources(env)
    return Definitions(
        assets=[*external_assets, *serving_assets],
        jobs=[serving_job, challenger_job],
        schedules=[challenger_schedule(env, challenger_job, challenger_cron or DEFAULT_CHALLENGER_CRON)],
        resources=resources,
    )


defs = build_defs(current_env(), os.environ.get(CHALLENGER_CRON_VAR))
