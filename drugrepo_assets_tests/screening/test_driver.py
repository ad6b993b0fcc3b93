"""The driver: a streamed, tiled screen gives the in-memory ranking in any shard size, block size or worker
count; an interrupted screen keeps its finished tiles; an edit the file's size and time do not show still
changes the shard's name; the folder's manifest and discarding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drugrepo_assets.data.library import iter_library, library_files
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.dataset import MoleculeStore
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.screening.answers import build_answers
from drugrepo_assets.screening.driver import (
    MANIFEST,
    check_manifest,
    discard_screen,
    rank_tiles,
    rejected_rows,
    screen_stream,
    shard_name,
)
from drugrepo_assets.screening.engine import ScreeningEngine, rank_table
from drugrepo_assets.screening.library import iter_shards, library_change
from drugrepo_assets.screening.plan import target_blocks
from drugrepo_assets.screening.tiles import TileReport, TileSettings
from drugrepo_assets_tests.molecules import screening_candidates

TARGET_IDS = ["T0", "T1", "T2"]


@pytest.fixture(scope="module")
def engine(golden_dir: Path) -> ScreeningEngine:
    return ScreeningEngine(load_checkpoint(str(golden_dir / "model_state.pt")).model, drug_chunk=16)


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


def _targets(proteins: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": TARGET_IDS, "sequence": proteins})


def _screen(engine, library, root: Path, shard_size: int, workers: int, block: int = 3, top: int = 4, **kw):
    folder, _, _, proteins = library
    return screen_stream(
        engine,
        iter_library(str(folder), chunk_rows=7),
        target_blocks(_targets(proteins), block),
        root,
        TileSettings(top=top),
        shard_size=shard_size,
        workers=workers,
        **kw,
    )


def _today(engine, library) -> pd.DataFrame:
    """The in-memory table: one dense matrix of the library's molecules, ranked at once."""
    _, smiles, ids, proteins = library
    logits = engine.score_matrix(MoleculeStore.from_smiles(smiles), torch.from_numpy(encode_proteins(proteins)))
    return rank_table(logits, ids, smiles, TARGET_IDS, "ckpt")


@pytest.mark.parametrize(
    ("shard_size", "workers", "block"),
    [(1000, 1, 3), (6, 2, 2), (1, 1, 1)],
    ids=["one-tile", "shards-blocks-pool", "singletons"],
)
def test_streamed_answers_equal_the_in_memory_ranking(
    engine, library, tmp_path: Path, shard_size: int, workers: int, block: int
) -> None:
    run = _screen(engine, library, tmp_path, shard_size, workers, block)
    assert run.molecules == 40 and run.targets == 3 and run.pairs == 120
    today = _today(engine, library)
    top = build_answers(tmp_path, run.shards, run.blocks, TileSettings(top=4)).per_target
    expected = today[today.groupby("target_id").cumcount() < 4].reset_index(drop=True)
    assert top["drug_id"].tolist() == expected["drug_id"].tolist()
    assert top["rank_in_target"].tolist() == expected["rank"].tolist()
    np.testing.assert_allclose(top["logit"], expected["logit"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(top["percentile_in_target"], expected["percentile"])
    rank_tiles(tmp_path, run, "ckpt")
    ranked = pd.concat([pd.read_parquet(p) for p in (tmp_path / "ranked").rglob("*.parquet")])
    merged = ranked.merge(today, on=["target_id", "drug_id"], suffixes=("", "_today"))
    assert len(merged) == 120
    assert (merged["rank"] == merged["rank_today"]).all() and np.allclose(
        merged["percentile"], merged["percentile_today"]
    )
    refused = rejected_rows(tmp_path, run.shards)
    assert refused[["kind", "file", "line", "id", "reason"]].values.tolist() == [
        ["molecule", "a.smi", 12, "broken", "SMILES: RDKit cannot parse 'C1CC' (SMILES syntax error)"]
    ]


def test_an_interrupted_screen_keeps_its_finished_tiles(engine, library, tmp_path: Path) -> None:
    seen: list[TileReport] = []

    def stop_after_two_tiles(report: TileReport) -> None:
        seen.append(report)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _screen(engine, library, tmp_path, 15, 1, progress=stop_after_two_tiles)
    done = sorted(p.name for p in (tmp_path / "tiles").iterdir())
    assert len(done) == 2
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "scores").iterdir()}
    rerun: list[TileReport] = []
    run = _screen(engine, library, tmp_path, 15, 1, progress=rerun.append)
    assert run.kept == 2 and [r.kept for r in rerun] == [True, True, False]
    assert [r.pairs for r in rerun] == [14 * 3, 15 * 3, 11 * 3]  # kept tiles count too (shard 0 lost one row)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "scores").iterdir() if p.name in kept} == kept
    today = _today(engine, library)
    top = build_answers(tmp_path, run.shards, run.blocks, TileSettings(top=3)).per_target
    assert top["drug_id"].tolist() == today[today.groupby("target_id").cumcount() < 3]["drug_id"].tolist()


