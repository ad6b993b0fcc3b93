"""Heat maps of the top of the repurposing matrix: which targets, drugs and pairs they show, and that they are
real PNGs of bounded size for empty, one-row, NaN and 10,000-row answer tables."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from drugrepo_assets.screening.pictures import (
    drug_grid,
    drug_heatmap,
    matrix_grid,
    matrix_heatmap,
    target_grid,
    target_heatmap,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C", "CC(C)Cc1ccc(cc1)C(C)C(=O)O", "CCO"]


def _axis_stats(logits: pd.DataFrame, by: str, axis: str) -> pd.DataFrame:
    """rank, percentile and z of each pair's logit within ``by`` (matrix.md's definitions)."""
    group = logits.groupby(by)["logit"]
    n = group.transform("size")
    return pd.DataFrame(
        {
            f"rank_in_{axis}": group.rank(ascending=False, method="min").astype(np.int64),
            f"percentile_in_{axis}": 100.0 * group.rank(method="max") / n,
            f"z_{axis}": (logits["logit"] - group.transform("mean")) / group.transform("std", ddof=0),
        }
    )


def _answers(n_drugs: int, n_targets: int, seed: int = 0) -> pd.DataFrame:
    """Every pair of a random drugs × targets matrix with the answer tables' columns."""
    rng = np.random.default_rng(seed)
    drugs = np.repeat([f"DB{d:05d}" for d in range(n_drugs)], n_targets)
    targets = np.tile([f"P{t:05d}" for t in range(n_targets)], n_drugs)
    logits = pd.DataFrame({"drug_id": drugs, "target_id": targets, "logit": rng.normal(size=n_drugs * n_targets)})
    table = pd.concat(
        [
            logits.assign(smiles=[SMILES[i % len(SMILES)] for i in range(len(logits))]),
            _axis_stats(logits, "target_id", "target"),
            _axis_stats(logits, "drug_id", "drug"),
        ],
        axis=1,
    )
    table["score"] = 1.0 / (1.0 + np.exp(-table["logit"]))
    table["repurposing_z"] = np.minimum(table["z_target"], table["z_drug"])
    table["known"] = rng.random(len(table)) < 0.05
    return table


