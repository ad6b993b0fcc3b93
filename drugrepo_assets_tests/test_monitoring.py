"""deployments/monitoring/: the rules checked and unit-tested by promtool, then live — a real Prometheus on
loopback (1 s scrapes and evaluations) scraping two real ``drugrepo serve`` processes — and the dashboards.

Live, the rules run as written except for their durations: every range window and ``for:`` is divided by
``SPEED`` (5m -> 10s) so that an alert goes pending, fires and resolves within a test; promtool's unit tests
cover the real durations. The targets: ``main`` serves the golden champion with a challenger (split, 20 %)
behind a pool of one worker and no waiting line, so a long /v1/screen makes small requests answer 503;
``broken`` has a challenger file that does not load, and is stopped to take it down.

The API dashboard's queries are run by that Prometheus and their metric names checked against the live
/metrics (plus the recording rules); the pipeline dashboard's SQL is run against a real Dagster instance
on PostgreSQL after runs, materialisations and check evaluations.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
import yaml
from dagster import AssetCheckResult, DagsterInstance, asset, asset_check, materialize
from dagster._daemon.types import DaemonHeartbeat

from drugrepo_assets_tests.api.servers import Api, challenger_checkpoint, poll_until, running_api
from drugrepo_assets_tests.postgres import Postgres, postgres_server
from drugrepo_assets_tests.processes import free_port, stop, wait_until

pytestmark = pytest.mark.slow(60)

__all__ = ["postgres_server"]


REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "deployments" / "monitoring"
RULE_FILES = [MONITORING / "rules" / "recording.yml", MONITORING / "rules" / "alerts.yml"]
README = MONITORING / "README.md"
RUNBOOK = "https://git.drugrepo.internal/drugrepo/drugrepo/-/blob/main/deployments/monitoring/README.md#"
SEVERITIES = {"critical", "warning", "info"}
SPEED = 30
KEY = "monitoring-key"
PROTEIN = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "CCO", "c1ccccc1O", "CC(C)Cc1ccc(cc1)C(C)C(=O)O"]
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: install Debian's prometheus (make prometheus)", pytrace=False)
    return binary


def _rules() -> list[dict[str, Any]]:
    return [
        rule for path in RULE_FILES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _recorded() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


# ---------------------------------------------------------------------------------------------- promtool


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", *map(str, RULE_FILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_pass_and_would_catch_a_wrong_expectation(tmp_path: Path) -> None:
    tests = MONITORING / "tests" / "alerts_test.yml"
    result = subprocess.run([_promtool(), "test", "rules", str(tests)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    broken = yaml.safe_load(tests.read_text())
    broken["rule_files"] = [str((tests.parent / f).resolve()) for f in broken["rule_files"]]
    [api_down] = [t for t in broken["tests"] if t["name"] == "api down"]
    api_down["alert_rule_test"][0]["exp_alerts"] = api_down["alert_rule_test"][1]["exp_alerts"]  # still pending there
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    failed = subprocess.run(
        [_promtool(), "test", "rules", str(tmp_path / "broken.yml")], capture_output=True, text=True
    )
    assert failed.returncode != 0 and "DrugrepoApiDown" in failed.stdout + failed.stderr


def test_every_alert_has_a_duration_a_severity_a_runbook_and_unit_tests_both_ways() -> None:
    anchors = {line[4:].strip().lower() for line in README.read_text().splitlines() if line.startswith("### ")}
    tests = yaml.safe_load((MONITORING / "tests" / "alerts_test.yml").read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    names = {rule["alert"] for rule in _alerts()}
    assert len(names) >= 12
    for rule in _alerts():
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"]
        assert notes["runbook_url"] == RUNBOOK + rule["alert"].lower()
        assert rule["alert"].lower() in anchors, f"no section '### {rule['alert']}' in {README}"
    for name in names:
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), f"{name} never tested firing"
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), f"{name} never tested quiet"


def test_the_kubernetes_objects_carry_the_rules_and_dashboards_as_they_are() -> None:
    script = MONITORING / "render_k8s.py"
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True).stdout
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out)}
    rule = objects[("PrometheusRule", "drugrepo-api")]
    assert rule["spec"]["groups"] == [g for p in RULE_FILES for g in yaml.safe_load(p.read_text())["groups"]]
    monitor = objects[("ServiceMonitor", "drugrepo-api")]
    api = {d["kind"]: d for d in yaml.safe_load_all((REPO / "deployments" / "k8s" / "api.yaml").read_text()) if d}
    service, pod = api["Service"], api["Deployment"]["spec"]["template"]["metadata"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert (
        service["metadata"]["name"] == "drugrepo-api"
    )  # the job label the alerts match (ServiceMonitor: service name)
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    [container] = api["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert pod["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["annotations"]["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    boards = sorted(p.name for p in (MONITORING / "dashboards").glob("*.json"))
    maps = [o for (kind, _), o in objects.items() if kind == "ConfigMap"]
    assert sorted(name for m in maps for name in m["data"]) == boards == ["api.json", "pipeline.json"]
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        [(name, text)] = config_map["data"].items()
        assert text == (MONITORING / "dashboards" / name).read_text()


# ------------------------------------------------------------------------------------ dashboards offline


def _panels(name: str) -> list[dict[str, Any]]:
    board = json.loads((MONITORING / "dashboards" / f"{name}.json").read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
    return board["panels"]


def promql_names(expr: str) -> set[str]:
    """The metric and recording-rule names a PromQL expression reads (not functions, labels, keywords, durations)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range windows and subqueries
    names = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return {n for n in names if n not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]|Inf|NaN", n)}


