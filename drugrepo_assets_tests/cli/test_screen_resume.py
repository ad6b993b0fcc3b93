"""Honest resumption through the installed ``drugrepo`` script (a longer target list through ``main`` in this
process, the same code without the script's start): tiles are named by the molecules and targets
they score, so a rerun on an edited or grown library, or a longer target list, scores only the tiles that
are new and ends equal to a fresh screen (issue 21's finding 6 — stale and new shards merged — cannot
happen: the answers and ``scores/`` hold exactly this run's tiles). An S3 library behaves alike, and
``--restart`` clears the run's prefix."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets_tests.cli.helpers import console_script, golden_inputs, screen_args
from drugrepo_assets_tests.data.servers import S3Bucket


def drugrepo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=600)


def kept_tiles(stdout: str) -> int:
    """The tiles a run says it kept from an earlier run (0 when it says nothing)."""
    found = re.search(r"\((\d+) tiles kept from an earlier run\)", stdout)
    return int(found[1]) if found else 0


def pairs_of(folder: Path) -> pd.DataFrame:
    table = pd.read_parquet(folder / "scores").astype({"target_id": str})
    return table.sort_values(["target_id", "drug_id"], ignore_index=True)


def test_an_edited_and_grown_library_scores_only_its_new_tiles_and_equals_a_fresh_screen(
    tmp_path: Path, golden_dir: Path
) -> None:
    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:9].tolist()
    golden_inputs(tmp_path, golden_dir)
    library = tmp_path / "lib.smi"
    library.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles[:6])))
    run = tmp_path / "run"
    args = screen_args(tmp_path, golden_dir, top="3", **{"shard-size": "2", "top-per-drug": "1"})
    first = drugrepo(*args)
    assert first.returncode == 0, first.stderr
    assert kept_tiles(first.stdout) == 0 and "scored 12 pairs" in first.stdout  # 6 molecules × 2 targets, 3 tiles

    # line 3 replaced (shard 1 changes), two molecules appended (a new shard 3): shards 0 and 2 are kept
    edited = [*smiles[:2], smiles[8], *smiles[3:6], *smiles[6:8]]
    library.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(edited)))
    rerun = drugrepo(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert kept_tiles(rerun.stdout) == 2 and "scored 16 pairs" in rerun.stdout

    fresh = drugrepo(
        *screen_args(
            tmp_path, golden_dir, top="3", out=str(tmp_path / "fresh"), **{"shard-size": "2", "top-per-drug": "1"}
        )
    )
    assert fresh.returncode == 0, fresh.stderr
    pd.testing.assert_frame_equal(pairs_of(run), pairs_of(tmp_path / "fresh"))  # the old line 3 is gone
    assert len(pairs_of(run)) == 16 and not pairs_of(run).duplicated(["target_id", "drug_id"]).any()
    for table in ("top.csv", "top_per_drug.csv", "repurposing.csv"):
        assert (run / table).read_text() == (tmp_path / "fresh" / table).read_text(), table


def test_more_targets_score_only_the_new_blocks(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    proteins = golden["Protein"].unique()[:3].tolist()
    golden_inputs(tmp_path, golden_dir)
    (tmp_path / "two.fasta").write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins[:2])))
    (tmp_path / "three.fasta").write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins)))
    options = {"top": "2", "shard-size": "2", "target-block": "2"}
    assert main(screen_args(tmp_path, golden_dir, targets=str(tmp_path / "two.fasta"), **options)) == 0
    capsys.readouterr()
    assert main(screen_args(tmp_path, golden_dir, targets=str(tmp_path / "three.fasta"), **options)) == 0
    more = capsys.readouterr().out
    # 4 molecules in 2 shards; block 0 (T0, T1) is kept in both shards, block 1 (T2) is new
    assert kept_tiles(more) == 2 and "4 tiles" in more
    assert sorted(set(pd.read_csv(tmp_path / "run" / "top.csv")["target_id"])) == ["T0", "T1", "T2"]
    terms = list((tmp_path / "run" / "terms").rglob("*.npy"))
    assert len(terms) == 3  # each target's terms computed once, the first two reused by the second run


def test_an_s3_library_replaced_between_runs_and_restart_clearing_the_prefix(
    tmp_path: Path, golden_dir: Path, s3_bucket: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:5].tolist()
    golden_inputs(tmp_path, golden_dir)

    def upload(first: int) -> None:
        text = "".join(f"{s} m{i}\n" for i, s in enumerate(smiles[first:], start=first))
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="libs/lib.smi", Body=text.encode())

    def scored() -> list[tuple[str, str]]:
        listed = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix="runs/one/scores/")["Contents"]
        pairs = pd.concat(
            pd.read_parquet(io.BytesIO(s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=o["Key"])["Body"].read()))
            for o in listed
        )
        return sorted(pairs[["target_id", "drug_id"]].astype(str).itertuples(index=False, name=None))

    library, out = f"s3://{s3_bucket.name}/libs/lib.smi", f"s3://{s3_bucket.name}/runs/one"
    args = [
        *screen_args(tmp_path, golden_dir, library=library, out=out, top="2", **{"shard-size": "2"}),
        "--s3-endpoint-url",
        s3_bucket.endpoint_url,
    ]
    upload(0)
    assert main(args) == 0
    upload(1)  # m0 gone: every line moves, so every shard is new
    capsys.readouterr()
    assert main(args) == 0
    assert kept_tiles(capsys.readouterr().out) == 0
    assert scored() == [(t, f"m{i}") for t in ("T0", "T1") for i in range(1, 5)]  # m0's stale tile is gone
    assert main([*args, "--restart"]) == 0
    assert kept_tiles(capsys.readouterr().out) == 0
    assert scored() == [(t, f"m{i}") for t in ("T0", "T1") for i in range(1, 5)]
