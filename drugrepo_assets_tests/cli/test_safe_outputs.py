"""Safe outputs (issue 21, findings 7, 8, 14), through the installed ``drugrepo`` script (refusals of inputs and
suffixes through ``main`` in this process, the same code without the script's start): --out is never a device,
a FIFO, a symlink out of its folder, an input or inside an input folder; a file's format follows its suffix; a
screen of a library with nothing to score leaves no run folder."""

from __future__ import annotations

import gzip
import os
import stat
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets.cli.common import out_problem
from drugrepo_assets_tests.cli.helpers import console_script, golden_inputs, one_error_line, screen_args

pytestmark = pytest.mark.slow(40)


def drugrepo(*args: str) -> subprocess.CompletedProcess[str]:
    """The console script run as a user runs it (a FIFO ``--out`` that were opened would block: the timeout fails it)."""
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=300)


def refused(completed: subprocess.CompletedProcess[str], command: str, out: str | Path) -> str:
    """The reason of the one ``--out`` error line of an exit-2 run that wrote nothing to stdout."""
    assert completed.returncode == 2, completed.stderr
    assert completed.stdout == "" and "Traceback" not in completed.stderr, completed.stderr
    prefix = f"drugrepo {command}: error: --out {out}: "
    (line,) = completed.stderr.splitlines()
    assert line.startswith(prefix), line
    return line.removeprefix(prefix)


def refused_here(capsys: pytest.CaptureFixture[str], args: list[str], command: str, out: str | Path) -> str:
    """`refused` of ``drugrepo ARGS`` run in this process: the same refusal, without the script's ~3 s start."""
    code = main(args)
    captured = capsys.readouterr()
    return refused(subprocess.CompletedProcess(args, code, captured.out, captured.err), command, out)


@pytest.fixture
def pairs(tmp_path: Path, golden_dir: Path) -> pd.DataFrame:
    """Three of the golden pairs (SMILES, Protein, Y)."""
    return pd.read_csv(golden_dir / "model_pairs.csv").head(3)


def predict_args(golden_dir: Path, source: Path | str, out: Path | str) -> list[str]:
    """``drugrepo predict`` of ``source`` with the golden checkpoint into ``out``."""
    return ["predict", "--checkpoint", str(golden_dir / "model_state.pt"), "--pairs", str(source), "--out", str(out)]


def predict(golden_dir: Path, source: Path | str, out: Path | str) -> subprocess.CompletedProcess[str]:
    return drugrepo(*predict_args(golden_dir, source, out))


def test_predict_refuses_a_device_out_and_leaves_it_a_device(tmp_path: Path, golden_dir: Path, pairs) -> None:
    pairs.to_csv(tmp_path / "in.csv", index=False)
    completed = predict(golden_dir, tmp_path / "in.csv", "/dev/null")
    assert refused(completed, "predict", "/dev/null") == "is a device, not a file"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_predict_refuses_a_fifo_out_without_opening_it(tmp_path: Path, golden_dir: Path, pairs) -> None:
    pairs.to_csv(tmp_path / "in.csv", index=False)
    fifo = tmp_path / "o.csv"
    os.mkfifo(fifo)
    assert refused(predict(golden_dir, tmp_path / "in.csv", fifo), "predict", fifo) == "is a FIFO, not a file"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_predict_refuses_a_symlink_out_of_its_folder_and_follows_one_inside(
    tmp_path: Path, golden_dir: Path, pairs
) -> None:
    pairs.to_csv(tmp_path / "in.csv", index=False)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    precious = tmp_path / "elsewhere" / "precious.csv"
    precious.write_text("keep me\n")
    link = tmp_path / "out" / "o.csv"
    link.symlink_to(precious)
    reason = refused(predict(golden_dir, tmp_path / "in.csv", link), "predict", link)
    assert reason == f"is a symlink to {precious}, outside its folder; name the target itself"
    assert link.is_symlink() and precious.read_text() == "keep me\n"

    inside = tmp_path / "out" / "latest.csv"
    inside.symlink_to("o-1.csv")  # a dangling link to a file of its own folder: written through
    completed = predict(golden_dir, tmp_path / "in.csv", inside)
    assert completed.returncode == 0, completed.stderr
    assert inside.is_symlink() and len(pd.read_csv(tmp_path / "out" / "o-1.csv")) == 3


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("via", ["itself", "a symlink", "a hard link"])
def test_predict_refuses_its_own_input_as_out(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], pairs, suffix: str, via: str
) -> None:
    source = tmp_path / f"in{suffix}"
    pairs.to_csv(source, index=False) if suffix == ".csv" else pairs.to_parquet(source, index=False)
    before = source.read_bytes()
    out = {"itself": source, "a symlink": tmp_path / f"alias{suffix}", "a hard link": tmp_path / f"hard{suffix}"}[via]
    if via == "a symlink":
        out.symlink_to(source.name)
    elif via == "a hard link":
        os.link(source, out)
    assert refused_here(capsys, predict_args(golden_dir, source, out), "predict", out) == f"is the input {source}"
    assert source.read_bytes() == before


