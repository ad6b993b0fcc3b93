"""Validation of raw drug–target pairs: every input row ends up either valid or rejected with a reason.

The input's columns may carry the reference's names or ours (`data.columns`). Rules, first failing
rule wins per row: ``missing_value``, ``invalid_label``, then the protein's and
the SMILES' verdicts of the input rules (`data.rules`: ``invalid_protein``, ``too_long``,
``invalid_smiles``, ``too_many_atoms``), then ``duplicate`` / ``conflicting_label`` on the key
(canonical SMILES, upper-cased protein) among the rows that passed the others. Each distinct SMILES is
parsed in a sandbox worker (`data.sandbox`), within its CPU and memory budget: one over it is
refused ``over_budget`` and validation goes on with the next.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drugrepo_assets.data.columns import PAIR_FIELDS, canonical_pairs
from drugrepo_assets.data.rules import (
    RULE_CODES,
    Refusal,
    canonical_smiles,
    clean_protein,
    label_refusal,
    missing_refusal,
    parse_label,
    protein_refusal,
)
from drugrepo_assets.data.sandbox import Sandbox, molecule_map
from drugrepo_assets.location import Location, as_location

if TYPE_CHECKING:
    from upath import UPath

__all__ = [
    "REASON_CODES",
    "REJECTED_COLUMNS",
    "REJECTED_SCHEMA",
    "VALID_COLUMNS",
    "VALID_SCHEMA",
    "ValidationResult",
    "canonicalize",
    "drug_id",
    "target_id",
    "validate_pairs",
    "write_result",
]

REASON_CODES: tuple[str, ...] = (*RULE_CODES, "duplicate", "conflicting_label")
VALID_SCHEMA = pa.schema(
    [
        ("drug_id", pa.string()),
        ("target_id", pa.string()),
        ("smiles", pa.string()),
        ("protein", pa.string()),
        ("label", pa.int8()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("smiles_input", pa.string()),
    ]
)
"""The columns of ``valid.parquet``: ids, the canonical pair under our names (`data.columns`), its source."""
REJECTED_SCHEMA = pa.schema(
    [
        ("SMILES", pa.string()),
        ("Protein", pa.string()),
        ("Y", pa.string()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
        ("reason_code", pa.string()),
        ("reason", pa.string()),
    ]
)
"""The columns of ``rejected.parquet``: the row as read, under the reference's names, its source and why."""
VALID_COLUMNS: tuple[str, ...] = tuple(VALID_SCHEMA.names)
REJECTED_COLUMNS: tuple[str, ...] = tuple(REJECTED_SCHEMA.names)

_SHOWN_PLACES = 5


@dataclass
class ValidationResult:
    """The two output tables of a validation and its counts (input rows, valid, rejected per code)."""

    valid: pd.DataFrame
    rejected: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)


def drug_id(canonical_smiles: str) -> str:
    """Stable drug id: ``D`` + first 12 hex digits of the SHA-1 of the canonical SMILES."""
    return "D" + hashlib.sha1(canonical_smiles.encode("utf-8")).hexdigest()[:12]


def target_id(protein: str) -> str:
    """Stable target id: ``T`` + first 12 hex digits of the SHA-1 of the upper-cased sequence."""
    return "T" + hashlib.sha1(protein.encode("utf-8")).hexdigest()[:12]


def _parse_all(smiles: list[str], sandbox: Sandbox | None = None) -> list[tuple[str | None, Refusal | None]]:
    """(canonical SMILES, None) or (None, the refusal) for each SMILES (`rules.canonical_smiles`), parsed in
    ``sandbox`` (else the process's shared one): one over its budget gets ``over_budget``."""
    answers = molecule_map(canonical_smiles, smiles, sandbox=sandbox)
    return [(None, a) if isinstance(a, Refusal) else a for a in answers]


@lru_cache(maxsize=200_000)
def _parse_smiles(smiles: str) -> tuple[str | None, Refusal | None]:
    """(canonical SMILES, None) or (None, the input rules' refusal) for one SMILES, remembered."""
    return _parse_all([smiles])[0]


