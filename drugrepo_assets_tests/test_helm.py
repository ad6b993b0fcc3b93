"""The Helm values, checked offline: the chart's structure for the keys used, Kubernetes models, and
agreement with the instance configs of deployments/.

The chart's values.schema.json is not vendored here; `CHART_SUBSCHEMA` restates, for the keys these
values set, the types, required keys and closed objects of the dagster/dagster chart's schema.
Kubernetes objects inside the values (resources, security contexts, env) are built with the
kubernetes client's models, which reject unknown fields.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes.client
import pytest
import yaml
from dagster_k8s.models import k8s_model_from_dict

REPO = Path(__file__).resolve().parents[1]
ENVS = ("staging", "prod")

_IMAGE = {
    "type": "object",
    "required": ["repository", "pullPolicy"],
    "properties": {
        "repository": {"type": "string", "minLength": 1},
        "tag": {"type": ["string", "integer"]},
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    },
}
_NAMED = {
    "type": "array",
    "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
}
_SOURCE_OR_STRING = {
    "anyOf": [{"type": "string"}, {"type": "object", "required": ["env"], "additionalProperties": False}]
}

CHART_SUBSCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["dagster-user-deployments", "postgresql", "runLauncher", "computeLogManager"],
    "properties": {
        "telemetry": {"type": "object", "properties": {"enabled": {"type": "boolean"}}, "additionalProperties": False},
        "generatePostgresqlPasswordSecret": {"type": "boolean"},
        "global": {
            "type": "object",
            "properties": {"postgresqlSecretName": {"type": "string"}, "serviceAccountName": {"type": "string"}},
        },
        "serviceAccount": {
            "type": "object",
            "properties": {
                "create": {"type": "boolean"},
                "name": {"type": "string"},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "postgresql": {
            "type": "object",
            "required": [
                "enabled",
                "postgresqlHost",
                "postgresqlUsername",
                "postgresqlPassword",
                "postgresqlDatabase",
                "postgresqlParams",
                "service",
            ],
            "properties": {
                "enabled": {"const": False},
                "postgresqlHost": {"type": "string", "minLength": 1},
                "postgresqlUsername": {"type": "string"},
                "postgresqlPassword": {"type": "string"},
                "postgresqlDatabase": {"type": "string"},
                "postgresqlParams": {"type": "object"},
                "postgresqlScheme": {"type": "string"},
                "service": {"type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}}},
            },
        },
        "dagsterWebserver": {"type": "object", "properties": {"envConfigMaps": _NAMED, "envSecrets": _NAMED}},
        "dagsterDaemon": {
            "type": "object",
            "properties": {
                "envConfigMaps": _NAMED,
                "envSecrets": _NAMED,
                "runMonitoring": {"type": "object"},
                "runRetries": {"type": "object"},
            },
        },
        "runLauncher": {
            "type": "object",
            "required": ["type", "config"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "K8sRunLauncher"},
                "config": {
                    "type": "object",
                    "required": ["k8sRunLauncher"],
                    "properties": {
                        "k8sRunLauncher": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": [
                                "imagePullPolicy",
                                "loadInclusterConfig",
                                "envConfigMaps",
                                "envSecrets",
                                "envVars",
                                "volumeMounts",
                                "volumes",
                            ],
                            "properties": {
                                "imagePullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
                                "jobNamespace": {"type": ["string", "null"]},
                                "loadInclusterConfig": {"type": "boolean"},
                                "envConfigMaps": _NAMED,
                                "envSecrets": _NAMED,
                                "envVars": {"type": "array", "items": {"type": "string"}},
                                "volumeMounts": {"type": "array"},
                                "volumes": {"type": "array"},
                                "runK8sConfig": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        k: {"type": "object"}
                                        for k in (
                                            "containerConfig",
                                            "podSpecConfig",
                                            "podTemplateSpecMetadata",
                                            "jobSpecConfig",
                                            "jobMetadata",
                                        )
                                    },
                                },
                            },
                        }
                    },
                },
            },
        },
        "computeLogManager": {
            "type": "object",
            "required": ["type", "config"],
            "additionalProperties": False,
            "properties": {
                "type": {"const": "S3ComputeLogManager"},
                "config": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["s3ComputeLogManager"],
                    "properties": {
                        "s3ComputeLogManager": {
                            "type": "object",
                            "required": ["bucket"],
                            "additionalProperties": False,
                            "properties": {
                                "bucket": _SOURCE_OR_STRING,
                                "prefix": _SOURCE_OR_STRING,
                                "skipEmptyFiles": {"type": "boolean"},
                                "uploadInterval": {"type": "integer"},
                                "endpointUrl": _SOURCE_OR_STRING,
                                "region": _SOURCE_OR_STRING,
                            },
                        }
                    },
                },
            },
        },
        "concurrency": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "enabled": {"const": True},
                "pools": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "defaultLimit": {"type": "integer", "minimum": 1},
                        "granularity": {"enum": ["op", "run"]},
                        "opGranularityRunBuffer": {"type": "integer"},
                    },
                },
                "runs": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"maxConcurrentRuns": {"type": "integer"}, "tagConcurrencyLimits": {"type": "array"}},
                },
            },
        },
        "dagster-user-deployments": {
            "type": "object",
            "required": ["enabled", "enableSubchart", "deployments"],
            "properties": {
                "enabled": {"const": True},
                "enableSubchart": {"type": "boolean"},
                "deployments": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "image", "port"],
                        "properties": {
                            "name": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                            "image": _IMAGE,
                            "dagsterApiGrpcArgs": {"type": "array", "items": {"type": "string"}},
                            "port": {"type": "integer"},
                            "includeConfigInLaunchedRuns": {"type": "object", "required": ["enabled"]},
                            "env": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                            "envConfigMaps": _NAMED,
                            "envSecrets": _NAMED,
                            "resources": {"type": "object"},
                            "podSecurityContext": {"type": "object"},
                            "securityContext": {"type": "object"},
                            "volumes": {"type": "array", "items": {"type": "object"}},
                            "volumeMounts": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    },
}


def helm_merge(base: Any, override: Any) -> Any:
    """Helm's merge of values files: maps merge key by key, anything else (lists too) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = helm_merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(override)


