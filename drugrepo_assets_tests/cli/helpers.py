"""What the CLI tests share: small real inputs, the console script, the screen arguments, the one error line."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets_tests.data.rows import real_rows

HUMAN = real_rows("human/random/train.csv", [1, 2, 3])
HUMAN_TRAIN = bundled_root() / "human" / "random" / "train.csv"
SMALL_MODEL = ["--model-width", "16"]
"""``drugrepo train``'s reference DrugBAN shape at width 16, for tests of the command's files, not of learning."""


def console_script() -> str:
    """The installed ``drugrepo`` script beside this Python (else on PATH)."""
    found = Path(sys.executable).with_name("drugrepo")
    if found.exists():
        return str(found)
    located = shutil.which("drugrepo")
    if located is None:
        pytest.fail("the drugrepo console script is not installed: run pip install -e .")
    return located


def golden_inputs(tmp_path: Path, golden_dir: Path, molecules: int = 4) -> tuple[list[str], list[str]]:
    """A .smi library of the golden pairs' first molecules and a FASTA of two of their proteins."""
    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:molecules].tolist()
    proteins = golden["Protein"].unique()[:2].tolist()
    (tmp_path / "lib.smi").write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles)))
    (tmp_path / "t.fasta").write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins)))
    return smiles, proteins


def screen_args(tmp_path: Path, golden_dir: Path, **given: str) -> list[str]:
    """``drugrepo screen`` of `golden_inputs` into ``tmp_path/run``; keyword arguments replace or add options."""
    options = {
        "checkpoint": str(golden_dir / "model_state.pt"),
        "library": str(tmp_path / "lib.smi"),
        "targets": str(tmp_path / "t.fasta"),
        "out": str(tmp_path / "run"),
        **given,
    }
    return ["screen", *[x for k, v in options.items() for x in (f"--{k}", v)], "--quiet", "--workers", "1"]


def one_error_line(capsys: pytest.CaptureFixture[str], command: str) -> str:
    """The message of the one ``drugrepo COMMAND: error:`` line on stderr (no traceback)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"drugrepo {command}: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0].removeprefix(f"drugrepo {command}: error: ")
