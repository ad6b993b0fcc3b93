"""The Kubernetes Jobs that dagster-k8s builds for GPU-tagged and CPU steps, without a cluster.

The run launcher comes from deployments/staging/dagster.yaml, the step handler from the staging
executor of `drugrepo_assets.lib.k8s`, and the Job from dagster-k8s's own `construct_dagster_k8s_job`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from dagster import AssetsDefinition, OpDefinition, asset
from dagster._config import process_config
from dagster._core.definitions.job_base import InMemoryJob
from dagster._core.executor.init import InitExecutorContext
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.test_utils import instance_for_test
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.job import construct_dagster_k8s_job
from kubernetes.client import ApiClient, V1Job

from drugrepo_assets.definitions import all_assets, build_defs
from drugrepo_assets.lib.k8s import (
    CPU_STEP_K8S_CONFIG,
    GPU_IMAGE_ENV,
    GPU_NODE_SELECTOR,
    GPU_OP_TAGS,
    GPU_POOL,
    GPU_TOLERATIONS,
    K8S_CONFIG_TAG,
    executor_for,
    gpu_op_names,
    is_gpu_op,
    k8s_executor_config,
)
from drugrepo_assets_tests.lib.forked_steps import OUT_VAR
from drugrepo_assets_tests.samples import OFFLINE_KUBECONFIG

REPO = Path(__file__).resolve().parents[2]
MATERIALIZE = [sys.executable, "-m", "dagster", "asset", "materialize", "-m"]
LOCATION_IMAGE = "registry.drugrepo.internal/drugrepo/assets:0.1.0"
GPU_IMAGE = "registry.drugrepo.internal/drugrepo/gpu-worker:0.1.0"


@asset(op_tags=GPU_OP_TAGS, pool=GPU_POOL)
def train_on_gpu() -> None:
    """Stands for drugban_checkpoint, HPO trials and screening shards."""


@asset
def plain_table() -> None:
    """Stands for every CPU asset."""


@pytest.fixture
def step_handler(tmp_path: Path) -> Iterator[Any]:
    """The staging step handler: its executor config processed by dagster, its run launcher from the instance yaml."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(OFFLINE_KUBECONFIG))
    launcher = yaml.safe_load((REPO / "deployments" / "staging" / "dagster.yaml").read_text())["run_launcher"]
    launcher["config"] |= {"load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    with instance_for_test(overrides={"run_launcher": launcher}) as instance:
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        config = process_config(
            k8s_job_executor.config_schema.config_type,
            k8s_executor_config(GPU_IMAGE, ["train_on_gpu", *gpu_op_names(all_assets)]),
        )
        assert config.success, config.errors
        executor = k8s_job_executor.executor_creation_fn(
            InitExecutorContext(
                job=InMemoryJob(build_defs("local").resolve_job_def("materialize_all_job")),
                executor_def=k8s_job_executor,
                executor_config=config.value,
                instance=instance,
            )
        )
        yield executor._step_handler, instance


def _step_job(
    handler: Any, instance: Any, op: AssetsDefinition | OpDefinition, step_key: str = ""
) -> tuple[dict[str, Any], str]:
    """The Job dagster-k8s would create for ``op``'s step (``step_key``: its key in a graph), as JSON, and its namespace."""
    op_def = op.op if isinstance(op, AssetsDefinition) else op
    run = DagsterRun(job_name="materialize_all_job", run_id="0" * 36)
    step_key = step_key or op_def.name
    context = SimpleNamespace(
        execute_step_args=SimpleNamespace(step_keys_to_execute=[step_key]),
        dagster_run=run,
        instance=instance,
        step_tags={step_key: op_def.tags},
        get_step_context=lambda key: SimpleNamespace(step=SimpleNamespace(op_name=op_def.name)),
    )
    container_context = handler._get_container_context(context)
    job_config = container_context.get_k8s_job_config(None, instance.run_launcher)
    if not job_config.job_image:
        job_config = job_config.with_image(LOCATION_IMAGE)
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=["dagster", "api", "execute_step"],
        job_name=f"dagster-step-{step_key.replace('_', '-')}",
        component="step_worker",
        user_defined_k8s_config=container_context.run_k8s_config,
        labels={"dagster/op": step_key},
    )
    assert isinstance(job, V1Job)
    return ApiClient().sanitize_for_serialization(job), container_context.namespace


def _env_from(container: dict[str, Any]) -> set[tuple[str, str]]:
    return {(kind, source[kind]["name"]) for source in container["envFrom"] for kind in source}


