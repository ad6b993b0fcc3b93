"""The one screening driver: `drugrepo screen` and the Dagster stage both score tiles with `score_tiles` and
answer with `answer`; this module holds what they share around them.

- `screen_stream`: a library stream against target blocks, shard by shard, the next shard featurised
  while the current one is scored (the CLI; a Dagster tile op calls `score_tiles` for its own tile).
- `answer`: the answer tables of finished tiles (`screening.answers`), with each reported pair's
  applicability domain and the checkpoint id.
- `write_answers`: the tables (Parquet and CSV) and the pictures, into a screen's folder.
"""

from __future__ import annotations

import io
import json
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from drugrepo_assets.files import StoragePath, is_local, write_bytes_atomic
from drugrepo_assets.ml.model.calibration import Temperature
from drugrepo_assets.screening.answers import Answers, build_answers
from drugrepo_assets.screening.library import FeatureJob, FeaturePool, LibraryShard, iter_shards, shard_digest
from drugrepo_assets.screening.plan import SHARD_SIZE, TargetBlock, tile_name
from drugrepo_assets.screening.scores import rank_dataset, shard_drug_ids, target_logits
from drugrepo_assets.screening.tiles import (
    DRUGS,
    REJECTED,
    TILE_FOLDERS,
    TileReport,
    TileSettings,
    read_marker,
    read_rejected,
    score_tiles,
)

if TYPE_CHECKING:
    from drugrepo_assets.screening.engine import ScreeningEngine
    from drugrepo_assets.screening.terms import TargetTermStore

MANIFEST = "manifest.json"
SHARD_NAME_LENGTH = 16


def shard_name(shard: LibraryShard) -> str:
    """A library shard's content name: the digest of the rows it read (`library.shard_digest`)."""
    return shard_digest(shard)[:SHARD_NAME_LENGTH]


@dataclass
class ScreenRun:
    """A finished screen: its shards (content names, library order), its target blocks and every tile's report."""

    shards: list[str] = field(default_factory=list)
    blocks: list[TargetBlock] = field(default_factory=list)
    tiles: list[TileReport] = field(default_factory=list)

    @property
    def molecules(self) -> int:
        """Molecules scored, over every shard."""
        first = self.blocks[0].name if self.blocks else ""
        return sum(t.molecules for t in self.tiles if t.block == first)

    @property
    def targets(self) -> int:
        """Targets scored."""
        return sum(len(b) for b in self.blocks)

    @property
    def pairs(self) -> int:
        """Pairs in the matrix."""
        return sum(t.pairs for t in self.tiles)

    @property
    def kept(self) -> int:
        """Tiles found done (an earlier run, or another screen of the same molecules and targets)."""
        return sum(t.kept for t in self.tiles)


def check_manifest(root: StoragePath, settings: dict[str, Any]) -> None:
    """Record what a screen folder holds (the checkpoint, shard and block sizes: what a tile's content
    depends on beyond its name); a folder holding a screen with other settings is refused."""
    path = root / MANIFEST
    if path.exists():
        found = json.loads(path.read_text())
        if found != settings:
            changed = sorted(k for k in settings.keys() | found.keys() if found.get(k) != settings.get(k))
            raise ValueError(f"{path}: holds a screen with other settings ({', '.join(changed)}); use another folder")
        return
    write_bytes_atomic(path, json.dumps(settings, indent=2, sort_keys=True).encode())


def _tiles_done(root: StoragePath, name: str, blocks: Sequence[TargetBlock]) -> bool:
    return all(read_marker(root, tile_name(name, b.name)) is not None for b in blocks)


def _featurised_ahead(
    shards: Iterable[LibraryShard], pool: FeaturePool, root: StoragePath, blocks: Sequence[TargetBlock]
) -> Iterator[tuple[LibraryShard, str, FeatureJob | None]]:
    """Each shard with its name and featurisation job (None: every tile done), the next one's started first."""
    queue: deque[tuple[LibraryShard, str, FeatureJob | None]] = deque()
    for shard in shards:
        name = shard_name(shard)
        done = _tiles_done(root, name, blocks)
        queue.append((shard, name, None if done else pool.submit(shard.rows["smiles"].astype(str).tolist())))
        if len(queue) > 1:
            yield queue.popleft()
    yield from queue


