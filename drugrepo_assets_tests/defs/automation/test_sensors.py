"""The living pipeline on a real instance: landed files become runs, automation refreshes, growth retrains.

One module-scoped location walks the whole path: a file lands → `landing_sensor` requests one
`raw_pairs` run (reading the landing folder) → the automation conditions refresh validation, splits
and features → `retrain_sensor` trains; more data (+30 %) retrains, a little (+2 %) does not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    EventRecordsFilter,
    ExecuteInProcessResult,
    RunRequest,
    RunsFilter,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from drugrepo_assets.defs.automation.sensors import (
    LANDING_FILES_TAG,
    LANDING_REMOVED_TAG,
    RETRAIN_REASON_TAG,
    landing_sensor,
    retrain_sensor,
)
from drugrepo_assets.lib.automation_resources import LandingZone
from drugrepo_assets_tests.data.rows import real_rows, write_csv
from drugrepo_assets_tests.data.servers import S3Bucket, moto_endpoint, s3_bucket
from drugrepo_assets_tests.living import REFRESHED, Location, location

pytestmark = pytest.mark.slow(60)

__all__ = ["moto_endpoint", "s3_bucket"]

RUN_KEY_TAG = "dagster/run_key"
"""The tag by which Dagster finds a sensor's earlier run of the same run key (and skips the request)."""

FIRST_ROWS = 300


def _materialized_rows(loc: Location, asset: str, partition: str = "human") -> int:
    records = loc.instance.fetch_materializations(AssetKey(asset), limit=1).records
    assert records and records[0].asset_materialization.partition == partition
    return int(records[0].asset_materialization.metadata["dagster/row_count"].value)


def _human_rows(start: int, stop: int) -> list[tuple[str, str, str]]:
    return real_rows("human/random/train.csv", range(start, stop))


@pytest.fixture(scope="module")
def loc(tmp_path_factory: pytest.TempPathFactory) -> Location:
    return location(tmp_path_factory.mktemp("living"))


def test_a_new_file_requests_one_raw_pairs_run_reading_the_landing_folder(loc: Location) -> None:
    assert loc.automate() == {}, "the automation sensor's first tick: nothing to refresh yet"
    landed = write_csv(loc.landing / "human" / "batch1.csv", _human_rows(1, FIRST_ROWS + 1))
    result = loc.tick(landing_sensor, None)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.partition_key == "human"
    assert request.run_config == {"resources": {"data_source": {"config": {"root": str(loc.landing)}}}}
    assert request.tags[LANDING_FILES_TAG] == str(landed)
    version = LandingZone(root=str(loc.landing)).files()["human/batch1.csv"]
    assert json.loads(result.cursor) == {"files": {"human/batch1.csv": version}, "generations": {"human": 1}}

    run = loc.execute(request, "ingest_job")
    assert run.success
    assert run.dagster_run.tags[LANDING_FILES_TAG] == str(landed)
    assert _materialized_rows(loc, "raw_pairs") == FIRST_ROWS
    loc.landing_cursor = result.cursor


def test_the_same_file_again_requests_nothing(loc: Location) -> None:
    result = loc.tick(landing_sensor, loc.landing_cursor)
    assert result.run_requests == []
    assert isinstance(result.skip_reason, SkipReason) and result.skip_reason.skip_message == "no new or changed file"
    assert result.cursor == loc.landing_cursor


def test_automation_refreshes_validation_splits_and_features_but_not_training(loc: Location) -> None:
    requested = loc.automate()
    assert requested == {name: {"human"} for name in REFRESHED}
    assert _materialized_rows(loc, "validated_pairs") + _materialized_rows(loc, "rejected_pairs") == FIRST_ROWS
    checks = {e.asset_check_evaluation_data.check_name for e in _check_evaluations(loc)}
    assert {"validated_pairs_expectations", "rows_accounted_for", "splits_disjoint"} <= checks
    assert loc.automate() == {}


def _check_evaluations(loc: Location) -> list:
    records = loc.instance.get_event_records(
        EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION), limit=100
    )
    return [r.event_log_entry.dagster_event for r in records]


def test_retrain_sensor_trains_a_partition_without_checkpoint_when_the_policy_says_so(loc: Location) -> None:
    result = loc.tick(retrain_sensor, None)
    assert [r.partition_key for r in result.run_requests] == ["human"]
    request = result.run_requests[0]
    assert request.tags[RETRAIN_REASON_TAG].startswith("no checkpoint yet")
    run = loc.execute(request, "retrain_job")
    assert run.success
    assert {e.asset_key.to_user_string() for e in run.get_asset_materialization_events()} == {
        "drugban_checkpoint",
        "model_evaluation",
    }
    skipped = loc.tick(retrain_sensor, None)
    assert skipped.run_requests == []
    assert "human: checkpoint is newer than validated_pairs" in skipped.skip_reason.skip_message


