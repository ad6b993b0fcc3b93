"""``drugrepo validate``: counts, the two tables, one error line for an unusable input, S3."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets_tests.cli.helpers import HUMAN
from drugrepo_assets_tests.data.rows import write_csv
from drugrepo_assets_tests.data.servers import S3Bucket


def test_validate_prints_counts_and_writes_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, protein, _ = HUMAN[0]
    source = write_csv(
        tmp_path / "pairs.csv",
        [*HUMAN, ("CCO", protein, "yes"), ("C1CC", protein, "1"), HUMAN[0], ("", protein, "1")],
    )
    out = tmp_path / "out"
    assert main(["validate", str(source), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines() == [
        f"input: {source} (1 file)",
        "rows read: 7",
        "valid: 3",
        "rejected: 4",
        "  missing_value: 1",
        "  invalid_label: 1",
        "  invalid_smiles: 1",
        "  duplicate: 1",
        f"wrote {out / 'valid.parquet'}",
        f"wrote {out / 'rejected.parquet'}",
    ]
    valid = pd.read_parquet(out / "valid.parquet")
    rejected = pd.read_parquet(out / "rejected.parquet")
    assert list(valid["source_row"]) == [1, 2, 3]
    assert list(rejected["reason_code"]) == ["invalid_label", "invalid_smiles", "duplicate", "missing_value"]


def test_validate_bundled_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "bundled:biosnap", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:4] == ["rows read: 8240", "valid: 8240", "rejected: 0"]


@pytest.mark.parametrize(
    "name, content, problem",
    [
        ("missing.csv", None, "file not found"),
        ("x.csv", b"SMILES,Y\nCCO,1\n", "missing column 'Protein' (found: SMILES, Y)"),
        ("empty.csv", b"", "empty file"),
        ("header.csv", b"SMILES,Protein,Y\n", "no data rows (only a header)"),
        ("latin1.csv", b"SMILES,Protein,Y\nCCO,MKV\xe9,1\n", "not valid UTF-8 text (byte 0xe9 at offset 24)"),
    ],
)
def test_unreadable_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes | None, problem: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = tmp_path / "out"
    assert main(["validate", str(path), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"drugrepo validate: error: {path}: {problem}\n"
    assert not out.exists()


def test_unknown_bundled_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "bundled:davis", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drugrepo validate: error: bundled:davis: no bundled dataset 'davis'")
    assert err.count("\n") == 1


def test_validate_from_s3(s3_bucket: S3Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    client, bucket, endpoint = s3_bucket
    body = write_csv(tmp_path / "a.csv", HUMAN).read_bytes()
    client.put_object(Bucket=bucket, Key="in/human/random/train.csv", Body=body)
    out = tmp_path / "out"
    code = main(["validate", f"s3://{bucket}/in/human", "--out", str(out), "--s3-endpoint-url", endpoint])
    assert code == 0
    assert "valid: 3" in capsys.readouterr().out.splitlines()
    assert list(pd.read_parquet(out / "valid.parquet")["source_file"]) == ["random/train.csv"] * 3
