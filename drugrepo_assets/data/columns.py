"""The names a pair table's columns go by: the reference's (``SMILES, Protein, Y``) and ours (``smiles,
protein, label``, as `drugrepo validate` writes them), in this one table.

Every reader of pairs (``drugrepo validate``, ``train``, ``predict``, `validate_pairs`, `score_table`)
finds a field under any of its names, so what one command writes the next reads: DrugBAN's CSVs,
``valid.parquet`` and a scored CSV alike. A field's value in a row is that of its first name (in
``PAIR_ALIASES`` order) with a value there, so a folder whose files name a column differently reads
as one table. Tables leave these readers under the reference's names (`data.sources.REQUIRED_COLUMNS`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from drugrepo_assets.data.limits import InputFileError
from drugrepo_assets.data.sources import REQUIRED_COLUMNS, read_source
from drugrepo_assets.location import Location, as_location

__all__ = [
    "PAIR_ALIASES",
    "PAIR_FIELDS",
    "canonical_pairs",
    "coalesce_pair_columns",
    "missing_columns_problem",
    "pair_column_names",
    "read_pairs",
]

PAIR_FIELDS: tuple[str, ...] = REQUIRED_COLUMNS
"""The fields of a pair table, named as the reference names them: SMILES, protein sequence, label."""

PAIR_ALIASES: dict[str, tuple[str, ...]] = {
    "SMILES": ("SMILES", "smiles"),
    "Protein": ("Protein", "protein"),
    "Y": ("Y", "label"),
}
"""Each field's column names, the preferred first: the reference's, then `drugrepo validate`'s."""

_ADDED = ("source_file", "source_row")


def pair_column_names(columns: Iterable[str], fields: Sequence[str] = PAIR_FIELDS) -> dict[str, list[str]]:
    """The names of each field present among ``columns``, in ``PAIR_ALIASES`` order (an empty list: none)."""
    present = {str(c) for c in columns}
    return {field: [name for name in PAIR_ALIASES[field] if name in present] for field in fields}


def missing_columns_problem(columns: Sequence[str], fields: Sequence[str] = PAIR_FIELDS) -> str | None:
    """Why a table with ``columns`` lacks some of ``fields`` (the readers' wording), or None."""
    missing = [field for field, names in pair_column_names(columns, fields).items() if not names]
    if not missing:
        return None
    found = ", ".join(str(c) for c in columns if c not in _ADDED) or "no columns"
    label = "column" if len(missing) == 1 else "columns"
    return f"missing {label} {', '.join(repr(c) for c in missing)} (found: {found})"


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | (values.astype(str) == "")


def coalesce_pair_columns(
    table: pd.DataFrame, location: str, fields: Sequence[str] = PAIR_FIELDS
) -> tuple[pd.DataFrame, dict[str, str]]:
    """``table`` with each field in one column, and that column's name per field.

    The column is the field's first name present; where it is blank, a later name's value fills it
    (a folder mixing our names and the reference's). A field without any column is an
    :class:`InputFileError` naming ``location``.
    """
    problem = missing_columns_problem(list(table.columns), fields)
    if problem is not None:
        raise InputFileError(location, problem)
    names = pair_column_names(table.columns, fields)
    if any(len(found) > 1 for found in names.values()):
        table = table.copy()
        for first, *others in names.values():
            for other in others:
                fill = _blank(table[first]) & ~_blank(table[other])
                table.loc[fill, first] = table.loc[fill, other]
    return table, {field: found[0] for field, found in names.items()}


def canonical_pairs(table: pd.DataFrame, location: str = "table") -> pd.DataFrame:
    """``table`` with its pair fields under the reference's names, first, then the other columns."""
    coalesced, names = coalesce_pair_columns(table, location)
    renamed = coalesced.rename(columns={name: field for field, name in names.items() if name != field})
    rest = [c for c in renamed.columns if c not in PAIR_FIELDS and c not in _ADDED]
    return renamed[[*PAIR_FIELDS, *rest, *[c for c in _ADDED if c in renamed.columns]]]


def read_pairs(location: Location | str) -> pd.DataFrame:
    """Read pairs under the reference's names, as `read_source` returns DrugBAN's files, whatever names they had."""
    where = as_location(location)
    table = read_source(where, required=())
    return canonical_pairs(table, where.text)
