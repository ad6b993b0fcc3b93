"""`defs` of the asset code location, for the deployment `drugrepo_assets.environments` names (``DRUGREPO_ENV``).

The resources are that environment's (`environments.asset_resources`), with ``DRUGREPO_GPU_IMAGE`` in
staging/prod (the image of the GPU step pods, see `drugrepo_assets.k8s`). ``DRUGREPO_TRAINING_PROFILE``
(``demo``, ``full`` or ``tiny``) overrides the environment's training profile, e.g. ``tiny`` for the
end-to-end UI test; ``DRUGREPO_EXECUTOR=in_process`` (local only) runs each run's steps in one process
instead of a process per step (the UI test: no per-step imports of torch and RDKit).
``DRUGREPO_RETRAIN_CRON`` (a setting of each environment's drugrepo.env) times the retraining schedule
(`drugrepo_assets.schedules`).
"""

from __future__ import annotations

import os
from typing import Any

from dagster import (
    AssetSelection,
    Definitions,
    ExecutorDefinition,
    define_asset_job,
    in_process_executor,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)

from drugrepo_assets import checks
from drugrepo_assets.assets import features, hpo, raw, screening, splits, training, validated
from drugrepo_assets.automation import automation_sensor
from drugrepo_assets.environments import ENV_VAR, asset_resources, current_env
from drugrepo_assets.k8s import executor_for
from drugrepo_assets.notifications import slack_on_materialization, slack_on_run_failure
from drugrepo_assets.resources import PROFILES, TINY_PROFILE, ScreeningSettings
from drugrepo_assets.schedules import DEFAULT_RETRAIN_CRON, RETRAIN_CRON_VAR, retrain_schedule
from drugrepo_assets.sensors import ingest_job, landing_sensor, retrain_job, retrain_sensor

SMOKE_SCREENING = ScreeningSettings(max_library=200)
"""Screening settings of smoke tests: 200 molecules × the default targets."""

PROFILE_VAR = "DRUGREPO_TRAINING_PROFILE"
EXECUTOR_VAR = "DRUGREPO_EXECUTOR"

all_assets = load_assets_from_modules([raw, validated, splits, features, training, hpo, screening])
all_asset_checks = load_asset_checks_from_modules([checks])

HPO = AssetSelection.assets("hpo_study")
SCREENING = AssetSelection.groups("screening")
SCREENING_INPUTS = AssetSelection.assets(
    "screening_library", "screening_library_rejected", "screening_targets", "screening_targets_rejected"
)

materialize_all_job = define_asset_job(
    "materialize_all_job",
    selection=AssetSelection.all() - HPO - SCREENING,
    description="Ingest to evaluation, with the checks, for one dataset partition (no HPO study, no screening).",
)
screening_inputs_job = define_asset_job(
    "screening_inputs_job",
    selection=SCREENING_INPUTS,
    description="The screening library and targets (from every dataset's features, or the configured files).",
)
screening_job = define_asset_job(
    "screening_job",
    selection=SCREENING - SCREENING_INPUTS,
    description="Screen the library against the targets with one dataset's checkpoint; the candidates.",
)
hpo_job = define_asset_job(
    "hpo_job",
    selection=HPO,
    description="Run the HPO study's trials (in parallel steps) for one dataset partition.",
)


def _executor(env: str, executor: str | None) -> ExecutorDefinition:
    """The environment's executor, or the in-process one when asked for locally."""
    if not executor:
        return executor_for(env, all_assets, os.environ)
    if executor != "in_process" or env != "local":
        raise ValueError(f"{EXECUTOR_VAR}={executor!r}: only 'in_process', and only with {ENV_VAR}=local")
    return in_process_executor


def _profile_overrides(profile: str | None) -> dict[str, Any]:
    """The resources that the training profile named ``profile`` replaces (none when ``None``)."""
    if not profile:
        return {}
    if profile not in PROFILES:
        raise ValueError(f"{PROFILE_VAR}={profile!r} is not a training profile (known: {', '.join(PROFILES)})")
    if profile == TINY_PROFILE.name:
        return {"training_profile": PROFILES[profile], "screening": SMOKE_SCREENING}
    return {"training_profile": PROFILES[profile]}


def build_defs(
    env: str, profile: str | None = None, executor: str | None = None, retrain_cron: str | None = None
) -> Definitions:
    """The code location's definitions for one environment (``local``, ``staging`` or ``prod``).

    ``profile`` names a training profile to use instead of the environment's (``tiny`` in UI tests);
    ``tiny`` also screens only `SMOKE_SCREENING`'s capped library, the whole pipeline being a smoke test.
    ``retrain_cron`` times the retraining schedule (default `DEFAULT_RETRAIN_CRON`).
    """
    resources = asset_resources(env, **_profile_overrides(profile))
    return Definitions(
        assets=all_assets,
        asset_checks=all_asset_checks,
        jobs=[materialize_all_job, screening_inputs_job, screening_job, hpo_job, ingest_job, retrain_job],
        sensors=[landing_sensor, retrain_sensor, automation_sensor, slack_on_materialization, slack_on_run_failure],
        schedules=[retrain_schedule(env, retrain_cron or DEFAULT_RETRAIN_CRON)],
        resources=resources,
        executor=_executor(env, executor),
    )


defs = build_defs(
    current_env(),
    os.environ.get(PROFILE_VAR),
    os.environ.get(EXECUTOR_VAR),
    os.environ.get(RETRAIN_CRON_VAR),
)
