"""A screen killed (SIGKILL) halfway through writing one of its files, then run again on the same
folder, ends with the scores of a run that was never interrupted: nothing lost, nothing twice.

The kill is exact, not timed: the subprocess wraps the one function every file goes through
(`files._replace_from`, behind `write_bytes_atomic`) so that, at the n-th file written into the chosen
folder (``scores:3``: the third tile's scores), it writes half the bytes, flushes them to disk and
SIGKILLs itself.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from drugrepo_assets.cli import main
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets_tests.molecules import screening_candidates

MOLECULES, SHARD_SIZE, TARGETS = 40, 10, 2
"""Four shards of molecules (tiles), as a large library has: what is proved is the files, not the scores."""

KILL_WRAPPER = r"""
import io, os, signal, sys
from pathlib import Path
import drugrepo_assets.files as files

folder, _, nth = sys.argv[1].partition(":")
seen = 0
real = files._replace_from

def replace_from(final, write):
    global seen
    if folder and f"/{folder}/" in Path(final).as_posix():
        seen += 1
        if seen == int(nth):
            def half_then_kill(handle):
                buffer = io.BytesIO()
                write(buffer)
                data = buffer.getvalue()
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.fsync(handle.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
            return real(final, half_then_kill)
    return real(final, write)

files._replace_from = replace_from
"""

CLI = (
    KILL_WRAPPER
    + r"""
from drugrepo_assets.cli import main
sys.exit(main(sys.argv[2:]))
"""
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, golden_dir: Path) -> dict[str, str]:
    rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv")
    smiles = screening_candidates(rows["SMILES"].drop_duplicates())[:MOLECULES]  # a library refuses lone ions
    proteins = rows["Protein"].drop_duplicates().head(TARGETS).tolist()
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "lib.smi").write_text("".join(f"{s}\tmol{i:04d}\n" for i, s in enumerate(smiles)))
    (folder / "t.fasta").write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins)))
    return {
        "library": str(folder / "lib.smi"),
        "targets": str(folder / "t.fasta"),
        "checkpoint": str(golden_dir / "model_state.pt"),
    }


def _args(inputs: dict[str, str], out: Path) -> list[str]:
    """``drugrepo screen`` of the inputs into ``out``, in shards of SHARD_SIZE molecules."""
    return [
        "screen",
        "--checkpoint",
        inputs["checkpoint"],
        "--library",
        inputs["library"],
        "--targets",
        inputs["targets"],
        "--out",
        str(out),
        "--top",
        "5",
        "--shard-size",
        str(SHARD_SIZE),
        "--workers",
        "1",
        "--threads",  # the same in the killed process as here, whatever an earlier test of this process set
        "1",
        "--quiet",
    ]


def _killed_screen(inputs: dict[str, str], out: Path, kill: str) -> subprocess.CompletedProcess:
    """The screen in a subprocess that SIGKILLs itself halfway through the file ``kill`` names (see above)."""
    return subprocess.run([sys.executable, "-c", CLI, kill, *_args(inputs, out)], capture_output=True, text=True)


def _scores(out: Path) -> pd.DataFrame:
    """Every scored pair of a run folder, one row each (hidden temporary files are not part of the data set)."""
    table = pd.read_parquet(out / "scores")
    return table.astype({"target_id": str}).sort_values(["target_id", "drug_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    assert main(_args(inputs, out)) == 0
    return out


@pytest.mark.parametrize("kill", ["scores:3", "top:3", "tiles:3"])
def test_a_screen_killed_mid_write_resumes_to_the_same_scores(
    inputs, uninterrupted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kill: str
) -> None:
    """Killed halfway through the third tile's scores, top or marker file: the rerun keeps tiles 1 and 2.

    Only the killed screen needs a process of its own; the uninterrupted run and the rerun are ``main`` here."""
    killed = _killed_screen(inputs, tmp_path, kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert len(list((tmp_path / "tiles").glob("*.json"))) == 2
    assert main(_args(inputs, tmp_path)) == 0
    rerun = capsys.readouterr().out
    assert "(2 tiles kept from an earlier run)" in rerun  # the first two tiles were not scored again
    assert f"scored {MOLECULES * TARGETS} pairs" in rerun
    scores = _scores(tmp_path)
    assert len(scores) == MOLECULES * TARGETS and not scores.duplicated(["target_id", "drug_id"]).any()
    assert_frame_equal(scores, _scores(uninterrupted))
    for table in ("top.csv", "repurposing.csv"):
        assert (tmp_path / table).read_text() == (uninterrupted / table).read_text()
    for folder in ("scores", "top", "tiles", "stats", "drugs"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir() if not p.name.startswith(".")) == sorted(
            p.name for p in (uninterrupted / folder).iterdir()
        )
