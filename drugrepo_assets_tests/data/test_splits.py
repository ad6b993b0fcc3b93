"""Splits: fractions, seeds, cold and cluster disjointness, and DrugBAN's shipped splits read as they are."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drugrepo_assets.data.clusters import pair_clusters
from drugrepo_assets.data.sources import bundled_root, dataset_location, read_source
from drugrepo_assets.data.splits import (
    CLUSTER_SPLITS,
    SPLIT_COLUMNS,
    cluster_split,
    cold_split,
    make_splits,
    random_split,
    shipped_split_part,
    shipped_splits,
    split_pairs,
    split_parts,
)
from drugrepo_assets.data.validate import ValidationResult, validate_pairs
from drugrepo_assets_tests.data.rows import real_rows, write_csv


@pytest.fixture(scope="module")
def human() -> ValidationResult:
    """The bundled Human dataset (random and cold folders), validated."""
    return validate_pairs(read_source(dataset_location("bundled", "human")))


def _sizes(table: pd.DataFrame) -> dict[str, int]:
    return table["split"].value_counts().to_dict()


def test_random_split_fractions_and_coverage(human: ValidationResult) -> None:
    valid = human.valid
    table = random_split(valid)
    assert list(table.columns) == list(SPLIT_COLUMNS)
    assert len(valid) == 5997
    assert _sizes(table) == {"train": 4198, "val": 600, "test": 1199}
    assert set(table["strategy"]) == {"random"}
    assert list(table["drug_id"]) == list(valid["drug_id"])
    assert list(table["label"]) == list(valid["label"])
    assert table["label"].dtype == "int8"


def test_random_split_is_seeded(human: ValidationResult) -> None:
    first = random_split(human.valid, seed=7)
    assert first.equals(random_split(human.valid, seed=7))
    assert not first["split"].equals(random_split(human.valid, seed=8)["split"])
    small = random_split(human.valid.head(10), fractions=(0.5, 0.2, 0.3))
    assert _sizes(small) == {"train": 5, "val": 2, "test": 3}


def test_fractions_are_checked(human: ValidationResult) -> None:
    with pytest.raises(ValueError, match="summing to 1"):
        random_split(human.valid, fractions=(0.7, 0.2, 0.2))
    with pytest.raises(ValueError, match="by must be"):
        cold_split(human.valid, by="pair")  # type: ignore[arg-type]


@pytest.mark.parametrize("by, column", [("drug", "drug_id"), ("target", "target_id")])
def test_cold_split_is_disjoint_close_and_seeded(human: ValidationResult, by: str, column: str) -> None:
    table = cold_split(human.valid, by=by, seed=3)
    assert set(table["strategy"]) == {f"cold_{by}"}
    assert len(table) == len(human.valid)
    groups = {s: set(table.loc[table["split"] == s, column]) for s in ("train", "val", "test")}
    assert not groups["train"] & groups["val"]
    assert not groups["train"] & groups["test"]
    assert not groups["val"] & groups["test"]
    shares = table["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.02)
    assert shares["val"] == pytest.approx(0.1, abs=0.02)
    assert shares["test"] == pytest.approx(0.2, abs=0.02)
    assert table.equals(cold_split(human.valid, by=by, seed=3))
    assert not table["split"].equals(cold_split(human.valid, by=by, seed=4)["split"])


def test_shipped_split_part() -> None:
    assert shipped_split_part("random/train.csv") == ("random", "train")
    assert shipped_split_part("cold/test.csv") == ("cold", "test")
    assert shipped_split_part("/data/human/sample/val.csv.gz") == ("sample", "val")
    assert shipped_split_part("s3://b/x/cluster/train.parquet") == ("cluster", "train")
    assert shipped_split_part("full.csv") is None
    assert shipped_split_part("train.csv") is None
    assert shipped_split_part("cluster/source_train.csv") is None


def _shipped_listing(folder: Path) -> dict[tuple[str, str], int]:
    """Independent count: distinct (SMILES, Protein) strings per shipped file, priority test>val>train."""
    counts: dict[tuple[str, str], int] = {}
    for strategy in sorted(p.name for p in folder.iterdir() if p.is_dir()):
        seen: set[tuple[str, str]] = set()
        for split in ("test", "val", "train"):
            with open(folder / strategy / f"{split}.csv", newline="", encoding="utf-8") as handle:
                pairs = {(r["SMILES"], r["Protein"]) for r in csv.DictReader(handle)}
            counts[(f"shipped_{strategy}", split)] = len(pairs - seen)
            seen |= pairs
    return counts


def test_shipped_splits_of_bundled_human(human: ValidationResult) -> None:
    table = shipped_splits(human.valid, human.rejected)
    sizes = table.groupby(["strategy", "split"]).size().to_dict()
    assert sizes == _shipped_listing(bundled_root() / "human")
    assert sizes == {
        ("shipped_cold", "test"): 304,
        ("shipped_cold", "train"): 3059,
        ("shipped_cold", "val"): 138,
        ("shipped_random", "test"): 1200,
        ("shipped_random", "train"): 4197,
        ("shipped_random", "val"): 600,
    }
    assert table.attrs["shipped_dropped"] == {
        "shipped_cold": {"same_split": 406, "cross_split": 12},
        "shipped_random": {"same_split": 0, "cross_split": 0},
    }
    random = table[table["strategy"] == "shipped_random"]
    assert random.groupby("split")["source_file"].unique().map(list).to_dict() == {
        "test": ["random/test.csv"],
        "train": ["random/train.csv"],
        "val": ["random/val.csv"],
    }
    assert not random.duplicated(["drug_id", "target_id"]).any()


def test_shipped_splits_drop_rows_rejected_for_other_reasons(tmp_path: Path) -> None:
    real = real_rows("human/random/train.csv", [1, 3, 4, 5])
    smiles, protein, _label = real[0]
    write_csv(tmp_path / "random" / "train.csv", [real[0], real[1], ("C1CC", protein, "1"), real[1]])
    write_csv(tmp_path / "random" / "val.csv", [real[2], (smiles, protein, "maybe")])
    write_csv(tmp_path / "random" / "test.csv", [real[3], real[0]])
    write_csv(tmp_path / "full.csv", [real[2]])
    result = validate_pairs(read_source(str(tmp_path)))
    assert result.counts["valid"] == 4
    assert result.counts["duplicate"] == 3
    assert result.counts["invalid_smiles"] == result.counts["invalid_label"] == 1

    table = shipped_splits(result.valid, result.rejected)
    assert set(table["strategy"]) == {"shipped_random"}
    listed = list(zip(table["split"], table["smiles"], table["source_file"], table["source_row"]))
    canon = dict(zip(result.valid["smiles_input"], result.valid["smiles"]))
    assert listed == [
        ("test", canon[real[3][0]], "random/test.csv", 1),
        ("test", canon[real[0][0]], "random/test.csv", 2),
        ("train", canon[real[1][0]], "random/train.csv", 2),
        ("val", canon[real[2][0]], "random/val.csv", 1),
    ]
    assert table.attrs["shipped_dropped"] == {"shipped_random": {"same_split": 1, "cross_split": 1}}
    assert len(shipped_splits(result.valid)) == 3


def test_make_splits(human: ValidationResult) -> None:
    table = make_splits(human.valid, human.rejected, seed=0)
    assert list(table.columns) == list(SPLIT_COLUMNS)
    assert table.groupby("strategy").size().to_dict() == {
        "cluster": 3193,  # 2,804 pairs in neither domain (the README's numbers)
        "cold_drug": 5997,
        "cold_target": 5997,
        "random": 5997,
        "shipped_cold": 3501,
        "shipped_random": 5997,
    }
    assert set(table["split"]) == {"train", "val", "target_train", "test"}
    assert set(table.loc[table["strategy"] == "cluster", "split"]) == set(CLUSTER_SPLITS)
    assert table["label"].dtype == "int8"
    assert table.attrs["shipped_dropped"]["shipped_cold"] == {"same_split": 406, "cross_split": 12}
    assert table.attrs["cluster_summary"]["dropped"] == 2804
    again = make_splits(human.valid, human.rejected, seed=0)
    assert table.equals(again)
    np.testing.assert_array_equal(
        table.loc[table["strategy"] == "random", "split"].to_numpy(),
        random_split(human.valid, seed=0)["split"].to_numpy(),
    )


def test_empty_valid_table() -> None:
    empty = validate_pairs(pd.DataFrame({"SMILES": [], "Protein": [], "Y": []}, dtype=object))
    table = make_splits(empty.valid, empty.rejected)
    assert list(table.columns) == list(SPLIT_COLUMNS)
    assert len(table) == 0


@pytest.fixture(scope="module")
def human_clusters(human: ValidationResult) -> tuple[pd.Series, pd.Series]:
    """The single-linkage clusters of the bundled Human drugs and targets (`data.clusters`)."""
    return pair_clusters(human.valid)


def test_cluster_split_domains_share_no_cluster(
    human: ValidationResult, human_clusters: tuple[pd.Series, pd.Series]
) -> None:
    drug_of, target_of = human_clusters
    assert drug_of.index.is_unique and len(drug_of) == human.valid["drug_id"].nunique()
    table = cluster_split(human.valid, seed=1, clusters=human_clusters)
    assert list(table.columns) == list(SPLIT_COLUMNS)
    assert set(table["strategy"]) == {"cluster"}
    assert set(table["split"]) == set(CLUSTER_SPLITS)
    domain = table["split"].map({"train": "source", "val": "source", "target_train": "target", "test": "target"})
    drug = table["drug_id"].map(drug_of)
    target = table["target_id"].map(target_of)
    assert not set(drug[domain == "source"]) & set(drug[domain == "target"])
    assert not set(target[domain == "source"]) & set(target[domain == "target"])

    summary = table.attrs["cluster_summary"]
    assert summary["drug_clusters"] == drug_of.nunique() and summary["target_clusters"] == target_of.nunique()
    assert summary["source_drug_clusters"] == round(0.6 * drug_of.nunique())
    assert summary["source_target_clusters"] == round(0.6 * target_of.nunique())
    assert set(drug[domain == "source"]) <= set(drug_of.unique())
    assert len(set(drug[domain == "source"])) <= summary["source_drug_clusters"]
    sizes = table["split"].value_counts().to_dict()
    assert {name: summary[name] for name in CLUSTER_SPLITS} == sizes
    assert sum(sizes.values()) + summary["dropped"] == len(human.valid)  # every pair counted: kept or dropped
    assert summary["dropped"] > 0
    target_pairs = sizes["target_train"] + sizes["test"]
    assert sizes["target_train"] == round(0.8 * target_pairs)
    assert sizes["val"] == round(0.1 * (sizes["train"] + sizes["val"]))
    assert not table.duplicated(["drug_id", "target_id"]).any()


def test_cluster_split_mixed_pairs_are_dropped_and_counted(
    human: ValidationResult, human_clusters: tuple[pd.Series, pd.Series]
) -> None:
    drug_of, target_of = human_clusters
    table = cluster_split(human.valid, seed=2, clusters=human_clusters)
    source_drugs = set(table.loc[table["split"].isin(["train", "val"]), "drug_id"].map(drug_of))
    source_targets = set(table.loc[table["split"].isin(["train", "val"]), "target_id"].map(target_of))
    kept = set(zip(table["drug_id"], table["target_id"]))
    left_out = human.valid[[pair not in kept for pair in zip(human.valid["drug_id"], human.valid["target_id"])]]
    assert len(left_out) == table.attrs["cluster_summary"]["dropped"]
    in_source = left_out["drug_id"].map(drug_of).isin(source_drugs)
    # a left-out pair with its drug in a source cluster must have its target outside the source clusters
    assert not (in_source & left_out["target_id"].map(target_of).isin(source_targets)).any()


def test_cluster_split_is_seeded(human: ValidationResult, human_clusters: tuple[pd.Series, pd.Series]) -> None:
    first = cluster_split(human.valid, seed=7, clusters=human_clusters)
    again = cluster_split(human.valid, seed=7, clusters=human_clusters)
    assert first.equals(again) and first.attrs == again.attrs
    other = cluster_split(human.valid, seed=8, clusters=human_clusters)
    assert set(zip(first["drug_id"], first["split"])) != set(zip(other["drug_id"], other["split"]))


def test_cluster_split_clusters_and_labels_follow_ids_not_row_order(
    human: ValidationResult, human_clusters: tuple[pd.Series, pd.Series]
) -> None:
    subset = human.valid.iloc[::7]
    drug_of, target_of = pair_clusters(subset.iloc[::-1])
    # clustered in id order: the same labels whatever the row order
    assert drug_of.equals(pair_clusters(subset)[0]) and target_of.equals(pair_clusters(subset)[1])
    table = split_pairs(subset, "cluster", seed=3)  # computes its own clusters
    assert table.equals(cluster_split(subset, seed=3, clusters=(drug_of, target_of)))
    parts = split_parts(table)  # what labelled training reads: no target_train rows
    assert set(parts) == {"train", "val", "test"}
    assert sum(len(p) for p in parts.values()) == len(table) - (table["split"] == "target_train").sum()
    with pytest.raises(ValueError, match="needs a cluster label"):
        cluster_split(subset, clusters=(drug_of.iloc[1:], target_of))
