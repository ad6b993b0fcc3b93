"""Slack messages sent by slack_sdk's real WebClient to a loopback HTTP receiver started here.

A real pipeline (landing → ingest → refresh → training) runs on a temporary instance; the sensors'
messages arrive as HTTP requests, and every link in them is parsed and compared with the asset page,
the run page, the MLflow run and the stored object it must point to.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pandas as pd
import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    MetadataValue,
    Output,
    asset,
    build_run_status_sensor_context,
    materialize,
)

from drugrepo_assets.defs.automation.notifications import object_uri, slack_on_materialization, slack_on_run_failure
from drugrepo_assets.defs.automation.sensors import landing_sensor, retrain_sensor
from drugrepo_assets.lib.automation_resources import SlackMessage, SlackNotifier
from drugrepo_assets.lib.metadata import table_metadata
from drugrepo_assets_tests.data.rows import real_rows, write_csv
from drugrepo_assets_tests.living import Location, location

DAGSTER_URL = "http://dagster.example.test:3000"
TOKEN = "xoxb-test-token"
CHANNEL = "#drugrepo-test"
LINK = re.compile(r"<([^|>]+)\|([^>]+)>")


class SlackReceiver:
    """A loopback HTTP server answering like Slack's Web API and keeping every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    {
                        "path": self.path,
                        "authorization": self.headers.get("Authorization"),
                        "json": json.loads(body) if body else {},
                    }
                )
                payload = json.dumps({"ok": True, "channel": "C0TEST", "ts": f"{len(receiver.requests)}.0"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def messages(self) -> list[dict[str, Any]]:
        """Bodies of the chat.postMessage calls, in order."""
        return [r["json"] for r in self.requests if r["path"] == "/api/chat.postMessage"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[SlackReceiver]:
    slack = SlackReceiver()
    slack.thread.start()
    yield slack
    slack.server.shutdown()


@pytest.fixture(scope="module")
def loc(tmp_path_factory: pytest.TempPathFactory, receiver: SlackReceiver) -> Location:
    notifier = SlackNotifier(token=TOKEN, channel=CHANNEL, base_url=receiver.base_url, dagster_url=DAGSTER_URL)
    return location(tmp_path_factory.mktemp("slack"), slack=notifier)


def links(text: str) -> dict[str, str]:
    """The ``<url|label>`` links of a Slack mrkdwn text, by label."""
    return {label: url for url, label in LINK.findall(text)}


def assert_asset_link(url: str, asset: str, partition: str) -> None:
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc, parsed.path) == ("http", "dagster.example.test:3000", f"/assets/{asset}")
    assert parse_qs(parsed.query) == {"view": ["partitions"], "partition": [partition]}


def assert_run_link(url: str, run_id: str) -> None:
    parsed = urlparse(url)
    assert (parsed.scheme, parsed.netloc, parsed.path, parsed.query) == (
        "http",
        "dagster.example.test:3000",
        f"/runs/{run_id}",
        "",
    )


def file_of(uri: str) -> Path:
    parsed = urlparse(uri)
    assert parsed.scheme == "file" and parsed.netloc == ""
    return Path(unquote(parsed.path))


def _train(loc: Location) -> str:
    """Land 300 human pairs, ingest, refresh and train as the sensors request it; the training run's id."""
    loc.automate()
    write_csv(loc.landing / "human" / "pairs.csv", real_rows("human/random/train.csv", range(1, 301)))
    assert loc.execute(loc.tick(landing_sensor, None).run_requests[0], "ingest_job").success
    loc.automate()
    run = loc.execute(loc.tick(retrain_sensor, None).run_requests[0], "retrain_job")
    assert run.success
    return run.run_id


def test_training_and_evaluation_are_announced_with_figures_and_links(loc: Location, receiver: SlackReceiver) -> None:
    first = loc.tick(slack_on_materialization, None)
    assert receiver.messages() == [] and first.cursor
    run_id = _train(loc)
    result = loc.tick(slack_on_materialization, first.cursor)
    assert result.skip_reason.skip_message == "2 message(s) posted"
    assert {r["path"] for r in receiver.requests} == {"/api/chat.postMessage"}
    assert {r["authorization"] for r in receiver.requests} == {f"Bearer {TOKEN}"}
    checkpoint_msg, evaluation_msg = receiver.messages()
    assert checkpoint_msg["channel"] == CHANNEL and evaluation_msg["channel"] == CHANNEL

    ckpt = _latest_metadata(loc, "drugban_checkpoint")
    lines = checkpoint_msg["text"].splitlines()
    assert lines[0] == ":white_check_mark: *drugban_checkpoint* materialised for partition `human`"
    assert lines[1] == f"val AUROC {ckpt['val_auroc']:.4f}"
    found = links(checkpoint_msg["text"])
    assert list(found) == ["asset", "run", "MLflow run", "checkpoint"]
    assert_asset_link(found["asset"], "drugban_checkpoint", "human")
    assert_run_link(found["run"], run_id)
    assert found["MLflow run"] == ckpt["mlflow_run"]
    mlflow_url = urlparse(found["MLflow run"])
    assert (mlflow_url.scheme, mlflow_url.netloc) == ("http", "127.0.0.1:5000")
    value = json.loads(next((loc.base / "storage" / "drugban_checkpoint").glob("human.*")).read_text())
    assert mlflow_url.fragment == f"/experiments/{value['mlflow_experiment_id']}/runs/{value['mlflow_run_id']}"
    assert file_of(found["checkpoint"]) == Path(ckpt["checkpoint"]).resolve()
    assert file_of(found["checkpoint"]).is_file()

    ev = _latest_metadata(loc, "model_evaluation")
    lines = evaluation_msg["text"].splitlines()
    assert lines[0] == ":white_check_mark: *model_evaluation* materialised for partition `human`"
    figures = f"val AUROC {ev['val_auroc']:.4f}, test AUROC {ev['test_auroc']:.4f}, test AUPRC {ev['test_auprc']:.4f}"
    assert lines[1] == figures
    found = links(evaluation_msg["text"])
    assert list(found) == ["asset", "run", "MLflow run", "path"]
    assert_asset_link(found["asset"], "model_evaluation", "human")
    assert_run_link(found["run"], run_id)
    assert found["MLflow run"] == ckpt["mlflow_run"]
    assert file_of(found["path"]) == Path(ev["path"]).resolve()
    assert json.loads(file_of(found["path"]).read_text())["test"]["auroc"] == pytest.approx(ev["test_auroc"])

    again = loc.tick(slack_on_materialization, result.cursor)
    assert again.skip_reason.skip_message == "0 message(s) posted" and len(receiver.messages()) == 2
    loc.materialization_cursor = again.cursor  # type: ignore[attr-defined]


def _latest_metadata(loc: Location, asset_name: str) -> dict[str, Any]:
    record = loc.instance.fetch_materializations(AssetKey(asset_name), limit=1).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def test_a_screening_table_appearing_later_is_announced_with_its_top_candidates(
    loc: Location, receiver: SlackReceiver
) -> None:
    top = pd.DataFrame(
        {
            "target_id": ["P1", "P1"],
            "rank": [1, 2],
            "drug_id": ["D7", "D3"],
            "score": [0.91, 0.84],
            "known_interaction": [False, True],
        }
    )
    table_file = loc.base / "candidates.parquet"

    @asset(name="repurposing_candidates")
    def candidates() -> Output[None]:
        top.to_parquet(table_file)
        return Output(
            None,
            metadata={"top_candidates": table_metadata(top), "path": MetadataValue.path(str(table_file))},
        )

    run = materialize([candidates], instance=loc.instance)
    before = len(receiver.messages())
    loc.tick(slack_on_materialization, loc.materialization_cursor)  # type: ignore[attr-defined]
    message = receiver.messages()[before:]
    assert len(message) == 1
    lines = message[0]["text"].splitlines()
    assert lines[:4] == [
        ":white_check_mark: *repurposing_candidates* materialised",
        "*Top candidates*",
        "1. target_id P1, rank 1, drug_id D7, score 0.9100, known_interaction False",
        "2. target_id P1, rank 2, drug_id D3, score 0.8400, known_interaction True",
    ]
    found = links(message[0]["text"])
    assert list(found) == ["asset", "run", "path"]
    assert found["asset"] == f"{DAGSTER_URL}/assets/repurposing_candidates"
    assert_run_link(found["run"], run.run_id)
    assert file_of(found["path"]) == table_file.resolve()


def test_a_failed_landing_run_is_reported_with_the_file_and_links(loc: Location, receiver: SlackReceiver) -> None:
    bad = loc.landing / "biosnap" / "broken.csv"
    bad.parent.mkdir()
    bad.write_text("SMILES,Protein\nCCO,MKT\n")
    cursor = loc.tick(landing_sensor, None).cursor
    request = next(r for r in loc.tick(landing_sensor, None).run_requests if r.partition_key == "biosnap")
    failed = loc.execute(request, "ingest_job")
    assert not failed.success and cursor
    failure = loc.instance.get_records_for_run(failed.run_id, of_type=DagsterEventType.RUN_FAILURE).records[0]
    before = len(receiver.messages())
    context = build_run_status_sensor_context(
        sensor_name="slack_on_run_failure",
        dagster_event=failure.event_log_entry.dagster_event,
        dagster_instance=loc.instance,
        dagster_run=loc.instance.get_run_by_id(failed.run_id),
        resources={"slack": loc.defs.resources["slack"]},
    ).for_run_failure()
    slack_on_run_failure(context)
    message = receiver.messages()[before:]
    assert len(message) == 1
    lines = message[0]["text"].splitlines()
    assert lines[0] == ":x: run of *ingest_job* failed for partition `biosnap`"
    assert f"`raw_pairs`: {bad}: missing column 'Y' (found: SMILES, Protein)" in "\n".join(lines[1:-1])
    found = links(message[0]["text"])
    assert list(found) == ["raw_pairs", "run", "broken.csv"]
    assert_asset_link(found["raw_pairs"], "raw_pairs", "biosnap")
    assert_run_link(found["run"], failed.run_id)
    assert file_of(found["broken.csv"]) == bad


def test_without_a_token_nothing_is_sent_and_one_warning_is_logged(
    receiver: SlackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SlackNotifier(token=None, channel="#no-token-test", base_url=receiver.base_url)
    before = len(receiver.requests)
    log = logging.getLogger("drugrepo.test_slack")
    with caplog.at_level(logging.WARNING, logger="drugrepo.test_slack"):
        assert notifier.post(SlackMessage("first"), log) is False
        assert notifier.post(SlackMessage("second"), log) is False
    assert len(receiver.requests) == before
    warning = "no Slack token configured: messages to #no-token-test are not sent"
    assert [r.getMessage() for r in caplog.records] == [warning]


def test_links_to_stored_objects_keep_remote_uris_and_turn_local_paths_into_file_uris(tmp_path: Path) -> None:
    """A link's URI is asked of location.py: ``s3a://`` and ``bundled:`` stay as written, ``file:`` and paths are files."""
    assert object_uri("s3://bucket/scores/human.parquet") == "s3://bucket/scores/human.parquet"
    assert object_uri("s3a://bucket/top.csv") == "s3a://bucket/top.csv"
    assert object_uri("bundled:human") == "bundled:human"
    assert object_uri(str(tmp_path / "top.csv")) == (tmp_path / "top.csv").resolve().as_uri()
    assert object_uri((tmp_path / "a b.csv").as_uri()) == (tmp_path / "a b.csv").resolve().as_uri()
