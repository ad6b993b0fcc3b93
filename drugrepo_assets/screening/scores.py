"""A library screen's scores as a partitioned Parquet data set, ranked exactly without a global table.

Under a root folder (a local path or an ``s3://`` `UPath`), files named per library shard (``name``;
`part_name` for the CLI's numbered shards), the shards listed in library order by the caller:

- ``scores/<name>.parquet``: every pair, ``target_id, drug_id, logit``; one row group per target,
  molecules in library order (4 bytes a pair, plus the ids' dictionary pages);
- ``top/<name>.parquet``: the shard's best ``top`` per target, with ``smiles`` and the molecule's
  ``row`` in the shard (for ties);
- ``ranked/target-t/<name>.parquet`` (`rank_dataset`): every pair with ``score, rank, percentile``.

Every ranked table, in memory (`screening.engine.rank_table`), merged from top-K files (`merge_top`) or
written per target (`rank_dataset`), is built by `score_table`: within a target, rank = 1 + the
number of higher logits, percentile = 100 · (logits at or below) / N, ties in library order. Both
follow from counts, so the global top-K is the merge of the shards' top-Ks (every logit above a
top-K row is in the top-K too), and any pair's rank needs only its target's sorted logits (4 bytes
a pair), one target at a time. Every file is written whole and atomically (`drugrepo_assets.files`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drugrepo_assets.files import StoragePath, write_bytes_atomic
from drugrepo_assets.ml.evaluate import sigmoid

SCORES, TOP, RANKED = "scores", "top", "ranked"
SCORE_COLUMNS: tuple[str, ...] = (
    "target_id",
    "drug_id",
    "smiles",
    "logit",
    "score",
    "rank",
    "percentile",
    "checkpoint_id",
)
"""The ranked score table's columns, in order (`rank_dataset`'s files leave ``smiles`` out)."""


def part_name(shard: int) -> str:
    """The name of numbered library shard ``shard`` in every folder of the data set."""
    return f"part-{shard:05d}"


def _file(root: StoragePath, folder: str, name: str) -> StoragePath:
    return root / folder / f"{name}.parquet"


def _write_table(path: StoragePath, table: pa.Table, row_group_size: int | None = None) -> None:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=row_group_size, compression="zstd")
    write_bytes_atomic(path, buffer.getvalue())


def _read_table(path: StoragePath, **kwargs: Any) -> pa.Table:
    with path.open("rb") as handle:
        return pq.read_table(handle, **kwargs)


@dataclass
class ShardScores:
    """One library shard's logits [molecules, targets], its molecules' ids and SMILES in library order."""

    drug_ids: np.ndarray
    smiles: np.ndarray
    logits: np.ndarray
    target_ids: Sequence[str]

    def top(self, k: int) -> pd.DataFrame:
        """The best ``k`` molecules per target (ties: earlier row first), with each one's ``row``."""
        n, _t = self.logits.shape
        keep = min(k, n)
        frames = []
        for j, target in enumerate(self.target_ids):
            order = np.lexsort((np.arange(n), -self.logits[:, j].astype(np.float64)))[:keep]
            frames.append(
                pd.DataFrame(
                    {
                        "target_id": target,
                        "drug_id": self.drug_ids[order],
                        "smiles": self.smiles[order],
                        "logit": self.logits[order, j],
                        "row": order.astype(np.int64),
                    }
                )
            )
        return (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=["target_id", "drug_id", "smiles", "logit", "row"])
        )

    def arrow(self) -> pa.Table:
        """Every pair, target-major: ``target_id`` (dictionary), ``drug_id``, ``logit`` (float32)."""
        n, t = self.logits.shape
        targets = pa.DictionaryArray.from_arrays(
            pa.array(np.repeat(np.arange(t, dtype=np.int32), n)), pa.array(list(self.target_ids), pa.string())
        )
        drugs = pa.array(self.drug_ids.tolist(), pa.string())
        return pa.table(
            {
                "target_id": targets,
                "drug_id": pa.concat_arrays([drugs] * t) if t else pa.array([], pa.string()),
                "logit": pa.array(np.ascontiguousarray(self.logits.T, dtype=np.float32).reshape(-1)),
            }
        )


def write_shard(root: StoragePath, name: str, scores: ShardScores, top: int | None) -> None:
    """Write shard ``shard``'s pairs (one row group per target) and, with ``top``, its best ``top`` per target."""
    if top is not None:
        table = scores.top(top)
        _write_table(_file(root, TOP, name), pa.Table.from_pandas(table, preserve_index=False))
    _write_table(_file(root, SCORES, name), scores.arrow(), row_group_size=max(1, len(scores.drug_ids)))


def _first_of_equal(logits_desc: np.ndarray) -> np.ndarray:
    """For logits sorted high to low: the position of the first equal value (0-based)."""
    neg = -logits_desc
    return np.searchsorted(neg, neg, side="left")


def read_top(root: StoragePath, name: str) -> pd.DataFrame:
    """A shard's stored top rows: ``target_id, drug_id, smiles, logit, row``."""
    return _read_table(_file(root, TOP, name)).to_pandas()