def test_the_name_extractor_finds_what_a_query_reads() -> None:
    expr = (
        'sum by (route, le) (rate(drugrepo_request_seconds_bucket{route=~"/v1/.*"}[5m])) '
        "/ ignoring (limit) group_left () route:drugrepo_requests:rate5m > 0.5 or up == bool 0 "
        "unless drugrepo_nonexistent_total offset 5m"
    )
    assert promql_names(expr) == {
        "drugrepo_request_seconds_bucket",
        "route:drugrepo_requests:rate5m",
        "up",
        "drugrepo_nonexistent_total",
    }


def _api_exprs() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in _panels("api") for t in p["targets"]]


def test_the_api_dashboard_shows_what_the_issue_asks() -> None:
    read = set().union(*(promql_names(e) for _, e in _api_exprs()))
    wanted = {
        "route:drugrepo_requests:rate5m",
        "route:drugrepo_requests_5xx:ratio_rate5m",
        "route:drugrepo_request_seconds:p50_5m",
        "route:drugrepo_request_seconds:p95_5m",
        "route:drugrepo_request_seconds:p99_5m",
        "drugrepo:target_cache_hit:ratio_rate5m",
        "model_role:drugrepo_model_pairs:rate5m",
        "drugrepo:challenger_requests:share_rate5m",
        "drugrepo_score_bucket",
        "drugrepo:pool:utilisation",
        "limit:drugrepo_rate_limited:ratio_rate5m",
    }
    assert wanted <= read, wanted - read


# ------------------------------------------------------------------------------------------- live stack


