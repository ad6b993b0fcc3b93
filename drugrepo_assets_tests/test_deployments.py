"""The environments of deployments/: instance configs, settings, secrets, and a run on real PostgreSQL.

The staging instance (PostgreSQL storage, K8sRunLauncher, S3 compute logs, gpu pool) runs a real
materialisation against a throwaway PostgreSQL server and moto's S3 server; `dagster definitions
validate` passes for every environment with its settings and dummy secrets.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    EnvVar,
    asset,
    materialize,
)
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_k8s import K8sRunLauncher
from dagster_postgres.utils import pg_config

from drugrepo_assets.defs.ingest.raw import raw_pairs
from drugrepo_assets.defs.ingest.splits import dataset_splits
from drugrepo_assets.defs.ingest.validated import validated_and_rejected_pairs
from drugrepo_assets.lib.environments import asset_resources
from drugrepo_assets.lib.io_managers import ParquetIOManager
from drugrepo_assets.lib.k8s import GPU_IMAGE_ENV, GPU_POOL
from drugrepo_assets.lib.resources import DataSourceResource, SplitSettings
from drugrepo_assets_tests.data.servers import S3Bucket, moto_endpoint, s3_bucket
from drugrepo_assets_tests.postgres import Postgres, postgres_server
from drugrepo_assets_tests.samples import OFFLINE_KUBECONFIG, write_sample_source

pytestmark = pytest.mark.slow(50)

__all__ = ["moto_endpoint", "postgres_server", "s3_bucket"]

REPO = Path(__file__).resolve().parents[1]
DEPLOYMENTS = REPO / "deployments"
ENVS = ("local", "staging", "prod")
DEPLOYED = ("staging", "prod")


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a dotenv-style file (comments and blank lines skipped)."""
    pairs = [line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


def _instance_yaml(env: str) -> dict[str, Any]:
    return yaml.safe_load((DEPLOYMENTS / env / "dagster.yaml").read_text())


def _env_vars_of(value: Any) -> set[str]:
    """Names of the `EnvVar`s inside a resource's configuration (nested resources and containers too)."""
    if isinstance(value, EnvVar):
        return {value.env_var_name}
    if isinstance(value, dict):
        return set().union(*(_env_vars_of(v) for v in value.values())) if value else set()
    if isinstance(value, (list, tuple)):
        return set().union(*(_env_vars_of(v) for v in value)) if value else set()
    fields = getattr(type(value), "model_fields", None)
    if fields is None:
        return set()
    return set().union(set(), *(_env_vars_of(getattr(value, name)) for name in fields))


@pytest.mark.parametrize("env", DEPLOYED)
def test_deployed_instance_configs_are_valid(env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.setenv(name, "dummy")
    monkeypatch.setenv("DAGSTER_PG_PORT", "5432")
    (tmp_path / "dagster.yaml").write_text((DEPLOYMENTS / env / "dagster.yaml").read_text())
    config, _ = dagster_instance_config(str(tmp_path))
    assert set(config["storage"]) == {"postgres"}
    for section, cls in (("run_launcher", K8sRunLauncher), ("compute_logs", S3ComputeLogManager)):
        assert getattr(importlib.import_module(config[section]["module"]), config[section]["class"]) is cls
        result = process_config(cls.config_type(), config[section]["config"])
        assert result.success, result.errors
    assert process_config(pg_config(), config["storage"]["postgres"]).success
    launcher = config["run_launcher"]["config"]
    assert launcher["env_config_maps"] == ["drugrepo-env"] and launcher["env_secrets"] == ["drugrepo-secrets"]
    assert config["concurrency"]["pools"]["default_limit"] >= 1
    assert config["telemetry"] == {"enabled": False}


@pytest.mark.parametrize("env", ENVS)
def test_every_env_var_a_resource_reads_is_a_setting_or_a_secret(env: str) -> None:
    settings = read_env_file(DEPLOYMENTS / env / "drugrepo.env")
    secrets = read_env_file(DEPLOYMENTS / "secrets.example.env")
    assert settings["DRUGREPO_ENV"] == env
    assert all(value == "" for value in secrets.values()), "secrets.example.env holds names only"
    assert not set(settings) & set(secrets)
    needed = set().union(*(_env_vars_of(resource) for resource in asset_resources(env).values()))
    assert needed <= set(settings) | set(secrets), needed - set(settings) - set(secrets)
    if env in DEPLOYED:
        assert {"DRUGREPO_STORAGE_URI", "MLFLOW_TRACKING_URI", "DRUGREPO_SLACK_CHANNEL"} <= set(settings)
        assert settings["DRUGREPO_STORAGE_URI"].startswith("s3://")


def _validate_env(env: str, home: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("DRUGREPO_", "DAGSTER_"))}
    environ |= read_env_file(DEPLOYMENTS / env / "drugrepo.env")
    environ |= {name: f"dummy-{name.lower()}" for name in read_env_file(DEPLOYMENTS / "secrets.example.env")}
    environ["DAGSTER_HOME"] = str(home)
    if env in DEPLOYED:
        environ[GPU_IMAGE_ENV] = "registry.drugrepo.internal/drugrepo/gpu-worker:0.1.0"
    return environ


@pytest.mark.parametrize("env", ENVS)
def test_dagster_definitions_validate_passes(env: str, tmp_path: Path) -> None:
    """Both code locations of workspace.yaml load and validate with the environment's settings and dummy secrets."""
    dagster = Path(sys.executable).parent / "dagster"
    run = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=_validate_env(env, tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Validation successful for code location drugrepo_assets." in out
    assert "Validation successful for code location drugrepo_serving." in out


@asset(pool=GPU_POOL)
def gpu_slot_user() -> None:
    """Claims a slot of the gpu pool, as training steps do."""


def _staging_home(home: Path, server: Postgres, bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A DAGSTER_HOME with the staging instance, pointed at the test PostgreSQL and moto's S3."""
    for name, value in {
        "DAGSTER_PG_HOST": server.host,
        "DAGSTER_PG_PORT": str(server.port),
        "DAGSTER_PG_USERNAME": server.username,
        "DAGSTER_PG_PASSWORD": "unused",
        "DAGSTER_PG_DB": server.db_name,
    }.items():
        monkeypatch.setenv(name, value)
    config = _instance_yaml("staging")
    home.mkdir(parents=True, exist_ok=True)
    kubeconfig = home / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(OFFLINE_KUBECONFIG))
    config["run_launcher"]["config"] |= {"load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    config["compute_logs"]["config"] |= {"bucket": bucket.name, "endpoint_url": bucket.endpoint_url}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def test_a_run_on_the_staging_instance_is_recorded_in_postgresql(
    postgres_server: Postgres, s3_bucket: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _staging_home(tmp_path / "home", postgres_server, s3_bucket, monkeypatch)
    source = write_sample_source(tmp_path / "source", 60)
    resources = {
        "io_manager": ParquetIOManager(base_path=str(tmp_path / "storage")),
        "data_source": DataSourceResource(root=str(source)),
        "split_settings": SplitSettings(seed=0),
    }
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        result = materialize(
            [raw_pairs, validated_and_rejected_pairs, dataset_splits],
            partition_key="human",
            resources=resources,
            instance=instance,
        )
        assert result.success
        assert materialize([gpu_slot_user], instance=instance).success
        run = instance.get_run_by_id(result.run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS
        records = instance.fetch_materializations(AssetKey("dataset_splits"), limit=10).records
        assert [r.event_log_entry.dagster_event.partition for r in records] == ["human"]
        logs = instance.all_logs(result.run_id)
        succeeded = {
            e.step_key for e in logs if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_SUCCESS
        }
        assert succeeded == {"raw_pairs", "validated_and_rejected_pairs", "dataset_splits"}
        assert instance.event_log_storage.get_concurrency_info(GPU_POOL).slot_count == 2
        log_keys = [o["Key"] for o in s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name).get("Contents", [])]
        assert any(key.startswith("dagster/compute-logs/") for key in log_keys), log_keys
    with (
        psycopg2.connect(
            host=postgres_server.host,
            port=postgres_server.port,
            user=postgres_server.username,
            dbname=postgres_server.db_name,
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchone()[0] == len(logs)
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cursor.fetchone()[0] == "SUCCESS"
