"""Stage 3, the tiles: one shard of molecules scored against one block of targets, written whole.

Under a screen's root, a shard (content name ``s``) writes once:
- ``drugs/<s>.parquet``: its molecules that were scored (``drug_id, smiles``, in library order);
- ``rejected/<s>.parquet``: its rows refused (reader and featurisation), with file, line and reason.
and each tile ``<s>-<b>`` (`plan.tile_name`):
- ``scores/<tile>.parquet``: every pair, ``target_id, drug_id, logit``; one row group per target,
  molecules in library order (`screening.scores.ShardScores.arrow`);
- ``top/<tile>.parquet``: the best ``top`` molecules per target (with ``row``, the molecule's place in the shard);
- ``drugtop/<tile>.parquet``: the best ``top_per_drug`` targets per molecule (``row, col, logit``), when asked;
- ``stats/<tile>.npz``: per target and per molecule the count, sum and sum of squares of the logits (float64);
- ``tiles/<tile>.json``: the marker, written last, with the tile's counts, timings and settings.
A tile whose marker exists is done; one whose summaries were made with other settings (another
``top``) is summarised again from its stored logits, not scored again. Every file is atomic
(`drugrepo_assets.files`), so a killed or retried tile never leaves half a file.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drugrepo_assets.files import StoragePath, write_bytes_atomic
from drugrepo_assets.ml.features.featurize import CompactMolecules
from drugrepo_assets.screening.library import Featurised, LibraryShard, refuse
from drugrepo_assets.screening.plan import TargetBlock, tile_name
from drugrepo_assets.screening.scores import ShardScores

if TYPE_CHECKING:
    from drugrepo_assets.screening.engine import ScreeningEngine
    from drugrepo_assets.screening.terms import TargetTermStore

DRUGS, REJECTED, SCORES, TOP, DRUG_TOP, STATS, TILES = "drugs", "rejected", "scores", "top", "drugtop", "stats", "tiles"
TILE_FOLDERS = (DRUGS, REJECTED, SCORES, TOP, DRUG_TOP, STATS, TILES)
"""The folders a screen's tiles fill under its root."""


@dataclass(frozen=True)
class TileSettings:
    """What a tile's summaries keep: the best ``top`` molecules per target, the best ``top_per_drug``
    targets per molecule (None: no per-drug answer)."""

    top: int
    top_per_drug: int | None = None


@dataclass
class TileReport:
    """One tile done: its names, molecules × targets, seconds scoring, terms read or computed, and
    whether it was found done (``kept``) rather than scored now."""

    tile: str
    shard: str
    block: str
    molecules: int
    targets: int
    seconds: float
    terms_read: int
    terms_computed: int
    engine: str
    settings: dict[str, int | None] = field(default_factory=dict)
    kept: bool = False

    @property
    def pairs(self) -> int:
        """Pairs the tile holds."""
        return self.molecules * self.targets


def _file(root: StoragePath, folder: str, name: str, suffix: str = "parquet") -> StoragePath:
    return root / folder / f"{name}.{suffix}"


def _parquet(table: pa.Table | pd.DataFrame, row_group_size: int | None = None) -> bytes:
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size, compression="zstd")
    return buffer.getvalue()


def _table(root: StoragePath, folder: str, name: str) -> pd.DataFrame:
    """The Parquet table ``folder/name`` under ``root``."""
    with _file(root, folder, name).open("rb") as handle:
        return pd.read_parquet(handle)


def read_marker(root: StoragePath, tile: str) -> TileReport | None:
    """A tile's marker, or None when the tile is not done."""
    path = _file(root, TILES, tile, "json")
    if not path.exists():
        return None
    return TileReport(**json.loads(path.read_text()))


def read_drugs(root: StoragePath, shard: str) -> pd.DataFrame:
    """A shard's scored molecules: ``drug_id, smiles`` in library order."""
    return _table(root, DRUGS, shard)


def read_rejected(root: StoragePath, shard: str) -> pd.DataFrame:
    """A shard's refused rows."""
    return _table(root, REJECTED, shard)