def _scaled(duration: str) -> str:
    seconds = int(duration[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[duration[-1]]
    return f"{max(seconds // SPEED, 1)}s"


def render_fast_rules(folder: Path) -> list[Path]:
    """The rule files with every range window and ``for:`` divided by ``SPEED`` (nothing else changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for path in RULE_FILES:
        data = yaml.safe_load(path.read_text())
        for group in data["groups"]:
            for rule in group["rules"]:
                rule["expr"] = re.sub(r"\[(\d+[smhd])\]", lambda m: f"[{_scaled(m[1])}]", rule["expr"])
                if "for" in rule:
                    rule["for"] = _scaled(rule["for"])
        (folder / path.name).write_text(yaml.safe_dump(data, sort_keys=False))
        out.append(folder / path.name)
    return out


@dataclass
class Stack:
    """Prometheus (its URL) scraping two APIs."""

    prometheus: str
    main: Api
    broken: Api
    challenger_id: str


def _host(api: Api) -> str:
    return api.url.removeprefix("http://")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("monitoring")
    champion = golden_dir / "model_state.pt"
    challenger_id = challenger_checkpoint(champion, folder / "challenger.pt")
    (folder / "broken.pt").write_bytes(b"not a checkpoint")
    common = {
        "DRUGREPO_API_KEYS": KEY,
        "DRUGREPO_RATE_LIMIT_PER_MINUTE": "100000000",
        "DRUGREPO_RATE_LIMIT_BURST": "100000000",
        "DRUGREPO_MODEL_REFRESH_SECONDS": "0",
        "DRUGREPO_WORKERS": "1",
        "DRUGREPO_MAX_QUEUED": "0",
    }
    main_env = {
        **common,
        "DRUGREPO_CHALLENGER_CHECKPOINT": str(folder / "challenger.pt"),
        "DRUGREPO_CHALLENGER_SHARE": "0.2",
        "DRUGREPO_CHALLENGER_SEED": "3",
    }
    broken_env = {**common, "DRUGREPO_CHALLENGER_CHECKPOINT": str(folder / "broken.pt")}
    args = ["--checkpoint", str(champion)]
    with (
        running_api(folder / "main", args, main_env) as main,
        running_api(folder / "broken", args, broken_env) as broken,
    ):
        rules = render_fast_rules(folder / "rules")
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(r) for r in rules],
            "scrape_configs": [
                {"job_name": "drugrepo-api", "static_configs": [{"targets": [_host(main), _host(broken)]}]}
            ],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus not found: install Debian's prometheus (make prometheus)", pytrace=False)
        port = free_port()
        log = folder / "prometheus.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(process, ready, log, "prometheus")
            yield Stack(url, main, broken, challenger_id)
        finally:
            stop(process)


def query(stack: Stack, expr: str) -> list[dict[str, Any]]:
    """The instant vector of ``expr`` now (Prometheus's HTTP API); fails on a query error."""
    body = httpx.get(f"{stack.prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    return body["data"]["result"]


def alerts(stack: Stack, name: str) -> list[dict[str, Any]]:
    """Alerts named ``name`` now (pending or firing), with their labels and state."""
    body = httpx.get(f"{stack.prometheus}/api/v1/alerts", timeout=10).json()
    return [a for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]


def _values(result: list[dict[str, Any]], **labels: str) -> list[float]:
    return [float(s["value"][1]) for s in result if labels.items() <= s["metric"].items()]


def _predict(client: httpx.Client, api: Api, smiles: str) -> int:
    body = {"pairs": [{"smiles": smiles, "protein": PROTEIN}]}
    return client.post(api.url + "/v1/predict", json=body, headers={"X-API-Key": KEY}, timeout=60).status_code


@pytest.mark.services  # starts drugrepo serve and prometheus
def test_recording_rules_have_sensible_values(stack: Stack) -> None:
    def recorded() -> bool:
        with httpx.Client() as client:
            for i in range(8):
                assert _predict(client, stack.main, SMILES[i % len(SMILES)]) == 200
        rate = _values(query(stack, "route:drugrepo_requests:rate5m"), route="/v1/predict")
        p50, p95, p99 = (
            _values(query(stack, f"route:drugrepo_request_seconds:{q}_5m"), route="/v1/predict")
            for q in ("p50", "p95", "p99")
        )
        hits = _values(query(stack, "drugrepo:target_cache_hit:ratio_rate5m"))
        pairs = query(stack, "model_role:drugrepo_model_pairs:rate5m")
        share = _values(query(stack, "drugrepo:challenger_requests:share_rate5m"))
        roles = {(s["metric"]["role"], s["metric"]["checkpoint_id"]) for s in pairs if float(s["value"][1]) > 0}
        return bool(rate and p50 and p95 and p99 and hits and share) and {r for r, _ in roles} == {
            "champion",
            "challenger",
        }

    poll_until(recorded, "the recording rules over live traffic")
    assert _values(query(stack, "route:drugrepo_requests:rate5m"), route="/v1/predict")[0] > 0
    p50, p95, p99 = (
        _values(query(stack, f"route:drugrepo_request_seconds:{q}_5m"), route="/v1/predict")[0]
        for q in ("p50", "p95", "p99")
    )
    assert 0 < p50 <= p95 <= p99 <= 10
    assert 0.5 < _values(query(stack, "drugrepo:target_cache_hit:ratio_rate5m"))[0] <= 1  # one protein, reused
    assert 0 < _values(query(stack, "drugrepo:challenger_requests:share_rate5m"))[0] < 1
    challenger = _values(query(stack, "model_role:drugrepo_model_pairs:rate5m"), checkpoint_id=stack.challenger_id)
    assert challenger and challenger[0] > 0
    assert 0 <= _values(query(stack, "drugrepo:pool:utilisation"))[0] <= 1
    assert _values(query(stack, "route:drugrepo_requests_5xx:ratio_rate5m"), route="/v1/predict") in ([], [0.0])


def _library(n: int) -> list[str]:
    """``n`` distinct small molecules (alkyl alcohols and ethers) for a long /v1/screen."""
    return [f"{'C' * (1 + i % 60)}O{'C' * (i // 60)}" for i in range(n)]


@pytest.mark.services  # starts drugrepo serve and prometheus
def test_a_5xx_burst_fires_the_error_alert_which_resolves_when_it_stops(stack: Stack) -> None:
    stop_load = threading.Event()
    screen = {"protein": PROTEIN, "smiles": _library(3000), "top": 1}

    def occupy_the_pool() -> None:
        with httpx.Client() as client:
            while not stop_load.is_set():
                client.post(stack.main.url + "/v1/screen", json=screen, headers={"X-API-Key": KEY}, timeout=120)

    heavy = threading.Thread(target=occupy_the_pool, daemon=True)
    heavy.start()
    states: list[str] = []
    statuses: list[int] = []
    try:
        with httpx.Client() as client:

            def firing() -> bool:
                statuses.extend(_predict(client, stack.main, SMILES[0]) for _ in range(5))
                states.extend(a["state"] for a in alerts(stack, "DrugrepoHighErrorRatio"))
                return "firing" in states

            poll_until(firing, "DrugrepoHighErrorRatio to fire")
    finally:
        stop_load.set()
        heavy.join(180)
    assert 503 in statuses
    assert "pending" in states and states.index("pending") < states.index("firing")
    [fired] = [a for a in alerts(stack, "DrugrepoHighErrorRatio") if a["state"] == "firing"]
    assert fired["labels"]["route"] == "/v1/predict" and fired["labels"]["severity"] == "critical"
    assert fired["annotations"]["runbook_url"] == RUNBOOK + "drugrepohigherrorratio"
    assert _values(query(stack, "increase(drugrepo_pool_refused_total[1m])"), instance=_host(stack.main))[0] > 0

    with httpx.Client() as client:

        def resolved() -> bool:
            assert _predict(client, stack.main, SMILES[1]) == 200
            return not alerts(stack, "DrugrepoHighErrorRatio")

        poll_until(resolved, "DrugrepoHighErrorRatio to resolve")


@pytest.mark.services  # starts drugrepo serve and prometheus
def test_a_challenger_not_loaded_fires_its_alert_and_a_stopped_api_fires_api_down(stack: Stack) -> None:
    broken = _host(stack.broken)

    def not_loaded_firing() -> bool:
        return any(
            a["state"] == "firing" and a["labels"]["instance"] == broken
            for a in alerts(stack, "DrugrepoModelNotLoaded")
        )

    poll_until(not_loaded_firing, "DrugrepoModelNotLoaded to fire for the broken challenger")
    [fired] = [a for a in alerts(stack, "DrugrepoModelNotLoaded") if a["state"] == "firing"]
    assert (fired["labels"]["role"], fired["labels"]["severity"]) == ("challenger", "warning")
    assert fired["labels"]["instance"] == broken  # the main API's challenger loaded: no alert for it
    assert not alerts(stack, "DrugrepoApiDown")

    os.kill(stack.broken.pid, signal.SIGTERM)

    def down_firing() -> bool:
        return any(
            a["state"] == "firing" and a["labels"]["instance"] == broken for a in alerts(stack, "DrugrepoApiDown")
        )

    poll_until(down_firing, "DrugrepoApiDown to fire for the stopped API")
    assert {a["labels"]["instance"] for a in alerts(stack, "DrugrepoApiDown")} == {broken}


@pytest.mark.services  # starts drugrepo serve and prometheus
def test_every_api_dashboard_query_runs_and_reads_only_exported_metrics(stack: Stack) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    exposition = httpx.get(stack.main.url + "/metrics").text
    exported = {"up"} | _recorded()
    for family in text_string_to_metric_families(exposition):
        exported |= {family.name} | {s.name for s in family.samples}
        exported |= {family.name + suffix for suffix in ("_total", "_bucket", "_count", "_sum", "_created")}
    series = set()
    for title, expr in _api_exprs():
        query(stack, expr)  # a syntax error or an unknown function fails here
        names = promql_names(expr)
        assert names, (title, expr)
        assert names <= exported, f"{title}: {sorted(names - exported)} not exported by drugrepo serve"
        series |= names
    assert "drugrepo_score_bucket" in series and "drugrepo_model_loaded" in series


# --------------------------------------------------------------------------------- pipeline dashboard


@asset
def monitored_source() -> int:
    return 1


@asset
def monitored_table(monitored_source: int) -> int:
    return monitored_source + 1


@asset_check(asset=monitored_source)
def source_positive() -> AssetCheckResult:
    return AssetCheckResult(passed=True)


@asset_check(asset=monitored_table)
def table_small() -> AssetCheckResult:
    return AssetCheckResult(passed=False, metadata={"why": "fails on purpose"})


@asset
def monitored_failure() -> int:
    raise RuntimeError("a run that fails on purpose")


def _expand(sql: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL ``$__timeFilter(column)`` macro: ``column BETWEEN '<from>' AND '<to>'`` (UTC)."""
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    return re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m[1]} BETWEEN '{start:{stamp}}' AND '{end:{stamp}}'", sql)


def test_every_pipeline_dashboard_query_runs_on_a_dagster_instance(postgres_server: Postgres, tmp_path: Path) -> None:
    pg = postgres_server
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "storage": {
                    "postgres": {
                        "postgres_db": {
                            "hostname": pg.host,
                            "port": pg.port,
                            "username": pg.username,
                            "password": "",
                            "db_name": pg.db_name,
                            "scheme": "postgresql+psycopg2",
                        }
                    }
                }
            }
        )
    )
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        ok = materialize([monitored_source, monitored_table, source_positive, table_small], instance=instance)
        assert ok.success
        failed = materialize([monitored_failure], instance=instance, raise_on_error=False)
        assert not failed.success
        instance.add_daemon_heartbeat(DaemonHeartbeat(datetime.now(UTC).timestamp(), "SENSOR", "d1", None))
    now = datetime.now(UTC)
    results: dict[str, list[dict[str, Any]]] = {}
    with psycopg2.connect(host=pg.host, port=pg.port, user=pg.username, dbname=pg.db_name) as connection:
        for panel in _panels("pipeline"):
            [target] = panel["targets"]
            assert target["datasource"]["type"] == "grafana-postgresql-datasource"
            with connection.cursor() as cursor:
                cursor.execute(_expand(target["rawSql"], now - timedelta(days=1), now + timedelta(minutes=5)))
                columns = [c.name for c in cursor.description]
                results[panel["title"]] = [dict(zip(columns, row)) for row in cursor.fetchall()]
    by_status = {r["status"]: r["runs"] for r in results["Runs by status"]}
    assert by_status["SUCCESS"] >= 1 and by_status["FAILURE"] >= 1
    assert {r["metric"] for r in results["Runs per hour"]} >= {"SUCCESS", "FAILURE"}
    assert failed.run_id in {r["run_id"] for r in results["Failed runs"]}
    fresh = {r["asset_key"]: r["age_seconds"] for r in results["Asset freshness"]}
    assert 0 <= fresh['["monitored_table"]'] < 600 and '["monitored_failure"]' not in fresh
    failures = {(r["asset_key"], r["check_name"], r["run_id"]) for r in results["Asset check failures"]}
    assert ('["monitored_table"]', "table_small", ok.run_id) in failures
    assert all(r["check_name"] != "source_positive" for r in results["Asset check failures"])
    latest = {(r["asset_key"], r["check_name"]): r["execution_status"] for r in results["Latest state of every check"]}
    assert latest[('["monitored_source"]', "source_positive")] == "SUCCEEDED"
    assert latest[('["monitored_table"]', "table_small")] == "FAILED"
    [sensor] = [r for r in results["Daemon heartbeats"] if r["daemon_type"] == "SENSOR"]
    assert 0 <= sensor["age_seconds"] < 600
