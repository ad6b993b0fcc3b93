"""Stage 4, the answers: the matrix's best pairs per target and per drug, ranked on both axes and set
against each axis's distribution, merged from the tiles without a global table.

- **Per target**: the best ``top`` molecules of each target over the whole library, from the tiles' top
  files (every logit above a top-K row is in the top K too, so the merge of top Ks is exact).
- **Per drug**: the best ``top_per_drug`` targets of each molecule over every target block.
- Each reported pair's rank and percentile within its target (over all molecules) *and* within its drug
  (over all targets): rank = 1 + the number of strictly higher logits (ties share the best rank),
  percentile = 100 · (logits at or below) / N. The axis a table is ranked on comes from its merge; the
  other from one streaming pass over the tiles' logits, a tile at a time (4 bytes a pair read once).
- z-scores per target (over the library) and per drug (over the targets), from the tiles' sums:
  z = (logit − mean) / std (population std; NaN where an axis has no spread, e.g. a one-drug query's targets).
- The **repurposing table**: every reported pair, ranked by ``repurposing_z`` = min(z_target, z_drug).
  A pair ranks high only when the drug stands out for the target among all molecules *and* the target
  stands out for the drug among all targets, so a molecule that scores high everywhere (a frequent
  hitter) or a target every molecule scores high on (raw scores are not comparable across targets)
  does not fill the table. Where one z is NaN (a one-drug query: no distribution over molecules) the
  other is the statistic. Ties: higher logit, then library order, then target order (NaN last).
- ``known``: the pair is a known interaction (``--known``), in every table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from drugrepo_assets.files import StoragePath
from drugrepo_assets.ml.evaluate import sigmoid
from drugrepo_assets.ml.model.calibration import CALIBRATED_COLUMN, Temperature
from drugrepo_assets.screening.plan import TargetBlock, tile_name
from drugrepo_assets.screening.scores import best_rows
from drugrepo_assets.screening.tiles import (
    TileSettings,
    read_drug_top,
    read_drugs,
    read_logits,
    read_marker,
    read_stats,
    read_top,
)

ANSWER_COLUMNS: tuple[str, ...] = (
    "target_id",
    "drug_id",
    "smiles",
    "logit",
    "score",
    CALIBRATED_COLUMN,
    "rank_in_target",
    "percentile_in_target",
    "rank_in_drug",
    "percentile_in_drug",
    "z_target",
    "z_drug",
    "repurposing_z",
    "known",
)
"""The columns of every answer table, in order (the applicability domain's and ``checkpoint_id`` follow)."""


@dataclass
class Answers:
    """A screen's three answer tables (`ANSWER_COLUMNS`): best per target, best per drug (empty unless
    asked), and every reported pair ranked by ``repurposing_z`` (with ``repurposing_rank``)."""

    per_target: pd.DataFrame
    per_drug: pd.DataFrame
    repurposing: pd.DataFrame


def _first_of_equal(desc: np.ndarray) -> np.ndarray:
    """For values sorted high to low: how many are strictly higher than each."""
    neg = -desc
    return np.searchsorted(neg, neg, side="left")


def _z(x: np.ndarray, n: np.ndarray, total: np.ndarray, total_sq: np.ndarray) -> np.ndarray:
    """(x − mean) / std of each row's axis; NaN where the axis has no spread (one molecule, one target)."""
    mean = total / n
    var = np.maximum(total_sq / n - mean * mean, 0.0)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x.astype(np.float64) - mean) / std
    return np.where(std > 0, z, np.nan)


@dataclass
class _Pairs:
    """Reported pairs as arrays: the molecule (shard position, row), the target (global position), the logit."""

    shard: np.ndarray
    row: np.ndarray
    target: np.ndarray
    logit: np.ndarray

    def __len__(self) -> int:
        return len(self.logit)