def values(env: str) -> dict[str, Any]:
    """The values the chart gets for one environment: values.yaml, then values-<env>.yaml."""
    common = yaml.safe_load((REPO / "helm" / "values.yaml").read_text())
    return helm_merge(common, yaml.safe_load((REPO / "helm" / f"values-{env}.yaml").read_text()))


def _snake_case(type_name: str, data: Any) -> Any:
    """API JSON (camelCase) of a kubernetes client type as its model's snake_case fields; unknown ones fail."""
    if type_name.startswith("list["):
        return [_snake_case(type_name[5:-1], item) for item in data]
    cls = getattr(kubernetes.client, type_name, None)
    if cls is None or not isinstance(data, dict):
        return data
    inverse = {camel: snake for snake, camel in cls.attribute_map.items()}
    unknown = set(data) - set(inverse)
    assert not unknown, f"{type_name} has no fields {sorted(unknown)}"
    return {inverse[k]: _snake_case(cls.openapi_types[inverse[k]], v) for k, v in data.items()}


def k8s_model(type_name: str, data: Any) -> Any:
    """Build a kubernetes client model (or a list of them) from API JSON, as dagster-k8s does."""
    if type_name.startswith("list["):
        return [k8s_model(type_name[5:-1], item) for item in data]
    return k8s_model_from_dict(getattr(kubernetes.client, type_name), _snake_case(type_name, data))


def _instance(env: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "deployments" / env / "dagster.yaml").read_text())


@pytest.mark.parametrize("env", ENVS)
def test_values_fit_the_chart(env: str) -> None:
    jsonschema.validate(values(env), CHART_SUBSCHEMA)


