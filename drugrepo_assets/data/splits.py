"""Train/val/test splits of validated pairs: random, cold-drug, cold-target and DrugBAN's shipped ones.

Every function returns the same long layout (``SPLIT_COLUMNS``): one row per pair and strategy, so
that all strategies of a dataset live in one table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from drugrepo_assets.data.validate import VALID_COLUMNS

__all__ = [
    "SPLITS",
    "SPLIT_COLUMNS",
    "SPLIT_STRATEGIES",
    "cold_split",
    "make_splits",
    "random_split",
    "shipped_split_part",
    "shipped_splits",
    "split_pairs",
    "split_parts",
    "split_subset",
]

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_STRATEGIES: tuple[str, ...] = ("random", "cold_drug", "cold_target")
"""The strategies that split one table (`split_pairs`); the shipped ones come with their files."""
# A split row carries the validated pair as it is, less the original SMILES text.
_PAIR_COLUMNS: tuple[str, ...] = tuple(c for c in VALID_COLUMNS if c != "smiles_input")
SPLIT_COLUMNS: tuple[str, ...] = ("strategy", "split", *_PAIR_COLUMNS)
_SHIPPED_FILE = re.compile(
    r"(?:^|/)(?P<strategy>[^/]+)/(?P<split>train|val|test)\.(?:csv|csv\.gz|parquet|pq)$",
    re.IGNORECASE,
)
_SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}


def _fractions(fractions: Sequence[float]) -> np.ndarray:
    values = np.asarray(list(fractions), dtype=float)
    if values.shape != (3,) or (values < 0).any() or not np.isclose(values.sum(), 1.0, atol=1e-6):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions!r}")
    return values


def _layout(valid: pd.DataFrame, strategy: str, split: np.ndarray) -> pd.DataFrame:
    table = pd.DataFrame({"strategy": np.full(len(valid), strategy, dtype=object), "split": split.astype(object)})
    for column in _PAIR_COLUMNS:
        table[column] = valid[column].to_numpy()
    table["label"] = table["label"].astype("int8")
    table["source_row"] = table["source_row"].astype("int64")
    return table


def random_split(valid: pd.DataFrame, *, seed: int = 0, fractions: Sequence[float] = (0.7, 0.1, 0.2)) -> pd.DataFrame:
    """DrugBAN's random split (7:1:2 by default): a seeded permutation cut at the fractions.

    Rows keep the order of ``valid``; the sizes are ``round(n*f_train)``, ``round(n*(f_train+f_val))``.
    """
    f = _fractions(fractions)
    n = len(valid)
    cuts = np.rint(np.cumsum(f)[:2] * n).astype(int)
    order = np.random.default_rng(seed).permutation(n)
    split = np.empty(n, dtype=object)
    split[order[: cuts[0]]] = "train"
    split[order[cuts[0] : cuts[1]]] = "val"
    split[order[cuts[1] :]] = "test"
    return _layout(valid.reset_index(drop=True), "random", split)


def cold_split(
    valid: pd.DataFrame,
    *,
    by: Literal["drug", "target"],
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
) -> pd.DataFrame:
    """Split whole drugs (or targets) so that none of val/test is seen in train.

    Groups are visited in a seeded random order and each goes to the split with the largest
    remaining pair deficit, so pair fractions land close to the targets.
    """
    if by not in ("drug", "target"):
        raise ValueError(f"by must be 'drug' or 'target', got {by!r}")
    f = _fractions(fractions)
    valid = valid.reset_index(drop=True)
    column = "drug_id" if by == "drug" else "target_id"
    sizes = valid[column].value_counts().sort_index()
    order = np.random.default_rng(seed).permutation(len(sizes))
    targets = f * len(valid)
    filled = np.zeros(3)
    assigned: dict[str, str] = {}
    for position in order:
        group = sizes.index[position]
        choice = int(np.argmax(targets - filled))
        filled[choice] += sizes.iloc[position]
        assigned[group] = SPLITS[choice]
    split = valid[column].map(assigned).to_numpy(dtype=object)
    return _layout(valid, f"cold_{by}", split)


def split_pairs(valid: pd.DataFrame, strategy: str, *, seed: int = 0) -> pd.DataFrame:
    """``valid`` split by one of ``SPLIT_STRATEGIES`` (the long layout, ``SPLIT_COLUMNS``)."""
    if strategy == "random":
        return random_split(valid, seed=seed)
    if strategy == "cold_drug":
        return cold_split(valid, by="drug", seed=seed)
    if strategy == "cold_target":
        return cold_split(valid, by="target", seed=seed)
    raise ValueError(f"unknown split strategy {strategy!r} (known: {', '.join(SPLIT_STRATEGIES)})")


def split_parts(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One strategy's split table as its ``train``, ``val`` and ``test`` rows (each possibly empty)."""
    return {name: table[table["split"] == name].reset_index(drop=True) for name in SPLITS}


def shipped_split_part(source_file: str) -> tuple[str, str] | None:
    """``(strategy, split)`` when ``source_file`` ends in ``<strategy>/<train|val|test>.<ext>``."""
    match = _SHIPPED_FILE.search(str(source_file).replace("\\", "/"))
    if match is None:
        return None
    return match.group("strategy"), match.group("split").lower()


