"""``drugrepo train``: the checkpoint, metrics.json (probability threshold, checkpoint id), history and refused rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.validate import validate_pairs
from drugrepo_assets.ml.evaluate import choose_threshold
from drugrepo_assets.ml.model.checkpoint import checkpoint_id, load_checkpoint
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.predict import score_table
from drugrepo_assets_tests.cli.helpers import HUMAN_TRAIN, SMALL_MODEL, one_error_line


def test_train_command_writes_checkpoint_and_val_threshold_metrics(tmp_path: Path) -> None:
    import json

    import torch

    rows = pd.read_csv(HUMAN_TRAIN).head(64)  # both labels in each part; the CLI's wiring is proved, not learning
    rows.head(32).to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[32:48].to_csv(tmp_path / "val.csv", index=False)
    rows.iloc[48:].to_csv(tmp_path / "test.csv", index=False)
    out = tmp_path / "run"
    args = [
        "train",
        "--train",
        str(tmp_path / "train.csv"),
        "--val",
        str(tmp_path / "val.csv"),
        "--test",
        str(tmp_path / "test.csv"),
    ]
    assert main([*args, "--out", str(out), "--epochs", "1", "--batch-size", "32", "--threads", "2", *SMALL_MODEL]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] == {"train": 32, "val": 16, "test": 16}
    assert metrics["best_epoch"] == 1
    assert metrics["threshold"] == metrics["test"]["threshold"] == metrics["val"]["threshold"]
    assert 0.0 <= metrics["test"]["auroc"] <= 1.0
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 1
    assert (out / "history.csv").read_text().startswith("epoch,train_loss,val_auroc")
    loaded = load_checkpoint(str(out / "best.pt"))
    model = loaded.model
    assert metrics["checkpoint_id"] == loaded.checkpoint_id == checkpoint_id(model)
    # the threshold is on probabilities: the F1-best one of best.pt's validation scores
    val = score_table(model, validate_pairs(read_pairs(str(tmp_path / "val.csv"))).valid).table
    expected = choose_threshold(val["label"].to_numpy(), val["score"].to_numpy())
    assert metrics["threshold"] == pytest.approx(expected, rel=1e-5)
    assert 0.0 < metrics["threshold"] < 1.0


def test_train_without_test_pairs_records_no_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --model-width (the one test here at the default): the checkpoint is the reference DrugBAN."""
    import json

    rows = pd.read_csv(HUMAN_TRAIN).head(48)
    rows.head(32).to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[32:].to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "run"
    args = ["train", "--train", str(tmp_path / "train.csv"), "--val", str(tmp_path / "val.csv"), "--out", str(out)]
    assert main([*args, "--epochs", "1", "--batch-size", "16", "--threads", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["threshold"] is None and "val" not in metrics and "test" not in metrics
    loaded = load_checkpoint(str(out / "best.pt"))
    assert metrics["checkpoint_id"] == loaded.checkpoint_id and loaded.model.config == DrugBANConfig()
    assert f"checkpoint {metrics['checkpoint_id']}" in capsys.readouterr().out


def test_train_refuses_a_remote_out_and_an_unknown_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = str(tmp_path / "p.csv")
    assert main(["train", "--train", pairs, "--val", pairs, "--out", "s3://bucket/run"]) == 2
    assert (
        one_error_line(capsys, "train")
        == "--out s3://bucket/run: give a local folder (checkpoints are written on this machine)"
    )
    with pytest.raises(SystemExit) as info:
        main(["train", "--data", pairs, "--split", "cold_protein", "--out", str(tmp_path / "run")])
    assert info.value.code == 2
    assert "argument --split: 'cold_protein' is not one of random, cold_drug, cold_target" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_leaves_no_rejected_file_of_an_earlier_run(tmp_path: Path) -> None:
    rows = pd.read_csv(HUMAN_TRAIN).head(32)
    rows.head(16).to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[16:].to_csv(tmp_path / "val.csv", index=False)
    bad = pd.concat([rows.head(16), pd.DataFrame([{"SMILES": "C1CC", "Protein": rows["Protein"].iat[0], "Y": 1}])])
    bad.to_csv(tmp_path / "train_bad.csv", index=False)
    out = tmp_path / "run"
    common = [
        "--val",
        str(tmp_path / "val.csv"),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--threads",
        "1",
        *SMALL_MODEL,
    ]
    assert main(["train", "--train", str(tmp_path / "train_bad.csv"), *common]) == 0
    assert len(pd.read_parquet(out / "train_rejected.parquet")) == 1
    assert main(["train", "--train", str(tmp_path / "train.csv"), *common]) == 0
    assert not (out / "train_rejected.parquet").exists()
