"""The ``drugrepo`` command line: ``validate`` in-process and through the installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import build_parser, main
from drugrepo_assets_tests.data.rows import real_rows, write_csv
from drugrepo_assets_tests.data.servers import S3Bucket, moto_endpoint, s3_bucket

__all__ = ["moto_endpoint", "s3_bucket"]

HUMAN = real_rows("human/random/train.csv", [1, 2, 3])


def _console_script() -> str:
    found = Path(sys.executable).with_name("drugrepo")
    if found.exists():
        return str(found)
    located = shutil.which("drugrepo")
    if located is None:
        pytest.fail("the drugrepo console script is not installed: run pip install -e .")
    return located


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


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "validate" in capsys.readouterr().err


def test_parser_has_subcommands_for_extension() -> None:
    parser = build_parser()
    args = parser.parse_args(["validate", "in.csv", "--out", "o"])
    assert (args.command, args.input, args.out, args.s3_endpoint_url) == ("validate", "in.csv", "o", None)
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["validate", "in.csv"])
    assert info.value.code == 2


def test_console_script_missing_file_has_no_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    completed = subprocess.run(
        [_console_script(), "validate", str(missing), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert completed.stderr == f"drugrepo validate: error: {missing}: file not found\n"
    assert "Traceback" not in completed.stderr


def test_console_script_validates_a_file(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "pairs.csv", HUMAN)
    completed = subprocess.run(
        [_console_script(), "validate", str(source), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "valid: 3" in completed.stdout.splitlines()
    assert (tmp_path / "out" / "valid.parquet").is_file()


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
    assert list(scored.columns) == [*original.columns, "logit", "score", "error"]
    assert scored["SMILES"].tolist() == original["SMILES"].tolist()  # row order kept
    expected = np.load(golden_dir / "model_io.npz")
    np.testing.assert_allclose(scored["logit"].astype(float), expected["logit"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(scored["score"].astype(float), expected["prob"], atol=2e-6, rtol=0)
    assert (scored["error"] == "").all()


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


def test_train_command_writes_checkpoint_and_val_threshold_metrics(tmp_path: Path) -> None:
    import json

    import torch

    rows = pd.read_csv(
        Path(__file__).resolve().parents[1] / "drugrepo_assets/bundled/drugban/human/random/train.csv"
    ).head(120)
    rows.head(64).to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[64:96].to_csv(tmp_path / "val.csv", index=False)
    rows.iloc[96:].to_csv(tmp_path / "test.csv", index=False)
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
    assert main([*args, "--out", str(out), "--epochs", "1", "--batch-size", "32", "--threads", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["pairs"] == {"train": 64, "val": 32, "test": 24}
    assert metrics["best_epoch"] == 1
    assert metrics["test"]["threshold"] == metrics["val"]["threshold"]
    assert 0.0 <= metrics["test"]["auroc"] <= 1.0
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 1
    assert (out / "history.csv").read_text().startswith("epoch,train_loss,val_auroc")


def test_screen_ranks_library_against_fasta_targets(tmp_path: Path, golden_dir: Path) -> None:
    import numpy as np

    from drugrepo_assets.ml.dataset import PairData
    from drugrepo_assets.ml.model import load_checkpoint
    from drugrepo_assets.ml.predict import predict_logits

    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:6].tolist()
    proteins = golden["Protein"].unique()[:2].tolist()
    (tmp_path / "lib.smi").write_text("".join(f"{s} mol{i}\n" for i, s in enumerate(smiles)) + "C1CC broken\n")
    (tmp_path / "t.fasta").write_text("".join(f">T{i} a target\n{p[:50]}\n{p[50:]}\n" for i, p in enumerate(proteins)))
    (tmp_path / "known.csv").write_text("target_id,drug_id\nT0,mol1\nT0,mol4\nT1,mol2\n")
    out = tmp_path / "run"
    ckpt = str(golden_dir / "model_state.pt")
    args = [
        "screen",
        "--checkpoint",
        ckpt,
        "--library",
        str(tmp_path / "lib.smi"),
        "--targets",
        str(tmp_path / "t.fasta"),
    ]
    assert (
        main(
            [*args, "--out", str(out), "--batch-size", "4", "--shard-size", "4", "--known", str(tmp_path / "known.csv")]
        )
        == 0
    )
    table = pd.concat([pd.read_parquet(p) for p in sorted((out / "ranked").rglob("*.parquet"))])
    assert len(table) == 12 and set(table["target_id"]) == {"T0", "T1"}
    model, _ = load_checkpoint(ckpt)
    for (target, drug), row in table.set_index(["target_id", "drug_id"]).iterrows():
        pair = PairData.from_lists([smiles[int(drug[3:])]], [proteins[int(target[1:])]])
        assert abs(row["logit"] - predict_logits(model, pair)[0]) < 1e-5
    for _, group in table.groupby("target_id"):
        group = group.sort_values("rank")
        assert group["rank"].tolist() == list(range(1, 7))
        assert np.all(np.diff(group["logit"].to_numpy()) <= 0)
    pairs = pd.read_parquet(out / "scores")
    assert len(pairs) == 12 and list(pairs.columns) == ["target_id", "drug_id", "logit"]
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected[["kind", "line", "id"]].values.tolist() == [["molecule", 7, "broken"]]
    assert rejected["reason"].iat[0].startswith("SMILES: ") and "parse 'C1CC'" in rejected["reason"].iat[0]
    report = pd.read_csv(out / "enrichment.csv")
    assert report["target_id"].tolist() == ["T0", "T1"] and report["actives"].tolist() == [2, 1]
    assert (out / "enrichment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*args, "--out", str(tmp_path / "top"), "--top", "2"]) == 0
    top = pd.read_csv(tmp_path / "top" / "top.csv")
    assert top.groupby("target_id").size().tolist() == [2, 2]
    best = table[table["rank"] <= 2].sort_values(["target_id", "rank"])
    assert top["drug_id"].tolist() == best["drug_id"].tolist()


def test_screen_refuses_a_folder_holding_another_screen(tmp_path: Path, golden_dir: Path, capsys) -> None:
    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    (tmp_path / "lib.smi").write_text("".join(f"{s} m{i}\n" for i, s in enumerate(golden["SMILES"].unique()[:3])))
    (tmp_path / "t.fasta").write_text(f">T0\n{golden['Protein'].iloc[0]}\n")
    args = [
        "screen",
        "--checkpoint",
        str(golden_dir / "model_state.pt"),
        "--library",
        str(tmp_path / "lib.smi"),
        "--targets",
        str(tmp_path / "t.fasta"),
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*args, "--top", "2"]) == 0
    assert main([*args, "--top", "3"]) == 2
    assert "holds a screen with other settings (top); use another folder" in capsys.readouterr().err


def test_screen_reads_and_writes_s3_as_it_does_local_folders(
    tmp_path: Path, golden_dir: Path, s3_bucket: S3Bucket, capsys
) -> None:
    import gzip
    import io

    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:9].tolist()
    local = tmp_path / "lib"
    local.mkdir()
    (local / "a.smi.gz").write_bytes(gzip.compress("".join(f"{s}\tA{i}\n" for i, s in enumerate(smiles[:5])).encode()))
    (local / "b.csv").write_text(
        "SMILES,ID\n" + "".join(f"{s},B{i}\n" for i, s in enumerate(smiles[5:])) + "C1CC,broken\n"
    )
    for name in ("a.smi.gz", "b.csv"):
        s3_bucket.client.upload_file(str(local / name), s3_bucket.name, f"libs/v1/{name}")
    (tmp_path / "t.fasta").write_text(f">T0\n{golden['Protein'].iloc[0]}\n>T1\n{golden['Protein'].iloc[3]}\n")
    common = [
        "screen",
        "--checkpoint",
        str(golden_dir / "model_state.pt"),
        "--targets",
        str(tmp_path / "t.fasta"),
        "--top",
        "3",
        "--shard-size",
        "4",
        "--quiet",
    ]
    remote = [
        *common,
        "--library",
        f"s3://{s3_bucket.name}/libs/v1",
        "--out",
        f"s3://{s3_bucket.name}/runs/one",
        "--s3-endpoint-url",
        s3_bucket.endpoint_url,
    ]
    assert main(remote) == 0
    assert main([*common, "--library", str(local), "--out", str(tmp_path / "run")]) == 0

    def read(key: str) -> bytes:
        return s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=f"runs/one/{key}")["Body"].read()

    pd.testing.assert_frame_equal(
        pd.read_parquet(io.BytesIO(read("top.parquet"))), pd.read_parquet(tmp_path / "run" / "top.parquet")
    )
    rejected = pd.read_csv(io.BytesIO(read("rejected.csv")))
    assert rejected[["file", "line", "id"]].values.tolist() == [["b.csv", 6, "broken"]]
    assert rejected["reason"].iat[0].startswith("SMILES: ") and "parse 'C1CC'" in rejected["reason"].iat[0]
    capsys.readouterr()
    assert main(remote) == 0  # the same screen again: every shard kept
    assert "(3 shards kept from an earlier run)" in capsys.readouterr().out


# --- bad input: one error line naming the file, exit 2, never a traceback ---------------------------


def _golden_inputs(tmp_path: Path, golden_dir: Path, molecules: int = 4) -> tuple[list[str], list[str]]:
    """A .smi library of the golden pairs' first molecules and a FASTA of two of their proteins."""
    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:molecules].tolist()
    proteins = golden["Protein"].unique()[:2].tolist()
    (tmp_path / "lib.smi").write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    (tmp_path / "t.fasta").write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins)))
    return smiles, proteins