def canonicalize(smiles: str) -> str | None:
    """RDKit canonical isomeric SMILES of ``smiles`` (surrounding whitespace ignored), None if the input rules refuse it."""
    canonical, _refusal = _parse_smiles(smiles.strip())
    return canonical


def _missing_reason(smiles: str, protein: str, label: str) -> str:
    """The reason of a ``missing_value`` row: each empty field's refusal."""
    refusals = (
        missing_refusal(name, value) for name, value in (("SMILES", smiles), ("Protein", protein), ("Y", label))
    )
    return "; ".join(str(r) for r in refusals if r is not None)


def _place(source_file: str, source_row: int) -> str:
    """Where a row was read, as a reason names it."""
    return f"{source_file} row {source_row}"


def _normalise_raw(raw: pd.DataFrame) -> pd.DataFrame:
    """The pair fields as text ("" where empty) under the reference's names, and each row's source file and row."""
    raw = canonical_pairs(raw.reset_index(drop=True))
    table = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    for column in PAIR_FIELDS:
        values = raw[column].to_numpy(dtype=object)
        table[column] = pd.Series(
            [v if isinstance(v, str) else ("" if pd.isna(v) else str(v)) for v in values],
            index=table.index,
            dtype=object,
        )
    if "source_file" in raw.columns:
        table["source_file"] = raw["source_file"].fillna("").astype(str).to_numpy()
    else:
        table["source_file"] = ""
    if "source_row" in raw.columns:
        table["source_row"] = raw["source_row"].to_numpy(dtype="int64")
    else:
        table["source_row"] = np.arange(1, len(raw) + 1, dtype="int64")
    return table


def validate_pairs(raw: pd.DataFrame, sandbox: Sandbox | None = None) -> ValidationResult:
    """Split raw pairs (as read by ``read_source`` or `data.columns.read_pairs`) into ``valid`` and ``rejected`` tables.

    Every input row lands in exactly one of them; rows keep their input order in both. A table
    lacking a field under every one of its names is an :class:`InputFileError`. SMILES are parsed in
    ``sandbox`` (a `data.sandbox.molecule_sandbox`; else the process's shared one).
    """
    table = _normalise_raw(raw)
    fields = _Stripped.of(table)
    verdicts = _Verdicts.none(table.index)
    _reject_missing(table, fields, verdicts)
    _reject_by_rules(fields, verdicts)
    canonical = _parse_open_smiles(fields.smiles, verdicts, sandbox)
    keyed = _keyed_pairs(table, fields, canonical, verdicts)
    _reject_repeats(keyed, verdicts)
    ok = verdicts.open().to_numpy()
    return _result(_valid_table(keyed, ok, table["SMILES"]), _rejected_table(table, verdicts, ~ok), len(table))


@dataclass(frozen=True)
class _Stripped:
    """The three fields of each row without surrounding whitespace, as the rules read them."""

    smiles: pd.Series
    protein: pd.Series
    label: pd.Series

    @classmethod
    def of(cls, table: pd.DataFrame) -> _Stripped:
        """The stripped fields of a `_normalise_raw` table."""
        return cls(table["SMILES"].str.strip(), table["Protein"].str.strip(), table["Y"].str.strip())


@dataclass(frozen=True)
class _Verdicts:
    """Each row's reason code and reason so far: both "" while the row has passed every rule asked."""

    code: pd.Series
    reason: pd.Series

    @classmethod
    def none(cls, index: pd.Index) -> _Verdicts:
        """No row of ``index`` refused yet."""
        n = len(index)
        code = pd.Series(np.full(n, "", dtype=object), index=index)
        reason = pd.Series(np.full(n, "", dtype=object), index=index)
        return cls(code, reason)

    def open(self) -> pd.Series:
        """The rows no rule has refused yet (first failing rule wins)."""
        return self.code == ""

    def reject(self, mask: pd.Series, name: str, reasons: list[str]) -> None:
        """Refuse the rows of ``mask`` with the code ``name`` and one reason each."""
        self.code[mask] = name
        self.reason[mask] = reasons

    def refuse(self, mask: pd.Series, refusals: list[Refusal]) -> None:
        """Refuse the rows of ``mask`` with the input rules' refusals, one each (its code and its text)."""
        self.code[mask] = [r.code for r in refusals]
        self.reason[mask] = [str(r) for r in refusals]


