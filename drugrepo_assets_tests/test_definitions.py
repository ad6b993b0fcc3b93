"""The code location loads in every environment and exposes exactly the expected graph."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    DefaultScheduleStatus,
    Definitions,
    build_schedule_context,
    instance_for_test,
)

from drugrepo_assets.data.sources import DATASETS
from drugrepo_assets.definitions import build_defs, defs
from drugrepo_assets.defs.automation.sensors import RETRAIN_REASON_TAG, retrain_decision
from drugrepo_assets.lib.environments import ENVIRONMENTS, asset_resources
from drugrepo_assets.lib.schedules import RETRAIN_CRON_VAR
from drugrepo_assets_tests.test_deployments import read_env_file

REPO = Path(__file__).resolve().parents[1]

EXPECTED_GROUPS = {
    "raw_pairs": "ingest",
    "validated_pairs": "validation",
    "rejected_pairs": "validation",
    "dataset_splits": "splits",
    "drug_graphs": "features",
    "protein_encodings": "features",
    "drugban_checkpoint": "training",
    "model_evaluation": "training",
    "hpo_study": "training",
    "screening_library": "screening",
    "screening_library_rejected": "screening",
    "screening_targets": "screening",
    "screening_targets_rejected": "screening",
    "screening_scores": "screening",
    "repurposing_candidates": "screening",
    "screening_enrichment": "screening",
}
UNPARTITIONED = {"screening_library", "screening_library_rejected", "screening_targets", "screening_targets_rejected"}
"""The screening inputs are shared by every dataset's checkpoint (the library spans all datasets)."""
EXPECTED_CHECKS = {
    ("validated_pairs", "validated_pairs_expectations"),
    ("validated_pairs", "rows_accounted_for"),
    ("dataset_splits", "splits_disjoint"),
    ("drugban_checkpoint", "drugban_checkpoint_losses_finite"),
    ("drugban_checkpoint", "drugban_checkpoint_reproduces"),
    ("model_evaluation", "model_evaluation_auroc_floor"),
}
EXPECTED_RESOURCES = {
    "io_manager",
    "json_io_manager",
    "data_source",
    "split_settings",
    "training_profile",
    "storage",
    "mlflow_tracking",
    "hpo_settings",
    "screening",
    "landing",
    "retrain_policy",
    "slack",
}
PROFILE_BY_ENV = {"local": "demo", "staging": "demo", "prod": "full"}


def test_assets_groups_and_partitions_snapshot() -> None:
    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    assert {name: spec.group_name for name, spec in specs.items()} == EXPECTED_GROUPS
    for name, spec in specs.items():
        if name in UNPARTITIONED:
            assert spec.partitions_def is None, name
        else:
            assert spec.partitions_def is not None and spec.partitions_def.get_partition_keys() == list(DATASETS), name


def test_checks_snapshot() -> None:
    graph = defs.resolve_asset_graph()
    assert {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys} == EXPECTED_CHECKS
    for key in graph.asset_check_keys:
        node = graph.get(key)
        assert node.blocking, key
        assert node.partitions_def is not None and node.partitions_def.get_partition_keys() == list(DATASETS)


def test_materialize_all_job_covers_every_asset_and_check_per_dataset() -> None:
    job = defs.resolve_job_def("materialize_all_job")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys() == list(DATASETS)
    screening = {name for name, group in EXPECTED_GROUPS.items() if group == "screening"}
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == set(EXPECTED_GROUPS) - {
        "hpo_study"
    } - screening
    check_keys = {AssetCheckKey(AssetKey(asset), name) for asset, name in EXPECTED_CHECKS}
    assert check_keys <= set(job.asset_layer.asset_graph.asset_check_keys)


def test_screening_jobs_split_the_shared_inputs_from_the_per_dataset_scores() -> None:
    inputs = defs.resolve_job_def("screening_inputs_job")
    assert inputs.partitions_def is None
    assert {k.to_user_string() for k in inputs.asset_layer.selected_asset_keys} == UNPARTITIONED
    scores = defs.resolve_job_def("screening_job")
    assert scores.partitions_def is not None and scores.partitions_def.get_partition_keys() == list(DATASETS)
    assert {k.to_user_string() for k in scores.asset_layer.selected_asset_keys} == {
        "screening_scores",
        "repurposing_candidates",
        "screening_enrichment",
    }


def test_hpo_job_runs_only_the_study() -> None:
    job = defs.resolve_job_def("hpo_job")
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"hpo_study"}


def _gpu_tags(tags: dict) -> dict:
    """The k8s config tag (Dagster stores non-string tag values as JSON)."""
    return json.loads(tags["dagster-k8s/config"])


