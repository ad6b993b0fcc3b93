"""The API's request log on its own: a bounded queue that drops and counts, a writer that survives a
removed folder or a file in its place, one file per replica, a reader that skips torn lines, S3 objects (moto),
and a writer SIGKILLed mid-write."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from drugrepo_assets.api.request_log import LoggedBatch, RequestLog
from drugrepo_assets.location import Location
from drugrepo_assets.request_records import RequestRecord, scan_request_log
from drugrepo_assets_tests.data.servers import S3Bucket, moto_endpoint, s3_bucket

__all__ = ["moto_endpoint", "s3_bucket"]

DEADLINE = 120.0
NAME = re.compile(r"^requests-(\d{8})-([A-Za-z0-9_.-]+)-([0-9a-f]{8})\.jsonl$")
CHECKPOINT_ID = "0123456789abcdef"
OBJECT_NAME = re.compile(r"^requests-(\d{8})-([A-Za-z0-9_.-]+)-([0-9a-f]{8})-(\d{6})\.jsonl$")


def _batch(key: str, n: int = 3, smiles: str = "CCO", protein: str = "MKVLA") -> LoggedBatch:
    return LoggedBatch(
        "/v1/predict",
        key,
        "drugban-human/1",
        CHECKPOINT_ID,
        [smiles] * n,
        [protein] * n,
        [float(i) for i in range(n)],
        [0.5] * n,
    )


def _keys(records: list[RequestRecord]) -> list[str]:
    return sorted(r.key_id for r in records)


def _records(location: Path) -> list[RequestRecord]:
    """The records of the request log at ``location``, asserting that no line was skipped as malformed."""
    scan = scan_request_log(location)
    assert scan.malformed_lines == 0
    return scan.records


def _wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after a generous deadline (never a timed assertion)."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


class Gate:
    """An injected backoff sleep that records each delay and holds the writer until released."""

    def __init__(self, hold: bool = True) -> None:
        self.delays: list[float] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.entered.set()
        self.release.wait(DEADLINE)


@pytest.fixture
def logs() -> Iterator[list[RequestLog]]:
    """Every RequestLog a test opens, closed at the end even when the test fails."""
    opened: list[RequestLog] = []
    yield opened
    for log in opened:
        log.close()


def test_a_full_queue_drops_and_counts_without_blocking_submit(tmp_path: Path, logs: list[RequestLog]) -> None:
    folder = tmp_path / "requests"
    gate = Gate()
    log = RequestLog(folder, max_queued_pairs=10, sleep=gate)
    logs.append(log)
    shutil.rmtree(folder)
    folder.write_text("a file where the folder should be")
    assert log.submit(_batch("stuck", 2))
    assert gate.entered.wait(DEADLINE), "the writer never failed on the blocked folder"

    outcomes: list[bool] = []
    submitter = threading.Thread(target=lambda: outcomes.extend(log.submit(_batch(f"q{i}", 3)) for i in range(5)))
    submitter.start()
    submitter.join(DEADLINE)
    assert not submitter.is_alive(), "submit blocked while the writer was stuck"
    assert outcomes == [True, True, True, False, False]
    status = log.status()
    assert (status["queued"], status["queued_pairs"], status["max_queued_pairs"]) == (3, 9, 10)
    assert (status["dropped"], status["dropped_pairs"]) == (2, 6)

    folder.unlink()
    gate.release.set()
    assert log.flush(DEADLINE)
    assert _keys(_records(folder)) == sorted(["stuck"] * 2 + [f"q{i}" for i in range(3) for _ in range(3)])
    status = log.status()
    assert (status["queued"], status["queued_pairs"], status["dropped"], status["written_pairs"]) == (0, 0, 2, 11)


def test_the_writer_survives_a_removed_folder(tmp_path: Path, logs: list[RequestLog]) -> None:
    folder = tmp_path / "requests"
    log = RequestLog(folder, sleep=Gate(hold=False))
    logs.append(log)
    log.submit(_batch("before"))
    assert log.flush(DEADLINE)
    shutil.rmtree(folder)
    log.submit(_batch("after"))
    assert log.flush(DEADLINE)
    assert _keys(_records(folder)) == ["after"] * 3
    status = log.status()
    assert status["healthy"] and status["write_failures"] == 1 and "No such file" in status["last_error"]
    log.submit(_batch("later"))
    assert log.flush(DEADLINE)
    assert _keys(_records(folder)) == ["after"] * 3 + ["later"] * 3
    assert log.status()["write_failures"] == 1


def _fails_while_blocked(
    tmp_path: Path, logs: list[RequestLog], block: Callable[[Path], None], unblock: Callable[[Path], None]
) -> None:
    folder = tmp_path / "requests"
    gate = Gate()
    log = RequestLog(folder, sleep=gate, max_attempts=50)
    logs.append(log)
    log.submit(_batch("before"))
    assert log.flush(DEADLINE)
    block(folder)
    log.submit(_batch("during"))
    assert gate.entered.wait(DEADLINE)
    status = log.status()
    assert not status["healthy"] and status["alive"] and status["write_failures"] >= 1 and status["last_error"]
    unblock(folder)
    gate.release.set()
    log.submit(_batch("after"))
    assert log.flush(DEADLINE)
    assert _keys(_records(folder)) == sorted(["before"] * 3 + ["during"] * 3 + ["after"] * 3)
    status = log.status()
    assert status["healthy"] and status["write_failures"] >= 1 and status["dropped"] == 0
    assert status["written_pairs"] == 9


def test_the_writer_retries_while_a_file_blocks_the_folder(tmp_path: Path, logs: list[RequestLog]) -> None:
    def block(folder: Path) -> None:
        moved = folder.with_name("moved")
        folder.rename(moved)
        folder.write_text("not a folder")

    def unblock(folder: Path) -> None:
        folder.unlink()
        folder.with_name("moved").rename(folder)

    _fails_while_blocked(tmp_path, logs, block, unblock)


def test_retries_are_bounded_then_the_batch_is_dropped_and_the_writer_goes_on(
    tmp_path: Path, logs: list[RequestLog]
) -> None:
    folder = tmp_path / "requests"
    gate = Gate(hold=False)
    log = RequestLog(folder, sleep=gate, max_attempts=3, backoff_seconds=0.5, max_backoff_seconds=0.75)
    logs.append(log)
    shutil.rmtree(folder)
    folder.write_text("blocked")
    log.submit(_batch("lost", 4))
    assert log.flush(DEADLINE)
    status = log.status()
    assert gate.delays == [0.5, 0.75]
    assert (status["write_failures"], status["dropped"], status["dropped_pairs"]) == (3, 1, 4)
    assert status["alive"] and not status["healthy"]
    folder.unlink()
    log.submit(_batch("kept"))
    assert log.flush(DEADLINE)
    assert _keys(_records(folder)) == ["kept"] * 3
    assert log.status()["healthy"]


def test_a_batch_that_cannot_be_described_is_dropped_and_the_writer_goes_on(
    tmp_path: Path, logs: list[RequestLog]
) -> None:
    log = RequestLog(tmp_path)
    logs.append(log)
    log.submit(LoggedBatch("/v1/predict", "bad", "m/1", CHECKPOINT_ID, ["CCO"], ["MKV"], ["not a number"], [0.5]))
    log.submit(_batch("good"))
    assert log.flush(DEADLINE)
    assert _keys(_records(tmp_path)) == ["good"] * 3
    status = log.status()
    assert status["alive"] and (status["dropped"], status["dropped_pairs"]) == (1, 1)
    assert "not a number" in status["last_error"]


def test_two_logs_in_one_folder_write_files_of_their_own(tmp_path: Path, logs: list[RequestLog]) -> None:
    first, second = RequestLog(tmp_path), RequestLog(tmp_path)
    logs.extend([first, second])
    for i in range(3):
        first.submit(_batch(f"a{i}", 2))
        second.submit(_batch(f"b{i}", 2))
    assert first.flush(DEADLINE) and second.flush(DEADLINE)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2
    host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
    for name in files:
        match = NAME.match(name)
        assert match and match[2] == host
    writers = sorted(
        "".join(sorted({json.loads(line)["key_id"][0] for line in (tmp_path / name).read_text().splitlines()}))
        for name in files
    )
    assert writers == ["a", "b"]
    records = _records(tmp_path)
    assert _keys(records) == sorted(f"{p}{i}" for p in "ab" for i in range(3) for _ in range(2))
    assert {(r.model_version, r.checkpoint_id) for r in records} == {("drugban-human/1", CHECKPOINT_ID)}


def test_the_reader_skips_and_counts_torn_and_garbage_lines(tmp_path: Path, logs: list[RequestLog]) -> None:
    log = RequestLog(tmp_path)
    logs.append(log)
    log.submit(_batch("good", 4))
    assert log.flush(DEADLINE)
    [path] = list(tmp_path.glob("requests-*.jsonl"))
    whole = json.dumps({"key_id": "tail", "score": 0.25})
    with open(path, "ab") as handle:
        handle.write(b'{"ts": "2024-01-01T00:00:00", "key_id": "torn", "mol_wei\n')
        handle.write(b"\xff\xfe\x00garbage \xc3\x28\n")
        handle.write(b"[1, 2, 3]\n\n")
        handle.write(whole.encode() + b"\n")
        handle.write(b'{"key_id": "cut off without a newline", "sc')
    (tmp_path / "requests-20240101-other-0123abcd.jsonl").write_bytes(b"\x80\x81\n" + whole.encode() + b"\n")
    scan = scan_request_log(tmp_path)
    assert _keys(scan.records) == ["good"] * 4 + ["tail"] * 2
    assert scan.malformed_lines == 5 and scan.files == 2


def test_status_shows_in_a_prometheus_registry(tmp_path: Path, logs: list[RequestLog]) -> None:
    registry = CollectorRegistry()
    log = RequestLog(tmp_path, registry=registry, max_queued_pairs=5)
    logs.append(log)
    log.submit(_batch("kept", 2))
    log.submit(_batch("too big", 6))
    assert log.flush(DEADLINE)
    assert registry.get_sample_value("drugrepo_request_log_healthy") == 1
    assert registry.get_sample_value("drugrepo_request_log_written_pairs_total") == 2
    assert registry.get_sample_value("drugrepo_request_log_dropped_pairs_total") == 6
    assert registry.get_sample_value("drugrepo_request_log_dropped_batches_total") == 1
    assert registry.get_sample_value("drugrepo_request_log_write_failures_total") == 0
    assert registry.get_sample_value("drugrepo_request_log_queued_pairs") == 0
    log.close()
    assert registry.get_sample_value("drugrepo_request_log_healthy") is None


def test_requests_are_logged_to_s3_as_immutable_objects_and_read_back(
    s3_bucket: S3Bucket, logs: list[RequestLog]
) -> None:
    uri = f"s3://{s3_bucket.name}/serving/requests"
    log = RequestLog(Location.of(uri, s3_bucket.endpoint_url), flush_interval_seconds=3600)
    logs.append(log)
    log.submit(_batch("first", 2))
    assert log.flush(DEADLINE)
    log.submit(_batch("second", 3))
    log.submit(_batch("third", 1))
    assert log.flush(DEADLINE)
    listing = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix="serving/requests/")
    names = sorted(o["Key"].rsplit("/", 1)[1] for o in listing["Contents"])
    assert [OBJECT_NAME.match(n)[4] for n in names] == ["000000", "000001"]
    assert len({OBJECT_NAME.match(n)[3] for n in names}) == 1
    s3_bucket.client.put_object(
        Bucket=s3_bucket.name,
        Key="serving/requests/requests-20240101-x-0123abcd-000000.jsonl",
        Body=b'{"key_id": "whole"}\n{"key_id": "to',
    )
    scan = scan_request_log(Location.of(uri, s3_bucket.endpoint_url))
    assert _keys(scan.records) == sorted(["first"] * 2 + ["second"] * 3 + ["third"] + ["whole"])
    assert (scan.malformed_lines, scan.files) == (1, 3)
    assert log.status()["healthy"] and log.status()["written_pairs"] == 6


WRITER = """
import sys
from drugrepo_assets.api.request_log import LoggedBatch, RequestLog
log = RequestLog(sys.argv[1])
n = int(sys.argv[2])
i = 0
while True:
    log.submit(LoggedBatch("/v1/predict", f"b{i}", "m/1", "0123456789abcdef", ["CCO"] * n, ["MKV"] * n, [float(j) for j in range(n)], [0.5] * n))
    log.flush()
    print(i, flush=True)
    i += 1
