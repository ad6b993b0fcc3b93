"""Heat maps of the top of the repurposing matrix, per target, per drug and drugs × targets (PNG bytes).

A scientist looks rather than reads: each picture shows a bounded slice of an answer table (the columns
of `answers.py`), whatever the table's size, and draws an empty table or NaN z-scores without raising.
Like `ml/training/plots.py`, everything returns bytes, so callers decide where the pictures go (the run folder,
Dagster UI metadata).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.colors import Colormap, Normalize
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D

from drugrepo_assets.figures import png_bytes

__all__ = [
    "Grid",
    "drug_grid",
    "drug_heatmap",
    "matrix_grid",
    "matrix_heatmap",
    "target_grid",
    "target_heatmap",
]

ROW_INCHES = 0.26  # one row of a per-target or per-drug map; with the caps this bounds a picture's height
CELL_INCHES = 0.9  # one ranked column of those maps: room for an id in small type
GRID_INCHES = 0.26  # one cell of the drugs × targets map
LABEL_CHARS = 24  # an id longer than this is cut on an axis, so long ids cannot widen a picture
CELL_CHARS = 14  # the same inside a cell


@dataclass(frozen=True)
class Grid:
    """What a heat map draws: its row and column names and, per cell, z (NaN: no z or no pair), label and known flag."""

    rows: list[str]
    columns: list[str]
    z: np.ndarray
    labels: np.ndarray
    known: np.ndarray
    rows_in_table: int
    columns_in_table: int


@dataclass(frozen=True)
class _Axis:
    """One reading of an answer table: rows of `row` ids, each with its best `cell` ids ranked by `rank`."""

    row: str
    cell: str
    rank: str
    z: str
    noun: str
    cell_noun: str


_PER_TARGET = _Axis("target_id", "drug_id", "rank_in_target", "z_target", "target", "drug")
_PER_DRUG = _Axis("drug_id", "target_id", "rank_in_drug", "z_drug", "drug", "target")


def target_grid(per_target: pd.DataFrame, top: int = 10, max_targets: int = 40) -> Grid:
    """The targets with the highest best z_target (at most ``max_targets``), each with its best ``top`` drugs."""
    return _ranked_grid(per_target, _PER_TARGET, top, max_targets)


def drug_grid(per_drug: pd.DataFrame, top: int = 10, max_drugs: int = 40) -> Grid:
    """The drugs with the highest best z_drug (at most ``max_drugs``), each with its best ``top`` targets."""
    return _ranked_grid(per_drug, _PER_DRUG, top, max_drugs)


def matrix_grid(repurposing: pd.DataFrame, max_drugs: int = 30, max_targets: int = 30) -> Grid:
    """Drugs (rows) × targets (columns) of the highest repurposing_z pairs, each axis in order of first appearance.

    Pairs are taken best first (NaN last, ties by drug then target id); a pair joins only if its drug and
    its target both fit under the caps, so every pair above the last one taken is on the grid.
    """
    _check_cap("max_drugs", max_drugs)
    _check_cap("max_targets", max_targets)
    table = _ids(repurposing, ["drug_id", "target_id"]).assign(
        z=_finite(repurposing["repurposing_z"]), known=_known(repurposing)
    )
    pairs = table.sort_values(["z", "drug_id", "target_id"], ascending=[False, True, True], na_position="last")
    drugs: dict[str, None] = {}  # insertion-ordered sets
    targets: dict[str, None] = {}
    for drug, target in zip(pairs["drug_id"].to_numpy(), pairs["target_id"].to_numpy()):
        if len(drugs) == max_drugs and len(targets) == max_targets:
            break
        if (drug in drugs or len(drugs) < max_drugs) and (target in targets or len(targets) < max_targets):
            drugs.setdefault(drug)
            targets.setdefault(target)
    rows, columns = list(drugs), list(targets)
    shown = table[table["drug_id"].isin(rows) & table["target_id"].isin(columns)]
    cells = shown.groupby(["drug_id", "target_id"]).agg(z=("z", "max"), known=("known", "any"))
    z = cells["z"].unstack("target_id").reindex(index=rows, columns=columns)
    known = cells["known"].unstack("target_id").reindex(index=rows, columns=columns)
    return Grid(
        rows=rows,
        columns=columns,
        z=z.to_numpy(np.float64).reshape(len(rows), len(columns)),
        labels=np.full((len(rows), len(columns)), "", dtype=object),
        known=known.eq(True).to_numpy().reshape(len(rows), len(columns)),
        rows_in_table=table["drug_id"].nunique(),
        columns_in_table=table["target_id"].nunique(),
    )


def target_heatmap(per_target: pd.DataFrame, top: int = 10, max_targets: int = 40) -> bytes:
    """PNG of `target_grid`: one row per target, its best drugs left to right, coloured by z within the target."""
    return _ranked_heatmap(target_grid(per_target, top, max_targets), _PER_TARGET)


def drug_heatmap(per_drug: pd.DataFrame, top: int = 10, max_drugs: int = 40) -> bytes:
    """PNG of `drug_grid`: one row per drug, its best targets left to right, coloured by z within the drug."""
    return _ranked_heatmap(drug_grid(per_drug, top, max_drugs), _PER_DRUG)


def matrix_heatmap(repurposing: pd.DataFrame, max_drugs: int = 30, max_targets: int = 30) -> bytes:
    """PNG of `matrix_grid`: drugs × targets coloured by repurposing_z; pairs not in the table left grey."""
    grid = matrix_grid(repurposing, max_drugs, max_targets)
    if not grid.rows:
        return _nothing_to_show("repurposing matrix")
    figure, ax = plt.subplots(figsize=(2.5 + GRID_INCHES * len(grid.columns), 1.8 + GRID_INCHES * len(grid.rows)))
    image = _draw_cells(ax, grid.z, "viridis")
    _mark_known(ax, grid.known, offset=0.0)
    ax.set_xticks(range(len(grid.columns)), [_cut(t, LABEL_CHARS) for t in grid.columns], rotation=90, fontsize=7)
    ax.set_yticks(range(len(grid.rows)), [_cut(d, LABEL_CHARS) for d in grid.rows], fontsize=7)
    ax.set(xlabel="target", ylabel="drug")
    ax.set_title(
        f"repurposing z, highest pairs: {len(grid.rows)} of {grid.rows_in_table:,} drugs × "
        f"{len(grid.columns)} of {grid.columns_in_table:,} targets",
        fontsize=8,
    )
    _colorbar(ax, image, "repurposing z = min(z target, z drug)", grid.known)
    return png_bytes(figure)


def _ranked_grid(table: pd.DataFrame, axis: _Axis, top: int, max_rows: int) -> Grid:
    """Rows of ``axis.row`` by their best z (NaN last, ties by id), each with its best ``top`` cells by rank.

    Within a row, cells go by rank, then z, then id; a row with fewer than the widest row's cells ends in
    empty cells (label "", z NaN).
    """
    _check_cap("top", top)
    _check_cap(f"max_{axis.noun}s", max_rows)
    frame = _ids(table, [axis.row, axis.cell]).assign(
        rank=pd.to_numeric(table[axis.rank], errors="coerce"), z=_finite(table[axis.z]), known=_known(table)
    )
    best = frame.groupby(axis.row)["z"].max().reset_index()
    best = best.sort_values(["z", axis.row], ascending=[False, True], na_position="last")
    rows = best[axis.row].head(max_rows).tolist()
    frame = frame[frame[axis.row].isin(rows)]
    frame = frame.assign(order=frame[axis.row].map({r: i for i, r in enumerate(rows)}))
    frame = frame.sort_values(
        ["order", "rank", "z", axis.cell], ascending=[True, True, False, True], na_position="last"
    )
    frame = frame.groupby("order").head(top)
    position = frame.groupby("order").cumcount().to_numpy()
    width = int(position.max()) + 1 if len(frame) else 0
    z = np.full((len(rows), width), np.nan)
    labels = np.full((len(rows), width), "", dtype=object)
    known = np.zeros((len(rows), width), dtype=bool)
    at = (frame["order"].to_numpy(np.int64), position)
    z[at] = frame["z"].to_numpy(np.float64)
    labels[at] = [_cut(c, CELL_CHARS) for c in frame[axis.cell]]
    known[at] = frame["known"].to_numpy(bool)
    return Grid(rows, [str(k) for k in range(1, width + 1)], z, labels, known, len(best), frame[axis.cell].nunique())


def _ranked_heatmap(grid: Grid, axis: _Axis) -> bytes:
    """One row per id of the grid, its best cells by rank left to right, their ids written in the cells."""
    if not grid.rows:
        return _nothing_to_show(f"best {axis.cell_noun}s per {axis.noun}")
    figure, ax = plt.subplots(figsize=(2.5 + CELL_INCHES * len(grid.columns), 1.2 + ROW_INCHES * len(grid.rows)))
    image = _draw_cells(ax, grid.z, "viridis")
    dark = np.isfinite(grid.z) & (np.ma.filled(image.norm(grid.z), 1.0) < 0.55)  # viridis is dark at its low end
    for (i, j), label in np.ndenumerate(grid.labels):
        if label:
            ax.text(j, i, label, ha="center", va="center", fontsize=6, color="white" if dark[i, j] else "black")
    _mark_known(ax, grid.known, offset=0.36)
    ax.set_xticks(range(len(grid.columns)), grid.columns, fontsize=7)
    ax.set_yticks(range(len(grid.rows)), [_cut(r, LABEL_CHARS) for r in grid.rows], fontsize=7)
    ax.set(xlabel=f"rank of the {axis.cell_noun} within the {axis.noun}", ylabel=axis.noun)
    ax.set_title(
        f"best {len(grid.columns)} {axis.cell_noun}s per {axis.noun}: {len(grid.rows)} of {grid.rows_in_table:,} "
        f"{axis.noun}s, highest best z first",
        fontsize=8,
    )
    _colorbar(ax, image, f"z within the {axis.noun}", grid.known)
    return png_bytes(figure)


def _draw_cells(ax: Axes, z: np.ndarray, cmap_name: str) -> AxesImage:
    """The z grid as an image; NaN (no pair, or no z) grey; a colour scale that never fails on NaN or one value."""
    finite = z[np.isfinite(z)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if low == high:
        low, high = low - 1.0, high + 1.0
    cmap: Colormap = plt.get_cmap(cmap_name).with_extremes(bad="lightgrey")
    return ax.imshow(np.ma.masked_invalid(z), cmap=cmap, norm=Normalize(low, high), aspect="auto")


def _mark_known(ax: Axes, known: np.ndarray, offset: float) -> None:
    """A white dot with a black edge on each known interaction (in the cell's right corner when ``offset``)."""
    rows, cols = np.nonzero(known)
    if rows.size:
        ax.scatter(cols + offset, rows, s=14, c="white", edgecolors="black", linewidths=0.6, zorder=3)


def _colorbar(ax: Axes, image: AxesImage, label: str, known: np.ndarray) -> None:
    """The colour scale beside the grid, with the known-interaction dot explained under it where one is drawn."""
    bar = ax.figure.colorbar(image, ax=ax, label=label, shrink=0.8)
    if known.any():
        dot = Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="black")
        bar.ax.legend([dot], ["known"], loc="upper left", bbox_to_anchor=(-0.5, -0.02), fontsize=7, frameon=False)


def _nothing_to_show(what: str) -> bytes:
    """A small picture that says the table had nothing to draw."""
    figure, ax = plt.subplots(figsize=(4, 1.2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{what}: nothing to show", ha="center", va="center", fontsize=9)
    return png_bytes(figure)


def _ids(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The id columns as strings (ids may be read as numbers), on the table's index."""
    return pd.DataFrame({c: table[c].astype(str) for c in columns}, index=table.index)


def _finite(values: pd.Series) -> pd.Series:
    """The z-scores as float64, NaN where missing, unreadable or infinite."""
    z = pd.to_numeric(values, errors="coerce").astype(np.float64)
    return z.where(np.isfinite(z))


def _known(table: pd.DataFrame) -> pd.Series:
    """The table's known flags (False where absent or missing)."""
    if "known" not in table.columns:
        return pd.Series(False, index=table.index)
    return table["known"].astype("boolean").fillna(False).astype(bool)


def _cut(text: str, limit: int) -> str:
    """The text, cut with an ellipsis past ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check_cap(name: str, value: int) -> None:
    """A cap is at least 1: a picture of nothing is asked for with an empty table, not a zero cap."""
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
