"""Shared set-up of the sensor and Slack tests: the real code location over a temporary instance.

Everything (instance, landing folder, storage, MLflow, Optuna) lives under one tmp folder; runs are
executed in process exactly as the sensors and the automation sensor request them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagster import (
    AssetKey,
    DagsterInstance,
    Definitions,
    ExecuteInProcessResult,
    RunRequest,
    SensorResult,
    build_sensor_context,
    evaluate_automation_conditions,
)

from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.defs.automation.automation import automation_sensor
from drugrepo_assets.defs.automation.jobs import hpo_job, ingest_job, materialize_all_job, retrain_job
from drugrepo_assets.defs.automation.notifications import slack_on_materialization, slack_on_run_failure
from drugrepo_assets.defs.automation.sensors import landing_sensor, retrain_sensor
from drugrepo_assets.lib.automation_resources import LandingZone, RetrainPolicy, SlackNotifier
from drugrepo_assets_tests.defs.training.training_setup import resources as training_resources

REFRESHED = ("validated_pairs", "rejected_pairs", "dataset_splits", "drug_graphs", "protein_encodings")


@dataclass
class Location:
    """The code location's definitions over ``base`` with its landing folder and a temp instance."""

    base: Path
    instance: DagsterInstance
    defs: Definitions
    landing: Path
    automation_cursor: Any | None = None
    landing_cursor: str | None = None

    def sensor_resources(self) -> dict[str, Any]:
        """The resources the sensors take, as the location configures them."""
        resources = self.defs.resources
        return {name: resources[name] for name in ("landing", "retrain_policy", "slack")}

    def tick(self, sensor: Any, cursor: str | None) -> SensorResult:
        """Evaluate one tick of ``sensor`` against the instance."""
        with build_sensor_context(instance=self.instance, cursor=cursor, resources=self.sensor_resources()) as ctx:
            return sensor(ctx)

    def execute(self, request: RunRequest, job_name: str) -> ExecuteInProcessResult:
        """Execute a sensor's run request (partition, run config, tags) as its run would."""
        return self.defs.resolve_job_def(job_name).execute_in_process(
            run_config=request.run_config,
            instance=self.instance,
            partition_key=request.partition_key,
            tags=dict(request.tags),
            raise_on_error=False,
        )

    def automate(self) -> dict[str, set[str]]:
        """A tick of the automation sensor, its runs executed, and the next tick; requested partitions by asset."""
        result = evaluate_automation_conditions(self.defs, self.instance, cursor=self.automation_cursor)
        self.automation_cursor = result.cursor
        requested = {
            key.to_user_string(): {p for p in result.get_requested_partitions(key) if p}
            for key in self.defs.resolve_asset_graph().materializable_asset_keys
            if result.get_requested_partitions(key)
        }
        by_partition: dict[str, list[AssetKey]] = {}
        for name, partitions in requested.items():
            for partition in partitions:
                by_partition.setdefault(partition, []).append(AssetKey(name))
        job = self.defs.resolve_implicit_global_asset_job_def()
        for partition, keys in sorted(by_partition.items()):
            run = job.execute_in_process(instance=self.instance, partition_key=partition, asset_selection=keys)
            assert run.success
        if requested:
            follow_up = evaluate_automation_conditions(self.defs, self.instance, cursor=self.automation_cursor)
            assert follow_up.total_requested == 0, "the next tick sees the refresh done"
            self.automation_cursor = follow_up.cursor
        return requested


def location(base: Path, slack: SlackNotifier | None = None, min_growth: float = 0.10) -> Location:
    """The location's assets, checks, jobs and sensors with every file under ``base``."""
    landing = base / "landing"
    landing.mkdir(parents=True, exist_ok=True)
    (base / "home").mkdir(parents=True, exist_ok=True)
    instance = DagsterInstance.local_temp(str(base / "home"))
    resources = training_resources(base, base / "unused-source") | {
        "landing": LandingZone(root=str(landing)),
        "retrain_policy": RetrainPolicy(min_growth=min_growth, train_when_missing=True),
        "slack": slack or SlackNotifier(),
    }
    defs = Definitions(
        assets=all_assets,
        asset_checks=all_asset_checks,
        jobs=[materialize_all_job, hpo_job, ingest_job, retrain_job],
        sensors=[landing_sensor, retrain_sensor, automation_sensor, slack_on_materialization, slack_on_run_failure],
        resources=resources,
    )
    return Location(base, instance, defs, landing)
