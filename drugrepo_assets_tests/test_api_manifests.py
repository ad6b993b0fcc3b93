"""deployments/k8s/api.yaml, checked offline: each object builds as its Kubernetes model (unknown
fields fail), and it agrees with the API it runs (routes, port, settings), the image's Dockerfile,
the environments' settings and secrets, and the serving code location that reads its request logs."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from drugrepo_assets.api.app import create_app
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets_tests.test_deployments import read_env_file
from drugrepo_assets_tests.test_helm import ENVS, k8s_model, values

REPO = Path(__file__).resolve().parents[1]
MODELS = {"Deployment": "V1Deployment", "Service": "V1Service", "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler"}


def _objects() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((REPO / "deployments" / "k8s" / "api.yaml").read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs)
    return by_kind


def test_every_object_is_a_valid_kubernetes_object() -> None:
    objects = _objects()
    assert sorted(objects) == sorted(MODELS)
    for kind, obj in objects.items():
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
        k8s_model(MODELS[kind], body)
    with pytest.raises(AssertionError, match="containerPorts"):
        k8s_model("V1Container", {"name": "x", "containerPorts": []})


def test_the_deployment_runs_the_serving_image_as_the_api_expects() -> None:
    objects = _objects()
    pod = objects["Deployment"]["spec"]["template"]
    [container] = pod["spec"]["containers"]
    dockerfile = (REPO / "docker" / "Dockerfile.serving").read_text()
    assert f'"--port", "{container["ports"][0]["containerPort"]}"' in dockerfile
    assert container["image"].rsplit(":", 1)[0].endswith("/serving")
    routes = set(create_app(ServingSettings(api_keys="k")).openapi()["paths"])
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in routes
        assert container[probe]["httpGet"]["port"] == container["ports"][0]["name"]
    assert pod["spec"]["securityContext"]["runAsUser"] == int(re.search(r"USER (\d+)", dockerfile)[1])
    assert objects["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", objects["Deployment"]["metadata"]["name"])
    assert objects["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 2


@pytest.mark.parametrize("env", ENVS)
def test_settings_secrets_and_request_logs_agree(env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap and Secret give the API every setting it needs; the logs land where drift_report reads them."""
    objects = _objects()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    sources = [next(iter(ref.values()))["name"] for ref in container["envFrom"]]
    assert sources == ["drugrepo-env", "drugrepo-secrets"]
    settings = read_env_file(REPO / "deployments" / env / "drugrepo.env")
    secrets = read_env_file(REPO / "deployments" / "secrets.example.env")
    for name in list(os.environ):
        if name.startswith("DRUGREPO_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name)
    for name, value in {**settings, **dict.fromkeys(secrets, "key-a,key-b")}.items():
        monkeypatch.setenv(name, value)
    api = ServingSettings()
    assert api.keys() == ["key-a", "key-b"] and api.mlflow_tracking_uri == settings["MLFLOW_TRACKING_URI"]
    assert api.redis_url, "several replicas need Redis for one cache and one rate limit"
    # Every replica writes its own objects to the environment's bucket; drift_report reads the same
    # prefix through DRUGREPO_REQUEST_LOG_DIR (lib/environments.py): no shared volume to mount.
    bucket = settings["DRUGREPO_STORAGE_URI"].split("/")[2]
    assert api.request_log_dir == f"s3://{bucket}/requests"
    assert "volumeMounts" not in container and "volumes" not in pod
    [serving] = [
        d
        for d in values(env)["dagster-user-deployments"]["deployments"]
        if d["dagsterApiGrpcArgs"][-1] == "drugrepo_assets.serving.definitions"
    ]
    assert "volumes" not in serving and "volumeMounts" not in serving
    environments = (REPO / "drugrepo_assets" / "lib" / "environments.py").read_text()
    assert 'DriftSettings(request_log_dir=EnvVar("DRUGREPO_REQUEST_LOG_DIR"))' in environments