def test_predict_refuses_an_out_inside_its_input_folder(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], pairs
) -> None:
    folder = tmp_path / "pairs"
    folder.mkdir()
    pairs.to_csv(folder / "a.csv", index=False)
    out = folder / "scored" / "o.csv"
    reason = refused_here(capsys, predict_args(golden_dir, folder, out), "predict", out)
    assert reason == f"is inside the input folder {folder} (a rerun would read the outputs as input)"
    assert sorted(p.name for p in folder.iterdir()) == ["a.csv"]


def test_predict_refuses_an_unknown_suffix(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], pairs
) -> None:
    pairs.to_csv(tmp_path / "in.csv", index=False)
    out = tmp_path / "o.txt"
    reason = refused_here(capsys, predict_args(golden_dir, tmp_path / "in.csv", out), "predict", out)
    assert reason == "unknown suffix: the output's format follows it (.csv, .csv.gz, .parquet, .pq)"
    assert not out.exists()


def test_predict_writes_the_format_its_suffix_names(tmp_path: Path, golden_dir: Path, pairs) -> None:
    pairs.to_csv(tmp_path / "in.csv", index=False)
    completed = predict(golden_dir, tmp_path / "in.csv", tmp_path / "o.parquet")
    assert completed.returncode == 0, completed.stderr
    ckpt = str(golden_dir / "model_state.pt")
    for name in ("o.csv", "o.csv.gz"):
        assert (
            main(["predict", "--checkpoint", ckpt, "--pairs", str(tmp_path / "in.csv"), "--out", str(tmp_path / name)])
            == 0
        )
    assert (tmp_path / "o.parquet").read_bytes()[:4] == b"PAR1"
    as_csv = pd.read_csv(tmp_path / "o.csv", keep_default_na=False)
    as_parquet = pd.read_parquet(tmp_path / "o.parquet")
    assert list(as_parquet.columns) == [*pairs.columns, "logit", "score", "calibrated_score", "error"]
    pd.testing.assert_series_equal(as_parquet["logit"], as_csv["logit"], atol=1e-6, check_dtype=False)
    assert as_parquet["SMILES"].tolist() == pairs["SMILES"].tolist()
    unzipped = gzip.decompress((tmp_path / "o.csv.gz").read_bytes())
    assert unzipped == (tmp_path / "o.csv").read_bytes()
    again = ["predict", "--checkpoint", ckpt, "--pairs", str(tmp_path / "o.parquet"), "--out", str(tmp_path / "a.csv")]
    assert main(again) == 0  # what predict writes it reads


