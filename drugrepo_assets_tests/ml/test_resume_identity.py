"""Honest resumption (issue 21, finding 6): a screen folder keeps finished shards only for the library they were
read from; an edited library is refused by its files' identity, or by a shard's digest when the identity holds."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from drugrepo_assets.data.library import iter_library, library_files
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.featurize import encode_proteins
from drugrepo_assets.ml.library_screen import (
    LIBRARY_FILES,
    MANIFEST,
    LibraryChanged,
    check_manifest,
    discard_screen,
    library_change,
    rejected_rows,
    screen_library,
)
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.scores import part_name
from drugrepo_assets.ml.screen import ScreeningEngine
from drugrepo_assets_tests.molecules import screening_candidates


@pytest.fixture(scope="module")
def engine(golden_dir: Path) -> ScreeningEngine:
    return ScreeningEngine(load_checkpoint(str(golden_dir / "model_state.pt"))[0], drug_chunk=8)


@pytest.fixture(scope="module")
def molecules() -> list[str]:
    smiles = pd.read_csv(bundled_root() / "human" / "random" / "val.csv")["SMILES"].drop_duplicates()
    return screening_candidates(smiles)[:13]  # a library refuses lone ions ([Fe], [Zn])


def _screen(engine: ScreeningEngine, library: Path, root: Path, **kw: object):
    proteins = pd.read_csv(bundled_root() / "human" / "random" / "val.csv")["Protein"].drop_duplicates().head(2)
    codes = torch.from_numpy(encode_proteins(proteins.tolist()))
    chunks = iter_library(str(library), chunk_rows=5)
    return screen_library(engine, chunks, ["T0", "T1"], codes, root, shard_size=4, top=3, workers=1, **kw)


def test_a_same_size_same_time_edit_is_refused_by_the_shard_digest(
    engine: ScreeningEngine, molecules: list[str], tmp_path: Path
) -> None:
    library = tmp_path / "lib.smi"
    library.write_text("".join(f"{s}\tm{i:02d}\n" for i, s in enumerate(molecules[:12])))
    calls: list[int] = []

    def killed_after_two_shards(pairs: int) -> None:
        calls.append(pairs)
        if len(calls) == 2:
            raise KeyboardInterrupt

    root = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _screen(engine, library, root, progress=killed_after_two_shards)
    markers = {p.name: p.read_bytes() for p in (root / "shards").iterdir()}
    assert sorted(markers) == ["00000.json", "00001.json"]
    # rename two molecules in shard 1 keeping the size and the modification time: the identity holds
    identity = library_files(str(library))
    before = library.stat()
    library.write_text(library.read_text().replace("\tm05\n", "\tm5x\n").replace("\tm06\n", "\tm6x\n"))
    os.utime(library, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert library_files(str(library)) == identity
    with pytest.raises(LibraryChanged, match=rf"^{library} line 5: the library's rows differ from those of shard 1"):
        _screen(engine, library, root)
    assert {p.name: p.read_bytes() for p in (root / "shards").iterdir()} == markers  # nothing merged nor redone


def test_the_same_library_resumes_and_scores_each_molecule_once(
    engine: ScreeningEngine, molecules: list[str], tmp_path: Path
) -> None:
    library = tmp_path / "lib.smi"
    library.write_text("".join(f"{s}\tm{i:02d}\n" for i, s in enumerate(molecules[:10])))
    root = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _screen(engine, library, root, progress=lambda pairs: (_ for _ in ()).throw(KeyboardInterrupt))
    run = _screen(engine, library, root)
    assert run.skipped == 1 and run.molecules + run.rejected == 10
    pairs = pd.read_parquet(root / "scores")
    assert not pairs.duplicated(["target_id", "drug_id"]).any() and len(pairs) == 2 * run.molecules
    refused = pd.concat(rejected_rows(root, [part_name(s.index) for s in run.shards]))["id"].tolist()
    assert sorted([*pairs["drug_id"].unique(), *refused]) == [f"m{i:02d}" for i in range(10)]  # each once


def test_the_manifest_refuses_a_library_whose_files_changed(tmp_path: Path) -> None:
    settings = {"library": "lib", "top": 3, LIBRARY_FILES: [["a.smi", "100:5"], ["b.smi", "80:6"]]}
    check_manifest(tmp_path, settings)
    check_manifest(tmp_path, settings)  # the same files: resumes
    edited = {**settings, LIBRARY_FILES: [["a.smi", "120:9"], ["b.smi", "80:6"]]}
    with pytest.raises(
        LibraryChanged, match=rf"^lib/a.smi: size 100 → 120 bytes since the screen in {tmp_path} began$"
    ):
        check_manifest(tmp_path, edited)
    with pytest.raises(ValueError, match=r"other settings \(library_files, top\); use another folder"):
        check_manifest(tmp_path, {**edited, "top": 4})


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
    for name in ("shards/00000.json", "scores/part-00000.parquet", "rejected/part-00000.parquet", "top.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / MANIFEST).write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    discard_screen(tmp_path, ["top.csv"])
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
