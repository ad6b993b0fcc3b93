"""Kubernetes objects of the monitoring, rendered from the files of this folder (one source: rules/ and dashboards/).

- a ``ServiceMonitor`` (Prometheus Operator) scraping the ``drugrepo-api`` Service of deployments/k8s/api.yaml
  every 15 s: its ``job`` label is the Service's name, ``drugrepo-api``, as the alert rules expect;
- a ``PrometheusRule`` holding the groups of rules/recording.yml and rules/alerts.yml as they are;
- one ``ConfigMap`` per dashboard of dashboards/, labelled ``grafana_dashboard: "1"`` for the Grafana
  chart's dashboard sidecar.

Usage: ``python deployments/monitoring/render_k8s.py [--release kube-prometheus-stack] | kubectl -n drugrepo-<env> apply -f -``.
``--release`` is the ``release`` label the operator's default selectors look for.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULE_FILES = ("rules/recording.yml", "rules/alerts.yml")
LABELS = {"app.kubernetes.io/part-of": "drugrepo"}


def service_monitor(release: str) -> dict[str, Any]:
    """The ServiceMonitor of the API's Service (port ``http``, path /metrics)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "drugrepo-api", "labels": {**LABELS, "release": release}},
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/name": "drugrepo-api"}},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "15s"}],
        },
    }


def prometheus_rule(release: str) -> dict[str, Any]:
    """The PrometheusRule holding every group of the rule files."""
    groups = [group for name in RULE_FILES for group in yaml.safe_load((HERE / name).read_text())["groups"]]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "drugrepo-api", "labels": {**LABELS, "release": release}},
        "spec": {"groups": groups},
    }


def dashboard_config_maps() -> list[dict[str, Any]]:
    """One ConfigMap per dashboard JSON, for Grafana's sidecar (label ``grafana_dashboard``)."""
    maps = []
    for path in sorted((HERE / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        maps.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"grafana-dashboard-{board['uid']}",
                    "labels": {**LABELS, "grafana_dashboard": "1"},
                },
                "data": {path.name: path.read_text()},
            }
        )
    return maps


def objects(release: str) -> list[dict[str, Any]]:
    """Every object, in apply order."""
    return [service_monitor(release), prometheus_rule(release), *dashboard_config_maps()]


def main(argv: list[str] | None = None) -> int:
    """Print the objects as one multi-document YAML stream."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default="kube-prometheus-stack", help="the operator's release label")
    args = parser.parse_args(argv)
    yaml.safe_dump_all(objects(args.release), sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
