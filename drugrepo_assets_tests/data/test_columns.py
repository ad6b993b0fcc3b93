"""One alias table for the pair columns: the reference's names and ours read alike, from one file or a mixed folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.data.columns import (
    PAIR_ALIASES,
    canonical_pairs,
    coalesce_pair_columns,
    pair_column_names,
    read_pairs,
)
from drugrepo_assets.data.limits import InputFileError
from drugrepo_assets.data.sources import read_source
from drugrepo_assets.data.validate import VALID_COLUMNS, validate_pairs, write_result
from drugrepo_assets_tests.data.rows import real_rows, write_csv

ROWS = real_rows("human/random/train.csv", range(1, 9))


def test_validate_writes_the_second_name_of_every_field() -> None:
    assert [PAIR_ALIASES[field][1] for field in ("SMILES", "Protein", "Y")] == ["smiles", "protein", "label"]
    assert {"smiles", "protein", "label"} <= set(VALID_COLUMNS)


def test_pair_column_names_lists_the_present_names_in_alias_order() -> None:
    found = pair_column_names(["label", "smiles", "SMILES", "x"])
    assert found == {"SMILES": ["SMILES", "smiles"], "Protein": [], "Y": ["label"]}


def test_valid_parquet_reads_back_as_the_pairs_it_came_from(tmp_path: Path) -> None:
    first = validate_pairs(read_source(str(write_csv(tmp_path / "pairs.csv", ROWS))))
    write_result(first, tmp_path / "v")
    raw = read_pairs(str(tmp_path / "v" / "valid.parquet"))
    assert list(raw.columns[:3]) == ["SMILES", "Protein", "Y"]
    assert list(raw.columns[-2:]) == ["source_file", "source_row"]
    again = validate_pairs(raw)
    assert again.counts["rejected"] == 0
    columns = ["drug_id", "target_id", "smiles", "protein", "label"]
    pd.testing.assert_frame_equal(again.valid[columns], first.valid[columns])


def test_a_folder_mixing_both_namings_reads_as_one_table(tmp_path: Path) -> None:
    folder = tmp_path / "pairs"
    write_csv(folder / "a.csv", ROWS[:4])
    ours = pd.DataFrame(ROWS[4:], columns=["smiles", "protein", "label"])
    ours.to_parquet(folder / "b.parquet", index=False)
    raw = read_pairs(str(folder))
    assert raw[["SMILES", "Protein", "Y"]].values.tolist() == [list(r) for r in ROWS]
    assert raw["source_file"].tolist() == ["a.csv"] * 4 + ["b.parquet"] * 4
    mixed = validate_pairs(raw).valid
    whole = validate_pairs(read_source(str(write_csv(tmp_path / "all.csv", ROWS)))).valid
    provenance = ["source_file", "source_row"]
    pd.testing.assert_frame_equal(mixed.drop(columns=provenance), whole.drop(columns=provenance))
    assert mixed["source_row"].tolist() == [1, 2, 3, 4, 1, 2, 3, 4]


def test_the_first_name_with_a_value_wins(tmp_path: Path) -> None:
    table = pd.DataFrame({"SMILES": ["CCO", ""], "smiles": ["CCN", "CCC"], "protein": ["MKT", "MKV"], "Y": ["1", "0"]})
    coalesced, names = coalesce_pair_columns(table, "t")
    assert names == {"SMILES": "SMILES", "Protein": "protein", "Y": "Y"}
    assert coalesced["SMILES"].tolist() == ["CCO", "CCC"] and table["SMILES"].tolist() == ["CCO", ""]
    assert list(canonical_pairs(table).columns) == ["SMILES", "Protein", "Y", "smiles"]


def test_a_missing_field_names_the_file_and_what_it_has(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x.csv", [("CCO", "1")], header=("smiles", "label"))
    with pytest.raises(InputFileError) as info:
        read_pairs(str(path))
    assert str(info.value) == f"{path}: missing column 'Protein' (found: smiles, label)"
    with pytest.raises(InputFileError, match="missing column 'Protein'"):
        validate_pairs(pd.DataFrame({"SMILES": ["CCO"], "Y": ["1"]}))
    # `drugrepo predict`'s read: the file's own column order, only the fields not named by a flag looked up.
    table, names = coalesce_pair_columns(read_source(str(path), required=(), keep_order=True), str(path), ("SMILES",))
    assert names == {"SMILES": "smiles"} and list(table.columns) == ["smiles", "label", "source_file", "source_row"]