def test_the_subschema_rejects_what_the_chart_rejects() -> None:
    broken = values("staging")
    broken["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = [{"name": "typo"}]
    with pytest.raises(jsonschema.ValidationError, match="envSecret"):
        jsonschema.validate(broken, CHART_SUBSCHEMA)


@pytest.mark.parametrize("env", ENVS)
def test_kubernetes_objects_in_the_values_are_valid(env: str) -> None:
    chart = values(env)
    for deployment in chart["dagster-user-deployments"]["deployments"]:
        k8s_model("V1ResourceRequirements", deployment["resources"])
        k8s_model("V1PodSecurityContext", deployment["podSecurityContext"])
        k8s_model("V1SecurityContext", deployment["securityContext"])
        k8s_model("list[V1EnvVar]", deployment.get("env", []))
        k8s_model("list[V1Volume]", deployment.get("volumes", []))
        k8s_model("list[V1VolumeMount]", deployment.get("volumeMounts", []))
        assert deployment["podSecurityContext"]["runAsNonRoot"] is True
    launcher = chart["runLauncher"]["config"]["k8sRunLauncher"]
    k8s_model("V1ResourceRequirements", launcher["runK8sConfig"]["containerConfig"]["resources"])
    for ref in launcher["envConfigMaps"]:
        k8s_model("V1ConfigMapEnvSource", ref)
    for ref in launcher["envSecrets"]:
        k8s_model("V1SecretEnvSource", ref)
    with pytest.raises(AssertionError, match="runAsNonroot"):
        k8s_model("V1PodSecurityContext", {"runAsNonroot": True})


@pytest.mark.parametrize("env", ENVS)
def test_values_and_the_instance_config_agree(env: str) -> None:
    chart, instance = values(env), _instance(env)
    launcher, k8s = chart["runLauncher"]["config"]["k8sRunLauncher"], instance["run_launcher"]["config"]
    assert launcher["jobNamespace"] == k8s["job_namespace"] == f"drugrepo-{env}"
    assert [r["name"] for r in launcher["envConfigMaps"]] == k8s["env_config_maps"]
    assert [r["name"] for r in launcher["envSecrets"]] == k8s["env_secrets"]
    assert launcher["imagePullPolicy"] == k8s["image_pull_policy"]
    assert launcher["runK8sConfig"]["containerConfig"] == k8s["run_k8s_config"]["container_config"]
    assert chart["global"]["postgresqlSecretName"] == k8s["postgres_password_secret"]
    assert chart["global"]["serviceAccountName"] == k8s["service_account_name"]
    assert chart["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    logs, s3 = chart["computeLogManager"]["config"]["s3ComputeLogManager"], instance["compute_logs"]["config"]
    assert (logs["bucket"], logs["prefix"], logs["skipEmptyFiles"], logs["uploadInterval"]) == (
        s3["bucket"],
        s3["prefix"],
        s3["skip_empty_files"],
        s3["upload_interval"],
    )
    assert chart["concurrency"]["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    assert chart["concurrency"]["runs"]["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    daemon = chart["dagsterDaemon"]
    assert daemon["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
    assert daemon["runMonitoring"]["startTimeoutSeconds"] == instance["run_monitoring"]["start_timeout_seconds"]


@pytest.mark.parametrize("env", ENVS)
def test_the_asset_location_and_its_gpu_image_come_from_one_release(env: str) -> None:
    assets = _deployments(env)["drugrepo_assets.definitions"]
    env_vars = {e["name"]: e["value"] for e in assets["env"]}
    gpu_repository, gpu_tag = env_vars["DRUGREPO_GPU_IMAGE"].rsplit(":", 1)
    assert gpu_tag == str(assets["image"]["tag"])
    assert gpu_repository.rsplit("/", 1)[0] == assets["image"]["repository"].rsplit("/", 1)[0]
    assert gpu_repository.endswith("/gpu-worker")


@pytest.mark.parametrize("env", ENVS)
def test_every_workspace_location_is_a_user_deployment_of_one_image(env: str) -> None:
    """workspace.yaml's locations (training and serving) each get a gRPC server, on the assets image of one release."""
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    modules = [entry["python_module"]["module_name"] for entry in workspace["load_from"]]
    deployments = _deployments(env)
    assert (
        sorted(deployments) == sorted(modules) == ["drugrepo_assets.definitions", "drugrepo_assets.serving.definitions"]
    )
    assert len({d["name"] for d in deployments.values()}) == len(deployments)
    assert len({(d["image"]["repository"], str(d["image"]["tag"])) for d in deployments.values()}) == 1
    for location in deployments.values():
        assert location["includeConfigInLaunchedRuns"] == {"enabled": True}
        assert [r["name"] for r in location["envConfigMaps"]] == ["drugrepo-env"]
        assert [r["name"] for r in location["envSecrets"]] == ["drugrepo-secrets"]
    assert "env" not in deployments["drugrepo_assets.serving.definitions"]  # no GPU steps there


def _deployments(env: str) -> dict[str, dict[str, Any]]:
    """The chart's user deployments of ``env`` by the module each one serves."""
    deployments = values(env)["dagster-user-deployments"]["deployments"]
    by_module = {}
    for location in deployments:
        flag, module = location["dagsterApiGrpcArgs"]
        assert flag == "--module-name"
        by_module[module] = location
    assert len(by_module) == len(deployments)
    return by_module