def read_logits(root: StoragePath, tile: str, molecules: int, targets: int) -> np.ndarray:
    """A tile's logits [molecules, targets] from its scores file."""
    with _file(root, SCORES, tile).open("rb") as handle:
        column = pq.read_table(handle, columns=["logit"]).column("logit").to_numpy()
    return column.reshape(targets, molecules).T


def read_top(root: StoragePath, tile: str) -> pd.DataFrame:
    """A tile's best molecules per target: ``target_id, drug_id, smiles, logit, row``."""
    return _table(root, TOP, tile)


def read_drug_top(root: StoragePath, tile: str) -> pd.DataFrame:
    """A tile's best targets per molecule: ``row, col, logit`` (col: the target's place in its block)."""
    return _table(root, DRUG_TOP, tile)


@dataclass
class TileStats:
    """Per target [targets] and per molecule [molecules]: count, sum and sum of squares of the logits."""

    target_n: np.ndarray
    target_sum: np.ndarray
    target_sumsq: np.ndarray
    drug_n: np.ndarray
    drug_sum: np.ndarray
    drug_sumsq: np.ndarray

    @classmethod
    def of(cls, logits: np.ndarray) -> TileStats:
        """The statistics of a tile's logits [molecules, targets]."""
        x = logits.astype(np.float64)
        n, t = x.shape
        return cls(np.full(t, n, np.int64), x.sum(0), (x * x).sum(0), np.full(n, t, np.int64), x.sum(1), (x * x).sum(1))


def read_stats(root: StoragePath, tile: str) -> TileStats:
    """A tile's logit statistics."""
    with _file(root, STATS, tile, "npz").open("rb") as handle:
        data = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        return TileStats(**{k: data[k] for k in TileStats.__dataclass_fields__})


def drug_top(logits: np.ndarray, k: int) -> pd.DataFrame:
    """The best ``k`` targets of each molecule of a tile: ``row, col, logit`` (ties: the earlier target first)."""
    n, t = logits.shape
    keep = min(k, t)
    order = np.argsort(-logits, axis=1, kind="stable")[:, :keep]
    rows = np.repeat(np.arange(n, dtype=np.int64), keep)
    cols = order.reshape(-1).astype(np.int32)
    return pd.DataFrame({"row": rows, "col": cols, "logit": logits[rows, cols]})


def _write_summaries(
    root: StoragePath, tile: str, scores: ShardScores, settings: TileSettings, stats: TileStats
) -> None:
    write_bytes_atomic(_file(root, TOP, tile), _parquet(scores.top(settings.top)))
    if settings.top_per_drug is not None:
        write_bytes_atomic(_file(root, DRUG_TOP, tile), _parquet(drug_top(scores.logits, settings.top_per_drug)))
    buffer = io.BytesIO()
    np.savez(buffer, **asdict(stats))
    write_bytes_atomic(_file(root, STATS, tile, "npz"), buffer.getvalue())


def _write_marker(root: StoragePath, report: TileReport) -> None:
    record = asdict(report)
    record.pop("kept")
    write_bytes_atomic(_file(root, TILES, report.tile, "json"), json.dumps(record).encode())


def _settings(settings: TileSettings) -> dict[str, int | None]:
    return {"top": settings.top, "top_per_drug": settings.top_per_drug}


def _kept(root: StoragePath, tile: str, settings: TileSettings, block: TargetBlock) -> TileReport | None:
    """A tile found done; summarised again from its logits when they were kept with other settings."""
    report = read_marker(root, tile)
    if report is None:
        return None
    if report.settings != _settings(settings):
        drugs = read_drugs(root, report.shard)
        logits = read_logits(root, tile, report.molecules, report.targets)
        scores = ShardScores(drugs["drug_id"].to_numpy(object), drugs["smiles"].to_numpy(object), logits, block.ids)
        _write_summaries(root, tile, scores, settings, TileStats.of(logits))
        report.settings = _settings(settings)
        _write_marker(root, report)
    report.kept = True
    return report


