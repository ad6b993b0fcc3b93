"""`defs` of the serving code location: the registered model, the champion/challenger comparison and the
drift report, downstream (across locations) of the training location's checkpoint, evaluation, splits
and valid pairs.

Resources follow ``DRUGREPO_ENV`` like the asset location's: locally everything under the instance
folder (the same storage and MLflow store the asset location writes); in staging/prod from `EnvVar`s,
where a challenger is promoted only on shadow traffic (``require_online``). ``DRUGREPO_CHALLENGER_CRON``
times the comparison's schedule (`drugrepo_assets.schedules`).
"""

from __future__ import annotations

import os
from typing import Any

from dagster import AssetSelection, Definitions, EnvVar, define_asset_job

from drugrepo_assets.io_managers import JsonIOManager, ParquetIOManager
from drugrepo_assets.resources import MlflowTracking
from drugrepo_assets.schedules import CHALLENGER_CRON_VAR, DEFAULT_CHALLENGER_CRON, challenger_schedule
from drugrepo_assets.serving.assets import champion_challenger, drift_report, external_assets, registered_model
from drugrepo_assets.serving.resources import ChallengerSettings, DriftSettings, RegistrySettings
from drugrepo_assets.storage import StorageResource

ENV_VAR = "DRUGREPO_ENV"
DEFAULT_ENV = "local"

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


def _deployed_resources() -> dict[str, Any]:
    return {
        "io_manager": ParquetIOManager(base_path=EnvVar("DRUGREPO_STORAGE_URI")),
        "json_io_manager": JsonIOManager(base_path=EnvVar("DRUGREPO_STORAGE_URI")),
        "storage": StorageResource(base_path=EnvVar("DRUGREPO_STORAGE_URI")),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=EnvVar("MLFLOW_TRACKING_URI"), dagster_url=EnvVar("DAGSTER_WEBSERVER_URL")
        ),
        "registry_settings": RegistrySettings(),
        "challenger_settings": ChallengerSettings(require_online=True),
        "drift_settings": DriftSettings(request_log_dir=EnvVar("DRUGREPO_REQUEST_LOG_DIR")),
    }


RESOURCES_BY_ENV: dict[str, dict[str, Any]] = {
    "local": {
        "io_manager": ParquetIOManager(),
        "json_io_manager": JsonIOManager(),
        "storage": StorageResource(),
        "mlflow_tracking": MlflowTracking(),
        "registry_settings": RegistrySettings(),
        "challenger_settings": ChallengerSettings(),
        "drift_settings": DriftSettings(),
    },
    "staging": _deployed_resources(),
    "prod": _deployed_resources(),
}


def build_defs(env: str, challenger_cron: str | None = None) -> Definitions:
    """The serving location's definitions for one environment (``local``, ``staging`` or ``prod``);
    ``challenger_cron`` times the comparison's schedule (default `DEFAULT_CHALLENGER_CRON`)."""
    if env not in RESOURCES_BY_ENV:
        known = ", ".join(sorted(RESOURCES_BY_ENV))
        raise ValueError(f"{ENV_VAR}={env!r} is not a known environment (known: {known})")
    return Definitions(
        assets=[*external_assets, *serving_assets],
        jobs=[serving_job, challenger_job],
        schedules=[challenger_schedule(env, challenger_job, challenger_cron or DEFAULT_CHALLENGER_CRON)],
        resources=RESOURCES_BY_ENV[env],
    )


defs = build_defs(os.environ.get(ENV_VAR, DEFAULT_ENV), os.environ.get(CHALLENGER_CRON_VAR))