def build_answers(
    root: StoragePath,
    shards: Sequence[str],
    blocks: Sequence[TargetBlock],
    settings: TileSettings,
    known: pd.DataFrame | None = None,
    temperature: Temperature | None = None,
) -> Answers:
    """The answer tables of a screen whose tiles (``shards`` in library order × ``blocks``) are all done under ``root``;
    ``calibrated_score`` uses the checkpoint's ``temperature`` (None: T = 1)."""
    counts = [_shard_molecules(root, s, blocks) for s in shards]
    axes = _Axes.read(root, shards, blocks, counts)
    by_target = _per_target(root, shards, blocks, settings.top)
    by_drug = (
        _per_drug(root, shards, blocks, counts, settings.top_per_drug)
        if settings.top_per_drug is not None
        else _concat(())
    )
    in_drug_of_target_rows, in_target_of_drug_rows = _cross_counts(root, shards, blocks, counts, by_target, by_drug)
    rows = _Rows(axes, _DrugNames(root, shards), _known_set(known), temperature or Temperature())
    per_target = rows.frame(by_target, _axis_higher(by_target.target, by_target.logit), in_drug_of_target_rows)
    per_drug = rows.frame(by_drug, in_target_of_drug_rows, _axis_higher(axes.drug_of(by_drug), by_drug.logit))
    return Answers(
        per_target=_clean(per_target),
        per_drug=_clean(per_drug),
        repurposing=_clean(_repurposing(per_target, per_drug), ("repurposing_rank",)),
    )