def engine_name(engine: ScreeningEngine) -> str:
    """How the engine scores: the C kernel, or torch on its device."""
    return "C kernel" if engine.native else f"torch on {engine.device}"


def score_tiles(
    engine: ScreeningEngine,
    shard: LibraryShard,
    shard_name: str,
    blocks: Sequence[TargetBlock],
    root: StoragePath,
    settings: TileSettings,
    featurise: Callable[[], Featurised],
    terms: TargetTermStore | None = None,
    on_tile: Callable[[TileReport], None] | None = None,
) -> tuple[list[TileReport], LibraryShard]:
    """Score shard ``shard`` (named ``shard_name``) against each of ``blocks`` whose tile is not done.

    ``featurise`` gives the shard's compact molecules and refusals; it is called only when a tile is
    missing, so a shard whose tiles are all done costs no RDKit. Returns each block's report (found
    done or scored now), in block order, and the shard with its refused rows (None when not featurised).
    """
    reports: dict[int, TileReport] = {}
    for block in blocks:
        kept = _kept(root, tile_name(shard_name, block.name), settings, block)
        if kept is not None:
            reports[block.index] = kept
            if on_tile is not None:
                on_tile(kept)
    todo = [b for b in blocks if b.index not in reports]
    if not todo:
        return [reports[b.index] for b in blocks], shard
    molecules, refused, _ = featurise()
    shard = refuse(shard, refused)
    kept_rows = shard.rows
    drugs = pd.DataFrame({"drug_id": kept_rows["id"].astype(str), "smiles": kept_rows["smiles"].astype(str)})
    write_bytes_atomic(_file(root, DRUGS, shard_name), _parquet(drugs))
    rejected = shard.rejected.astype({"file": str, "id": str, "value": str, "reason": str})
    write_bytes_atomic(_file(root, REJECTED, shard_name), _parquet(rejected))
    for block in todo:
        report = score_tile(engine, molecules, drugs, shard_name, block, root, settings, terms)
        reports[block.index] = report
        if on_tile is not None:
            on_tile(report)
    return [reports[b.index] for b in blocks], shard


def score_tile(
    engine: ScreeningEngine,
    molecules: CompactMolecules,
    drugs: pd.DataFrame,
    shard_name: str,
    block: TargetBlock,
    root: StoragePath,
    settings: TileSettings,
    terms: TargetTermStore | None = None,
) -> TileReport:
    """One tile: the shard's molecules against the block's targets, ``engine.target_chunk`` targets' terms
    at a time (read from ``terms``, or computed and stored there); its files, then its marker."""
    from drugrepo_assets.screening.terms import TermsUse, block_terms

    tile = tile_name(shard_name, block.name)
    logits = np.empty((len(molecules), len(block)), dtype=np.float32)
    use = TermsUse()
    seconds = 0.0
    for t0 in range(0, len(block), engine.target_chunk):
        chunk = slice(t0, min(t0 + engine.target_chunk, len(block)))
        target_terms, used = block_terms(engine, block.sequences[chunk], terms)
        target_terms = engine.held(target_terms)  # Gq dropped once packed for the C kernel
        use.add(used)
        start = time.perf_counter()
        if len(molecules):
            logits[:, chunk] = engine.score_terms(molecules, target_terms)
        seconds += time.perf_counter() - start
    scores = ShardScores(drugs["drug_id"].to_numpy(object), drugs["smiles"].to_numpy(object), logits, block.ids)
    write_bytes_atomic(_file(root, SCORES, tile), _parquet(scores.arrow(), row_group_size=max(1, len(drugs))))
    _write_summaries(root, tile, scores, settings, TileStats.of(logits))
    report = TileReport(
        tile=tile,
        shard=shard_name,
        block=block.name,
        molecules=len(molecules),
        targets=len(block),
        seconds=seconds,
        terms_read=use.read,
        terms_computed=use.computed,
        engine=engine_name(engine),
        settings=_settings(settings),
    )
    _write_marker(root, report)
    return report
