"""A screen killed (SIGKILL) halfway through writing one of its files, then run again on the same
folder, ends with the scores of a run that was never interrupted: nothing lost, nothing twice.

The kill is exact, not timed: the subprocess wraps the one function every file goes through
(`files._replace_from`, behind `write_bytes_atomic`) so that, for the chosen file, it writes half the
bytes, flushes them to disk and SIGKILLs itself.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets_tests.molecules import screening_candidates

MOLECULES, SHARD_SIZE, TARGETS = 600, 150, 2

KILL_WRAPPER = r"""
import io, os, signal, sys
from pathlib import Path
import drugrepo_assets.files as files

kill_name = sys.argv[1]
real = files._replace_from

def replace_from(final, write):
    if kill_name and Path(final).as_posix().endswith(kill_name):
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

# A library stored as shards over the feature store (the Dagster stage's path), each shard scored by
# score_stored_shard; prints each shard's score files.
STORED = (
    KILL_WRAPPER
    + r"""
import json
import torch
from drugrepo_assets.screening.targets import read_target_set
from drugrepo_assets.ml.feature_store import FeatureStore
from drugrepo_assets.ml.library_screen import FeaturePool
from drugrepo_assets.data.library import library_files
from drugrepo_assets.ml.library_store import IdCheck, score_stored_shard, store_library_file
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.screen import ScreeningEngine, prepare_targets

library, targets_file, root, checkpoint, shard_size = sys.argv[2], sys.argv[3], Path(sys.argv[4]), sys.argv[5], int(sys.argv[6])
store = FeatureStore(root / "features")
((label, version),) = library_files(library)
with FeaturePool(1, canonical=True) as pool:
    stored = store_library_file(library, label, version, store, root / "library", shard_size=shard_size,
                                pool=pool, ids=IdCheck())
codes, kept = prepare_targets(read_target_set(targets_file).kept)
engine = ScreeningEngine(load_checkpoint(checkpoint)[0])
target_ids = kept.kept["id"].astype(str).tolist()
scored = [score_stored_shard(engine, store, part, root / "library", target_ids, codes, root / "scores", 5)
          for part in stored.parts]
print(json.dumps([{"shard": s.shard, "files": s.files, "scored": s.scored_pairs, "reused": s.reused_pairs} for s in scored]))
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


def _screen(inputs: dict[str, str], out: Path, kill: str = "") -> subprocess.CompletedProcess:
    args = [
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
        "--quiet",
    ]
    return subprocess.run([sys.executable, "-c", CLI, kill, *args], capture_output=True, text=True)


def _scores(out: Path) -> pd.DataFrame:
    """Every scored pair of a run folder, one row each (hidden temporary files are not part of the data set)."""
    table = pd.read_parquet(out / "scores")
    return table.astype({"target_id": str}).sort_values(["target_id", "drug_id"]).reset_index(drop=True)


@pytest.fixture(scope="module")
def uninterrupted(inputs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    run = _screen(inputs, out)
    assert run.returncode == 0, run.stderr[-3000:]
    return out


@pytest.mark.parametrize("kill", ["scores/part-00002.parquet", "top/part-00002.parquet", "shards/00002.json"])
def test_a_screen_killed_mid_write_resumes_to_the_same_scores(
    inputs, uninterrupted: Path, tmp_path: Path, kill: str
) -> None:
    killed = _screen(inputs, tmp_path, kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "shards").glob("*.json")) == ["00000.json", "00001.json"]
    rerun = _screen(inputs, tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "(2 shards kept from an earlier run)" in rerun.stdout  # shards 0 and 1 were not scored again
    assert f"scored {MOLECULES * TARGETS} pairs" in rerun.stdout
    scores = _scores(tmp_path)
    assert len(scores) == MOLECULES * TARGETS and not scores.duplicated(["target_id", "drug_id"]).any()
    assert_frame_equal(scores, _scores(uninterrupted))
    assert (tmp_path / "top.csv").read_text() == (uninterrupted / "top.csv").read_text()
    for folder in ("scores", "top", "shards"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir() if not p.name.startswith(".")) == sorted(
            p.name for p in (uninterrupted / folder).iterdir()
        )


def _stored(inputs, root: Path, kill: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            STORED,
            kill,
            inputs["library"],
            inputs["targets"],
            str(root),
            inputs["checkpoint"],
            str(SHARD_SIZE),
        ],
        capture_output=True,
        text=True,
    )


def _stored_scores(root: Path, shards: list[dict]) -> pd.DataFrame:
    files = sorted({name for shard in shards for name in shard["files"].values()})
    table = pd.concat([pd.read_parquet(root / "scores" / "scores" / f"{name}.parquet") for name in files])
    return table.astype({"target_id": str}).sort_values(["target_id", "drug_id"]).reset_index(drop=True)


def test_a_stored_shard_killed_mid_write_is_scored_again_once(inputs, tmp_path: Path) -> None:
    reference = _stored(inputs, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr[-3000:]
    expected = json.loads(reference.stdout.strip().splitlines()[-1])
    assert len(expected) == MOLECULES // SHARD_SIZE
    victim = expected[2]["files"]["T0"]
    killed = _stored(inputs, tmp_path / "run", kill=f"scores/scores/{victim}.parquet")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    rerun = _stored(inputs, tmp_path / "run")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    shards = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert [s["files"] for s in shards] == [s["files"] for s in expected]
    # shards 0 and 1 kept their files, 2 (killed) and 3 (never reached) were scored now
    assert [s["scored"] for s in shards] == [0, 0, SHARD_SIZE * TARGETS, SHARD_SIZE * TARGETS]
    scores = _stored_scores(tmp_path / "run", shards)
    assert len(scores) == MOLECULES * TARGETS and not scores.duplicated(["target_id", "drug_id"]).any()
    assert_frame_equal(scores, _stored_scores(tmp_path / "reference", expected))
    names = sorted(p.name for p in (tmp_path / "run" / "scores" / "scores").glob("*.parquet"))
    assert names == sorted(f"{name}.parquet" for s in expected for name in set(s["files"].values()))