def screen_stream(
    engine: ScreeningEngine,
    chunks: Iterable[Any],
    blocks: Sequence[TargetBlock],
    root: StoragePath,
    settings: TileSettings,
    *,
    shard_size: int = SHARD_SIZE,
    workers: int = 1,
    terms: TargetTermStore | None = None,
    progress: Callable[[TileReport], None] | None = None,
) -> ScreenRun:
    """Score every molecule of the stream ``chunks`` against every block into the tiles under ``root``.

    Tiles found done are kept (a rerun, a grown library or target list: only new tiles are scored);
    ``progress`` is called with each tile's report, kept or scored now.
    """
    run = ScreenRun(blocks=list(blocks))
    with FeaturePool(workers) as pool:
        for shard, name, job in _featurised_ahead(iter_shards(chunks, shard_size), pool, root, blocks):

            def featurise(job: FeatureJob | None = job, shard: LibraryShard = shard) -> Any:
                if job is None:  # done when the shard was read, undone since (a marker deleted): featurise now
                    job = pool.submit(shard.rows["smiles"].astype(str).tolist())
                return pool.result(job)

            reports, _ = score_tiles(engine, shard, name, blocks, root, settings, featurise, terms, progress)
            run.shards.append(name)
            run.tiles.extend(reports)
    return run


def rejected_rows(root: StoragePath, shards: Sequence[str]) -> pd.DataFrame:
    """The rows refused in each shard, in library order."""
    frames = [read_rejected(root, s) for s in shards]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def answer(
    root: StoragePath,
    run: ScreenRun,
    settings: TileSettings,
    checkpoint_id: str,
    known: pd.DataFrame | None = None,
    domain: Any | None = None,
    temperature: Temperature | None = None,
) -> Answers:
    """The screen's answer tables, each pair with its applicability domain (``domain``: the checkpoint's
    `screening.domain.DomainReference`; None leaves those columns empty) and the checkpoint id; ``temperature``:
    the checkpoint's (`ml.model.calibration`), for ``calibrated_score``."""
    answers = build_answers(root, run.shards, run.blocks, settings, known, temperature)
    sequences = {t: s for b in run.blocks for t, s in zip(b.ids, b.sequences)}
    tables = [answers.per_target, answers.per_drug, answers.repurposing]
    for table in tables:
        _with_domain(table, domain, sequences)
        table["checkpoint_id"] = checkpoint_id
    return answers


DOMAIN_COLUMNS: tuple[str, ...] = (
    "nearest_training_drug",
    "drug_similarity",
    "nearest_training_target",
    "target_similarity",
)
"""Where each reported pair stands against the checkpoint's training data (`screening.domain`)."""


def _with_domain(table: pd.DataFrame, domain: Any | None, sequences: dict[str, str]) -> None:
    """Add `DOMAIN_COLUMNS` to ``table`` in place: each distinct molecule and target looked up once."""
    if domain is None or not len(table):
        for column in DOMAIN_COLUMNS:
            table[column] = pd.Series([None] * len(table), dtype=object if "nearest" in column else float)
        return
    from drugrepo_assets.screening.domain import nearest_drugs, nearest_targets

    drugs = table.drop_duplicates("smiles")["smiles"].tolist()
    near_drugs = nearest_drugs(domain, drugs).set_axis(drugs)
    targets = table.drop_duplicates("target_id")["target_id"].tolist()
    near_targets = nearest_targets(domain, [sequences[t] for t in targets]).set_axis(targets)
    table["nearest_training_drug"] = table["smiles"].map(near_drugs["nearest_training_drug"])
    table["drug_similarity"] = table["smiles"].map(near_drugs["drug_similarity"]).astype(float)
    table["nearest_training_target"] = table["target_id"].map(near_targets["nearest_training_target"])
    table["target_similarity"] = table["target_id"].map(near_targets["target_similarity"]).astype(float)


ANSWER_FILES = ("top", "top_per_drug", "repurposing")
"""The answer tables' file stems in a screen's folder (each as .parquet and .csv)."""

