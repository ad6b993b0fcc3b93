"""``drugrepo export-features``: a split featurised once as Parquet, read back as the training pairs; its refusals."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.exported import read_parts
from drugrepo_assets_tests.cli.helpers import console_script, one_error_line


def test_export_features_writes_what_read_parts_reads(tmp_path: Path) -> None:
    table = pd.read_csv(bundled_root() / "human" / "random" / "val.csv")
    data = tmp_path / "pairs.csv"
    table.head(60).to_csv(data, index=False)
    out = tmp_path / "features"
    done = subprocess.run(
        [console_script(), "export-features", "--data", str(data), "--split", "random", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "drugs.parquet",
        "manifest.json",
        "proteins.parquet",
        "test.parquet",
        "train.parquet",
        "val.parquet",
    ]
    parts = read_parts(out)
    sizes = {name: len(pairs) for name, pairs in parts.items()}
    assert sum(sizes.values()) == 60
    assert f"pairs: train {sizes['train']}, val {sizes['val']}, test {sizes['test']};" in done.stdout
    assert set(parts["train"].require_labels().tolist()) <= {0.0, 1.0}


def test_export_features_unreadable_input_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.csv"
    status = main(["export-features", "--train", str(missing), "--val", str(missing), "--out", str(tmp_path / "o")])
    assert status == 2
    assert str(missing) in one_error_line(capsys, "export-features")
    assert not (tmp_path / "o").exists()
