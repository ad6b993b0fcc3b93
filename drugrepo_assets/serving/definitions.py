"""`defs` of the serving code location: the registered model, the champion/challenger comparison and the
drift report, downstream (across locations) of the training location's checkpoint, evaluation, splits
and valid pairs.

The assets and jobs are found in `drugrepo_assets.serving.defs`; this module adds the environment's
resources (``DRUGREPO_ENV``, `environments.serving_resources`): the same storage and MLflow store the
asset location writes; in staging/prod a challenger is promoted only on shadow traffic
(``require_online``). ``DRUGREPO_CHALLENGER_CRON`` times the comparison's schedule (`drugrepo_assets.lib.schedules`).
"""

from __future__ import annotations

import os

from dagster import Definitions

import drugrepo_assets.serving.defs
from drugrepo_assets.lib.defs_loader import load_defs_package
from drugrepo_assets.lib.environments import current_env, serving_resources
from drugrepo_assets.lib.schedules import CHALLENGER_CRON_VAR, DEFAULT_CHALLENGER_CRON, challenger_schedule
from drugrepo_assets.serving.defs.jobs import challenger_job


def build_defs(env: str, challenger_cron: str | None = None) -> Definitions:
    """The serving location's definitions for one environment (``local``, ``staging`` or ``prod``);
    ``challenger_cron`` times the comparison's schedule (default `DEFAULT_CHALLENGER_CRON`)."""
    resources = serving_resources(env)
    policies = Definitions(
        schedules=[challenger_schedule(env, challenger_job, challenger_cron or DEFAULT_CHALLENGER_CRON)],
        resources=resources,
    )
    return Definitions.merge(load_defs_package(drugrepo_assets.serving.defs), policies)


defs = build_defs(current_env(), os.environ.get(CHALLENGER_CRON_VAR))