def _per_target(table: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    return table[table["rank_in_target"] <= k]


def _per_drug(table: pd.DataFrame, k: int = 10) -> pd.DataFrame:
    return table[table["rank_in_drug"] <= k]


def _image(png: bytes) -> np.ndarray:
    """The decoded picture; fails unless the bytes are a whole PNG."""
    assert png.startswith(PNG_MAGIC)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.ndim == 3 and pixels.shape[2] in (3, 4)
    return pixels


def _pairs(rows: list[tuple[str, str, int, float, bool]], axis: str = "target") -> pd.DataFrame:
    """A hand-made answer table: (row id, cell id, rank, z, known) read along ``axis``."""
    row, cell = ("target_id", "drug_id") if axis == "target" else ("drug_id", "target_id")
    return pd.DataFrame(rows, columns=[row, cell, f"rank_in_{axis}", f"z_{axis}", "known"])


def test_each_picture_is_a_png_of_the_answer_tables() -> None:
    table = _answers(30, 12)
    for png in (
        target_heatmap(_per_target(table)),
        drug_heatmap(_per_drug(table)),
        matrix_heatmap(table.nlargest(100, "repurposing_z")),
    ):
        height, width, _ = _image(png).shape
        assert height > 100 and width > 100


def test_target_grid_shows_the_targets_with_the_highest_best_z_and_their_best_drugs() -> None:
    per_target = _pairs(
        [
            ("T1", "D2", 2, 1.5, False),
            ("T1", "D1", 1, 2.0, True),
            ("T1", "D3", 2, 1.5, False),  # tied with D2 on rank and z: by id
            ("T2", "D1", 1, 3.0, False),
            ("T3", "D4", 1, float("nan"), False),  # no z at all: last
            ("T4", "D5", 1, 2.0, False),  # best z tied with T1: by id
            ("T4", "D6", 2, float("inf"), True),  # infinite z counts as none
        ]
    )
    grid = target_grid(per_target, top=2, max_targets=3)
    assert grid.rows == ["T2", "T1", "T4"]
    assert grid.columns == ["1", "2"]
    assert grid.rows_in_table == 4
    assert grid.labels.tolist() == [["D1", ""], ["D1", "D2"], ["D5", "D6"]]
    np.testing.assert_array_equal(grid.z, [[3.0, np.nan], [2.0, 1.5], [2.0, np.nan]])
    assert grid.known.tolist() == [[False, False], [True, False], [False, True]]

    everything = target_grid(per_target, top=10, max_targets=10)
    assert everything.rows == ["T2", "T1", "T4", "T3"]
    assert everything.labels[1].tolist() == ["D1", "D2", "D3"]
    assert everything.labels[3].tolist() == ["D4", "", ""]


def test_drug_grid_reads_the_drug_axis() -> None:
    table = _answers(20, 8)
    grid = drug_grid(_per_drug(table, 3), top=3, max_drugs=5)
    best = table.groupby("drug_id")["z_drug"].max().sort_values(ascending=False)
    assert grid.rows == best.index[:5].tolist()
    for i, drug in enumerate(grid.rows):
        ranked = table[table["drug_id"] == drug].nsmallest(3, "rank_in_drug")
        assert grid.labels[i].tolist() == ranked["target_id"].tolist()
        np.testing.assert_allclose(grid.z[i], ranked["z_drug"])


def test_matrix_grid_takes_pairs_best_first_while_both_ids_fit() -> None:
    repurposing = pd.DataFrame(
        [
            ("D1", "T1", 5.0, False),
            ("D2", "T2", 4.0, True),
            ("D3", "T1", 3.0, False),  # D3 does not fit under max_drugs=2: left out
            ("D1", "T3", 2.0, False),
            ("D2", "T1", float("nan"), False),
        ],
        columns=["drug_id", "target_id", "repurposing_z", "known"],
    )
    square = matrix_grid(repurposing, max_drugs=2, max_targets=2)
    assert (square.rows, square.columns) == (["D1", "D2"], ["T1", "T2"])
    np.testing.assert_array_equal(square.z, [[5.0, np.nan], [np.nan, 4.0]])
    assert square.known.tolist() == [[False, False], [False, True]]
    assert (square.rows_in_table, square.columns_in_table) == (3, 3)

    wider = matrix_grid(repurposing, max_drugs=2, max_targets=3)
    assert (wider.rows, wider.columns) == (["D1", "D2"], ["T1", "T2", "T3"])
    np.testing.assert_array_equal(wider.z, [[5.0, np.nan, 2.0], [np.nan, 4.0, np.nan]])


def test_pictures_grow_with_the_rows_shown_and_stop_at_the_caps() -> None:
    few = _image(target_heatmap(_per_target(_answers(30, 5)), max_targets=40))
    more = _image(target_heatmap(_per_target(_answers(30, 20)), max_targets=40))
    assert few.shape[0] < more.shape[0]

    # 10,000 rows: 1,000 targets with 10 drugs each, and the same picture's 40 targets alone.
    per_target = _per_target(_answers(20, 1_000))
    assert len(per_target) == 10_000
    shown = target_grid(per_target, max_targets=40).rows
    huge = _image(target_heatmap(per_target, max_targets=40))
    capped = _image(target_heatmap(per_target[per_target["target_id"].isin(shown)], max_targets=40))
    assert huge.shape == capped.shape

    per_drug = _per_drug(_answers(1_000, 20))
    assert len(per_drug) == 10_000
    shown = drug_grid(per_drug, max_drugs=40).rows
    assert _image(drug_heatmap(per_drug)).shape == _image(drug_heatmap(per_drug[per_drug["drug_id"].isin(shown)])).shape

    repurposing = _answers(100, 100)
    grid = matrix_grid(repurposing, max_drugs=30, max_targets=30)
    assert (len(grid.rows), len(grid.columns)) == (30, 30)
    alone = repurposing[repurposing["drug_id"].isin(grid.rows) & repurposing["target_id"].isin(grid.columns)]
    assert _image(matrix_heatmap(repurposing)).shape == _image(matrix_heatmap(alone)).shape


def test_an_empty_table_draws_nothing_to_show() -> None:
    empty = _answers(3, 3).iloc[:0]
    assert target_grid(empty).rows == drug_grid(empty).rows == matrix_grid(empty).rows == []
    for png in (target_heatmap(empty), drug_heatmap(empty), matrix_heatmap(empty)):
        height, width, _ = _image(png).shape
        assert height < 200 and width < 500


def test_one_row_and_nan_z_draw() -> None:
    one = _answers(1, 1)
    assert target_grid(one).labels.tolist() == [["DB00000"]]
    nan = _answers(4, 3).assign(z_target=np.nan, z_drug=np.nan, repurposing_z=np.nan, known=None)
    for table in (one, nan, nan.head(1)):
        _image(target_heatmap(table))
        _image(drug_heatmap(table))
        _image(matrix_heatmap(table))
    grid = matrix_grid(nan)
    assert np.isnan(grid.z).all() and not grid.known.any()
    assert len(grid.rows) == 4 and len(grid.columns) == 3


def test_numeric_ids_are_drawn_as_text() -> None:
    per_target = _pairs([(101, 7, 1, 1.0, False), (102, 8, 1, 2.0, False)])
    grid = target_grid(per_target)
    assert grid.rows == ["102", "101"] and grid.labels.tolist() == [["8"], ["7"]]
    _image(target_heatmap(per_target))


@pytest.mark.parametrize("cap", ["top", "max_targets"])
def test_a_cap_below_one_is_refused(cap: str) -> None:
    with pytest.raises(ValueError, match=f"{cap} must be at least 1"):
        target_heatmap(_per_target(_answers(3, 3)), **{cap: 0})
