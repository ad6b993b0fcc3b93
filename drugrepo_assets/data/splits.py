"""Train/val/test splits of validated pairs: random, cold-drug, cold-target, cluster and DrugBAN's shipped ones.

Every function returns the same long layout (``SPLIT_COLUMNS``): one row per pair and strategy, so
that all strategies of a dataset live in one table. The cluster split (`cluster_split`, DrugBAN's
cross-domain split) adds a fourth split value, ``target_train``: the unlabelled target-domain pairs
that domain adaptation trains on (`CLUSTER_SPLITS`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from drugrepo_assets.data.validate import VALID_COLUMNS

__all__ = [
    "CLUSTER_SPLITS",
    "CROSS_DOMAIN_STRATEGIES",
    "REFERENCE_FILES",
    "SOURCE_FRACTION",
    "SOURCE_VAL_FRACTION",
    "SPLITS",
    "SPLIT_COLUMNS",
    "SPLIT_STRATEGIES",
    "TARGET_TRAIN",
    "TARGET_TRAIN_FRACTION",
    "cluster_split",
    "cold_split",
    "make_splits",
    "random_split",
    "reference_tables",
    "shipped_split_part",
    "shipped_splits",
    "split_pairs",
    "split_parts",
    "split_subset",
]

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_STRATEGIES: tuple[str, ...] = ("random", "cold_drug", "cold_target", "cluster")
"""The strategies that split one table (`split_pairs`); the shipped ones come with their files."""
TARGET_TRAIN = "target_train"
"""The split value of the target-domain pairs domain adaptation trains on without their labels."""
CLUSTER_SPLITS: tuple[str, ...] = ("train", "val", TARGET_TRAIN, "test")
"""The split values of the cluster strategy: source-domain train and val, target-domain train (unlabelled) and test."""
CROSS_DOMAIN_STRATEGIES: tuple[str, ...] = ("cluster",)
"""The strategies whose ``val`` pairs are source-domain and ``test`` pairs target-domain, with ``target_train`` rows."""
SOURCE_FRACTION = 0.6
"""DrugBAN's share of the drug clusters, and of the protein clusters, drawn for the source domain."""
TARGET_TRAIN_FRACTION = 0.8
"""DrugBAN's share of the target-domain pairs given, unlabelled, to training; the rest are the test set."""
SOURCE_VAL_FRACTION = 0.1
"""The share of the source-domain pairs held out as the validation set (`cluster_split` says why)."""
REFERENCE_FILES: dict[str, str] = {
    "train": "source_train.csv",
    "val": "source_val.csv",
    TARGET_TRAIN: "target_train.csv",
    "test": "target_test.csv",
}
"""The file of each cluster split value as the reference's ``main.py --split cluster`` reads them (it reads no
``source_val.csv``)."""
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
    if strategy == "cluster":
        return cluster_split(valid, seed=seed)
    raise ValueError(f"unknown split strategy {strategy!r} (known: {', '.join(SPLIT_STRATEGIES)})")


