"""`defs` of the asset code location, with resources chosen by the one variable ``DRUGREPO_ENV``.

``DRUGREPO_ENV`` is ``local`` (default), ``staging`` or ``prod``; it is the only environment
variable the package reads itself, with ``DRUGREPO_GPU_IMAGE`` in staging/prod (the image of the GPU
step pods, see `drugrepo_assets.k8s`). Secrets and URIs of the deployed environments come in through
`EnvVar`, resolved by Dagster at launch, never at import. The training profile is chosen here too:
``demo`` (a few epochs on a capped subset) locally and in staging, ``full`` (the paper's) in prod;
``DRUGREPO_TRAINING_PROFILE`` (``demo``, ``full`` or ``tiny``) overrides it, e.g. ``tiny`` for the
end-to-end UI test; ``DRUGREPO_EXECUTOR=in_process`` (local only) runs each run's steps in one
process instead of a process per step (the UI test: no per-step imports of torch and RDKit). Locally
Slack is used only when ``SLACK_BOT_TOKEN`` is set. ``DRUGREPO_RETRAIN_CRON`` (a setting of each
environment's drugrepo.env) times the retraining schedule (`drugrepo_assets.schedules`).
"""

from __future__ import annotations

import os
from typing import Any

from dagster import (
    AssetSelection,
    Definitions,
    EnvVar,
    ExecutorDefinition,
    define_asset_job,
    in_process_executor,
    load_asset_checks_from_modules,
    load_assets_from_modules,
)

from drugrepo_assets import checks
from drugrepo_assets.assets import features, hpo, raw, screening, splits, training, validated
from drugrepo_assets.automation import automation_sensor
from drugrepo_assets.io_managers import JsonIOManager, ParquetIOManager
from drugrepo_assets.k8s import executor_for
from drugrepo_assets.notifications import SlackNotifier, slack_on_materialization, slack_on_run_failure
from drugrepo_assets.resources import (
    DEMO_PROFILE,
    FULL_PROFILE,
    PROFILES,
    TINY_PROFILE,
    DataSourceResource,
    HpoSettings,
    MlflowTracking,
    ScreeningSettings,
    SplitSettings,
    TrainingProfile,
)
from drugrepo_assets.schedules import DEFAULT_RETRAIN_CRON, RETRAIN_CRON_VAR, retrain_schedule
from drugrepo_assets.sensors import LandingZone, RetrainPolicy, ingest_job, landing_sensor, retrain_job, retrain_sensor
from drugrepo_assets.storage import StorageResource

SMOKE_SCREENING = ScreeningSettings(max_library=200)
"""Screening settings of smoke tests: 200 molecules × the default targets."""

ENV_VAR = "DRUGREPO_ENV"
DEFAULT_ENV = "local"
PROFILE_VAR = "DRUGREPO_TRAINING_PROFILE"
EXECUTOR_VAR = "DRUGREPO_EXECUTOR"
SLACK_TOKEN_VAR = "SLACK_BOT_TOKEN"

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


def _deployed_resources(profile: TrainingProfile, min_growth: float) -> dict[str, Any]:
    """Resources of a deployed environment: everything shared comes from environment variables.

    New data lands where `raw_pairs` reads: the landing location is ``DRUGREPO_SOURCE_ROOT``.
    """
    return {
        "io_manager": ParquetIOManager(base_path=EnvVar("DRUGREPO_STORAGE_URI")),
        "json_io_manager": JsonIOManager(base_path=EnvVar("DRUGREPO_STORAGE_URI")),
        "data_source": DataSourceResource(root=EnvVar("DRUGREPO_SOURCE_ROOT")),
        "split_settings": SplitSettings(seed=0),
        "training_profile": profile,
        "storage": StorageResource(base_path=EnvVar("DRUGREPO_STORAGE_URI")),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=EnvVar("MLFLOW_TRACKING_URI"), dagster_url=EnvVar("DAGSTER_WEBSERVER_URL")
        ),
        "hpo_settings": HpoSettings(storage_url=EnvVar("DRUGREPO_OPTUNA_STORAGE")),
        "screening": ScreeningSettings(shard_size=500_000, device="cuda"),
        "landing": LandingZone(root=EnvVar("DRUGREPO_SOURCE_ROOT")),
        "retrain_policy": RetrainPolicy(min_growth=min_growth),
        "slack": SlackNotifier(
            token=EnvVar(SLACK_TOKEN_VAR),
            channel=EnvVar("DRUGREPO_SLACK_CHANNEL"),
            dagster_url=EnvVar("DAGSTER_WEBSERVER_URL"),
        ),
    }


RESOURCES_BY_ENV: dict[str, dict[str, Any]] = {
    "local": {
        "io_manager": ParquetIOManager(),
        "data_source": DataSourceResource(root="bundled"),
        "split_settings": SplitSettings(seed=0),
        "json_io_manager": JsonIOManager(),
        "training_profile": DEMO_PROFILE,
        "storage": StorageResource(),
        "mlflow_tracking": MlflowTracking(),
        "hpo_settings": HpoSettings(),
        "screening": ScreeningSettings(),
        "landing": LandingZone(),
        "retrain_policy": RetrainPolicy(min_growth=0.10),
        "slack": SlackNotifier(token=EnvVar(SLACK_TOKEN_VAR) if SLACK_TOKEN_VAR in os.environ else None),
    },
    "staging": _deployed_resources(DEMO_PROFILE, min_growth=0.10),
    "prod": _deployed_resources(FULL_PROFILE, min_growth=0.20),
}


def _executor(env: str, executor: str | None) -> ExecutorDefinition:
    """The environment's executor, or the in-process one when asked for locally."""
    if not executor:
        return executor_for(env, all_assets, os.environ)
    if executor != "in_process" or env != "local":
        raise ValueError(f"{EXECUTOR_VAR}={executor!r}: only 'in_process', and only with {ENV_VAR}=local")
    return in_process_executor


def build_defs(
    env: str, profile: str | None = None, executor: str | None = None, retrain_cron: str | None = None
) -> Definitions:
    """The code location's definitions for one environment (``local``, ``staging`` or ``prod``).

    ``profile`` names a training profile to use instead of the environment's (``tiny`` in UI tests);
    ``tiny`` also screens only `SMOKE_SCREENING`'s capped library, the whole pipeline being a smoke test.
    ``retrain_cron`` times the retraining schedule (default `DEFAULT_RETRAIN_CRON`).
    """
    if env not in RESOURCES_BY_ENV:
        known = ", ".join(sorted(RESOURCES_BY_ENV))
        raise ValueError(f"{ENV_VAR}={env!r} is not a known environment (known: {known})")
    resources = dict(RESOURCES_BY_ENV[env])
    if profile:
        if profile not in PROFILES:
            raise ValueError(f"{PROFILE_VAR}={profile!r} is not a training profile (known: {', '.join(PROFILES)})")
        resources["training_profile"] = PROFILES[profile]
        if profile == TINY_PROFILE.name:
            resources["screening"] = SMOKE_SCREENING
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
    os.environ.get(ENV_VAR, DEFAULT_ENV),
    os.environ.get(PROFILE_VAR),
    os.environ.get(EXECUTOR_VAR),
    os.environ.get(RETRAIN_CRON_VAR),
)