def test_a_gpu_step_gets_a_gpu_on_a_gpu_node_in_the_gpu_image(step_handler: Any) -> None:
    job, namespace = _step_job(*step_handler, train_on_gpu)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert namespace == "drugrepo-staging"
    assert container["image"] == GPU_IMAGE
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
        "limits": {"memory": "24Gi", "nvidia.com/gpu": "1"},
    }
    assert pod["nodeSelector"] == GPU_NODE_SELECTOR
    assert pod["tolerations"] == [
        {"key": t["key"], "operator": t["operator"], "effect": t["effect"]} for t in GPU_TOLERATIONS
    ]
    assert pod["serviceAccountName"] == "dagster"
    assert _env_from(container) == {("configMapRef", "drugrepo-env"), ("secretRef", "drugrepo-secrets")}
    env = {e["name"]: e for e in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql-secret",
        "key": "postgresql-password",
    }
    assert pod["restartPolicy"] == "Never"


def test_a_cpu_step_is_a_plain_pod_on_the_location_image(step_handler: Any) -> None:
    job, namespace = _step_job(*step_handler, plain_table)
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert namespace == "drugrepo-staging"
    assert container["image"] == LOCATION_IMAGE
    assert (
        container["resources"]
        == {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}
        == CPU_STEP_K8S_CONFIG["container_config"]["resources"]
    )
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "nvidia.com/gpu" not in str(container["resources"])
    assert _env_from(container) == {("configMapRef", "drugrepo-env"), ("secretRef", "drugrepo-secrets")}


def _graph_op(asset_name: str, op_name: str) -> OpDefinition:
    (graph_asset,) = [
        a for a in all_assets if isinstance(a, AssetsDefinition) and asset_name in {k.path[-1] for k in a.keys}
    ]
    (op_def,) = [o for o in graph_asset.node_def.iterate_op_defs() if o.name == op_name]
    return op_def


def test_each_screening_tile_step_gets_a_gpu_pod_and_the_merge_a_cpu_pod(step_handler: Any) -> None:
    shard_job, _ = _step_job(
        *step_handler, _graph_op("screening_scores", "score_tile"), "screening_scores.score_tile[shard_3_block_1]"
    )
    pod = shard_job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == GPU_IMAGE
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] == GPU_NODE_SELECTOR
    for name in ("plan_tiles", "merge_tiles"):
        job, _ = _step_job(*step_handler, _graph_op("screening_scores", name), f"screening_scores.{name}")
        cpu_pod = job["spec"]["template"]["spec"]
        [cpu] = cpu_pod["containers"]
        assert cpu["image"] == LOCATION_IMAGE, name
        assert cpu["resources"] == CPU_STEP_K8S_CONFIG["container_config"]["resources"], name
        assert "nvidia.com/gpu" not in str(cpu_pod), name


def test_gpu_ops_are_found_from_their_tags() -> None:
    assert is_gpu_op(train_on_gpu.op.tags) and is_gpu_op(GPU_OP_TAGS)
    assert not is_gpu_op(plain_table.op.tags)
    assert gpu_op_names([train_on_gpu, plain_table]) == ["train_on_gpu"]


def test_every_gpu_op_of_the_location_uses_the_shared_tags_and_the_gpu_pool() -> None:
    for item in all_assets:
        if not isinstance(item, AssetsDefinition):
            continue
        for op in item.node_def.iterate_op_defs():
            if is_gpu_op(op.tags):
                assert op.tags[K8S_CONFIG_TAG] == train_on_gpu.op.tags[K8S_CONFIG_TAG], op.name
                assert op.pool == GPU_POOL, op.name


def test_executors_per_environment() -> None:
    assert executor_for("local", all_assets, {}, "m").name == "multi_or_in_process_executor"
    staging = executor_for("staging", all_assets, {GPU_IMAGE_ENV: GPU_IMAGE}, "m")
    assert staging.name == "k8s"
    config = k8s_executor_config(GPU_IMAGE, gpu_op_names(all_assets))
    assert set(config["per_step_k8s_config"]) == set(gpu_op_names(all_assets))
    assert "per_step_k8s_config" not in k8s_executor_config(None, ["x"])


def test_local_steps_fork_from_a_preloaded_server(tmp_path: Path) -> None:
    """Each step of a local run starts from multiprocessing's fork server (Dagster preloads the job's module there),
    not by spawning a fresh interpreter that imports everything again (a spawned step's parent is the run itself)."""
    (tmp_path / "home").mkdir()
    done = subprocess.run(
        [*MATERIALIZE, "drugrepo_assets_tests.lib.forked_steps", "--select", "*"],
        env={**os.environ, "DAGSTER_HOME": str(tmp_path / "home"), OUT_VAR: str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for step in ("first_step", "second_step"):
        parent, preloaded = (tmp_path / step).read_text().splitlines()
        assert "multiprocessing.forkserver" in parent and preloaded == "preloaded: True", (step, parent, preloaded)