def test_training_and_trials_ask_for_a_gpu_pod_and_the_gpu_pool() -> None:
    graph = defs.resolve_asset_graph()
    checkpoint_op = graph.get(AssetKey("drugban_checkpoint")).assets_def.op
    trial_op = graph.get(AssetKey("hpo_study")).assets_def.node_def.node_named("hpo_trial").definition
    for node in (checkpoint_op, trial_op):
        k8s = _gpu_tags(node.tags)
        assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
        assert k8s["pod_spec_config"]["node_selector"] and k8s["pod_spec_config"]["tolerations"]
        assert node.pool == "gpu"
    evaluation_op = graph.get(AssetKey("model_evaluation")).assets_def.op
    assert "dagster-k8s/config" not in evaluation_op.tags


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_every_environment_loads(env: str) -> None:
    assert set(asset_resources(env)) == EXPECTED_RESOURCES
    assert asset_resources(env)["training_profile"].name == PROFILE_BY_ENV[env]
    env_defs = build_defs(env)
    assert isinstance(env_defs, Definitions)
    assert {key.to_user_string() for key in env_defs.resolve_all_asset_keys()} == set(EXPECTED_GROUPS)
    env_defs.resolve_job_def("materialize_all_job")
    env_defs.resolve_job_def("hpo_job")


def test_unknown_environment_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="DRUGREPO_ENV='qa' is not a known environment"):
        build_defs("qa")


def test_instance_yaml_files_agree_and_disable_telemetry() -> None:
    root = (REPO / "dagster.yaml").read_text()
    assert (REPO / "deployments" / "local" / "dagster.yaml").read_text() == root
    assert yaml.safe_load(root)["telemetry"] == {"enabled": False}
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    assert workspace == {
        "load_from": [
            {"python_module": {"module_name": "drugrepo_assets.definitions", "location_name": "drugrepo_assets"}},
            {
                "python_module": {
                    "module_name": "drugrepo_assets.serving.definitions",
                    "location_name": "drugrepo_serving",
                }
            },
        ]
    }


TICK = datetime(2025, 3, 2, 3, 0, tzinfo=UTC)
"""A fixed scheduled time for the schedule tests."""
FEATURES = ("dataset_splits", "drug_graphs", "protein_encodings")


def _materialized(instance: DagsterInstance, dataset: str, *assets: str, rows: int | None = None) -> None:
    """Record materialisations of ``assets`` for ``dataset`` on the instance, in order (``rows`` as the row count)."""
    for asset in assets:
        metadata = {"dagster/row_count": rows} if rows is not None else {}
        instance.report_runless_asset_event(AssetMaterialization(asset, partition=dataset, metadata=metadata))


@pytest.mark.parametrize("env", sorted(ENVIRONMENTS))
def test_retraining_schedule_of_each_environment(env: str) -> None:
    """The cron of deployments/<env>/drugrepo.env, stopped locally and running when deployed; at a tick it
    retrains the partitions whose valid pairs changed since their checkpoint, even below the sensor's growth."""
    cron = read_env_file(REPO / "deployments" / env / "drugrepo.env")[RETRAIN_CRON_VAR]
    env_defs = build_defs(env, retrain_cron=cron)
    schedule = env_defs.resolve_schedule_def("retrain_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone, schedule.job_name) == (cron, "UTC", "retrain_job")
    running = DefaultScheduleStatus.RUNNING if env in ("staging", "prod") else DefaultScheduleStatus.STOPPED
    assert schedule.default_status == running
    policy = asset_resources(env)["retrain_policy"]
    with instance_for_test() as instance:
        _materialized(instance, "human", "validated_pairs", rows=1000)
        _materialized(instance, "human", *FEATURES, "drugban_checkpoint")
        _materialized(instance, "human", "validated_pairs", rows=1050)
        _materialized(instance, "human", *FEATURES)
        _materialized(instance, "biosnap", "validated_pairs", rows=500)
        _materialized(instance, "biosnap", *FEATURES, "drugban_checkpoint")
        _materialized(instance, "bindingdb", "validated_pairs", rows=800)
        _materialized(instance, "bindingdb", *FEATURES)
        repository = env_defs.get_repository_def()
        with build_schedule_context(instance, TICK, {"retrain_policy": policy}, repository) as context:
            result = schedule.evaluate_tick(context)
        assert not retrain_decision(instance, "human", policy).retrain  # +5 % is below the sensor's threshold
    (request,) = result.run_requests or []
    assert request.partition_key == "human"
    assert request.run_key == f"scheduled-retrain:human:{TICK.isoformat()}"
    assert request.tags[RETRAIN_REASON_TAG].startswith(f"schedule {cron}: valid rows 1000 → 1050 (+5.0%)")


def test_retraining_schedule_skips_when_no_partition_changed() -> None:
    prod = build_defs("prod")
    schedule = prod.resolve_schedule_def("retrain_schedule")
    with instance_for_test() as instance:
        _materialized(instance, "human", "validated_pairs", rows=1000)
        _materialized(instance, "human", *FEATURES, "drugban_checkpoint")
        policy = asset_resources("prod")["retrain_policy"]
        with build_schedule_context(instance, TICK, {"retrain_policy": policy}, prod.get_repository_def()) as context:
            result = schedule.evaluate_tick(context)
    assert not result.run_requests
    assert isinstance(result.skip_message, str)
    assert "human: checkpoint is newer than validated_pairs" in result.skip_message
    assert "bindingdb: no validated_pairs yet" in result.skip_message


def test_a_bad_retrain_cron_is_an_error_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="DRUGREPO_RETRAIN_CRON='every sunday' is not a cron expression"):
        build_defs("local", retrain_cron="every sunday")
