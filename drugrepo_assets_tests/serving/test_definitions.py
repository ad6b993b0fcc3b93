"""The serving code location loads beside the asset location and declares its cross-location deps."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, AssetMaterialization, DefaultScheduleStatus, build_schedule_context, instance_for_test

from drugrepo_assets.definitions import defs as asset_defs
from drugrepo_assets.lib.environments import ENVIRONMENTS, serving_resources
from drugrepo_assets.lib.schedules import CHALLENGER_CRON_VAR
from drugrepo_assets.serving.definitions import build_defs
from drugrepo_assets.serving.definitions import defs as serving_defs
from drugrepo_assets_tests.test_deployments import read_env_file

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = {"drugban_checkpoint", "model_evaluation", "dataset_splits", "validated_pairs"}


def test_serving_assets_depend_on_the_training_locations_assets_with_the_same_partitions() -> None:
    training = asset_defs.resolve_asset_graph()
    serving = serving_defs.resolve_asset_graph()
    for name in UPSTREAM:
        key = AssetKey(name)
        assert serving.get(key).is_external and not serving.get(key).is_materializable
        assert training.get(key).is_materializable
        assert serving.get(key).partitions_def == training.get(key).partitions_def
    assert serving.get(AssetKey("registered_model")).parent_keys == {
        AssetKey("drugban_checkpoint"),
        AssetKey("model_evaluation"),
    }
    assert serving.get(AssetKey("drift_report")).parent_keys == {
        AssetKey("drugban_checkpoint"),
        AssetKey("dataset_splits"),
        AssetKey("validated_pairs"),
    }
    assert serving.get(AssetKey("champion_challenger")).parent_keys == {
        AssetKey("registered_model"),
        AssetKey("dataset_splits"),
    }
    assert {c.name for c in serving.get(AssetKey("drift_report")).check_keys} == {"drift_report_no_drift"}
    assert set(ENVIRONMENTS) == {"local", "staging", "prod"}


def test_the_comparison_runs_apart_from_registration() -> None:
    """A challenger registered by serving_job is judged later, by challenger_job, once traffic has reached it."""
    jobs = {name: serving_defs.resolve_job_def(name) for name in ("serving_job", "challenger_job")}
    selected = {name: {k.to_user_string() for k in job.asset_layer.selected_asset_keys} for name, job in jobs.items()}
    assert selected == {"serving_job": {"registered_model", "drift_report"}, "challenger_job": {"champion_challenger"}}


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_challenger_schedule_of_each_environment(env: str) -> None:
    """The cron of deployments/<env>/drugrepo.env, stopped locally; a tick compares every registered dataset;
    deployed, a challenger needs shadow traffic before it can be promoted."""
    cron = read_env_file(REPO / "deployments" / env / "drugrepo.env")[CHALLENGER_CRON_VAR]
    env_defs = build_defs(env, challenger_cron=cron)
    schedule = env_defs.resolve_schedule_def("challenger_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (cron, "UTC", "challenger_job")
    running = DefaultScheduleStatus.RUNNING if env in ("staging", "prod") else DefaultScheduleStatus.STOPPED
    assert schedule.default_status == running
    assert serving_resources(env)["challenger_settings"].require_online is (env != "local")
    tick = datetime(2025, 3, 2, 6, 0, tzinfo=UTC)
    with instance_for_test() as instance:
        with build_schedule_context(instance, tick, repository_def=env_defs.get_repository_def()) as context:
            assert schedule.evaluate_tick(context).skip_message == "no dataset has a registered model yet"
        for dataset in ("human", "biosnap"):
            instance.report_runless_asset_event(AssetMaterialization("registered_model", partition=dataset))
        with build_schedule_context(instance, tick, repository_def=env_defs.get_repository_def()) as context:
            requests = schedule.evaluate_tick(context).run_requests or []
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("biosnap", f"challenger:biosnap:{tick.isoformat()}"),
        ("human", f"challenger:human:{tick.isoformat()}"),
    ]


def test_workspace_names_both_code_locations() -> None:
    """workspace.yaml loads both modules; that both load and validate there, in every environment, is
    test_deployments.test_dagster_definitions_validate_passes (its local case: the laptop defaults)."""
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    modules = {entry["python_module"]["module_name"] for entry in workspace["load_from"]}
    assert modules == {"drugrepo_assets.definitions", "drugrepo_assets.serving.definitions"}