"""


def test_a_writer_killed_mid_write_leaves_a_readable_log(tmp_path: Path) -> None:
    pairs = 400
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(pairs)], stdout=subprocess.PIPE)
    watchdog = threading.Timer(600, child.kill)
    watchdog.start()
    try:
        acked = -1
        while acked < 20:
            line = child.stdout.readline()
            assert line, f"the writer exited with {child.wait()}"
            acked = int(line)
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
    scan = scan_request_log(tmp_path)
    assert scan.malformed_lines <= 1
    by_batch: dict[str, list[float | None]] = {}
    for record in scan.records:
        by_batch.setdefault(record.key_id, []).append(record.logit)
    for i in range(acked + 1):
        assert by_batch.pop(f"b{i}") == [float(j) for j in range(pairs)]
    for key, logits in by_batch.items():
        assert int(key[1:]) > acked and logits == [float(j) for j in range(len(logits))]
    complete = sum(p.read_bytes().count(b"\n") for p in tmp_path.glob("requests-*.jsonl"))
    assert len(scan.records) == complete


def test_close_writes_what_is_queued_and_later_batches_are_counted_as_dropped(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_interval_seconds=3600)
    for i in range(4):
        assert log.submit(_batch(f"k{i}", 2))
    log.close()
    assert _keys(_records(tmp_path)) == sorted(f"k{i}" for i in range(4) for _ in range(2))
    assert not log.submit(_batch("late"))
    status = log.status()
    assert (status["written_pairs"], status["dropped"], status["alive"], status["healthy"]) == (8, 1, False, False)


OVER_MEMORY = "C1/C=C/" + "C/C=C/" * 95 + "C1"
"""RDKit takes ~3 MiB to parse this 96-double-bond stereo ring (api/test_molecule_budget.py)."""


def test_descriptors_are_computed_once_per_distinct_molecule_in_the_sandbox_and_over_budget_ones_counted(
    tmp_path: Path, logs: list[RequestLog]
) -> None:
    from drugrepo_assets.data.sandbox import Budget, molecule_sandbox
    from drugrepo_assets.ml.features.descriptors import MOLECULE_COLUMNS, molecule_descriptors

    registry = CollectorRegistry()
    with molecule_sandbox(1, Budget(memory_bytes=2**20), warm=[(molecule_descriptors, "CCO")]) as sandbox:
        log = RequestLog(tmp_path, registry=registry, descriptors=sandbox)
        logs.append(log)
        log.submit(_batch("copies", 100, smiles="c1ccccc1O"))
        log.submit(_batch("over", 3, smiles=OVER_MEMORY))
        assert log.flush(DEADLINE)
        log.submit(_batch("again", 50, smiles="c1ccccc1O"))
        assert log.flush(DEADLINE)
    records = _records(tmp_path)
    phenol = [r for r in records if r.key_id in ("copies", "again")]
    assert len(phenol) == 150 and {r.descriptors["heavy_atoms"] for r in phenol} == {7.0}
    over = [r for r in records if r.key_id == "over"]
    assert len(over) == 3 and not set(MOLECULE_COLUMNS) & set().union(*(r.descriptors for r in over))  # no descriptors
    assert "protein_length" in over[0].descriptors and log.status()["descriptors_over_budget"] == 1
    assert (
        registry.get_sample_value("drugrepo_request_log_descriptors_computed_total") == 2
    )  # phenol once, the ring once
    assert registry.get_sample_value("drugrepo_request_log_descriptors_over_budget_total") == 1