def _reject_missing(table: pd.DataFrame, fields: _Stripped, verdicts: _Verdicts) -> None:
    """``missing_value``: a row with a field empty (or only whitespace), its reason naming each such field."""
    missing = (fields.smiles == "") | (fields.protein == "") | (fields.label == "")
    if missing.any():
        smiles, protein, label = table["SMILES"][missing], table["Protein"][missing], table["Y"][missing]
        verdicts.reject(missing, "missing_value", [_missing_reason(s, p, y) for s, p, y in zip(smiles, protein, label)])


def _reject_by_rules(fields: _Stripped, verdicts: _Verdicts) -> None:
    """The label's refusal (``invalid_label``), then the protein's, each asked once per distinct value of the open rows."""
    for values, rule in ((fields.label, label_refusal), (fields.protein, protein_refusal)):
        open_ = verdicts.open()
        verdict_of = {v: rule(v) for v in pd.unique(values[open_])}
        bad = open_ & values.map(lambda v, seen=verdict_of: seen.get(v) is not None)
        if bad.any():
            verdicts.refuse(bad, [r for v in values[bad] if (r := verdict_of[v]) is not None])


def _parse_open_smiles(smiles: pd.Series, verdicts: _Verdicts, sandbox: Sandbox | None) -> pd.Series:
    """The canonical SMILES of each open row (None elsewhere), each distinct SMILES parsed once in
    ``sandbox``; a row whose SMILES the rules refuse is rejected with that refusal."""
    open_ = verdicts.open()
    distinct = pd.unique(smiles[open_]).tolist()
    parsed = dict(zip(distinct, _parse_all(distinct, sandbox)))
    canonical = pd.Series(np.full(len(smiles), None, dtype=object), index=smiles.index)
    open_idx = np.flatnonzero(open_.to_numpy())
    for i, s in zip(open_idx, smiles.to_numpy()[open_idx]):
        canonical.iat[i] = parsed[s][0]
    bad_smiles = open_ & canonical.isna()
    if bad_smiles.any():
        verdicts.refuse(bad_smiles, [r for s in smiles[bad_smiles] if (r := parsed[s][1]) is not None])
    return canonical


def _keyed_pairs(table: pd.DataFrame, fields: _Stripped, canonical: pd.Series, verdicts: _Verdicts) -> pd.DataFrame:
    """The open rows under their key (canonical SMILES, cleaned protein), with the parsed label and the source."""
    open_ = verdicts.open()
    return pd.DataFrame(
        {
            "smiles": canonical[open_],
            "protein": fields.protein[open_].map(clean_protein),
            "label": fields.label[open_].map(parse_label),
            "source_file": table["source_file"][open_],
            "source_row": table["source_row"][open_],
        }
    )


def _reject_repeats(keyed: pd.DataFrame, verdicts: _Verdicts) -> None:
    """``duplicate``: a later row of a key with one label (the first is kept); ``conflicting_label``:
    every row of a key with several labels."""
    groups = keyed.groupby(["smiles", "protein"], sort=False)
    conflict = groups["label"].transform("nunique") > 1
    repeat = keyed.duplicated(["smiles", "protein"], keep="first") & ~conflict
    if repeat.any():
        first_file = groups["source_file"].transform("first")
        first_row = groups["source_row"].transform("first")
        verdicts.reject(
            repeat.reindex(verdicts.code.index, fill_value=False),
            "duplicate",
            [
                f"duplicate of the pair kept from {_place(f, r)} (same canonical SMILES, protein and label)"
                for f, r in zip(first_file[repeat], first_row[repeat])
            ],
        )
    if conflict.any():
        clash = keyed[conflict]
        notes = _conflict_notes(clash)
        verdicts.reject(
            conflict.reindex(verdicts.code.index, fill_value=False),
            "conflicting_label",
            [notes[(s, p)] for s, p in zip(clash["smiles"], clash["protein"])],
        )


