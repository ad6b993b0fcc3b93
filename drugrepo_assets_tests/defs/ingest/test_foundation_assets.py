"""raw → validated/rejected → splits materialised in-process, with the checks, on real and crafted data."""

from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, load_assets_from_modules, materialize

from drugrepo_assets.defs.ingest import raw, splits, validated
from drugrepo_assets.defs.ingest.checks import foundation_checks
from drugrepo_assets.lib.io_managers import ParquetIOManager
from drugrepo_assets.lib.resources import DataSourceResource, SplitSettings

FOUNDATION_ASSETS = load_assets_from_modules([raw, validated, splits])
STAGES = ("raw_pairs", "validated_pairs", "rejected_pairs", "dataset_splits")
CHECKS = {"validated_pairs_expectations", "rows_accounted_for", "splits_disjoint"}
PROTEIN = "MKTAYIAKQRQISFVKSHFSRQ"
GOOD_ROWS = [
    ("CCO", PROTEIN, "1"),
    ("c1ccccc1", PROTEIN, "0"),
    ("CC(=O)O", PROTEIN, "1.0"),
    ("CCN", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "0.0"),
    ("CCCl", "MSTNPKPQRKTKRNTNRRPQDVKFPGG", "1"),
    ("OCC", "MVLSPADKTNVKAAWGKVGAHAGEYG", "0"),
]
BAD_ROWS = [
    ("CCC", PROTEIN, "2"),  # invalid_label
    ("CCC", "MKTJAYIAK", "1"),  # invalid_protein
    ("C1CC", PROTEIN, "1"),  # invalid_smiles (unclosed ring)
    ("CCO", PROTEIN, "1"),  # duplicate of the first good row
    ("", PROTEIN, "0"),  # missing_value
]


def run(base: Path, partition: str, root: str = "bundled") -> ExecuteInProcessResult:
    return materialize(
        [*FOUNDATION_ASSETS, *foundation_checks],
        partition_key=partition,
        resources={
            "io_manager": ParquetIOManager(base_path=str(base)),
            "data_source": DataSourceResource(root=root),
            "split_settings": SplitSettings(seed=0),
        },
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def stored(base: Path, asset: str, partition: str) -> pd.DataFrame:
    return pd.read_parquet(base / asset / f"{partition}.parquet")


def row_counts(result: ExecuteInProcessResult) -> dict[str, int]:
    return {
        e.asset_key.to_user_string(): e.materialization.metadata["dagster/row_count"].value
        for e in result.get_asset_materialization_events()
    }


@pytest.fixture(scope="module")
def human(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExecuteInProcessResult]:
    base = tmp_path_factory.mktemp("storage")
    return base, run(base, "human")


def test_bundled_human_materialises_every_stage_and_passes_every_check(human) -> None:
    base, result = human
    assert result.success
    assert set(row_counts(result)) == set(STAGES)
    evaluations = result.get_asset_check_evaluations()
    assert {e.check_name for e in evaluations} == CHECKS
    assert all(e.passed for e in evaluations)
    for stage in STAGES:
        assert (base / stage / "human.parquet").is_file()


def test_stored_tables_account_for_every_raw_row(human) -> None:
    base, result = human
    raw = stored(base, "raw_pairs", "human")
    valid = stored(base, "validated_pairs", "human")
    rejected = stored(base, "rejected_pairs", "human")
    assert len(raw) == len(valid) + len(rejected) == row_counts(result)["raw_pairs"]
    assert len(raw) == 4197 + 600 + 1200 + 3453 + 155 + 311
    assert set(raw["source_file"]) == {f"{s}/{p}.csv" for s in ("random", "cold") for p in ("train", "val", "test")}
    splits = stored(base, "dataset_splits", "human")
    for strategy in ("random", "cold_drug", "cold_target"):
        assert (splits["strategy"] == strategy).sum() == len(valid)


def write_csv(path: Path, rows: list[tuple[str, str, str]], header: str = "SMILES,Protein,Y") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + "\n")


def test_a_folder_of_crafted_csvs_gives_exact_counts(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_csv(source / "biosnap" / "random" / "train.csv", GOOD_ROWS[:4] + BAD_ROWS[:3])
    write_csv(source / "biosnap" / "random" / "test.csv", GOOD_ROWS[4:] + BAD_ROWS[3:])
    base = tmp_path / "storage"
    result = run(base, "biosnap", root=str(source))
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert row_counts(result) == {
        "raw_pairs": 11,
        "validated_pairs": 6,
        "rejected_pairs": 5,
        "dataset_splits": len(stored(base, "dataset_splits", "biosnap")),
    }
    rejected = stored(base, "rejected_pairs", "biosnap")
    assert sorted(rejected["reason_code"]) == sorted(
        ["invalid_label", "invalid_protein", "invalid_smiles", "duplicate", "missing_value"]
    )
    [raw_event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["raw_pairs"]]
    assert raw_event.materialization.metadata["files_read"].value == 2
    assert raw_event.materialization.metadata["location"].value == f"{source}/biosnap"
    [rejected_event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path == ["rejected_pairs"]]
    assert rejected_event.materialization.metadata["rejected_duplicate"].value == 1
    splits = stored(base, "dataset_splits", "biosnap")
    assert splits.groupby("strategy").size()[["random", "cold_drug", "cold_target"]].tolist() == [6, 6, 6]


def test_a_file_without_the_protein_column_fails_raw_pairs_naming_the_file(tmp_path: Path) -> None:
    source = tmp_path / "source"
    write_csv(source / "human" / "random" / "train.csv", GOOD_ROWS[:2])
    write_csv(source / "human" / "random" / "test.csv", [("CCO", PROTEIN, "1")], header="SMILES,Target,Y")
    result = run(tmp_path / "storage", "human", root=str(source))
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert failure.step_key == "raw_pairs"
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith(str(source / "human" / "random" / "test.csv"))
    assert "missing column 'Protein'" in description
    assert "\n" not in description
    assert not (tmp_path / "storage" / "raw_pairs").exists()


def test_a_failed_expectation_blocks_the_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from drugrepo_assets.defs.ingest import checks

    def one_rule_fails(table: pd.DataFrame) -> list[checks.ExpectationOutcome]:
        return [checks.ExpectationOutcome("expect_column_values_to_be_in_set[label]", False, len(table))]

    monkeypatch.setattr(checks, "run_pairs_suite", one_rule_fails)
    source = tmp_path / "source"
    write_csv(source / "human" / "random" / "train.csv", GOOD_ROWS)
    result = run(tmp_path / "storage", "human", root=str(source))
    assert not result.success
    [failed] = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed.check_name == "validated_pairs_expectations"
    assert "dataset_splits" not in row_counts(result)
    assert not (tmp_path / "storage" / "dataset_splits").exists()