def _screen_args(tmp_path: Path, golden_dir: Path, **given: str) -> list[str]:
    options = {
        "checkpoint": str(golden_dir / "model_state.pt"),
        "library": str(tmp_path / "lib.smi"),
        "targets": str(tmp_path / "t.fasta"),
        "out": str(tmp_path / "run"),
        **given,
    }
    return ["screen", *[x for k, v in options.items() for x in (f"--{k}", v)], "--quiet", "--workers", "1"]


def _one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"drugrepo {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0].removeprefix(f"drugrepo {command}: error: ")


@pytest.mark.parametrize("command", ["predict", "screen"])
def test_an_unusable_checkpoint_exits_2_naming_it_and_why(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    _golden_inputs(tmp_path, golden_dir)
    good = (golden_dir / "model_state.pt").read_bytes()
    cases = {
        "empty.pt": (b"", "empty"),
        "cut.pt": (good[: len(good) // 2], "truncated"),
        "text.pt": (b"SMILES,Protein,Y\n", "not a checkpoint"),
        "missing.pt": (None, "file not found"),
    }
    for name, (data, why) in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        ckpt = str(tmp_path / name)
        if command == "predict":
            args = [
                "predict",
                "--checkpoint",
                ckpt,
                "--pairs",
                str(golden_dir / "model_pairs.csv"),
                "--out",
                str(tmp_path / "o.csv"),
            ]
        else:
            args = _screen_args(tmp_path, golden_dir, checkpoint=ckpt)
        assert main(args) == 2, name
        message = _one_error_line(capsys, command)
        assert message.startswith(f"checkpoint {ckpt}: ") and why in message, message
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "run" / "scores").exists()


def test_screen_refuses_ragged_target_rows_into_rejected_csv(tmp_path: Path, golden_dir: Path) -> None:
    _, proteins = _golden_inputs(tmp_path, golden_dir)
    targets = tmp_path / "t.csv"
    targets.write_text(f"id,sequence\nT0,{proteins[0]}\nT1,{proteins[1]},extra\nT2\nT3,{proteins[1]}\n")
    assert main(_screen_args(tmp_path, golden_dir, targets=str(targets))) == 0
    rejected = pd.read_csv(tmp_path / "run" / "rejected.csv", keep_default_na=False)
    assert rejected[["kind", "file", "line", "id", "reason"]].values.tolist() == [
        ["target", str(targets), 3, "T1", "fields: 3, the header has 2"],
        ["target", str(targets), 4, "T2", "fields: 1, the header has 2"],
    ]
    ranked = pd.read_parquet(tmp_path / "run" / "ranked")
    assert sorted(set(ranked["target_id"])) == ["T0", "T3"]


def test_screen_refuses_a_duplicate_target_id_and_keeps_the_first(tmp_path: Path, golden_dir: Path) -> None:
    _, proteins = _golden_inputs(tmp_path, golden_dir)
    (tmp_path / "dup.fasta").write_text(f">T0 first\n{proteins[0]}\n>T0 again\n{proteins[1]}\n")
    (tmp_path / "first.fasta").write_text(f">T0 first\n{proteins[0]}\n")
    assert main(_screen_args(tmp_path, golden_dir, targets=str(tmp_path / "dup.fasta"))) == 0
    assert (
        main(_screen_args(tmp_path, golden_dir, targets=str(tmp_path / "first.fasta"), out=str(tmp_path / "one"))) == 0
    )
    rejected = pd.read_csv(tmp_path / "run" / "rejected.csv", keep_default_na=False)
    assert rejected[["kind", "line", "id", "reason"]].values.tolist() == [
        ["target", 3, "T0", "id: 'T0' already used on an earlier record"]
    ]
    dup = pd.read_parquet(tmp_path / "run" / "ranked").sort_values("drug_id", ignore_index=True)
    one = pd.read_parquet(tmp_path / "one" / "ranked").sort_values("drug_id", ignore_index=True)
    assert len(dup) == 4  # one ranking of 4 molecules, not two merged
    pd.testing.assert_frame_equal(
        dup[["target_id", "drug_id", "logit", "rank"]], one[["target_id", "drug_id", "logit", "rank"]]
    )


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n# only a comment\n\n"])
def test_screen_an_empty_library_even_with_a_bom_is_no_molecules(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    _golden_inputs(tmp_path, golden_dir)
    (tmp_path / "empty.smi").write_bytes(content)
    assert main(_screen_args(tmp_path, golden_dir, library=str(tmp_path / "empty.smi"))) == 2
    assert _one_error_line(capsys, "screen") == f"{tmp_path / 'empty.smi'}: no molecules"


def test_predict_and_validate_give_one_answer_for_a_header_only_file(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = write_csv(tmp_path / "header.csv", [])
    assert main(["validate", str(header), "--out", str(tmp_path / "v")]) == 2
    validated = _one_error_line(capsys, "validate")
    ckpt = str(golden_dir / "model_state.pt")
    assert main(["predict", "--checkpoint", ckpt, "--pairs", str(header), "--out", str(tmp_path / "o.csv")]) == 2
    predicted = _one_error_line(capsys, "predict")
    assert predicted == validated == f"{header}: no data rows (only a header)"
    assert not (tmp_path / "o.csv").exists()


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
    assert list(scored.columns) == [*golden.columns, "source_file", "source_row", "logit", "score", "error"]
    assert scored["source_file"].tolist() == ["a.csv"] * 3 + ["sub/b.parquet"] * 2
    assert scored["source_row"].tolist() == [1, 2, 3, 1, 2]
    assert scored["SMILES"].tolist() == golden["SMILES"].tolist()
    assert abs(scored["logit"] - whole["logit"]).max() < 1e-5
    assert list(whole.columns) == [*golden.columns, "logit", "score", "error"]  # one file: its own columns


@pytest.mark.parametrize("command", ["validate", "train", "predict", "screen"])
def test_an_unwritable_out_is_refused_before_any_work(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    _golden_inputs(tmp_path, golden_dir)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder must be")
    out = str(blocker / "out")
    pairs = str(golden_dir / "model_pairs.csv")
    ckpt = str(golden_dir / "model_state.pt")
    args = {
        "validate": ["validate", pairs, "--out", out],
        "train": ["train", "--train", pairs, "--val", pairs, "--out", out, "--epochs", "50"],
        "predict": ["predict", "--checkpoint", ckpt, "--pairs", pairs, "--out", out],
        "screen": _screen_args(tmp_path, golden_dir, out=out),
    }[command]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing read, scored or trained: the first line is the refusal
    assert captured.err.splitlines() == [f"drugrepo {command}: error: --out {out}: {blocker} is not a folder"]
    assert blocker.read_text() == "a file where a folder must be"


def test_missing_out_folders_are_created(tmp_path: Path, golden_dir: Path) -> None:
    _golden_inputs(tmp_path, golden_dir)
    ckpt = str(golden_dir / "model_state.pt")
    out = tmp_path / "new" / "deeper" / "scored.csv"
    assert (
        main(["predict", "--checkpoint", ckpt, "--pairs", str(golden_dir / "model_pairs.csv"), "--out", str(out)]) == 0
    )
    assert len(pd.read_csv(out)) == len(pd.read_csv(golden_dir / "model_pairs.csv"))
    assert main(_screen_args(tmp_path, golden_dir, out=str(tmp_path / "new" / "run"), top="2")) == 0
    assert (tmp_path / "new" / "run" / "top.csv").is_file()
    assert (
        main(["predict", "--checkpoint", ckpt, "--pairs", str(golden_dir / "model_pairs.csv"), "--out", str(tmp_path)])
        == 2
    )


def test_screen_outputs_belong_to_one_run(tmp_path: Path, golden_dir: Path) -> None:
    _golden_inputs(tmp_path, golden_dir)
    (tmp_path / "bad.smi").write_text((tmp_path / "lib.smi").read_text() + "C1CC broken\n")
    (tmp_path / "known.csv").write_text("target_id,drug_id\nT0,m1\nT1,m2\n")
    run = tmp_path / "run"
    assert (
        main(_screen_args(tmp_path, golden_dir, library=str(tmp_path / "bad.smi"), known=str(tmp_path / "known.csv")))
        == 0
    )
    assert len(pd.read_csv(run / "rejected.csv")) == 1 and (run / "enrichment.csv").is_file()
    # the same screen again without --known: the earlier report is not this run's
    assert main(_screen_args(tmp_path, golden_dir, library=str(tmp_path / "bad.smi"))) == 0
    assert not (run / "enrichment.csv").exists() and not (run / "enrichment.png").exists()
    # another library in a fresh folder with no refused row: rejected.csv is there, and empty
    assert main(_screen_args(tmp_path, golden_dir, out=str(tmp_path / "clean"))) == 0
    assert len(pd.read_csv(tmp_path / "clean" / "rejected.csv")) == 0


def test_train_leaves_no_rejected_file_of_an_earlier_run(tmp_path: Path) -> None:
    rows = pd.read_csv(
        Path(__file__).resolve().parents[1] / "drugrepo_assets/bundled/drugban/human/random/train.csv"
    ).head(48)
    rows.head(32).to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[32:].to_csv(tmp_path / "val.csv", index=False)
    bad = pd.concat([rows.head(32), pd.DataFrame([{"SMILES": "C1CC", "Protein": rows["Protein"].iat[0], "Y": 1}])])
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
    ]
    assert main(["train", "--train", str(tmp_path / "train_bad.csv"), *common]) == 0
    assert len(pd.read_parquet(out / "train_rejected.parquet")) == 1
    assert main(["train", "--train", str(tmp_path / "train.csv"), *common]) == 0
    assert not (out / "train_rejected.parquet").exists()


@pytest.mark.parametrize(
    "args, option",
    [
        (["predict", "--checkpoint", "c", "--pairs", "p", "--out", "o", "--batch-size", "0"], "--batch-size"),
        (
            ["screen", "--checkpoint", "c", "--library", "l", "--targets", "t", "--out", "o", "--shard-size", "-3"],
            "--shard-size",
        ),
        (["screen", "--checkpoint", "c", "--library", "l", "--targets", "t", "--out", "o", "--top", "0"], "--top"),
        (
            ["screen", "--checkpoint", "c", "--library", "l", "--targets", "t", "--out", "o", "--workers", "x"],
            "--workers",
        ),
        (["train", "--train", "a", "--val", "b", "--out", "o", "--epochs", "0"], "--epochs"),
        (["train", "--train", "a", "--val", "b", "--out", "o", "--lr", "nan"], "--lr"),
    ],
)
def test_out_of_range_numbers_are_usage_errors(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    assert f"argument {option}: " in capsys.readouterr().err


def test_an_unknown_device_exits_2(tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = str(golden_dir / "model_state.pt")
    pairs = str(golden_dir / "model_pairs.csv")
    for device, why in (("foo", "not a device name"), ("cuda:99", "no such CUDA device")):
        assert (
            main(
                [
                    "predict",
                    "--checkpoint",
                    ckpt,
                    "--pairs",
                    pairs,
                    "--out",
                    str(tmp_path / "o.csv"),
                    "--device",
                    device,
                ]
            )
            == 2
        )
        assert _one_error_line(capsys, "predict").startswith(f"--device {device}: {why}")


def test_console_script_bad_checkpoint_has_no_traceback(tmp_path: Path, golden_dir: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    completed = subprocess.run(
        [
            _console_script(),
            "predict",
            "--checkpoint",
            str(tmp_path / "empty.pt"),
            "--pairs",
            str(golden_dir / "model_pairs.csv"),
            "--out",
            str(tmp_path / "o.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2
    assert (
        completed.stderr
        == f"drugrepo predict: error: checkpoint {tmp_path / 'empty.pt'}: empty file (0 bytes), not a checkpoint\n"
    )