def shipped_splits(valid: pd.DataFrame, rejected: pd.DataFrame | None = None) -> pd.DataFrame:
    """The split files DrugBAN ships, read as they are (strategy ``shipped_<folder>``).

    Each valid row from ``<strategy>/<train|val|test>.csv`` goes to that split. Rows rejected as
    ``duplicate`` are mapped (by canonical SMILES and protein) to their kept pair, so every listed
    pair is in its shipped split; rows rejected for any other reason are left out. A split is a set
    of pairs: a pair listed twice in one part is kept once, and a pair listed in several parts of
    one strategy is kept in one part only, by priority test > val > train so the evaluation parts
    stay as shipped. ``attrs["shipped_dropped"]`` counts both, per strategy:
    ``{"shipped_random": {"same_split": n, "cross_split": m}}``.
    """
    valid = valid.reset_index(drop=True)
    listings = [
        pd.DataFrame(
            {
                "pair": np.arange(len(valid)),
                "source_file": valid["source_file"].to_numpy(dtype=object),
                "source_row": valid["source_row"].to_numpy(dtype="int64"),
            }
        )
    ]
    if rejected is not None and len(rejected):
        listings.append(_duplicate_listings(valid, rejected))
    listed = pd.concat(listings, ignore_index=True)
    parts = [shipped_split_part(f) for f in listed["source_file"]]
    listed["strategy"] = ["shipped_" + p[0] if p else None for p in parts]
    listed["split"] = [p[1] if p else None for p in parts]
    listed = listed.dropna(subset=["strategy"])
    listed["priority"] = listed["split"].map(_SPLIT_PRIORITY)
    listed = listed.sort_values(["strategy", "priority", "source_file", "source_row"], kind="stable")

    same = listed.duplicated(["strategy", "split", "pair"])
    listed_once = listed[~same]
    cross = listed_once.duplicated(["strategy", "pair"])
    kept = listed_once[~cross]

    dropped: dict[str, dict[str, int]] = {}
    for strategy in sorted(listed["strategy"].unique()):
        dropped[strategy] = {
            "same_split": int((same & (listed["strategy"] == strategy)).sum()),
            "cross_split": int((cross & (listed_once["strategy"] == strategy)).sum()),
        }

    kept = kept.sort_values(["strategy", "source_file", "source_row"], kind="stable")
    pairs = valid.iloc[kept["pair"].to_numpy()].reset_index(drop=True)
    pairs["source_file"] = kept["source_file"].to_numpy()
    pairs["source_row"] = kept["source_row"].to_numpy()
    table = _layout(pairs, "", kept["split"].to_numpy(dtype=object))
    table["strategy"] = kept["strategy"].to_numpy(dtype=object)
    table.attrs["shipped_dropped"] = dropped
    return table


def _duplicate_listings(valid: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    from drugrepo_assets.data.validate import canonicalize

    dups = rejected[rejected["reason_code"] == "duplicate"]
    keys = {(s, p): i for i, (s, p) in enumerate(zip(valid["smiles"], valid["protein"]))}
    canon = {s: canonicalize(s) for s in pd.unique(dups["SMILES"])}
    pair = [keys.get((canon[s], p.strip().upper()), -1) for s, p in zip(dups["SMILES"], dups["Protein"])]
    out = pd.DataFrame(
        {
            "pair": np.asarray(pair, dtype=np.int64),
            "source_file": dups["source_file"].to_numpy(dtype=object),
            "source_row": dups["source_row"].to_numpy(dtype="int64"),
        }
    )
    return out[out["pair"] >= 0]


def make_splits(valid: pd.DataFrame, rejected: pd.DataFrame | None = None, *, seed: int = 0) -> pd.DataFrame:
    """All split strategies of one validated dataset in one long table (``SPLIT_COLUMNS``).

    Strategies: ``random``, ``cold_drug``, ``cold_target`` and one ``shipped_<name>`` per shipped
    split folder; ``attrs["shipped_dropped"]`` is carried over from :func:`shipped_splits`.
    """
    shipped = shipped_splits(valid, rejected)
    table = pd.concat(
        [*(split_pairs(valid, strategy, seed=seed) for strategy in SPLIT_STRATEGIES), shipped],
        ignore_index=True,
    )
    table["label"] = table["label"].astype("int8")
    table["source_row"] = table["source_row"].astype("int64")
    table.attrs["shipped_dropped"] = shipped.attrs.get("shipped_dropped", {})
    return table[list(SPLIT_COLUMNS)]


def split_subset(
    splits: pd.DataFrame, strategy: str, split: str, max_pairs: int | None = None, *, seed: int = 0
) -> pd.DataFrame:
    """The rows of one split of one strategy, at most ``max_pairs`` of them, sampled per label.

    Sampling the same fraction of each label keeps both classes in a capped validation or test
    set, so its AUROC exists; the same arguments always give the same rows.
    """
    rows = splits[(splits["strategy"] == strategy) & (splits["split"] == split)]
    if rows.empty:
        known = sorted(splits["strategy"].unique())
        raise ValueError(f"no {split} rows for split strategy {strategy!r} (strategies: {known})")
    if max_pairs is None or len(rows) <= max_pairs:
        return rows.reset_index(drop=True)
    fraction = max_pairs / len(rows)
    picked = rows.groupby("label", group_keys=False).sample(frac=fraction, random_state=seed)
    return picked.sort_index().reset_index(drop=True)
