"""The request log's record on its own: one JSON line each way, the defaults of older lines, and a field of the
wrong type refused (the reader counts such a line as malformed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from drugrepo_assets.request_records import CHAMPION, SHADOW, RequestRecord, scan_request_log

RECORD = RequestRecord(
    ts="2024-01-01T00:00:00+00:00",
    endpoint="/v1/predict",
    key_id="0123abcd4567",
    model_version="drugban-human/3",
    checkpoint_id="0123456789abcdef",
    role=SHADOW,
    request_id="r1",
    pair=2,
    descriptors={"mol_weight": 180.159, "protein_length": 27.0},
    logit=-0.5,
    score=0.3775,
)


def test_a_record_survives_its_json_line_with_the_descriptors_flat_in_it() -> None:
    line = RECORD.to_json_line()
    assert "\n" not in line
    flat = json.loads(line)
    assert flat["mol_weight"] == 180.159 and flat["role"] == SHADOW and "descriptors" not in flat
    assert RequestRecord.from_json_line(line) == RECORD
    assert RequestRecord.from_json_line(line.encode()) == RECORD


def test_a_line_from_before_roles_and_request_ids_reads_with_defaults() -> None:
    record = RequestRecord.from_json_line('{"model_version": "drugban-human/1", "score": 1, "rings": 2}')
    assert (record.role, record.request_id, record.pair, record.logit) == (CHAMPION, "", None, None)
    assert record.score == 1.0 and record.descriptors == {"rings": 2.0} and record.has_score()


def test_a_non_finite_score_is_kept_but_is_not_a_score() -> None:
    record = RequestRecord.from_json_line('{"score": NaN, "logit": Infinity}')
    assert record.score is not None and math.isnan(record.score) and not record.has_score()
    assert not RequestRecord().has_score()


@pytest.mark.parametrize(
    "line",
    [
        '{"score": "0.5"}',
        '{"score": true}',
        '{"pair": 1.5}',
        '{"pair": false}',
        '{"role": null}',
        '{"request_id": 7}',
        "[1, 2]",
        '"champion"',
    ],
)
def test_a_field_of_the_wrong_type_is_refused_and_the_reader_counts_the_line(line: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        RequestRecord.from_json_line(line)
    (tmp_path / "requests-20240101-host-0123abcd.jsonl").write_text(f"{RECORD.to_json_line()}\n{line}\n")
    scan = scan_request_log(tmp_path)
    assert (scan.records, scan.malformed_lines, scan.files) == ([RECORD], 1, 1)


def test_an_absent_folder_holds_no_records(tmp_path: Path) -> None:
    scan = scan_request_log(tmp_path / "nowhere")
    assert (scan.records, scan.malformed_lines, scan.files) == ([], 0, 0)
