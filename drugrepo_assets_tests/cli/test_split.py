"""``drugrepo split``: the cluster split of real Human pairs as the reference's files, its summary and its refusals."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets.cli.split import REJECTED_FILE
from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.data.splits import REFERENCE_FILES
from drugrepo_assets_tests.cli.helpers import console_script, one_error_line

HUMAN_TEST = bundled_root() / "human" / "random" / "test.csv"


def test_split_writes_the_files_the_reference_reads(tmp_path: Path) -> None:
    out = tmp_path / "cluster"
    done = subprocess.run(
        [console_script(), "split", str(HUMAN_TEST), "--out", str(out), "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    files = {name: pd.read_csv(out / name) for name in REFERENCE_FILES.values()}
    for frame in files.values():
        assert list(frame.columns) == ["SMILES", "Protein", "Y", "drug_cluster", "target_cluster"]
        assert set(frame["Y"]) <= {0, 1}
    source = pd.concat([files["source_train.csv"], files["source_val.csv"]])
    target = pd.concat([files["target_train.csv"], files["target_test.csv"]])
    assert len(source) and len(target)
    assert not set(source["drug_cluster"]) & set(target["drug_cluster"])
    assert not set(source["target_cluster"]) & set(target["target_cluster"])
    assert not set(source["SMILES"]) & set(target["SMILES"])

    lines = done.stdout.splitlines()
    counted = re.search(r"valid: (\d+)", done.stdout)
    assert counted is not None, done.stdout
    valid = int(counted.group(1))
    pairs = next(line for line in lines if line.startswith("pairs: "))
    numbers = dict(re.findall(r"(train|val|target_train|test|\(dropped\)) (\d+)", pairs))
    assert int(numbers["train"]) == len(files["source_train.csv"])
    assert int(numbers["val"]) == len(files["source_val.csv"])
    assert int(numbers["target_train"]) == len(files["target_train.csv"])
    assert int(numbers["test"]) == len(files["target_test.csv"])
    assert len(source) + len(target) + int(numbers["(dropped)"]) == valid
    assert [line for line in lines if line.startswith("wrote ")] == [
        f"wrote {out / name}" for name in (*REFERENCE_FILES.values(), REJECTED_FILE)
    ]
    assert len(pd.read_csv(out / REJECTED_FILE)) == 0  # the bundled file has no refused row
    # what split writes, the other commands read
    assert len(read_pairs(str(out / "target_test.csv"))) == len(files["target_test.csv"])


def test_split_unreadable_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.csv"
    assert main(["split", str(missing), "--out", str(tmp_path / "out")]) == 2
    assert str(missing) in one_error_line(capsys, "split")
    assert not (tmp_path / "out").exists()


def test_split_refuses_an_out_inside_its_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "pairs.csv").write_text(HUMAN_TEST.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["split", str(folder), "--out", str(folder / "split")]) == 2
    assert "inside the input folder" in one_error_line(capsys, "split")
    assert capsys.readouterr().out == ""


def test_split_writes_the_rows_it_refused_with_file_row_and_reason(tmp_path: Path) -> None:
    pairs = pd.read_csv(HUMAN_TEST).head(40)
    pairs.loc[7, "SMILES"] = "C1CC"  # an unclosed ring
    source = tmp_path / "pairs.csv"
    pairs.to_csv(source, index=False)
    out = tmp_path / "cluster"
    assert main(["split", str(source), "--out", str(out)]) == 0
    rejected = pd.read_csv(out / REJECTED_FILE)
    assert len(rejected) == 1
    row = rejected.iloc[0]
    assert (row["SMILES"], row["source_file"], int(row["source_row"])) == (
        "C1CC",
        str(source),
        8,
    )  # data rows count from 1
    assert row["reason_code"] == "invalid_smiles"
    written = sum(len(pd.read_csv(out / name)) for name in REFERENCE_FILES.values())
    assert written <= 39  # the refused row is in no split