def test_a_changed_file_requests_one_new_run_and_growth_past_the_threshold_retrains(loc: Location) -> None:
    grown = int(FIRST_ROWS * 1.3)
    write_csv(loc.landing / "human" / "batch1.csv", _human_rows(1, grown + 1))
    result = loc.tick(landing_sensor, loc.landing_cursor)
    assert [r.partition_key for r in result.run_requests] == ["human"]
    assert loc.execute(result.run_requests[0], "ingest_job").success
    assert _materialized_rows(loc, "raw_pairs") == grown
    loc.landing_cursor = result.cursor
    assert loc.tick(landing_sensor, loc.landing_cursor).run_requests == []

    waiting = loc.tick(retrain_sensor, None)
    assert waiting.run_requests == []
    assert "human: checkpoint is newer than validated_pairs" in waiting.skip_reason.skip_message
    assert loc.automate() == {name: {"human"} for name in REFRESHED}
    valid_before, valid_now = _validated_row_counts(loc)
    result = loc.tick(retrain_sensor, None)
    assert [r.partition_key for r in result.run_requests] == ["human"]
    growth = (valid_now - valid_before) / valid_before
    assert growth >= 0.10
    assert result.run_requests[0].tags[RETRAIN_REASON_TAG] == (
        f"valid rows {valid_before} → {valid_now} ({growth:+.1%}) vs threshold 10.0%"
    )
    assert loc.execute(result.run_requests[0], "retrain_job").success


def _validated_row_counts(loc: Location) -> tuple[int, int]:
    """Valid rows at the last training and now."""
    records = loc.instance.fetch_materializations(AssetKey("validated_pairs"), limit=2).records
    now, before = (int(r.asset_materialization.metadata["dagster/row_count"].value) for r in records)
    return before, now


def test_growth_below_the_threshold_does_not_retrain(loc: Location) -> None:
    write_csv(loc.landing / "human" / "batch2.csv", _human_rows(1000, 1008))
    result = loc.tick(landing_sensor, loc.landing_cursor)
    assert [r.partition_key for r in result.run_requests] == ["human"]
    assert result.run_requests[0].tags[LANDING_FILES_TAG] == str(loc.landing / "human" / "batch2.csv")
    assert loc.execute(result.run_requests[0], "ingest_job").success
    loc.landing_cursor = result.cursor
    assert loc.automate() == {name: {"human"} for name in REFRESHED}
    skipped = loc.tick(retrain_sensor, None)
    assert skipped.run_requests == []
    assert "vs threshold 10.0%" in skipped.skip_reason.skip_message


def test_files_outside_a_known_dataset_folder_are_named_and_not_retried(loc: Location) -> None:
    stray = write_csv(loc.landing / "stray.csv", _human_rows(1, 3))
    unknown = write_csv(loc.landing / "davis" / "pairs.csv", _human_rows(1, 3))
    notes = loc.landing / "human" / "notes.txt"
    notes.write_text("not data\n")
    result = loc.tick(landing_sensor, loc.landing_cursor)
    assert result.run_requests == []
    assert result.skip_reason.skip_message == "; ".join(
        [
            f"{unknown}: unknown dataset folder 'davis' (known: bindingdb, biosnap, human)",
            f"{notes}: unsupported file type (expected .csv, .csv.gz, .parquet or .pq)",
            f"{stray}: not inside a dataset folder (expected <dataset>/<file>)",
        ]
    )
    again = loc.tick(landing_sensor, result.cursor)
    assert again.run_requests == [] and again.skip_reason.skip_message == "no new or changed file"
    for path in (stray, unknown, notes):
        path.unlink()
    (loc.landing / "davis").rmdir()
    removed = loc.tick(landing_sensor, again.cursor)
    assert removed.run_requests == [], "files that never belonged to a dataset leave no dataset changed"
    loc.landing_cursor = removed.cursor


def test_a_malformed_file_is_ingested_once_and_its_run_fails_naming_the_file(loc: Location) -> None:
    bad = loc.landing / "biosnap" / "broken.csv"
    bad.parent.mkdir()
    bad.write_text("SMILES,Protein\nCCO,MKT\n")
    result = loc.tick(landing_sensor, loc.landing_cursor)
    assert [r.partition_key for r in result.run_requests] == ["biosnap"]
    run = loc.execute(result.run_requests[0], "ingest_job")
    assert not run.success
    failure = run.get_step_failure_events()[0].step_failure_data
    assert f"{bad}: missing column 'Y' (found: SMILES, Protein)" in failure.user_failure_data.description
    assert loc.tick(landing_sensor, result.cursor).run_requests == []