def _conflict_notes(clash: pd.DataFrame) -> dict[tuple[str, str], str]:
    """The reason of each conflicting key: its labels and the rows that hold it (the first few named)."""
    notes: dict[tuple[str, str], str] = {}
    for key, group in clash.groupby(["smiles", "protein"], sort=False):
        labels = ", ".join(str(v) for v in sorted(group["label"].unique()))
        places = [_place(f, r) for f, r in zip(group["source_file"], group["source_row"])]
        shown = "; ".join(places[:_SHOWN_PLACES])
        more = f" and {len(places) - _SHOWN_PLACES} more" if len(places) > _SHOWN_PLACES else ""
        notes[key] = (
            f"Y: conflicting labels {labels} for the same canonical SMILES and protein "
            f"in {len(places)} rows ({shown}{more})"
        )
    return notes


def _valid_table(keyed: pd.DataFrame, ok: np.ndarray, smiles_in: pd.Series) -> pd.DataFrame:
    """``valid``: the keyed rows still open (``ok`` by input row), with their ids and the SMILES as read."""
    kept = keyed.loc[ok[keyed.index.to_numpy()]] if len(keyed) else keyed
    return pd.DataFrame(
        {
            "drug_id": _ids(kept["smiles"], drug_id),
            "target_id": _ids(kept["protein"], target_id),
            "smiles": kept["smiles"].astype(object),
            "protein": kept["protein"].astype(object),
            "label": kept["label"].astype("int8"),
            "source_file": kept["source_file"].astype(object),
            "source_row": kept["source_row"].astype("int64"),
            "smiles_input": smiles_in[kept.index].astype(object),
        },
        columns=list(VALID_COLUMNS),
    ).reset_index(drop=True)


def _rejected_table(table: pd.DataFrame, verdicts: _Verdicts, bad: np.ndarray) -> pd.DataFrame:
    """``rejected``: the ``bad`` rows as read, with their source and their verdict."""
    return pd.DataFrame(
        {
            "SMILES": table["SMILES"][bad],
            "Protein": table["Protein"][bad],
            "Y": table["Y"][bad],
            "source_file": table["source_file"][bad],
            "source_row": table["source_row"][bad].astype("int64"),
            "reason_code": verdicts.code[bad],
            "reason": verdicts.reason[bad],
        },
        columns=list(REJECTED_COLUMNS),
    ).reset_index(drop=True)


def _result(valid: pd.DataFrame, rejected: pd.DataFrame, n: int) -> ValidationResult:
    """The result and its counts; AssertionError if the two tables do not hold the ``n`` input rows."""
    if len(valid) + len(rejected) != n:
        raise AssertionError(f"validation lost rows: {n} in, {len(valid)} valid + {len(rejected)} rejected")
    by_code = rejected["reason_code"].value_counts()
    counts = {"input_rows": n, "valid": len(valid), "rejected": len(rejected)}
    counts.update({c: int(by_code.get(c, 0)) for c in REASON_CODES})
    return ValidationResult(valid=valid, rejected=rejected, counts=counts)


def _ids(values: pd.Series, make: Callable[[str], str]) -> pd.Series:
    """``make``'s id of each value, each distinct value hashed once."""
    cache = {v: make(v) for v in pd.unique(values)}
    return values.map(cache).astype(object)


def _parquet_bytes(table: pd.DataFrame, schema: pa.Schema) -> bytes:
    """``table`` as a Parquet file of ``schema``, in memory (written whole by `write_result`)."""
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(table, schema=schema, preserve_index=False), buffer)
    return buffer.getvalue()


def write_result(result: ValidationResult, out_dir: Location | str | Path) -> tuple[UPath, UPath]:
    """Write ``valid.parquet`` and ``rejected.parquet`` with fixed schemas into ``out_dir`` (a folder or
    an ``s3://`` prefix), each whole and atomically; returns their locations."""
    from drugrepo_assets.files import storage_path, write_bytes_atomic

    root = storage_path(as_location(out_dir))
    valid_path, rejected_path = root / "valid.parquet", root / "rejected.parquet"
    write_bytes_atomic(valid_path, _parquet_bytes(result.valid, VALID_SCHEMA))
    write_bytes_atomic(rejected_path, _parquet_bytes(result.rejected, REJECTED_SCHEMA))
    return valid_path, rejected_path
