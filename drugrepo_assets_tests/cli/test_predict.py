"""``drugrepo predict``: the reference checkpoint reproduced, bad rows kept with a reason, bad files refused, folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets_tests.cli.helpers import HUMAN, one_error_line
from drugrepo_assets_tests.data.rows import write_csv


def test_predict_reproduces_the_reference_checkpoint(tmp_path: Path, golden_dir: Path) -> None:
    import numpy as np

    out = tmp_path / "scored.csv"
    pairs = golden_dir / "model_pairs.csv"
    assert (
        main(["predict", "--checkpoint", str(golden_dir / "model_state.pt"), "--pairs", str(pairs), "--out", str(out)])
        == 0
    )
    scored = pd.read_csv(out, keep_default_na=False)
    original = pd.read_csv(pairs)
    assert list(scored.columns) == [*original.columns, "logit", "score", "calibrated_score", "error"]
    assert scored["SMILES"].tolist() == original["SMILES"].tolist()  # row order kept
    expected = np.load(golden_dir / "model_io.npz")
    np.testing.assert_allclose(scored["logit"].astype(float), expected["logit"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(scored["score"].astype(float), expected["prob"], atol=2e-6, rtol=0)
    assert (scored["error"] == "").all()
    assert (scored["calibrated_score"] == scored["score"]).all()  # the reference state_dict records no temperature


def test_predict_reports_the_calibrated_probability_of_the_checkpoints_temperature(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    from drugrepo_assets.ml.model.calibration import TEMPERATURE_KEY
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint, save_checkpoint

    pairs = str(golden_dir / "model_pairs.csv")
    raw = ["predict", "--checkpoint", str(golden_dir / "model_state.pt"), "--pairs", pairs]
    assert main([*raw, "--out", str(tmp_path / "raw.csv")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "temperature" in line]
    assert notes == ["predict: the checkpoint records no temperature: calibrated_score = score (T = 1, not calibrated)"]
    model = load_checkpoint(str(golden_dir / "model_state.pt")).model
    save_checkpoint(str(tmp_path / "scaled.pt"), model, **{TEMPERATURE_KEY: 2.5})
    scaled = ["predict", "--checkpoint", str(tmp_path / "scaled.pt"), "--pairs", pairs]
    assert main([*scaled, "--out", str(tmp_path / "scaled.csv")]) == 0
    assert "temperature" not in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "scaled.csv")
    logits = table["logit"].to_numpy(dtype=np.float64)
    np.testing.assert_allclose(table["calibrated_score"], 1 / (1 + np.exp(-logits / 2.5)), rtol=1e-6)
    np.testing.assert_array_equal(np.argsort(table["calibrated_score"]), np.argsort(logits))


def test_predict_reports_bad_rows_and_keeps_them(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    smiles, protein, label = HUMAN[0]
    pairs = write_csv(
        tmp_path / "pairs.csv",
        [
            (smiles, protein, label),
            ("C1CC", protein, "1"),
            (smiles, protein + "J", "0"),
            ("", protein, "1"),
            ("C" * 300, protein, "0"),
        ],
    )
    out = tmp_path / "scored.csv"
    ckpt = str(golden_dir / "model_state.pt")
    assert main(["predict", "--checkpoint", ckpt, "--pairs", str(pairs), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    scored = pd.read_csv(out, keep_default_na=False)
    assert len(scored) == 5
    assert scored["logit"].iloc[0] != "" and (scored["logit"].iloc[1:] == "").all()
    errors = scored["error"].tolist()
    assert errors[0] == ""
    assert errors[1].startswith("SMILES: ") and "parse" in errors[1] and "C1CC" in errors[1]
    assert errors[2].startswith("Protein: ") and "'J'" in errors[2] and "alphabet" in errors[2]
    assert errors[3].startswith("SMILES: ") and "empty" in errors[3]
    assert errors[4].startswith("SMILES: ") and "300 atoms" in errors[4] and "290" in errors[4]
    assert "4 rows could not be scored" in err
    assert f"{pairs}: row 2: {errors[1]}" in err
    assert main(["predict", "--checkpoint", ckpt, "--pairs", str(pairs), "--out", str(out), "--strict"]) == 1


def test_predict_bad_files_exit_2_with_one_line(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = str(golden_dir / "model_state.pt")
    no_protein = write_csv(tmp_path / "x.csv", [("CCO", "MKT", "1")]).read_text().replace("Protein", "Target")
    (tmp_path / "x.csv").write_text(no_protein)
    cases = [
        (
            ["--checkpoint", ckpt, "--pairs", str(tmp_path / "missing.csv")],
            f"{tmp_path / 'missing.csv'}: file not found",
        ),
        (["--checkpoint", ckpt, "--pairs", str(tmp_path / "x.csv")], f"{tmp_path / 'x.csv'}: missing column 'Protein'"),
        (
            ["--checkpoint", str(tmp_path / "x.csv"), "--pairs", str(golden_dir / "model_pairs.csv")],
            f"checkpoint {tmp_path / 'x.csv'}: not a checkpoint",
        ),
    ]
    for args, message in cases:
        assert main(["predict", *args, "--out", str(tmp_path / "o.csv")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_predict_reads_a_folder_of_pair_files(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    golden = pd.read_csv(golden_dir / "model_pairs.csv", dtype=str).head(5)
    folder = tmp_path / "pairs"
    (folder / "sub").mkdir(parents=True)
    golden.head(3).to_csv(folder / "a.csv", index=False)
    pq.write_table(pa.Table.from_pandas(golden.iloc[3:], preserve_index=False), folder / "sub" / "b.parquet")
    (folder / "notes.txt").write_text("not pairs")
    ckpt = str(golden_dir / "model_state.pt")
    assert main(["predict", "--checkpoint", ckpt, "--pairs", str(folder), "--out", str(tmp_path / "f.csv")]) == 0
    golden.to_csv(tmp_path / "all.csv", index=False)
    assert (
        main(
            [
                "predict",
                "--checkpoint",
                ckpt,
                "--pairs",
                str(tmp_path / "all.csv"),
                "--out",
                str(tmp_path / "all_scored.csv"),
            ]
        )
        == 0
    )
    scored = pd.read_csv(tmp_path / "f.csv", keep_default_na=False)
    whole = pd.read_csv(tmp_path / "all_scored.csv", keep_default_na=False)
    assert list(scored.columns) == [
        *golden.columns,
        "source_file",
        "source_row",
        "logit",
        "score",
        "calibrated_score",
        "error",
    ]
    assert scored["source_file"].tolist() == ["a.csv"] * 3 + ["sub/b.parquet"] * 2
    assert scored["source_row"].tolist() == [1, 2, 3, 1, 2]
    assert scored["SMILES"].tolist() == golden["SMILES"].tolist()
    assert abs(scored["logit"] - whole["logit"]).max() < 1e-5
    assert list(whole.columns) == [
        *golden.columns,
        "logit",
        "score",
        "calibrated_score",
        "error",
    ]  # one file: its own columns


def test_predict_finds_its_columns_under_either_name_and_the_flags_win(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    smiles, protein, _ = HUMAN[0]
    ckpt = str(golden_dir / "model_state.pt")
    both = tmp_path / "both.csv"
    pd.DataFrame({"SMILES": ["C1CC"], "smiles": [smiles], "protein": [protein]}).to_csv(both, index=False)
    assert main(["predict", "--checkpoint", ckpt, "--pairs", str(both), "--out", str(tmp_path / "auto.csv")]) == 0
    auto = pd.read_csv(tmp_path / "auto.csv", keep_default_na=False)
    assert auto["error"].iat[0].startswith("SMILES: ") and "C1CC" in auto["error"].iat[0]  # SMILES before smiles
    args = ["predict", "--checkpoint", ckpt, "--pairs", str(both), "--smiles-col", "smiles"]
    assert main([*args, "--out", str(tmp_path / "named.csv")]) == 0
    named = pd.read_csv(tmp_path / "named.csv", keep_default_na=False)
    assert list(named.columns) == ["SMILES", "smiles", "protein", "logit", "score", "calibrated_score", "error"]
    assert named["error"].iat[0] == "" and named["logit"].iat[0] != ""
    other = write_csv(tmp_path / "other.csv", [(smiles, protein)], header=("drug", "target"))
    assert main(["predict", "--checkpoint", ckpt, "--pairs", str(other), "--out", str(tmp_path / "o.csv")]) == 2
    assert one_error_line(capsys, "predict") == f"{other}: missing columns 'SMILES', 'Protein' (found: drug, target)"
    args = ["predict", "--checkpoint", ckpt, "--pairs", str(other), "--smiles-col", "drug", "--protein-col", "target"]
    assert main([*args, "--out", str(tmp_path / "o.csv")]) == 0
    scored = pd.read_csv(tmp_path / "o.csv", keep_default_na=False)
    assert scored["logit"].iat[0] == pytest.approx(named["logit"].iat[0], abs=1e-6)
    assert main([*args[:-1], "Protein", "--out", str(tmp_path / "o.csv")]) == 2
    assert one_error_line(capsys, "predict") == f"{other}: missing column 'Protein' (found: drug, target)"
