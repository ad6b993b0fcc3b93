"""Which deployment this is (``DRUGREPO_ENV``) and each environment's resources, for both code locations and the tests.

``DRUGREPO_ENV`` is ``local`` (default), ``staging`` or ``prod``, each a folder ``deployments/<env>`` (instance
config and settings). Locally every file lives under the Dagster instance's folder (``$DAGSTER_HOME``), or under
one ``base`` folder in tests; in staging and prod the settings (``deployments/<env>/drugrepo.env``) and secrets come
in through `EnvVar`, resolved by Dagster at launch, never at import. Locally Slack is used only when
``SLACK_BOT_TOKEN`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import EnvVar

from drugrepo_assets.lib.automation_resources import LandingZone, RetrainPolicy, SlackNotifier
from drugrepo_assets.lib.io_managers import JsonIOManager, ParquetIOManager
from drugrepo_assets.lib.resources import (
    DEMO_PROFILE,
    FULL_PROFILE,
    DataSourceResource,
    HpoSettings,
    MlflowTracking,
    ScreeningSettings,
    SplitSettings,
    TrainingProfile,
)
from drugrepo_assets.lib.serving_resources import ChallengerSettings, DriftSettings, RegistrySettings
from drugrepo_assets.lib.storage import StorageResource

__all__ = [
    "DEFAULT_ENV",
    "ENVIRONMENTS",
    "ENV_VAR",
    "SLACK_TOKEN_VAR",
    "Environment",
    "asset_resources",
    "check_env",
    "current_env",
    "serving_resources",
]

ENV_VAR = "DRUGREPO_ENV"
DEFAULT_ENV = "local"
SLACK_TOKEN_VAR = "SLACK_BOT_TOKEN"


@dataclass(frozen=True)
class Environment:
    """One deployment: its name (a folder of ``deployments/``) and the settings that differ between deployments."""

    name: str
    profile: TrainingProfile
    """How much to train: ``demo`` (a few epochs on a capped subset) locally and in staging, the paper's in prod."""
    min_growth: float
    """Growth of a dataset's valid pairs since its checkpoint that makes `retrain_sensor` retrain it."""

    @property
    def deployed(self) -> bool:
        """Whether it runs on the cluster (settings and secrets through `EnvVar`) rather than on a laptop."""
        return self.name != DEFAULT_ENV


ENVIRONMENTS: dict[str, Environment] = {
    env.name: env
    for env in (
        Environment("local", DEMO_PROFILE, min_growth=0.10),
        Environment("staging", DEMO_PROFILE, min_growth=0.10),
        Environment("prod", FULL_PROFILE, min_growth=0.20),
    )
}
"""Every deployment by name; each has its folder ``deployments/<name>``."""


def check_env(env: str) -> Environment:
    """The environment named ``env``; a `ValueError` naming `ENV_VAR` and the known names when there is none."""
    if env not in ENVIRONMENTS:
        known = ", ".join(sorted(ENVIRONMENTS))
        raise ValueError(f"{ENV_VAR}={env!r} is not a known environment (known: {known})")
    return ENVIRONMENTS[env]


def current_env(environ: Mapping[str, str] = os.environ) -> str:
    """The name of the deployment this process runs in: `ENV_VAR`, `DEFAULT_ENV` when unset; checked."""
    return check_env(environ.get(ENV_VAR, DEFAULT_ENV)).name