def test_screen_refuses_an_out_inside_the_library_folder(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden_inputs(tmp_path, golden_dir)
    library = tmp_path / "library"
    library.mkdir()
    (tmp_path / "lib.smi").rename(library / "lib.smi")
    out = library / "run"
    reason = refused_here(capsys, screen_args(tmp_path, golden_dir, library=str(library), out=str(out)), "screen", out)
    assert reason == f"is inside the input folder {library} (a rerun would read the outputs as input)"
    assert sorted(p.name for p in library.iterdir()) == ["lib.smi"]


def test_screen_refuses_an_out_that_would_overwrite_an_input(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden_inputs(tmp_path, golden_dir)
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "lib.smi").rename(run / "top.csv")  # a library named as one of the screen's outputs
    before = (run / "top.csv").read_bytes()
    args = screen_args(tmp_path, golden_dir, library=str(run / "top.csv"), out=str(run))
    assert refused_here(capsys, args, "screen", run) == f"would overwrite the input {run / 'top.csv'} (top.csv)"
    assert (run / "top.csv").read_bytes() == before


@pytest.mark.parametrize(
    "content, why",
    [
        ("# nothing but a comment\n", "no molecules"),
        ("C1CC broken\n[Xx] odd\n", "no molecule could be scored (2 refused, first: {lib} line 1: SMILES: "),
    ],
    ids=["empty", "all-refused"],
)
def test_screen_of_a_library_with_nothing_to_score_leaves_no_run_folder(
    tmp_path: Path, golden_dir: Path, content: str, why: str
) -> None:
    golden_inputs(tmp_path, golden_dir)
    library = tmp_path / "nothing.smi"
    library.write_text(content)
    out = tmp_path / "runs" / "one"
    completed = drugrepo(*screen_args(tmp_path, golden_dir, library=str(library), out=str(out)))
    assert completed.returncode == 2, completed.stderr
    (line,) = [line for line in completed.stderr.splitlines() if line.startswith("drugrepo screen: error: ")]
    assert line.startswith(f"drugrepo screen: error: {library}: " + why.format(lib=library)), line
    assert not (tmp_path / "runs").exists()
    kept = tmp_path / "mine"  # a folder the user made, holding their own file: left as it was
    kept.mkdir()
    (kept / "notes.txt").write_text("mine\n")
    assert main(screen_args(tmp_path, golden_dir, library=str(library), out=str(kept))) == 2
    assert [p.name for p in kept.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("command", ["validate", "train", "predict", "screen"])
def test_every_command_refuses_a_fifo_and_an_out_inside_its_input(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], pairs, command: str
) -> None:
    golden_inputs(tmp_path, golden_dir)
    folder = tmp_path / "inputs"
    folder.mkdir()
    pairs.to_csv(folder / "pairs.csv", index=False)
    (tmp_path / "lib.smi").rename(folder / "lib.smi")
    ckpt = str(golden_dir / "model_state.pt")

    def args(out: Path) -> list[str]:
        return {
            "validate": ["validate", str(folder), "--out", str(out)],
            "train": ["train", "--data", str(folder), "--out", str(out), "--epochs", "1"],
            "predict": ["predict", "--checkpoint", ckpt, "--pairs", str(folder), "--out", str(out)],
            "screen": screen_args(tmp_path, golden_dir, library=str(folder), out=str(out)),
        }[command]

    fifo = tmp_path / ("o.csv" if command == "predict" else "o")
    os.mkfifo(fifo)
    assert main(args(fifo)) == 2
    kind = "file" if command == "predict" else "folder"
    assert one_error_line(capsys, command) == f"--out {fifo}: is a FIFO, not a {kind}"
    inside = folder / ("o.csv" if command == "predict" else "out")
    assert main(args(inside)) == 2
    assert one_error_line(capsys, command) == (
        f"--out {inside}: is inside the input folder {folder} (a rerun would read the outputs as input)"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["lib.smi", "pairs.csv"]


@pytest.mark.parametrize(
    "out, folder, inputs, writes, problem",
    [
        ("s3://b/lib/run", True, ["s3://b/lib"], (), "is inside the input prefix s3://b/lib (a rerun would"),
        ("s3a://b/lib/", True, ["s3://b/lib"], (), "is the input s3://b/lib"),
        ("s3://b/run", True, ["s3://b/run/top.csv"], ("top.csv",), "would overwrite the input s3://b/run/top.csv"),
        ("s3://b/in.parquet", False, ["s3://b/in.parquet"], (), "is the input s3://b/in.parquet"),
        ("s3://b/o.json", False, ["s3://b/in.parquet"], (), "unknown suffix"),
        ("s3://b/o.csv.gz", False, ["s3://b/in.parquet", "https://h/in.csv"], (), None),
    ],
)
def test_remote_outs_are_compared_as_text(
    out: str, folder: bool, inputs: list[str], writes: tuple[str, ...], problem: str | None
) -> None:
    found = out_problem(out, folder, inputs, writes)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem)), found


def test_import_checkpoint_takes_the_same_out_rule(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tmp_path / "ref.pth"
    reference.write_bytes((golden_dir / "model_state.pt").read_bytes())
    fifo = tmp_path / "fifo.pt"
    os.mkfifo(fifo)
    for out, why in (
        (fifo, "is a FIFO, not a file"),
        (reference, f"is the input {reference}"),
        (tmp_path / "ref.csv", "unknown suffix: the output's format follows it (.pt, .pth)"),
    ):
        assert main(["import-checkpoint", str(reference), "--out", str(out)]) == 2
        assert one_error_line(capsys, "import-checkpoint") == f"--out {out}: {why}"
    assert reference.read_bytes() == (golden_dir / "model_state.pt").read_bytes()
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and not (tmp_path / "ref.csv").exists()
