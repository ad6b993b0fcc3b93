"""Kubernetes settings of the deployed environments: GPU op tags, CPU step pods and the executors.

Each step of a staging/prod run is its own Kubernetes Job (`k8s_job_executor`). Steps run on plain
CPU pods (`CPU_STEP_K8S_CONFIG`) unless their op carries `GPU_OP_TAGS` (training, HPO trials,
screening shards), which ask for one ``nvidia.com/gpu`` on a GPU node. dagster-k8s merges, in this
order: the run launcher's config, the executor's ``step_k8s_config``, the op's tags, then
``per_step_k8s_config`` (used here only to run GPU steps on the GPU image). Across runs the GPU
steps also share the concurrency pool `GPU_POOL`, limited in the instance config.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from dagster import AssetsDefinition, ExecutorDefinition, multi_or_in_process_executor
from dagster_k8s import k8s_job_executor

K8S_CONFIG_TAG = "dagster-k8s/config"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_POOL = "gpu"
"""Concurrency pool of every GPU step; its limit is ``concurrency.pools.default_limit`` of the instance."""

GPU_NODE_SELECTOR: dict[str, str] = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS: list[dict[str, str]] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]

GPU_OP_TAGS: dict[str, Any] = {
    K8S_CONFIG_TAG: {
        "container_config": {
            "resources": {
                "requests": {"cpu": "4", "memory": "16Gi", GPU_RESOURCE: "1"},
                "limits": {"memory": "24Gi", GPU_RESOURCE: "1"},
            }
        },
        "pod_spec_config": {"node_selector": GPU_NODE_SELECTOR, "tolerations": GPU_TOLERATIONS},
    }
}
"""Op tags giving a step its own pod with one GPU, on a GPU node (run-level tags do not reach step pods)."""

CPU_STEP_K8S_CONFIG: dict[str, Any] = {
    "container_config": {"resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}}}
}
"""Every step pod's default container: a plain CPU pod, no node selector or toleration."""

GPU_IMAGE_ENV = "DRUGREPO_GPU_IMAGE"
"""Environment variable (staging/prod) naming the GPU worker image that GPU steps run on."""

MAX_CONCURRENT_STEPS = 8
"""Step pods of one run at a time (the GPU pool limits GPU steps across runs)."""


def is_gpu_op(tags: Mapping[str, Any]) -> bool:
    """True when op tags ask dagster-k8s for a GPU (tag values may be JSON strings or dicts)."""
    value = tags.get(K8S_CONFIG_TAG)
    config = json.loads(value) if isinstance(value, str) else (value or {})
    resources = config.get("container_config", {}).get("resources", {})
    return any(GPU_RESOURCE in resources.get(kind, {}) for kind in ("limits", "requests"))


def gpu_op_names(assets: Iterable[Any]) -> list[str]:
    """Names of the ops, in ``assets`` (definitions of assets or graph-backed assets), that ask for a GPU."""
    names: set[str] = set()
    for item in assets:
        if not isinstance(item, AssetsDefinition):
            continue
        for node in item.node_def.iterate_op_defs():
            if is_gpu_op(node.tags):
                names.add(node.name)
    return sorted(names)


def k8s_executor_config(gpu_image: str | None, gpu_ops: Iterable[str]) -> dict[str, Any]:
    """Config of `k8s_job_executor`: CPU step pods by default, ``gpu_image`` for the ``gpu_ops`` steps.

    Namespace, service account, env config maps and secrets come from the `K8sRunLauncher`.
    """
    config: dict[str, Any] = {"step_k8s_config": CPU_STEP_K8S_CONFIG, "max_concurrent": MAX_CONCURRENT_STEPS}
    if gpu_image:
        config["per_step_k8s_config"] = {op: {"container_config": {"image": gpu_image}} for op in gpu_ops}
    return config


def k8s_executor(gpu_image: str | None, gpu_ops: Iterable[str]) -> ExecutorDefinition:
    """`k8s_job_executor` configured by `k8s_executor_config`."""
    return k8s_job_executor.configured(k8s_executor_config(gpu_image, gpu_ops), name="k8s")


def local_executor(location_module: str) -> ExecutorDefinition:
    """Dagster's default executor (a process per step, or ``in_process``) whose step processes fork from a server
    that has imported torch and ``location_module`` once, instead of each importing them again (``spawn``, Dagster's
    default: seconds per step). torch is named as the definitions do not import it (a step that trains or scores
    does). A run's own ``start_method`` still wins."""
    forkserver = {"forkserver": {"preload_modules": ["torch", location_module]}}

    def forkserver_by_default(config: dict[str, Any]) -> dict[str, Any]:
        if "multiprocess" not in config:
            return config
        return {"multiprocess": {"start_method": forkserver, **config["multiprocess"]}}

    return multi_or_in_process_executor.configured(
        forkserver_by_default,
        config_schema=multi_or_in_process_executor.config_schema.as_field(),
        name=multi_or_in_process_executor.name,
    )


def executor_for(
    env: str, assets: Iterable[Any], environ: Mapping[str, str], location_module: str
) -> ExecutorDefinition:
    """The executor of one environment: `local_executor` (preloading torch and ``location_module``) locally,
    Kubernetes Jobs elsewhere.

    Without `GPU_IMAGE_ENV` GPU steps run on the code location's own image (set it in deployments).
    """
    if env == "local":
        return local_executor(location_module)
    return k8s_executor(environ.get(GPU_IMAGE_ENV) or None, gpu_op_names(assets))