def asset_resources(env: str, base: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """Every resource of the asset code location in ``env``.

    ``base`` (local only) puts every file under that folder instead of the instance's (tests); ``overrides``
    replace resources by key, and only known keys, so that a test changes a few entries of the real set.
    """
    environment = _environment(env, base)
    resources = {
        **(_deployed_assets() if environment.deployed else _local_assets(base)),
        "split_settings": SplitSettings(seed=0),
        "training_profile": environment.profile,
        "retrain_policy": RetrainPolicy(min_growth=environment.min_growth),
    }
    return _replaced(resources, overrides)


def serving_resources(env: str, base: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """Every resource of the serving code location in ``env``: the asset location's storage and MLflow store.

    ``base`` and ``overrides`` as `asset_resources`'s; deployed, a challenger is promoted only on shadow traffic.
    """
    environment = _environment(env, base)
    if environment.deployed:
        resources = {
            **_deployed_shared(),
            "challenger_settings": ChallengerSettings(require_online=True),
            "drift_settings": DriftSettings(request_log_dir=EnvVar("DRUGREPO_REQUEST_LOG_DIR")),
        }
    else:
        resources = {
            **_local_shared(base),
            "challenger_settings": ChallengerSettings(),
            "drift_settings": DriftSettings(request_log_dir=_under(base, "serving", "requests")),
        }
    return _replaced({**resources, "registry_settings": RegistrySettings()}, overrides)


def _environment(env: str, base: Path | None) -> Environment:
    """The checked environment; ``base`` is a local folder, so only the local environment takes one."""
    environment = check_env(env)
    if base is not None and environment.deployed:
        raise ValueError(f"base={str(base)!r} is for the local environment only, not {env!r}")
    return environment


def _deployed_shared() -> dict[str, Any]:
    """The storage (tables, records, files) and MLflow tracking of both locations when deployed: settings."""
    storage = EnvVar("DRUGREPO_STORAGE_URI")
    return {
        "io_manager": ParquetIOManager(base_path=storage),
        "json_io_manager": JsonIOManager(base_path=storage),
        "storage": StorageResource(base_path=storage),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=EnvVar("MLFLOW_TRACKING_URI"), dagster_url=EnvVar("DAGSTER_WEBSERVER_URL")
        ),
    }


def _local_shared(base: Path | None) -> dict[str, Any]:
    """The storage and MLflow tracking of both locations on a laptop: under the instance's folder, or ``base``."""
    storage = _under(base, "storage")
    return {
        "io_manager": ParquetIOManager(base_path=storage),
        "json_io_manager": JsonIOManager(base_path=storage),
        "storage": StorageResource(base_path=storage),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=_sqlite(base, "mlflow.db"), artifact_location=_under(base, "mlflow-artifacts")
        ),
    }


def _deployed_assets() -> dict[str, Any]:
    """The asset location's resources that a deployment sets: new data lands where `raw_pairs` reads."""
    return {
        **_deployed_shared(),
        "data_source": DataSourceResource(root=EnvVar("DRUGREPO_SOURCE_ROOT")),
        "hpo_settings": HpoSettings(storage_url=EnvVar("DRUGREPO_OPTUNA_STORAGE")),
        "screening": ScreeningSettings(shard_size=500_000, device="cuda"),
        "landing": LandingZone(root=EnvVar("DRUGREPO_SOURCE_ROOT")),
        "slack": SlackNotifier(
            token=EnvVar(SLACK_TOKEN_VAR),
            channel=EnvVar("DRUGREPO_SLACK_CHANNEL"),
            dagster_url=EnvVar("DAGSTER_WEBSERVER_URL"),
        ),
    }


def _local_assets(base: Path | None) -> dict[str, Any]:
    """The asset location's resources on a laptop: the bundled data, SQLite stores, Slack only with a token."""
    return {
        **_local_shared(base),
        "data_source": DataSourceResource(root="bundled"),
        "hpo_settings": HpoSettings(storage_url=_sqlite(base, "optuna.db")),
        "screening": ScreeningSettings(),
        "landing": LandingZone(root=_under(base, "landing")),
        "slack": SlackNotifier(token=EnvVar(SLACK_TOKEN_VAR) if SLACK_TOKEN_VAR in os.environ else None),
    }


def _under(base: Path | None, *parts: str) -> str | None:
    """A path under ``base``; ``None`` (the resource's default under the instance's folder) without one."""
    return str(base.joinpath(*parts)) if base is not None else None


def _sqlite(base: Path | None, name: str) -> str | None:
    """A SQLite store ``name`` in ``base``; ``None`` (the resource's own under the instance's folder) without one."""
    return f"sqlite:///{base / name}" if base is not None else None


def _replaced(resources: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``resources`` with ``overrides`` in place; a key the location does not have is a `ValueError` (a typo)."""
    unknown = sorted(set(overrides) - set(resources))
    if unknown:
        raise ValueError(
            f"not a resource of this location: {', '.join(unknown)} (known: {', '.join(sorted(resources))})"
        )
    return {**resources, **overrides}