def test_an_edit_that_keeps_size_and_time_still_renames_its_shard(library, tmp_path: Path) -> None:
    """A shard is named by the rows it read, not by the file's identity: the edited shard is a new tile."""
    path = tmp_path / "lib.smi"
    path.write_text((library[0] / "b.smi").read_text())
    before_names = [shard_name(s) for s in iter_shards(iter_library(str(path)), 4)]
    identity, stat = library_files(str(path)), path.stat()
    path.write_text(path.read_text().replace("\tmol30\n", "\tmol3x\n"))  # shard 1 (lines 5–8), same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert library_files(str(path)) == identity
    after_names = [shard_name(s) for s in iter_shards(iter_library(str(path)), 4)]
    assert [a == b for a, b in zip(before_names, after_names)] == [True, False, True, True]


def test_the_manifest_refuses_a_folder_of_another_checkpoint(tmp_path: Path) -> None:
    check_manifest(tmp_path, {"checkpoint_id": "a"})
    check_manifest(tmp_path, {"checkpoint_id": "a"})  # the same screen again: resumes
    with pytest.raises(ValueError, match=r"other settings \(checkpoint_id\); use another folder"):
        check_manifest(tmp_path, {"checkpoint_id": "b"})


@pytest.mark.parametrize(
    "before, now, said",
    [
        ([["lib.smi", "10:1"]], [["lib.smi", "10:1"]], None),
        ([["lib.smi", "10:1"]], [["lib.smi", "12:1"]], "lib.smi: size 10 → 12 bytes"),
        ([["lib.smi", "10:1"]], [["lib.smi", "10:2"]], "lib.smi: modified (same size, new modification time)"),
        ([["a.smi", '"e1"']], [["a.smi", '"e2"']], 'lib.smi/a.smi: version "e1" → "e2"'),
        ([["a.smi", "1:1"]], [["a.smi", "1:1"], ["b.smi", "2:2"]], "lib.smi/b.smi: added"),
        ([["a.smi", "1:1"], ["b.smi", "2:2"]], [["b.smi", "3:3"]], "lib.smi/a.smi: removed (and 1 more file)"),
    ],
)
def test_library_change_names_the_first_file_and_what_changed(before, now, said) -> None:
    assert library_change("lib.smi", before, now) == said


def test_discarding_a_screen_leaves_the_folder_s_other_files(tmp_path: Path) -> None:
    for name in ("tiles/a-b.json", "scores/a-b.parquet", "rejected/a.parquet", "top.csv", "terms/x/ab/abc.npy"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / MANIFEST).write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    discard_screen(tmp_path, ["top.csv"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "terms"]  # the terms store is kept


def test_shards_cut_the_stream_at_a_fixed_size(library) -> None:
    folder = library[0]
    shards = list(iter_shards(iter_library(str(folder), chunk_rows=4), 16))
    assert [len(s.rows) for s in shards] == [16, 16, 9]  # 41 rows: 40 molecules and one RDKit refuses
    assert [s.index for s in shards] == [0, 1, 2]
    assert pd.concat([s.rows for s in shards])["id"].tolist()[:3] == ["mol00", "mol01", "mol02"]
    assert sum(len(s.rejected) for s in shards) == 0  # RDKit's refusals come later, in the workers


def test_a_one_drug_query_is_set_against_its_targets_alone(engine, library, tmp_path: Path) -> None:
    """One molecule has no distribution over molecules: z_target is NaN and the repurposing statistic is z_drug."""
    _, smiles, _, proteins = library
    (tmp_path / "one.smi").write_text(f"{smiles[0]}\tonly\n")
    blocks = target_blocks(_targets(proteins), 2)
    settings = TileSettings(top=1, top_per_drug=3)
    run = screen_stream(engine, iter_library(str(tmp_path / "one.smi")), blocks, tmp_path / "run", settings)
    per_drug = build_answers(tmp_path / "run", run.shards, run.blocks, settings).per_drug
    assert per_drug["rank_in_drug"].tolist() == [1, 2, 3] and per_drug["z_target"].isna().all()
    logits = per_drug["logit"].to_numpy(np.float64)
    np.testing.assert_allclose(per_drug["z_drug"], (logits - logits.mean()) / logits.std(), rtol=1e-6)
    assert per_drug["repurposing_z"].tolist() == per_drug["z_drug"].tolist()
