"""A streamed, sharded library screen gives today's in-memory table, in any shard size or worker count, and resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pandas.testing import assert_frame_equal

from drugrepo_assets.data.library import iter_library
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.dataset import MoleculeStore
from drugrepo_assets.ml.featurize import encode_proteins
from drugrepo_assets.ml.library_screen import check_manifest, iter_shards, rejected_rows, screen_library
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.scores import merge_top, part_name, rank_dataset
from drugrepo_assets.ml.screen import ScreeningEngine, rank_table
from drugrepo_assets_tests.molecules import screening_candidates


@pytest.fixture(scope="module")
def engine(golden_dir: Path) -> ScreeningEngine:
    return ScreeningEngine(load_checkpoint(str(golden_dir / "model_state.pt"))[0], drug_chunk=16)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str], list[str]]:
    rows = pd.read_csv(bundled_root() / "human" / "random" / "val.csv")
    smiles = screening_candidates(rows["SMILES"].drop_duplicates())[:40]  # a library refuses lone ions ([Zn])
    proteins = rows["Protein"].drop_duplicates().head(3).tolist()
    folder = tmp_path_factory.mktemp("library")
    lines = [f"{s}\tmol{i:02d}" for i, s in enumerate(smiles)]
    lines.insert(10, "C1CC\tbroken")  # refused by RDKit, kept in the accounting
    (folder / "a.smi").write_text("smiles\tid\n" + "\n".join(lines[:25]) + "\n")
    (folder / "b.smi").write_text("\n".join(lines[25:]) + "\n")
    return folder, smiles, [f"mol{i:02d}" for i in range(len(smiles))], proteins


def _screen(engine, library, root: Path, shard_size: int, workers: int, top: int | None, **kw):
    folder, _, _, proteins = library
    codes = torch.from_numpy(encode_proteins(proteins))
    chunks = iter_library(str(folder), chunk_rows=7)
    return screen_library(
        engine, chunks, ["T0", "T1", "T2"], codes, root, shard_size=shard_size, top=top, workers=workers, **kw
    )


def _today(engine, library) -> pd.DataFrame:
    """The in-memory table `drugrepo screen` built before streaming: one dense matrix, ranked at once."""
    _, smiles, ids, proteins = library
    logits = engine.score_matrix(MoleculeStore.from_smiles(smiles), torch.from_numpy(encode_proteins(proteins)))
    return rank_table(logits, ids, smiles, ["T0", "T1", "T2"], "ckpt")


@pytest.mark.parametrize(
    ("shard_size", "workers"), [(1000, 1), (6, 2), (1, 1)], ids=["one-shard", "shards-pool", "singletons"]
)
def test_streamed_tables_equal_the_in_memory_ranking(
    engine, library, tmp_path: Path, shard_size: int, workers: int
) -> None:
    run = _screen(engine, library, tmp_path, shard_size, workers, top=4)
    shards = [part_name(s.index) for s in run.shards]
    assert run.molecules == 40 and run.rejected == 1 and run.pairs == 120
    today = _today(engine, library)
    top = merge_top(tmp_path, shards, run.target_ids, run.molecules, 4, "ckpt")
    expected_top = today[today.groupby("target_id").cumcount() < 4].reset_index(drop=True)
    assert_frame_equal(top, expected_top, check_dtype=False, atol=1e-5, rtol=0)
    assert top["drug_id"].tolist() == expected_top["drug_id"].tolist()
    rank_dataset(tmp_path, shards, run.target_ids, "ckpt")
    ranked = pd.concat([pd.read_parquet(p) for p in (tmp_path / "ranked").rglob("*.parquet")])
    key = ["target_id", "drug_id"]
    merged = ranked.merge(today, on=key, suffixes=("", "_today"))
    assert len(merged) == 120
    assert (merged["rank"] == merged["rank_today"]).all() and np.allclose(
        merged["percentile"], merged["percentile_today"]
    )
    refused = pd.concat(list(rejected_rows(tmp_path, shards)))
    assert refused[["kind", "file", "line", "id", "reason"]].values.tolist() == [
        ["molecule", "a.smi", 12, "broken", "SMILES: RDKit cannot parse 'C1CC' (SMILES syntax error)"]
    ]


def test_an_interrupted_screen_keeps_its_finished_shards(engine, library, tmp_path: Path) -> None:
    calls: list[int] = []

    def stop_after_two_shards(pairs: int) -> None:
        calls.append(pairs)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _screen(engine, library, tmp_path, 15, 1, top=3, progress=stop_after_two_shards)
    done = sorted(p.name for p in (tmp_path / "shards").iterdir())
    assert done == ["00000.json", "00001.json"]
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "scores").iterdir()}
    rerun: list[int] = []
    run = _screen(engine, library, tmp_path, 15, 1, top=3, progress=rerun.append)
    assert run.skipped == 2 and rerun == [14 * 3, 15 * 3, 11 * 3]  # kept shards count too (shard 0 lost one row)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "scores").iterdir() if p.name in kept} == kept
    shards = [part_name(s.index) for s in run.shards]
    today = _today(engine, library)
    top = merge_top(tmp_path, shards, run.target_ids, run.molecules, 3, "ckpt")
    assert top["drug_id"].tolist() == today[today.groupby("target_id").cumcount() < 3]["drug_id"].tolist()


def test_a_folder_of_another_screen_is_refused(tmp_path: Path) -> None:
    check_manifest(tmp_path, {"library": "a.smi", "top": 10})
    check_manifest(tmp_path, {"library": "a.smi", "top": 10})  # the same screen again: resumes
    with pytest.raises(ValueError, match=r"other settings \(top\); use another folder"):
        check_manifest(tmp_path, {"library": "a.smi", "top": 20})


def test_shards_cut_the_stream_at_a_fixed_size(library) -> None:
    folder = library[0]
    shards = list(iter_shards(iter_library(str(folder), chunk_rows=4), 16))
    assert [len(s.rows) for s in shards] == [16, 16, 9]  # 41 rows: 40 molecules and one RDKit refuses
    assert [s.index for s in shards] == [0, 1, 2]
    assert pd.concat([s.rows for s in shards])["id"].tolist()[:3] == ["mol00", "mol01", "mol02"]
    assert sum(len(s.rejected) for s in shards) == 0  # RDKit's refusals come later, in the workers