def test_without_a_root_the_landing_folder_is_under_the_instance(tmp_path: Path) -> None:
    loc = location(tmp_path)
    write_csv(Path(loc.instance.root_directory) / "landing" / "bindingdb" / "new.csv", _human_rows(1, 5))
    with_default = {"landing": LandingZone()}
    with build_sensor_context(instance=loc.instance, resources=with_default) as ctx:
        result = landing_sensor(ctx)
    expected_root = str(Path(loc.instance.root_directory) / "landing")
    assert [r.partition_key for r in result.run_requests] == ["bindingdb"]
    assert result.run_requests[0].run_config["resources"]["data_source"]["config"] == {"root": expected_root}


def test_an_s3_landing_prefix_is_followed_by_etag_and_ingested_from_s3(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    loc = location(tmp_path)
    root = f"s3://{s3_bucket.name}/landing"
    landing = LandingZone(root=root, s3_endpoint_url=s3_bucket.endpoint_url)
    csv = write_csv(tmp_path / "pairs.csv", _human_rows(1, 41)).read_bytes()
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="landing/human/pairs.csv", Body=csv)
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="landing/qsar/pairs.csv", Body=csv)

    def tick(cursor: str | None):
        with build_sensor_context(instance=loc.instance, cursor=cursor, resources={"landing": landing}) as ctx:
            return landing_sensor(ctx)

    first = tick(None)
    assert [r.partition_key for r in first.run_requests] == ["human"]
    request = first.run_requests[0]
    assert request.run_config == {
        "resources": {"data_source": {"config": {"root": root, "s3_endpoint_url": s3_bucket.endpoint_url}}}
    }
    assert request.tags[LANDING_FILES_TAG] == f"{root}/human/pairs.csv"
    etag = s3_bucket.client.head_object(Bucket=s3_bucket.name, Key="landing/human/pairs.csv")["ETag"].strip('"')
    assert json.loads(first.cursor)["files"]["human/pairs.csv"] == etag
    run = loc.execute(request, "ingest_job")
    assert run.success and _materialized_rows(loc, "raw_pairs") == 40

    assert tick(first.cursor).run_requests == []
    grown = csv + csv.split(b"\n", 2)[1] + b"\n"
    s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="landing/human/pairs.csv", Body=grown)
    changed = tick(first.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["human"]
    assert changed.run_requests[0].run_key != request.run_key


def _tick(loc: Location, cursor: str | None, landing: LandingZone | None = None) -> SensorResult:
    """One landing_sensor tick over ``landing`` (default: the location's landing folder)."""
    resources = {"landing": landing or LandingZone(root=str(loc.landing))}
    with build_sensor_context(instance=loc.instance, cursor=cursor, resources=resources) as ctx:
        return landing_sensor(ctx)


def _launch(loc: Location, request: RunRequest) -> ExecuteInProcessResult | None:
    """Run a request as the sensor daemon does: skipped (None) when a run already has its run key."""
    if loc.instance.get_runs(RunsFilter(tags={RUN_KEY_TAG: request.run_key}), limit=1):
        return None
    return loc.defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=request.run_config,
        instance=loc.instance,
        partition_key=request.partition_key,
        tags={**request.tags, RUN_KEY_TAG: request.run_key},
        raise_on_error=False,
    )