TOP_ROW_COLUMNS = ["target_id", "drug_id", "smiles", "logit", "row", "shard"]


def best_rows(parts: Iterable[pd.DataFrame], target_ids: Sequence[str], top: int) -> pd.DataFrame:
    """The best ``top`` rows per target of shards' top rows (with ``shard``, their place in library
    order), folded one part at a time: memory holds ``top`` rows per target, whatever the shard count."""
    order = {t: i for i, t in enumerate(target_ids)}
    held = pd.DataFrame(columns=[*TOP_ROW_COLUMNS, "_t", "_neg"])
    for part in parts:
        part = part.assign(_t=part["target_id"].astype(str).map(order), _neg=-part["logit"].astype(np.float64))
        both = pd.concat([held, part], ignore_index=True) if len(held) else part
        both = both.sort_values(["_t", "_neg", "shard", "row"], kind="stable")
        held = both[both.groupby("_t").cumcount() < top].reset_index(drop=True)
    return held


def score_table(pairs: pd.DataFrame, higher: np.ndarray, molecules: int, checkpoint_id: str) -> pd.DataFrame:
    """The ranked score table (`SCORE_COLUMNS`) of ``pairs`` (``target_id, drug_id[, smiles], logit``, in output order).

    ``higher``: how many of the target's ``molecules`` logits lie above each row's. score =
    sigmoid(logit), rank = 1 + higher (ties share the best rank), percentile = 100 · (molecules at
    or below) / molecules; every row names the model's ``checkpoint_id``.
    """
    table = pairs.assign(
        target_id=pairs["target_id"].astype(str),
        score=sigmoid(pairs["logit"].to_numpy()),
        rank=higher + 1,
        percentile=100.0 * (molecules - higher) / molecules,
        checkpoint_id=checkpoint_id,
    )
    return table[[c for c in SCORE_COLUMNS if c in table]].reset_index(drop=True)


def rank_top(
    parts: Iterable[pd.DataFrame], target_ids: Sequence[str], molecules: int, top: int, checkpoint_id: str
) -> pd.DataFrame:
    """The best ``top`` per target of shards' top rows (`best_rows`), ranked over all ``molecules``."""
    table = best_rows(parts, target_ids, top)
    higher = np.zeros(len(table), dtype=np.int64)
    logits = table["logit"].to_numpy(np.float64)
    for index in table.groupby("_t").indices.values():
        higher[index] = _first_of_equal(logits[index])
    return score_table(table, higher, molecules, checkpoint_id)


def merge_top(
    root: StoragePath, shards: Sequence[str], target_ids: Sequence[str], molecules: int, top: int, checkpoint_id: str
) -> pd.DataFrame:
    """The best ``top`` per target over the shards (in library order), ranked over all ``molecules``."""
    parts = (read_top(root, name).assign(shard=i) for i, name in enumerate(shards))
    return rank_top(parts, target_ids, molecules, top, checkpoint_id)


def target_logits(root: StoragePath, shards: Sequence[str], target: int) -> list[np.ndarray]:
    """Target ``target``'s logits from each shard's scores file (its row group only), in shard order."""
    out = []
    for name in shards:
        with _file(root, SCORES, name).open("rb") as handle:
            file = pq.ParquetFile(handle)
            if file.metadata.num_rows == 0:
                out.append(np.zeros(0, np.float32))
                continue
            out.append(file.read_row_group(target, columns=["logit"]).column("logit").to_numpy())
    return out


def shard_drug_ids(root: StoragePath, name: str, target: int, count: int) -> pa.Array:
    """The ``count`` molecule ids of a shard's row group ``target`` (every target lists the same ids)."""
    drug_ids = _read_table(_file(root, SCORES, name), columns=["drug_id"]).column("drug_id")
    return drug_ids.slice(target * count, count)


def rank_dataset(
    root: StoragePath, shards: Sequence[str], target_ids: Sequence[str], checkpoint_id: str, first_target: int = 0
) -> int:
    """Every pair ranked within its target into ``ranked/target-t/<shard>.parquet`` (t counted from
    ``first_target``: a block of a longer target list); returns the pairs written.

    One target at a time: its logits from every shard (4 bytes a pair) sorted once, then each
    shard's rank and percentile by binary search.
    """
    written = 0
    for t, target in enumerate(target_ids):
        parts = target_logits(root, shards, t)
        ordered = np.sort(np.concatenate(parts).astype(np.float64))
        n = len(ordered)
        for name, logits in zip(shards, parts):
            if not len(logits):
                continue
            at_or_below = np.searchsorted(ordered, logits.astype(np.float64), side="right")
            pairs = pd.DataFrame(
                {
                    "target_id": target,
                    "drug_id": shard_drug_ids(root, name, t, len(logits)).to_pandas(),
                    "logit": logits,
                }
            )
            table = pa.Table.from_pandas(score_table(pairs, n - at_or_below, n, checkpoint_id), preserve_index=False)
            _write_table(root / RANKED / f"target-{first_target + t:05d}" / f"{name}.parquet", table)
            written += len(logits)
    return written
