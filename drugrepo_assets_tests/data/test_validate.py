"""Validation rules: one test per reason code with exact counts and texts, and the row invariant."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from rdkit import Chem

from drugrepo_assets.data import validate as validate_module
from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.rules import MAX_DRUG_ATOMS, PROTEIN_ALPHABET
from drugrepo_assets.data.sources import DATASETS, bundled_root, dataset_location, read_source, read_table
from drugrepo_assets.data.validate import (
    REASON_CODES,
    REJECTED_COLUMNS,
    VALID_COLUMNS,
    validate_pairs,
    write_result,
)
from drugrepo_assets_tests.data.rows import real_rows, write_csv

HUMAN = real_rows("human/random/train.csv", [1, 2, 3])
BIOSNAP = real_rows("biosnap/random/val.csv", [1, 2])
PROTEIN = HUMAN[0][1]
BUNDLED_FILES = sorted(p.relative_to(bundled_root()).as_posix() for p in bundled_root().rglob("*.csv"))


def raw_table(rows: list[tuple[str, str, str]], source_file: str = "t.csv") -> pd.DataFrame:
    """A raw table as ``read_source`` returns it: strings plus source_file / source_row."""
    table = pd.DataFrame(rows, columns=["SMILES", "Protein", "Y"], dtype=object)
    table["source_file"] = source_file
    table["source_row"] = range(1, len(rows) + 1)
    return table


def rejected_as(result, code: str) -> pd.DataFrame:
    return result.rejected[result.rejected["reason_code"] == code]


def only_code(result, code: str, expected: int) -> pd.DataFrame:
    """Assert that ``code`` is the only rejection reason, with exactly ``expected`` rows."""
    assert {c: n for c, n in result.counts.items() if c in REASON_CODES and n} == ({code: expected} if expected else {})
    return rejected_as(result, code)


def test_constants() -> None:
    assert PROTEIN_ALPHABET == "ACBEDGFIHKMLONQPSRUTWVYXZ"
    assert len(set(PROTEIN_ALPHABET)) == 25
    assert MAX_DRUG_ATOMS == 290


def test_real_rows_are_valid_with_exact_columns() -> None:
    result = validate_pairs(raw_table([*HUMAN, *BIOSNAP]))
    valid = result.valid
    assert result.counts == {"input_rows": 5, "valid": 5, "rejected": 0, **dict.fromkeys(REASON_CODES, 0)}
    assert list(valid.columns) == list(VALID_COLUMNS)
    assert list(result.rejected.columns) == list(REJECTED_COLUMNS)
    assert list(valid["label"]) == [1, 0, 0, 1, 0]
    assert valid["label"].dtype == "int8"
    assert list(valid["source_row"]) == [1, 2, 3, 4, 5]
    for row, (smiles, protein, _label) in zip(valid.itertuples(), [*HUMAN, *BIOSNAP]):
        canonical = Chem.MolToSmiles(Chem.MolFromSmiles(smiles))
        assert row.smiles == canonical
        assert row.smiles_input == smiles
        assert row.protein == protein
        assert row.drug_id == "D" + hashlib.sha1(canonical.encode()).hexdigest()[:12]
        assert row.target_id == "T" + hashlib.sha1(protein.encode()).hexdigest()[:12]
    assert valid.loc[0, "smiles"] == "COc1ccc(-c2ccc(S(=O)(=O)N[C@@H](C(C)C)P(=O)(O)O)cc2)cc1"


def test_missing_value() -> None:
    smiles, protein, label = HUMAN[0]
    result = validate_pairs(
        raw_table(
            [
                ("", protein, label),
                (smiles, "   ", label),
                (smiles, protein, ""),
                ("", protein, "yes"),
                (" \t", "", " "),
                HUMAN[1],
            ]
        )
    )
    rejected = only_code(result, "missing_value", 5)
    assert list(rejected["source_row"]) == [1, 2, 3, 4, 5]
    assert list(rejected["reason"]) == [
        "SMILES: value is empty",
        "Protein: value is blank ('   ')",
        "Y: value is empty",
        "SMILES: value is empty",
        "SMILES: value is blank (' \\t'); Protein: value is empty; Y: value is blank (' ')",
    ]
    assert list(rejected["Y"]) == [label, label, "", "yes", " "]
    assert result.counts["valid"] == 1


def test_invalid_label() -> None:
    smiles, protein, _ = HUMAN[0]
    labels = ["yes", "2", "1.00", "-1", "true", " 1 ", "0.0", "1.0", "0", "1"]
    result = validate_pairs(raw_table([(smiles, protein * (i + 1), y) for i, y in enumerate(labels)]))
    rejected = only_code(result, "invalid_label", 5)
    assert list(rejected["reason"]) == [
        f"Y: label {y!r} is not one of 0, 1, 0.0, 1.0" for y in ["yes", "2", "1.00", "-1", "true"]
    ]
    assert rejected.iloc[0]["reason"] == "Y: label 'yes' is not one of 0, 1, 0.0, 1.0"
    assert list(result.valid["label"]) == [1, 0, 1, 0, 1]


def test_invalid_protein() -> None:
    smiles, protein, label = HUMAN[0]
    result = validate_pairs(
        raw_table(
            [
                (smiles, "MKT1LV-A", label),
                (smiles, "mkt lv", label),
                (smiles, "MKTß", label),
                (smiles, f"  {protein.lower()}  ", label),
            ]
        )
    )
    rejected = only_code(result, "invalid_protein", 3)
    assert list(rejected["reason"]) == [
        f"Protein: characters '1', '-' not in the amino-acid alphabet {PROTEIN_ALPHABET} (first at position 4 of 8)",
        f"Protein: character ' ' not in the amino-acid alphabet {PROTEIN_ALPHABET} (first at position 4 of 6)",
        f"Protein: character 'ß' not in the amino-acid alphabet {PROTEIN_ALPHABET} (first at position 4 of 4)",
    ]
    assert list(result.valid["protein"]) == [protein]


def test_invalid_smiles() -> None:
    _, protein, label = HUMAN[0]
    result = validate_pairs(
        raw_table(
            [
                ("C1CC", protein, label),
                ("N(C)(C)(C)(C)C", protein, label),
                ("c1cccc1", protein, label),
                ("C1CC", protein, "0"),
                (" CCO ", protein, label),
            ]
        )
    )
    rejected = only_code(result, "invalid_smiles", 4)
    assert list(rejected["reason"]) == [
        "SMILES: RDKit cannot parse 'C1CC' (SMILES syntax error)",
        "SMILES: RDKit cannot parse 'N(C)(C)(C)(C)C' (Explicit valence for atom # 0 N, 5, is greater than permitted)",
        "SMILES: RDKit cannot parse 'c1cccc1' (Can't kekulize mol. Unkekulized atoms: 0 1 2 3 4)",
        "SMILES: RDKit cannot parse 'C1CC' (SMILES syntax error)",
    ]
    assert list(result.valid["smiles"]) == ["CCO"]
    assert list(result.valid["smiles_input"]) == [" CCO "]


def test_too_many_atoms() -> None:
    _, protein, label = HUMAN[0]
    result = validate_pairs(
        raw_table(
            [
                ("C" * 291, protein, label),
                ("C" * 290, protein, label),
                ("O" * 300, protein, "0"),
                HUMAN[1],
                ("[2H]C([2H])([2H])" + "C" * 288, protein, label),  # 289 heavy atoms, 292 in the model's graph
                ("C" * 289 + ".[H][H]", protein, label),  # 289 atom symbols, 291 atoms once parsed
            ]
        )
    )
    rejected = only_code(result, "too_many_atoms", 4)
    assert list(rejected["reason"]) == [
        "SMILES: at least 291 atoms, more than the limit of 290",
        "SMILES: at least 300 atoms, more than the limit of 290",
        "SMILES: at least 292 atoms, more than the limit of 290",
        "SMILES: 291 atoms, more than the limit of 290",
    ]
    assert list(result.valid["source_row"]) == [2, 4]
    polyoxometalate = Chem.MolFromSmiles(HUMAN[1][0])
    assert polyoxometalate.GetNumHeavyAtoms() == 53


def test_duplicate() -> None:
    _, protein, _label = HUMAN[0]
    result = validate_pairs(
        pd.concat(
            [
                raw_table([("CCO", protein, "1"), HUMAN[2]], source_file="random/train.csv"),
                raw_table(
                    [("OCC", protein.lower(), "1.0"), ("C(O)C", protein, "1"), ("CCO", protein, "yes")],
                    source_file="random/test.csv",
                ),
            ],
            ignore_index=True,
        )
    )
    rejected = result.rejected
    assert list(rejected["reason_code"]) == ["duplicate", "duplicate", "invalid_label"]
    assert result.counts["duplicate"] == 2
    assert (
        list(rejected["reason"][:2])
        == ["duplicate of the pair kept from random/train.csv row 1 (same canonical SMILES, protein and label)"] * 2
    )
    assert list(rejected["SMILES"]) == ["OCC", "C(O)C", "CCO"]
    assert list(result.valid["source_file"]) == ["random/train.csv", "random/train.csv"]
    assert next(iter(result.valid["smiles"])) == "CCO"


def test_conflicting_label() -> None:
    _, protein, _ = HUMAN[0]
    result = validate_pairs(
        raw_table(
            [
                ("CCO", protein, "1"),
                HUMAN[1],
                ("OCC", protein, "0.0"),
                ("C(O)C", protein, "1.0"),
                ("CCN", protein, "0"),
                ("NCC", protein, "0"),
            ]
        )
    )
    rejected = result.rejected
    assert list(rejected["reason_code"]) == ["conflicting_label"] * 3 + ["duplicate"]
    assert result.counts["conflicting_label"] == 3
    assert (
        list(rejected["reason"][:3])
        == [
            "Y: conflicting labels 0, 1 for the same canonical SMILES and protein in 3 rows "
            "(t.csv row 1; t.csv row 3; t.csv row 4)"
        ]
        * 3
    )
    assert rejected.iloc[3]["reason"] == (
        "duplicate of the pair kept from t.csv row 5 (same canonical SMILES, protein and label)"
    )
    assert list(result.valid["source_row"]) == [2, 5]


def test_first_failing_rule_wins() -> None:
    result = validate_pairs(
        raw_table(
            [
                ("", "MK1", "yes"),
                ("C1CC", "MK1", "yes"),
                ("C1CC", "MK1", "1"),
                ("C" * 300, "MKV", "1"),
                ("C" * 300, "MKV", "1"),
            ]
        )
    )
    assert list(result.rejected["reason_code"]) == [
        "missing_value",
        "invalid_label",
        "invalid_protein",
        "too_many_atoms",
        "too_many_atoms",
    ]
    assert result.counts["valid"] == 0


def test_empty_table() -> None:
    result = validate_pairs(raw_table([]))
    assert result.counts == {"input_rows": 0, "valid": 0, "rejected": 0, **dict.fromkeys(REASON_CODES, 0)}
    assert list(result.valid.columns) == list(VALID_COLUMNS)
    assert list(result.rejected.columns) == list(REJECTED_COLUMNS)


def test_validate_writes_the_two_parquet_tables(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in" / "pairs.csv", [*HUMAN, ("CCO", "MKV", "maybe")])
    out = tmp_path / "out" / "nested"
    result = validate_pairs(read_pairs(str(source)))  # `drugrepo validate`'s path (cli/common.read_input_pairs)
    write_result(result, out)
    assert result.counts["valid"] == 3 and result.counts["invalid_label"] == 1
    valid = pq.read_table(out / "valid.parquet")
    rejected = pq.read_table(out / "rejected.parquet")
    assert valid.schema.names == list(VALID_COLUMNS)
    assert str(valid.schema.field("label").type) == "int8"
    assert rejected.schema.names == list(REJECTED_COLUMNS)
    assert rejected.column("Y").to_pylist() == ["maybe"]
    assert rejected.column("source_file").to_pylist() == [str(source)]
    pd.testing.assert_frame_equal(pd.read_parquet(out / "valid.parquet"), result.valid)


@pytest.mark.parametrize("relative", BUNDLED_FILES)
def test_invariant_on_every_bundled_file(relative: str) -> None:
    raw = read_table(str(bundled_root() / relative))
    result = validate_pairs(raw)
    assert len(raw) == len(result.valid) + len(result.rejected)
    exact_repeats = int(raw.duplicated(["SMILES", "Protein"]).sum())
    assert result.counts["rejected"] == result.counts["duplicate"] == exact_repeats


BUNDLED_DATASET_COUNTS = {
    "bindingdb": {"input_rows": 5166, "valid": 5141, "duplicate": 25},
    "biosnap": {"input_rows": 8240, "valid": 8240, "duplicate": 0},
    "human": {"input_rows": 9916, "valid": 5997, "duplicate": 3919},
}


@pytest.mark.parametrize("dataset", DATASETS)
def test_invariant_and_counts_on_each_bundled_dataset(dataset: str) -> None:
    raw = read_source(dataset_location("bundled", dataset))
    result = validate_pairs(raw)
    assert len(raw) == len(result.valid) + len(result.rejected)
    unique_pairs = len(raw.drop_duplicates(["SMILES", "Protein"]))
    assert result.counts["valid"] == unique_pairs
    expected = BUNDLED_DATASET_COUNTS[dataset]
    assert {k: result.counts[k] for k in expected} == expected
    assert result.counts["rejected"] == expected["duplicate"]


def test_all_bundled_data_validates() -> None:
    raw = read_source(str(bundled_root()))
    validate_module._parse_smiles.cache_clear()
    result = validate_pairs(raw)
    assert len(raw) == 23322 == len(result.valid) + len(result.rejected)
    assert result.counts["conflicting_label"] == 17