PICTURES = ("targets.png", "drugs.png", "matrix.png")
"""The pictures of the top of the matrix in a screen's folder."""


def write_answers(root: StoragePath, answers: Answers, per_drug: bool) -> list[str]:
    """Write the answer tables (``top``, ``top_per_drug`` when asked, ``repurposing``) as Parquet and CSV,
    and the pictures; returns the file names written."""
    from drugrepo_assets.screening.pictures import drug_heatmap, matrix_heatmap, target_heatmap

    written = []
    tables = {"top": answers.per_target, "repurposing": answers.repurposing}
    if per_drug:
        tables["top_per_drug"] = answers.per_drug
    for stem, table in tables.items():
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        write_bytes_atomic(root / f"{stem}.parquet", buffer.getvalue())
        write_bytes_atomic(root / f"{stem}.csv", table.to_csv(index=False).encode())
        written += [f"{stem}.parquet", f"{stem}.csv"]
    pictures = {"targets.png": target_heatmap(answers.per_target), "matrix.png": matrix_heatmap(answers.repurposing)}
    if per_drug:
        pictures["drugs.png"] = drug_heatmap(answers.per_drug)
    for name, png in pictures.items():
        write_bytes_atomic(root / name, png)
        written.append(name)
    return written


RANKED = "ranked"


def rank_tiles(root: StoragePath, run: ScreenRun, checkpoint_id: str) -> int:
    """Every pair ranked within its target into ``ranked/target-t/<tile>.parquet`` (`screening.scores.rank_dataset`,
    block by block); returns the pairs written."""
    return sum(
        rank_dataset(root, [tile_name(s, b.name) for s in run.shards], b.ids, checkpoint_id, first_target=b.start)
        for b in run.blocks
    )


def known_logits(root: StoragePath, run: ScreenRun, known: pd.DataFrame) -> pd.DataFrame:
    """Every scored pair of the targets with known actives: ``target_id, logit, active`` (``known``: active
    pairs by ``target_id`` and ``drug_id``, the library's ids). One target at a time, 5 bytes a pair."""
    frames = []
    for block in run.blocks:
        names = [tile_name(s, block.name) for s in run.shards]
        for col, target in enumerate(block.ids):
            actives = known.loc[known["target_id"].astype(str) == target, "drug_id"].astype(str).unique()
            if not len(actives):
                continue
            logits = target_logits(root, names, col)
            flags = [
                pc.is_in(shard_drug_ids(root, name, col, len(part)), value_set=pa.array(actives)).to_numpy(
                    zero_copy_only=False
                )
                for name, part in zip(names, logits)
            ]
            frames.append(
                pd.DataFrame({"target_id": target, "logit": np.concatenate(logits), "active": np.concatenate(flags)})
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["target_id", "logit", "active"])


def prune_tiles(root: StoragePath, run: ScreenRun) -> int:
    """Remove the tiles under ``root`` that ``run`` does not hold (an earlier library's or target list's),
    so that ``scores/`` is exactly this screen's matrix; returns the files removed."""
    tiles = {tile_name(s, b.name) for s in run.shards for b in run.blocks}
    keep = {DRUGS: set(run.shards), REJECTED: set(run.shards)}
    removed = 0
    for folder in TILE_FOLDERS:
        if not (root / folder).exists():
            continue
        wanted = keep.get(folder, tiles)
        for path in list((root / folder).iterdir()):
            stem = path.name.split(".", 1)[0]
            if path.name.startswith(".") or stem in wanted:
                continue
            path.unlink()
            removed += 1
    return removed


def discard_screen(root: StoragePath, outputs: Iterable[str] = ()) -> None:
    """Remove a screen's files from ``root`` (its manifest, tiles, answers and the caller's ``outputs``) so
    that it starts over; anything else in the folder (a target-terms store among them) is left alone."""
    for name in (MANIFEST, *TILE_FOLDERS, RANKED, *outputs):
        path = root / name
        if not is_local(path):
            if path.exists():
                path.fs.rm(path.path, recursive=True)
            continue
        local = Path(str(path))
        if local.is_dir() and not local.is_symlink():
            shutil.rmtree(local)
        else:
            local.unlink(missing_ok=True)