def split_parts(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One strategy's split table as its ``train``, ``val`` and ``test`` rows (each possibly empty); a cluster
    split's ``target_train`` rows are not among them (labelled training never sees them)."""
    return {name: table[table["split"] == name].reset_index(drop=True) for name in SPLITS}


def _draw(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``round(fraction × clusters)`` of the distinct ``labels``, drawn without replacement."""
    distinct = np.unique(labels)
    return rng.permutation(distinct)[: int(np.rint(fraction * len(distinct)))]


def _cut(rows: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` in a seeded order, cut after ``round(fraction × len)``: (the first part, the rest)."""
    order = rng.permutation(rows)
    cut = int(np.rint(fraction * len(rows)))
    return order[:cut], order[cut:]


def cluster_split(
    valid: pd.DataFrame,
    *,
    seed: int = 0,
    clusters: tuple[pd.Series, pd.Series] | None = None,
    source_fraction: float = SOURCE_FRACTION,
    target_train_fraction: float = TARGET_TRAIN_FRACTION,
    val_fraction: float = SOURCE_VAL_FRACTION,
) -> pd.DataFrame:
    """DrugBAN's cross-domain split: pairs of unseen drug clusters and unseen protein clusters as the target domain.

    Drugs and targets are clustered (`data.clusters.pair_clusters`, or ``clusters``: each drug_id's and
    target_id's label). ``source_fraction`` of the drug clusters and of the protein clusters are drawn
    (seeded); a pair whose drug and target both lie in drawn clusters is in the source domain, one whose
    drug and target both lie in the others is in the target domain, and any other pair is in neither and
    left out: ``attrs["cluster_summary"]`` counts it (``dropped``), with the clusters and the pairs per
    split, and the count is logged. The target domain is cut ``target_train_fraction`` : rest into
    ``target_train`` (unlabelled for training) and ``test``.

    Validation: the reference validates on the target test set (its ``val_generator`` is the
    ``target_test`` loader), so its best epoch is chosen by test labels. Here ``val_fraction`` of the
    source domain is held out as ``val`` instead and ``train`` is the rest: no target label is seen
    before the test. Rows keep the order of ``valid``.
    """
    from drugrepo_assets.data.clusters import pair_clusters

    valid = valid.reset_index(drop=True)
    drug_of, target_of = clusters if clusters is not None else pair_clusters(valid)
    drug = valid["drug_id"].map(drug_of)
    target = valid["target_id"].map(target_of)
    if drug.isna().any() or target.isna().any():
        raise ValueError("clusters: every drug_id and target_id of the pairs needs a cluster label")
    rng = np.random.default_rng(seed)
    drawn_drugs = _draw(drug_of.to_numpy(), source_fraction, rng)
    drawn_targets = _draw(target_of.to_numpy(), source_fraction, rng)
    source_drugs = np.isin(drug.to_numpy(), drawn_drugs)
    source_targets = np.isin(target.to_numpy(), drawn_targets)
    source = np.flatnonzero(source_drugs & source_targets)
    target_domain = np.flatnonzero(~source_drugs & ~source_targets)
    val, train = _cut(source, val_fraction, rng)
    target_train, test = _cut(target_domain, target_train_fraction, rng)

    split = np.empty(len(valid), dtype=object)
    kept = np.zeros(len(valid), dtype=bool)
    for name, rows in (("train", train), ("val", val), (TARGET_TRAIN, target_train), ("test", test)):
        split[rows] = name
        kept[rows] = True
    table = _layout(valid[kept].reset_index(drop=True), "cluster", split[kept])
    summary = {
        "drug_clusters": int(drug_of.nunique()),
        "target_clusters": int(target_of.nunique()),
        "source_drug_clusters": len(drawn_drugs),
        "source_target_clusters": len(drawn_targets),
        **{name: int((split[kept] == name).sum()) for name in CLUSTER_SPLITS},
        "dropped": int((~kept).sum()),
    }
    table.attrs["cluster_summary"] = summary
    log.info("cluster split: %s", ", ".join(f"{k} {v}" for k, v in summary.items()))
    return table


def reference_tables(table: pd.DataFrame, clusters: tuple[pd.Series, pd.Series]) -> dict[str, pd.DataFrame]:
    """A cluster split (`cluster_split`) as the files the reference reads, by file name (`REFERENCE_FILES`).

    Columns: ``SMILES, Protein, Y`` (the canonical pair) and ``drug_cluster, target_cluster``, as in the
    cluster files DrugBAN ships; its ``main.py --split cluster`` reads the first three by name.
    """
    drug_of, target_of = clusters
    files = {}
    for split, name in REFERENCE_FILES.items():
        rows = table[table["split"] == split]
        files[name] = pd.DataFrame(
            {
                "SMILES": rows["smiles"].to_numpy(),
                "Protein": rows["protein"].to_numpy(),
                "Y": rows["label"].to_numpy(),
                "drug_cluster": rows["drug_id"].map(drug_of).to_numpy(),
                "target_cluster": rows["target_id"].map(target_of).to_numpy(),
            }
        )
    return files


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

    Strategies: every one of ``SPLIT_STRATEGIES`` (``random``, ``cold_drug``, ``cold_target``, ``cluster``)
    and one ``shipped_<name>`` per shipped split folder; ``attrs["shipped_dropped"]`` is carried over from
    :func:`shipped_splits` and ``attrs["cluster_summary"]`` from :func:`cluster_split`.
    """
    made = {strategy: split_pairs(valid, strategy, seed=seed) for strategy in SPLIT_STRATEGIES}
    shipped = shipped_splits(valid, rejected)
    table = pd.concat([*made.values(), shipped], ignore_index=True)
    table["label"] = table["label"].astype("int8")
    table["source_row"] = table["source_row"].astype("int64")
    table.attrs = {
        "shipped_dropped": shipped.attrs.get("shipped_dropped", {}),
        "cluster_summary": made["cluster"].attrs.get("cluster_summary", {}),
    }
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
