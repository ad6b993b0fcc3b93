"""``drugrepo train --da cdan``: CDAN from the CLI, source/target AUROC named, resumable, and best.pt in predict."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets.data.splits import REFERENCE_FILES
from drugrepo_assets_tests.cli.helpers import HUMAN_TRAIN, SMALL_MODEL, console_script, one_error_line


def _files(tmp_path: Path) -> dict[str, Path]:
    """Small source train/val, target train (labelled, one label unreadable: it is ignored) and target test files.

    16, 16, 16 and 8 pairs, both labels in each: what is proved is the CLI's wiring, not learning."""
    rows = pd.read_csv(HUMAN_TRAIN).head(56)
    cuts = {"train": rows.head(16), "val": rows.iloc[16:32], "target_train": rows.iloc[32:48], "test": rows.iloc[48:]}
    cuts["target_train"] = cuts["target_train"].astype({"Y": object})
    cuts["target_train"].iloc[0, cuts["target_train"].columns.get_loc("Y")] = "unknown"
    paths = {}
    for name, table in cuts.items():
        paths[name] = tmp_path / f"{name}.csv"
        table.to_csv(paths[name], index=False)
    return paths


def test_cdan_from_the_cli_names_both_domains_resumes_and_predicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Training and resuming run ``main`` here; best.pt is predicted by the script, a process that never trained."""
    files = _files(tmp_path)
    out = tmp_path / "run"
    command = [
        "train",
        *("--train", str(files["train"]), "--val", str(files["val"]), "--test", str(files["test"])),
        *("--da", "cdan", "--target-train", str(files["target_train"]), "--da-init-epoch", "2"),
        *("--out", str(out), "--batch-size", "16", "--threads", "1", "--seed", "2", *SMALL_MODEL),
    ]
    assert main([*command, "--epochs", "2"]) == 0
    first = capsys.readouterr().out
    assert "CDAN on 16 unlabelled target pairs from epoch 2" in first
    assert "target-domain test AUROC" in first
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["source_val_auroc"] == metrics["val"]["auroc"]
    assert metrics["target_test_auroc"] == metrics["test"]["auroc"]
    assert metrics["da"]["method"] == "cdan" and metrics["da"]["init_epoch"] == 2
    assert metrics["train_config"]["lr"] == 1e-4  # the reference's DA learning rate, --lr not given
    assert main([*command, "--epochs", "3", "--resume"]) == 0
    history = pd.read_csv(out / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["da_loss"].isna().tolist() == [True, False, False]
    scored = tmp_path / "scored.csv"
    predict = ["predict", "--checkpoint", str(out / "best.pt"), "--pairs", str(files["test"]), "--out", str(scored)]
    predicted = subprocess.run(
        [console_script(), *predict],
        capture_output=True,
        text=True,
        check=False,
    )
    assert predicted.returncode == 0, predicted.stderr
    assert len(pd.read_csv(scored)) == 8


def test_a_cluster_split_folder_is_read_as_its_parts(tmp_path: Path) -> None:
    """--cluster-split DIR takes drugrepo split's files; a vanilla run on them also names source and target AUROC."""
    files = _files(tmp_path)
    folder = tmp_path / "split"
    folder.mkdir()
    for part, name in REFERENCE_FILES.items():
        (folder / name).write_bytes(files[part].read_bytes())
    out = tmp_path / "run"
    args = ["train", "--cluster-split", str(folder), "--out", str(out), "--epochs", "1", "--batch-size", "16"]
    assert main([*args, "--threads", "1", *SMALL_MODEL]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] == {"train": 16, "val": 16, "test": 8}
    assert metrics["target_test_auroc"] == metrics["test"]["auroc"] and "da" not in metrics


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--target-train", "TARGET"], "--target-train needs --da cdan"),
        (["--da", "cdan"], "--da cdan needs unlabelled target-domain pairs"),
        (["--da", "cdan", "--target-train", "NOPROTEIN"], "NOPROTEIN.csv: missing column 'Protein'"),
    ],
)
def test_bad_domain_adaptation_input_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    files = _files(tmp_path)
    pd.read_csv(files["target_train"]).drop(columns="Protein").to_csv(tmp_path / "NOPROTEIN.csv", index=False)
    given = [
        str(tmp_path / "NOPROTEIN.csv") if x == "NOPROTEIN" else str(files["target_train"]) if x == "TARGET" else x
        for x in extra
    ]
    args = ["train", "--train", str(files["train"]), "--val", str(files["val"]), "--out", str(tmp_path / "run")]
    assert main([*args, *given]) == 2
    assert expected in one_error_line(capsys, "train")
