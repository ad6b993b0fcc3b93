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
    refusals = (
        missing_refusal(name, value) for name, value in (("SMILES", smiles), ("Protein", protein), ("Y", label))
    )
    return "; ".join(str(r) for r in refusals if r is not None)


def _place(source_file: str, source_row: int) -> str:
    return f"{source_file} row {source_row}"


def _normalise_raw(raw: pd.DataFrame) -> pd.DataFrame:
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
    n = len(table)
    smiles_in = table["SMILES"]
    protein_in = table["Protein"]
    label_in = table["Y"]

    code = pd.Series(np.full(n, "", dtype=object), index=table.index)
    reason = pd.Series(np.full(n, "", dtype=object), index=table.index)

    def reject(mask: pd.Series, name: str, reasons: list[str]) -> None:
        code[mask] = name
        reason[mask] = reasons

    smiles_s = smiles_in.str.strip()
    protein_s = protein_in.str.strip()
    label_s = label_in.str.strip()

    missing = (smiles_s == "") | (protein_s == "") | (label_s == "")
    if missing.any():
        reject(
            missing,
            "missing_value",
            [_missing_reason(s, p, y) for s, p, y in zip(smiles_in[missing], protein_in[missing], label_in[missing])],
        )

    for _column, values, rule in (("Y", label_s, label_refusal), ("Protein", protein_s, protein_refusal)):
        open_ = code == ""
        verdicts = {v: rule(v) for v in pd.unique(values[open_])}
        bad = open_ & values.map(lambda v, seen=verdicts: seen.get(v) is not None)
        if bad.any():
            refusals = [r for v in values[bad] if (r := verdicts[v]) is not None]
            code[bad] = [r.code for r in refusals]
            reason[bad] = [str(r) for r in refusals]

    open_ = code == ""
    distinct = pd.unique(smiles_s[open_]).tolist()
    parsed = dict(zip(distinct, _parse_all(distinct, sandbox)))
    canonical = pd.Series(np.full(n, None, dtype=object), index=table.index)
    open_idx = np.flatnonzero(open_.to_numpy())
    for i, s in zip(open_idx, smiles_s.to_numpy()[open_idx]):
        canonical.iat[i] = parsed[s][0]
    bad_smiles = open_ & canonical.isna()
    if bad_smiles.any():
        refusals = [r for s in smiles_s[bad_smiles] if (r := parsed[s][1]) is not None]
        code[bad_smiles] = [r.code for r in refusals]
        reason[bad_smiles] = [str(r) for r in refusals]

    open_ = code == ""
    keyed = pd.DataFrame(
        {
            "smiles": canonical[open_],
            "protein": protein_s[open_].map(clean_protein),
            "label": label_s[open_].map(parse_label),
            "source_file": table["source_file"][open_],
            "source_row": table["source_row"][open_],
        }
    )
    groups = keyed.groupby(["smiles", "protein"], sort=False)
    conflict = groups["label"].transform("nunique") > 1
    repeat = keyed.duplicated(["smiles", "protein"], keep="first") & ~conflict
    if repeat.any():
        first_file = groups["source_file"].transform("first")
        first_row = groups["source_row"].transform("first")
        reject(
            repeat.reindex(table.index, fill_value=False),
            "duplicate",
            [
                f"duplicate of the pair kept from {_place(f, r)} (same canonical SMILES, protein and label)"
                for f, r in zip(first_file[repeat], first_row[repeat])
            ],
        )
    if conflict.any():
        clash = keyed[conflict]
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
        reject(
            conflict.reindex(table.index, fill_value=False),
            "conflicting_label",
            [notes[(s, p)] for s, p in zip(clash["smiles"], clash["protein"])],
        )

    ok = (code == "").to_numpy()
    kept = keyed.loc[ok[keyed.index.to_numpy()]] if len(keyed) else keyed
    valid = pd.DataFrame(
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

    bad = ~ok
    rejected = pd.DataFrame(
        {
            "SMILES": smiles_in[bad],
            "Protein": protein_in[bad],
            "Y": label_in[bad],
            "source_file": table["source_file"][bad],
            "source_row": table["source_row"][bad].astype("int64"),
            "reason_code": code[bad],
            "reason": reason[bad],
        },
        columns=list(REJECTED_COLUMNS),
    ).reset_index(drop=True)

    if len(valid) + len(rejected) != n:
        raise AssertionError(f"validation lost rows: {n} in, {len(valid)} valid + {len(rejected)} rejected")
    by_code = rejected["reason_code"].value_counts()
    counts = {"input_rows": n, "valid": len(valid), "rejected": len(rejected)}
    counts.update({c: int(by_code.get(c, 0)) for c in REASON_CODES})
    return ValidationResult(valid=valid, rejected=rejected, counts=counts)


def _ids(values: pd.Series, make) -> pd.Series:
    cache = {v: make(v) for v in pd.unique(values)}
    return values.map(cache).astype(object)


def _parquet_bytes(table: pd.DataFrame, schema: pa.Schema) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(table, schema=schema, preserve_index=False), buffer)
    return buffer.getvalue()


def write_result(
    result: ValidationResult, out_dir: str | Path, *, s3_endpoint_url: str | None = None
) -> tuple[UPath, UPath]:
    """Write ``valid.parquet`` and ``rejected.parquet`` with fixed schemas into ``out_dir`` (a folder or
    an ``s3://`` prefix), each whole and atomically; returns their locations."""
    from drugrepo_assets.files import storage_path, write_bytes_atomic

    root = storage_path(str(out_dir), s3_endpoint_url)
    valid_path, rejected_path = root / "valid.parquet", root / "rejected.parquet"
    write_bytes_atomic(valid_path, _parquet_bytes(result.valid, VALID_SCHEMA))
    write_bytes_atomic(rejected_path, _parquet_bytes(result.rejected, REJECTED_SCHEMA))
    return valid_path, rejected_path
