"""`defs` of the asset code location, for the deployment `drugrepo_assets.lib.environments` names (``DRUGREPO_ENV``).

Every asset, check, job and sensor is found in `drugrepo_assets.defs` (one folder per stage, see `load_defs_package`);
this module adds what holds for the whole location in one environment. The resources are that
environment's (`environments.asset_resources`), with ``DRUGREPO_GPU_IMAGE`` in staging/prod (the image of
the GPU step pods, see `drugrepo_assets.lib.k8s`). ``DRUGREPO_TRAINING_PROFILE`` (``demo``, ``full`` or
``tiny``) overrides the environment's training profile, e.g. ``tiny`` for the end-to-end UI test;
``DRUGREPO_EXECUTOR=in_process`` (local only) runs each run's steps in one process instead of a process per
step (the UI test: no per-step imports of torch and RDKit). ``DRUGREPO_RETRAIN_CRON`` (a setting of each
environment's drugrepo.env) times the retraining schedule (`drugrepo_assets.defs.automation.schedules`).
"""

from __future__ import annotations

import os
from typing import Any

from dagster import (
    AssetChecksDefinition,
    AssetsDefinition,
    Definitions,
    ExecutorDefinition,
    in_process_executor,
)

import drugrepo_assets.defs
from drugrepo_assets.defs.automation.schedules import retrain_schedule
from drugrepo_assets.lib.defs_loader import load_defs_package
from drugrepo_assets.lib.environments import ENV_VAR, asset_resources, current_env
from drugrepo_assets.lib.k8s import executor_for
from drugrepo_assets.lib.resources import PROFILES, TINY_PROFILE, ScreeningSettings
from drugrepo_assets.lib.schedules import DEFAULT_RETRAIN_CRON, RETRAIN_CRON_VAR

__all__ = [
    "all_asset_checks",
    "all_assets",
    "build_defs",
    "defs",
]

SMOKE_SCREENING = ScreeningSettings(max_library=200)
"""Screening settings of smoke tests: 200 molecules × the default targets."""

PROFILE_VAR = "DRUGREPO_TRAINING_PROFILE"
EXECUTOR_VAR = "DRUGREPO_EXECUTOR"


all_assets = [a for a in load_defs_package(drugrepo_assets.defs).assets or [] if isinstance(a, AssetsDefinition)]
"""The location's assets (no checks), for `materialize` in tests and benchmarks."""
all_asset_checks = [
    c for c in load_defs_package(drugrepo_assets.defs).asset_checks or [] if isinstance(c, AssetChecksDefinition)
]
"""The location's asset checks."""


def _executor(env: str, executor: str | None) -> ExecutorDefinition:
    """The environment's executor, or the in-process one when asked for locally."""
    if not executor:
        return executor_for(env, all_assets, os.environ, __name__)
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
    policies = Definitions(
        schedules=[retrain_schedule(env, retrain_cron or DEFAULT_RETRAIN_CRON)],
        resources=resources,
        executor=_executor(env, executor),
    )
    return Definitions.merge(load_defs_package(drugrepo_assets.defs), policies)


defs = build_defs(
    current_env(),
    os.environ.get(PROFILE_VAR),
    os.environ.get(EXECUTOR_VAR),
    os.environ.get(RETRAIN_CRON_VAR),
)
