"""The Great Expectations rules of `validated_pairs` and the split-leak rules, on crafted frames."""

import pandas as pd
import pytest

from drugrepo_assets.defs.ingest.checks import PROTEIN_REGEX, run_pairs_suite, split_leaks

ALL_EXPECTATIONS = {
    "expect_column_values_to_not_be_null[smiles]",
    "expect_column_values_to_not_be_null[protein]",
    "expect_column_values_to_not_be_null[label]",
    "expect_column_values_to_not_be_null[drug_id]",
    "expect_column_values_to_not_be_null[target_id]",
    "expect_column_values_to_be_in_set[label]",
    "expect_column_values_to_match_regex[protein]",
    "expect_compound_columns_to_be_unique[smiles,protein]",
}


def good_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "drug_id": ["D1", "D2", "D1"],
            "target_id": ["T1", "T1", "T2"],
            "smiles": ["CCO", "c1ccccc1", "CCO"],
            "protein": ["MKTAYIAK", "MKTAYIAK", "ACDEFGHIKLMNPQRSTVWYXBZUO"],
            "label": pd.Series([1, 0, 1], dtype="int8"),
            "source_file": ["random/train.csv"] * 3,
            "source_row": [1, 2, 3],
            "smiles_input": ["OCC", "c1ccccc1", "CCO"],
        }
    )


def failed(table: pd.DataFrame) -> set[str]:
    outcomes = run_pairs_suite(table)
    assert {o.expectation for o in outcomes} == ALL_EXPECTATIONS
    return {o.expectation for o in outcomes if not o.success}


def test_the_regex_is_the_drugban_protein_alphabet() -> None:
    assert PROTEIN_REGEX == "^[ACBEDGFIHKMLONQPSRUTWVYXZ]+$"


def test_a_good_frame_meets_every_expectation() -> None:
    assert failed(good_pairs()) == set()


def test_a_label_outside_0_1_fails_only_the_label_set() -> None:
    table = good_pairs()
    table.loc[1, "label"] = 2
    assert failed(table) == {"expect_column_values_to_be_in_set[label]"}


@pytest.mark.parametrize("protein", ["MKTJAK", "mktayiak", "MKT AYIAK"])
def test_a_protein_outside_the_alphabet_fails_only_the_regex(protein: str) -> None:
    table = good_pairs()
    table.loc[2, "protein"] = protein
    assert failed(table) == {"expect_column_values_to_match_regex[protein]"}


def test_a_duplicate_pair_fails_only_uniqueness() -> None:
    table = pd.concat([good_pairs(), good_pairs().iloc[[0]]], ignore_index=True)
    assert failed(table) == {"expect_compound_columns_to_be_unique[smiles,protein]"}


def test_missing_ids_fail_the_not_null_rules() -> None:
    table = good_pairs()
    table.loc[0, "drug_id"] = None
    table.loc[1, "target_id"] = None
    assert failed(table) == {
        "expect_column_values_to_not_be_null[drug_id]",
        "expect_column_values_to_not_be_null[target_id]",
    }


def splits_frame(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["strategy", "split", "drug_id", "target_id"])


def test_disjoint_splits_have_no_leaks() -> None:
    leaks = split_leaks(
        splits_frame(
            [
                ("random", "train", "D1", "T1"),
                ("random", "test", "D1", "T2"),
                ("cold_drug", "train", "D1", "T1"),
                ("cold_drug", "test", "D2", "T1"),
                ("cold_target", "train", "D1", "T1"),
                ("cold_target", "val", "D1", "T2"),
            ]
        )
    )
    assert leaks and not any(leaks.values())


def test_a_pair_in_two_splits_and_a_cold_drug_seen_in_train_are_leaks() -> None:
    leaks = split_leaks(
        splits_frame(
            [
                ("random", "train", "D1", "T1"),
                ("random", "test", "D1", "T1"),
                ("cold_drug", "train", "D1", "T1"),
                ("cold_drug", "test", "D1", "T2"),
            ]
        )
    )
    assert {k: v for k, v in leaks.items() if v} == {
        "random/pairs_in_several_splits": 1,
        "cold_drug/drug_id_seen_in_train": 1,
    }