@dataclass
class _Axes:
    """The screen's two axes (targets in block order; molecules in library order, ``offsets`` the first of
    each shard) and their logits' count, sum and sum of squares per target and per drug, for the z-scores."""

    target_ids: list[str]
    offsets: np.ndarray
    t_n: np.ndarray
    t_sum: np.ndarray
    t_sq: np.ndarray
    d_n: np.ndarray
    d_sum: np.ndarray
    d_sq: np.ndarray

    @classmethod
    def read(
        cls, root: StoragePath, shards: Sequence[str], blocks: Sequence[TargetBlock], counts: Sequence[int]
    ) -> _Axes:
        """Both axes' sums from the tiles' statistics (`tiles.read_stats`), a tile at a time."""
        target_ids = [t for b in blocks for t in b.ids]
        n_targets = len(target_ids)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        n_drugs = int(offsets[-1])
        t_n, t_sum, t_sq = np.zeros(n_targets, np.int64), np.zeros(n_targets), np.zeros(n_targets)
        d_sum, d_sq = np.zeros(n_drugs), np.zeros(n_drugs)
        for i, shard in enumerate(shards):
            for block in blocks:
                stats = read_stats(root, tile_name(shard, block.name))
                at = slice(block.start, block.start + len(block))
                t_n[at] += stats.target_n
                t_sum[at] += stats.target_sum
                t_sq[at] += stats.target_sumsq
                d_sum[offsets[i] : offsets[i + 1]] += stats.drug_sum
                d_sq[offsets[i] : offsets[i + 1]] += stats.drug_sumsq
        d_n = np.full(n_drugs, n_targets, np.int64)
        return cls(target_ids, offsets, t_n, t_sum, t_sq, d_n, d_sum, d_sq)

    @property
    def n_targets(self) -> int:
        """Targets screened."""
        return len(self.target_ids)

    @property
    def n_drugs(self) -> int:
        """Molecules screened."""
        return int(self.offsets[-1])

    def drug_of(self, pairs: _Pairs) -> np.ndarray:
        """Each pair's molecule as its position in the library."""
        return self.offsets[pairs.shard] + pairs.row

    def z_scores(self, pairs: _Pairs, drug: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each pair's z-score within its target (over the library) and within its ``drug`` (over the targets)."""
        z_target = _z(pairs.logit, self.t_n[pairs.target], self.t_sum[pairs.target], self.t_sq[pairs.target])
        z_drug = _z(pairs.logit, self.d_n[drug], self.d_sum[drug], self.d_sq[drug])
        return z_target, z_drug


@dataclass
class _Rows:
    """What an answer table's rows hold beyond their pairs: the axes, the molecules' names, the known pairs
    and the temperature of ``calibrated_score``."""

    axes: _Axes
    drugs: _DrugNames
    known_pairs: set[tuple[str, str]]
    temperature: Temperature

    def frame(self, pairs: _Pairs, higher_target: np.ndarray, higher_drug: np.ndarray) -> pd.DataFrame:
        """The rows of ``pairs`` (`ANSWER_COLUMNS`, then ``_drug`` and ``_target``, the axes' positions), given how
        many logits are strictly higher within each pair's target and within its drug."""
        n_drugs, n_targets = self.axes.n_drugs, self.axes.n_targets
        gdrug = self.axes.drug_of(pairs)
        z_target, z_drug = self.axes.z_scores(pairs, gdrug)
        ids, smiles = self.drugs.lookup(pairs.shard, pairs.row)
        targets = np.asarray(self.axes.target_ids, dtype=object)[pairs.target] if len(pairs) else np.zeros(0, object)
        frame = pd.DataFrame(
            {
                "target_id": targets,
                "drug_id": ids,
                "smiles": smiles,
                "logit": pairs.logit.astype(np.float32),
                "score": sigmoid(pairs.logit.astype(np.float32)),
                CALIBRATED_COLUMN: self.temperature.apply(pairs.logit.astype(np.float32)),
                "rank_in_target": higher_target + 1,
                "percentile_in_target": 100.0 * (n_drugs - higher_target) / max(n_drugs, 1),
                "rank_in_drug": higher_drug + 1,
                "percentile_in_drug": 100.0 * (n_targets - higher_drug) / max(n_targets, 1),
                "z_target": z_target,
                "z_drug": z_drug,
                "repurposing_z": np.fmin(z_target, z_drug),
                "known": [(t, d) in self.known_pairs for t, d in zip(targets, ids)],
            }
        )
        frame["_drug"] = gdrug
        frame["_target"] = pairs.target
        return frame


def _repurposing(per_target: pd.DataFrame, per_drug: pd.DataFrame) -> pd.DataFrame:
    """Every reported pair once, ranked by ``repurposing_z`` (ties: higher logit, library order, target
    order; NaN last), its rank in ``repurposing_rank``."""
    both = pd.concat([per_target, per_drug], ignore_index=True).drop_duplicates(["_drug", "_target"])
    both["_neg_z"], both["_neg_logit"] = -both["repurposing_z"], -both["logit"].astype(np.float64)
    order = ["_neg_z", "_neg_logit", "_drug", "_target"]
    repurposing = both.sort_values(order, kind="stable", na_position="last").reset_index(drop=True)
    repurposing.insert(0, "repurposing_rank", np.arange(1, len(repurposing) + 1))
    return repurposing


def _clean(frame: pd.DataFrame, first: tuple[str, ...] = ()) -> pd.DataFrame:
    """An answer table as returned: ``first``, then `ANSWER_COLUMNS`, numbered from 0."""
    return frame[[*first, *ANSWER_COLUMNS]].reset_index(drop=True)


def _axis_higher(group: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """For rows sorted by group then logit high to low, each holding its axis's best rows: strictly higher counts."""
    higher = np.zeros(len(logits), np.int64)
    if not len(logits):
        return higher
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    ends = np.r_[starts[1:], len(group)]
    values = logits.astype(np.float64)
    for a, b in zip(starts, ends):
        higher[a:b] = _first_of_equal(values[a:b])
    return higher


def _shard_molecules(root: StoragePath, shard: str, blocks: Sequence[TargetBlock]) -> int:
    """Molecules of ``shard``, from its first tile's marker; ValueError when that tile is not done."""
    marker = read_marker(root, tile_name(shard, blocks[0].name))
    if marker is None:
        raise ValueError(f"{root}: tile {tile_name(shard, blocks[0].name)} is not done")
    return marker.molecules


def _per_target(root: StoragePath, shards: Sequence[str], blocks: Sequence[TargetBlock], top: int) -> _Pairs:
    """The best ``top`` molecules of every target, target by target in list order (ties: library order)."""
    parts = []
    for block in blocks:
        tops = (read_top(root, tile_name(s, block.name)).assign(shard=i) for i, s in enumerate(shards))
        best = best_rows(tops, block.ids, top)
        parts.append(
            _Pairs(
                best["shard"].to_numpy(np.int64),
                best["row"].to_numpy(np.int64),
                best["_t"].to_numpy(np.int64) + block.start,
                best["logit"].to_numpy(np.float32),
            )
        )
    return _concat(parts)


def _per_drug(
    root: StoragePath, shards: Sequence[str], blocks: Sequence[TargetBlock], counts: Sequence[int], top: int
) -> _Pairs:
    """The best ``top`` targets of every molecule, molecule by molecule in library order (ties: target order)."""
    parts = []
    for i, shard in enumerate(shards):
        if not counts[i]:
            continue
        frames = [
            read_drug_top(root, tile_name(shard, b.name)).assign(target=lambda f, b=b: f["col"] + b.start)
            for b in blocks
        ]
        rows = pd.concat(frames, ignore_index=True)
        rows["_neg"] = -rows["logit"].astype(np.float64)
        rows = rows.sort_values(["row", "_neg", "target"], kind="stable")
        rows = rows[rows.groupby("row").cumcount() < top]
        parts.append(
            _Pairs(
                np.full(len(rows), i, np.int64),
                rows["row"].to_numpy(np.int64),
                rows["target"].to_numpy(np.int64),
                rows["logit"].to_numpy(np.float32),
            )
        )
    return _concat(parts)


def _concat(parts: Sequence[_Pairs]) -> _Pairs:
    """``parts`` as one `_Pairs`, in order (none: empty)."""
    if not parts:
        return _Pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    return _Pairs(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("shard", "row", "target", "logit")))


def _cross_counts(
    root: StoragePath,
    shards: Sequence[str],
    blocks: Sequence[TargetBlock],
    counts: Sequence[int],
    by_target: _Pairs,
    by_drug: _Pairs,
) -> tuple[np.ndarray, np.ndarray]:
    """Strictly higher logits within the drug of each per-target row, and within the target of each
    per-drug row: one pass over the tiles' logits, a tile at a time."""
    in_drug = np.zeros(len(by_target), np.int64)
    in_target = np.zeros(len(by_drug), np.int64)
    for i, shard in enumerate(shards):
        mine = np.flatnonzero(by_target.shard == i)
        if not counts[i] or (not len(mine) and not len(by_drug)):
            continue
        for block in blocks:
            logits = read_logits(root, tile_name(shard, block.name), counts[i], len(block))
            if len(mine):
                values = by_target.logit[mine]
                in_drug[mine] += (logits[by_target.row[mine]] > values[:, None]).sum(1)
            inside = np.flatnonzero((by_drug.target >= block.start) & (by_drug.target < block.start + len(block)))
            if not len(inside):
                continue
            ordered = np.sort(logits, axis=0)
            cols = by_drug.target[inside] - block.start
            for col in np.unique(cols):
                at = inside[cols == col]
                in_target[at] += counts[i] - np.searchsorted(ordered[:, col], by_drug.logit[at], side="right")
    return in_drug, in_target


class _DrugNames:
    """Molecule ids and SMILES by (shard position, row). No shard's table is held between lookups, so
    memory does not grow with the library."""

    def __init__(self, root: StoragePath, shards: Sequence[str]) -> None:
        self.root, self.shards = root, shards

    def lookup(self, shard: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ids and SMILES of the molecules at (``shard``, ``row``), each shard named read once."""
        ids = np.empty(len(row), dtype=object)
        smiles = np.empty(len(row), dtype=object)
        for i in np.unique(shard):
            at = np.flatnonzero(shard == i)
            table = read_drugs(self.root, self.shards[int(i)])
            ids[at] = table["drug_id"].to_numpy(object)[row[at]]
            smiles[at] = table["smiles"].to_numpy(object)[row[at]]
        return ids, smiles


def _known_set(known: pd.DataFrame | None) -> set[tuple[str, str]]:
    """The (target id, drug id) of every known interaction."""
    if known is None or not len(known):
        return set()
    return set(zip(known["target_id"].astype(str), known["drug_id"].astype(str)))