def test_removing_a_bad_file_re_ingests_its_dataset_from_the_remaining_files(tmp_path: Path) -> None:
    loc = location(tmp_path)
    bad = loc.landing / "biosnap" / "broken.csv"
    bad.parent.mkdir()
    bad.write_text("SMILES,Protein\nCCO,MKT\n")
    first = _tick(loc, None)
    assert not _launch(loc, first.run_requests[0]).success
    write_csv(loc.landing / "biosnap" / "good.csv", _human_rows(1, 21))
    second = _tick(loc, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["biosnap"]
    assert not _launch(loc, second.run_requests[0]).success, "the run reads the bad file too"

    bad.unlink()
    removed = _tick(loc, second.cursor)
    assert [r.partition_key for r in removed.run_requests] == ["biosnap"]
    request = removed.run_requests[0]
    assert request.tags[LANDING_REMOVED_TAG] == str(bad)
    assert LANDING_FILES_TAG not in request.tags, "no file landed or changed"
    run = _launch(loc, request)
    assert run is not None and run.success
    assert _materialized_rows(loc, "raw_pairs", "biosnap") == 20
    again = _tick(loc, removed.cursor)
    assert again.run_requests == [] and again.skip_reason.skip_message == "no new or changed file"


def test_removing_a_file_next_to_others_requests_one_run_keyed_by_the_whole_dataset(tmp_path: Path) -> None:
    loc = location(tmp_path)
    write_csv(loc.landing / "human" / "a.csv", _human_rows(1, 11))
    extra = write_csv(loc.landing / "human" / "b.csv", _human_rows(11, 16))
    write_csv(loc.landing / "bindingdb" / "c.csv", _human_rows(1, 4))
    both = _tick(loc, None)
    assert [r.partition_key for r in both.run_requests] == ["bindingdb", "human"]
    extra.unlink()
    removed = _tick(loc, both.cursor)
    assert [r.partition_key for r in removed.run_requests] == ["human"], "bindingdb did not change"
    assert removed.run_requests[0].tags[LANDING_REMOVED_TAG] == str(extra)
    assert loc.execute(removed.run_requests[0], "ingest_job").success
    assert _materialized_rows(loc, "raw_pairs", "human") == 10
    replayed = _tick(loc, both.cursor)
    assert [r.run_key for r in replayed.run_requests] == [removed.run_requests[0].run_key], (
        "a tick replayed from the same cursor asks for the same run, which Dagster then skips"
    )


def test_a_file_removed_then_landed_again_unchanged_is_re_ingested_each_time(tmp_path: Path) -> None:
    loc = location(tmp_path)
    write_csv(loc.landing / "human" / "a.csv", _human_rows(1, 11))
    extra = write_csv(loc.landing / "human" / "b.csv", _human_rows(11, 16))
    saved = extra.read_bytes(), extra.stat().st_mtime_ns
    keys, states = [], []
    cursor = None
    for step in ("land", "remove", "restore"):
        if step == "remove":
            extra.unlink()
        elif step == "restore":
            extra.write_bytes(saved[0])
            os.utime(extra, ns=(saved[1], saved[1]))
        result = _tick(loc, cursor)
        assert [r.partition_key for r in result.run_requests] == ["human"], step
        keys.append(result.run_requests[0].run_key)
        cursor = result.cursor
        states.append(json.loads(cursor)["files"])
    assert states[2] == states[0], "restored as it was: the same landing state as after the first tick"
    assert len(set(keys)) == 3, keys


def test_removing_the_last_file_of_a_dataset_requests_a_run_that_fails_naming_the_empty_folder(
    tmp_path: Path,
) -> None:
    loc = location(tmp_path)
    only = write_csv(loc.landing / "bindingdb" / "only.csv", _human_rows(1, 11))
    first = _tick(loc, None)
    assert loc.execute(first.run_requests[0], "ingest_job").success
    only.unlink()
    emptied = _tick(loc, first.cursor)
    assert [r.partition_key for r in emptied.run_requests] == ["bindingdb"]
    assert emptied.run_requests[0].tags[LANDING_REMOVED_TAG] == str(only)
    run = loc.execute(emptied.run_requests[0], "ingest_job")
    assert not run.success, "the partition's stale rows are flagged by a failed run, not kept silently"
    failure = run.get_step_failure_events()[0].step_failure_data.user_failure_data.description
    assert failure.startswith(f"{loc.landing / 'bindingdb'}: folder holds no data files")
    assert _tick(loc, emptied.cursor).run_requests == []


def test_a_cursor_of_the_old_format_is_read_without_runs_for_files_already_seen(tmp_path: Path) -> None:
    loc = location(tmp_path)
    write_csv(loc.landing / "human" / "a.csv", _human_rows(1, 11))
    gone = write_csv(loc.landing / "human" / "b.csv", _human_rows(11, 16))
    (loc.landing / "stray.csv").write_text("x\n")
    old = json.dumps(LandingZone(root=str(loc.landing)).files(), sort_keys=True)
    same = _tick(loc, old)
    assert same.run_requests == [] and same.skip_reason.skip_message == "no new or changed file"
    assert json.loads(same.cursor) == {"files": json.loads(old), "generations": {}}
    gone.unlink()
    removed = _tick(loc, old)
    assert [r.partition_key for r in removed.run_requests] == ["human"]
    assert removed.run_requests[0].tags[LANDING_REMOVED_TAG] == str(gone)


def test_an_s3_file_reverted_to_an_earlier_version_is_re_ingested(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    loc = location(tmp_path)
    landing = LandingZone(root=f"s3://{s3_bucket.name}/landing", s3_endpoint_url=s3_bucket.endpoint_url)
    earlier = write_csv(tmp_path / "earlier.csv", _human_rows(1, 31)).read_bytes()
    newer = write_csv(tmp_path / "newer.csv", _human_rows(1, 36)).read_bytes()
    cursor = None
    for body, rows in ((earlier, 30), (newer, 35), (earlier, 30)):
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="landing/human/pairs.csv", Body=body)
        result = _tick(loc, cursor, landing)
        assert [r.partition_key for r in result.run_requests] == ["human"]
        run = _launch(loc, result.run_requests[0])
        assert run is not None, f"run key {result.run_requests[0].run_key} was used before: Dagster skips it"
        assert run.success
        assert _materialized_rows(loc, "raw_pairs") == rows
        cursor = result.cursor
