"""``drugrepo`` itself: the parser, the help, the installed console script, and the checks every command shares
(``cli/common.py``: --out, --device, numbers, checkpoints)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import build_parser, main
from drugrepo_assets_tests.cli.helpers import HUMAN, console_script, golden_inputs, one_error_line, screen_args
from drugrepo_assets_tests.data.rows import write_csv


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
        [console_script(), "validate", str(missing), "--out", str(tmp_path / "out")],
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
        [console_script(), "validate", str(source), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "valid: 3" in completed.stdout.splitlines()
    assert (tmp_path / "out" / "valid.parquet").is_file()


def test_console_script_bad_checkpoint_has_no_traceback(tmp_path: Path, golden_dir: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    completed = subprocess.run(
        [
            console_script(),
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


@pytest.mark.parametrize("command", ["predict", "screen"])
def test_an_unusable_checkpoint_exits_2_naming_it_and_why(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    golden_inputs(tmp_path, golden_dir)
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
            args = screen_args(tmp_path, golden_dir, checkpoint=ckpt)
        assert main(args) == 2, name
        message = one_error_line(capsys, command)
        assert message.startswith(f"checkpoint {ckpt}: ") and why in message, message
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "run" / "scores").exists()


@pytest.mark.parametrize("command", ["validate", "train", "predict", "screen"])
def test_an_unwritable_out_is_refused_before_any_work(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    golden_inputs(tmp_path, golden_dir)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder must be")
    out = str(blocker / "out")
    pairs = str(golden_dir / "model_pairs.csv")
    ckpt = str(golden_dir / "model_state.pt")
    args = {
        "validate": ["validate", pairs, "--out", out],
        "train": ["train", "--train", pairs, "--val", pairs, "--out", out, "--epochs", "50"],
        "predict": ["predict", "--checkpoint", ckpt, "--pairs", pairs, "--out", out],
        "screen": screen_args(tmp_path, golden_dir, out=out),
    }[command]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing read, scored or trained: the first line is the refusal
    assert captured.err.splitlines() == [f"drugrepo {command}: error: --out {out}: {blocker} is not a folder"]
    assert blocker.read_text() == "a file where a folder must be"


def test_missing_out_folders_are_created(tmp_path: Path, golden_dir: Path) -> None:
    golden_inputs(tmp_path, golden_dir)
    ckpt = str(golden_dir / "model_state.pt")
    out = tmp_path / "new" / "deeper" / "scored.csv"
    assert (
        main(["predict", "--checkpoint", ckpt, "--pairs", str(golden_dir / "model_pairs.csv"), "--out", str(out)]) == 0
    )
    assert len(pd.read_csv(out)) == len(pd.read_csv(golden_dir / "model_pairs.csv"))
    assert main(screen_args(tmp_path, golden_dir, out=str(tmp_path / "new" / "run"), top="2")) == 0
    assert (tmp_path / "new" / "run" / "top.csv").is_file()
    assert (
        main(["predict", "--checkpoint", ckpt, "--pairs", str(golden_dir / "model_pairs.csv"), "--out", str(tmp_path)])
        == 2
    )


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
        assert one_error_line(capsys, "predict").startswith(f"--device {device}: {why}")


def test_predict_and_validate_give_one_answer_for_a_header_only_file(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = write_csv(tmp_path / "header.csv", [])
    assert main(["validate", str(header), "--out", str(tmp_path / "v")]) == 2
    validated = one_error_line(capsys, "validate")
    ckpt = str(golden_dir / "model_state.pt")
    assert main(["predict", "--checkpoint", ckpt, "--pairs", str(header), "--out", str(tmp_path / "o.csv")]) == 2
    predicted = one_error_line(capsys, "predict")
    assert predicted == validated == f"{header}: no data rows (only a header)"
    assert not (tmp_path / "o.csv").exists()
