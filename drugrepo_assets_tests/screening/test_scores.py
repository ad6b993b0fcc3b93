"""The score data set ranks exactly as `rank_table` does over one in-memory table, ties included, and
`rank_table` ranks as the definition says (counted here pair by pair)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal

from drugrepo_assets.screening.engine import rank_table
from drugrepo_assets.screening.scores import SCORE_COLUMNS, ShardScores, merge_top, part_name, rank_dataset, write_shard

TARGETS = ["T-b", "T-a", "T-c"]  # not sorted: the targets' order is the input's


def _library(n: int, seed: int) -> tuple[list[str], list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.integers(-4, 5, size=(n, len(TARGETS))).astype(np.float32) / 4  # 9 values: many ties
    return [f"mol{i:03d}" for i in range(n)], [f"C{'C' * (i % 7)}O" for i in range(n)], logits


def _write(
    root: Path, sizes: list[int], logits: np.ndarray, ids: list[str], smiles: list[str], top: int | None
) -> None:
    start = 0
    for shard, size in enumerate(sizes):
        rows = slice(start, start + size)
        part = ShardScores(np.asarray(ids[rows], object), np.asarray(smiles[rows], object), logits[rows], TARGETS)
        write_shard(root, part_name(shard), part, top)
        start += size


def test_the_in_memory_table_is_ranked_as_defined() -> None:
    ids, smiles, logits = _library(30, seed=5)
    table = rank_table(logits, ids, smiles, TARGETS, "abc123")
    assert tuple(table.columns) == SCORE_COLUMNS
    rows = []
    for t, target in enumerate(TARGETS):  # targets in input order, best first, ties in library order
        column = logits[:, t].astype(np.float64)
        for i in sorted(range(30), key=lambda i: (-column[i], i)):
            higher, at_or_below = int((column > column[i]).sum()), int((column <= column[i]).sum())
            rows.append((target, ids[i], smiles[i], 1 + higher, 100.0 * at_or_below / 30))
    expected = pd.DataFrame(rows, columns=["target_id", "drug_id", "smiles", "rank", "percentile"])
    assert_frame_equal(table[expected.columns], expected, check_dtype=False)
    assert table["logit"].dtype == np.float32 and table["rank"].dtype == np.int64
    np.testing.assert_allclose(table["score"], 1 / (1 + np.exp(-table["logit"].astype(np.float64))), rtol=1e-12)
    assert set(table["checkpoint_id"]) == {"abc123"}


@pytest.mark.parametrize("sizes", [[50], [17, 0, 20, 13], [1] * 50], ids=["one", "uneven", "singletons"])
@pytest.mark.parametrize("top", [1, 7, 60])
def test_top_k_merge_equals_ranking_the_whole_table(tmp_path: Path, sizes: list[int], top: int) -> None:
    ids, smiles, logits = _library(50, seed=len(sizes) + top)
    _write(tmp_path, sizes, logits, ids, smiles, top)
    merged = merge_top(tmp_path, [part_name(i) for i in range(len(sizes))], TARGETS, 50, top, "abc123")
    expected = rank_table(logits, ids, smiles, TARGETS, "abc123", top=top)
    assert_frame_equal(merged, expected, check_dtype=False)
    full = rank_table(logits, ids, smiles, TARGETS, "abc123")
    assert ((full["rank"] == 1).groupby(full["target_id"]).sum() > 1).any()  # a best is a tie: order decides


def test_every_pair_ranked_per_target_equals_ranking_the_whole_table(tmp_path: Path) -> None:
    ids, smiles, logits = _library(40, seed=3)
    _write(tmp_path, [11, 0, 29], logits, ids, smiles, top=None)
    assert rank_dataset(tmp_path, [part_name(i) for i in range(3)], TARGETS, "abc123") == 40 * len(TARGETS)
    ranked = pd.concat(
        [pd.read_parquet(p) for p in sorted((tmp_path / "ranked").rglob("*.parquet"))], ignore_index=True
    )
    expected = rank_table(logits, ids, smiles, TARGETS, "abc123").drop(columns="smiles")
    key = ["target_id", "drug_id"]
    assert_frame_equal(
        ranked.sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )


def test_a_shard_file_holds_one_row_group_per_target_in_library_order(tmp_path: Path) -> None:
    ids, smiles, logits = _library(6, seed=1)
    _write(tmp_path, [6], logits, ids, smiles, top=2)
    file = pq.ParquetFile(tmp_path / "scores" / f"{part_name(0)}.parquet")
    assert file.num_row_groups == len(TARGETS)
    for t, target in enumerate(TARGETS):
        group = file.read_row_group(t).to_pandas()
        assert group["target_id"].astype(str).tolist() == [target] * 6
        assert group["drug_id"].tolist() == ids
        np.testing.assert_array_equal(group["logit"].to_numpy(), logits[:, t])
    assert file.schema_arrow.field("logit").type == "float"
