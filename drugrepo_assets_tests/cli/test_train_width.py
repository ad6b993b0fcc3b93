"""``drugrepo train --model-width``: the reference's shape at another width, recorded in the checkpoint."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets_tests.cli.helpers import HUMAN_TRAIN, one_error_line


def _parts(folder: Path) -> list[str]:
    rows = pd.read_csv(HUMAN_TRAIN).head(48)  # both labels in each part
    rows.head(32).to_csv(folder / "train.csv", index=False)
    rows.iloc[32:].to_csv(folder / "val.csv", index=False)
    return ["train", "--train", str(folder / "train.csv"), "--val", str(folder / "val.csv"), "--epochs", "1"]


def test_a_narrower_model_is_trained_and_its_checkpoint_says_so(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main([*_parts(tmp_path), "--out", str(out), "--model-width", "8"]) == 0
    loaded = load_checkpoint(str(out / "best.pt"))
    assert loaded.model.config == DrugBANConfig.of_width(8)


def test_a_width_the_checkpoint_format_cannot_hold_is_refused_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main([*_parts(tmp_path), "--out", str(out), "--model-width", "1000"]) == 2
    assert "--model-width 1000: DrugBAN config: mlp_hidden_dim = 4000 is above" in one_error_line(capsys, "train")
    assert not (out / "best.pt").exists()
