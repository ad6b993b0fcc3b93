"""Validation of raw drug–target pairs: every input row ends up either valid or rejected with a reason.

Rules, first failing rule wins per row: ``missing_value``, ``invalid_label``, ``invalid_protein``,
``invalid_smiles``, ``too_many_atoms``, then ``duplicate`` / ``conflicting_label`` on the key
(canonical SMILES, upper-cased protein) among the rows that passed the others.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from drugrepo_assets.data.sources import read_source

__all__ = [
    "MAX_HEAVY_ATOMS",
    "PROTEIN_ALPHABET",
    "REASON_CODES",
    "REJECTED_COLUMNS",
    "VALID_COLUMNS",
    "ValidationResult",
    "canonicalize",
    "drug_id",
    "target_id",
    "validate_file",
    "validate_pairs",
    "write_result",
]

PROTEIN_ALPHABET = "ACBEDGFIHKMLONQPSRUTWVYXZ"
MAX_HEAVY_ATOMS = 290
LABEL_VALUES: dict[str, int] = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
REASON_CODES: tuple[str, ...] = (
    "missing_value",
    "invalid_label",
    "invalid_protein",
    "invalid_smiles",
    "too_many_atoms",
    "duplicate",
    "conflicting_label",
)
VALID_COLUMNS: tuple[str, ...] = (
    "drug_id",
    "target_id",
    "smiles",
    "protein",
    "label",
    "source_file",
    "source_row",
    "smiles_input",
)
REJECTED_COLUMNS: tuple[str, ...] = (
    "SMILES",
    "Protein",
    "Y",
    "source_file",
    "source_row",
    "reason_code",
    "reason",
)

_BAD_PROTEIN_CHAR = re.compile(f"[^{PROTEIN_ALPHABET}{PROTEIN_ALPHABET.lower()}]")
_SHOWN_CHARS = 60
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


@lru_cache(maxsize=200_000)
def _parse_smiles(smiles: str) -> tuple[str | None, int, str]:
    """(canonical SMILES or None, heavy-atom count, problem) for one stripped SMILES string."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
        try:
            mol = Chem.MolFromSmiles(smiles)
        except Exception as exc:  # RDKit raises on a few pathological inputs instead of None
            return None, 0, f"RDKit error {type(exc).__name__}"
        if mol is None:
            return None, 0, _smiles_problem(smiles)
        if mol.GetNumAtoms() == 0:
            return None, 0, "no atoms"
        try:
            canonical = Chem.MolToSmiles(mol)
        except Exception as exc:
            return None, 0, f"RDKit cannot write it back as SMILES ({type(exc).__name__})"
        return canonical, int(mol.GetNumHeavyAtoms()), ""


def _smiles_problem(smiles: str) -> str:
    from rdkit import Chem

    try:
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
    except Exception:
        mol = None
    if mol is None:
        return "SMILES syntax error"
    try:
        problems = [p.Message() for p in Chem.DetectChemistryProblems(mol)]
    except Exception:
        problems = []
    return re.sub(r"\s+", " ", problems[0]).strip() if problems else "RDKit cannot sanitize it"


def parse_smiles(smiles: str) -> tuple[str | None, int, str]:
    """(canonical SMILES or None, heavy-atom count, problem): the validation's verdict on one molecule."""
    return _parse_smiles(smiles.strip())


def canonicalize(smiles: str) -> str | None:
    """RDKit canonical isomeric SMILES of ``smiles`` (surrounding whitespace ignored), None if invalid."""
    canonical, _atoms, _problem = _parse_smiles(smiles.strip())
    return canonical


def _shown(value: str) -> str:
    text = value if len(value) <= _SHOWN_CHARS else value[: _SHOWN_CHARS - 1] + "…"
    return repr(text)


def _missing_reason(smiles: str, protein: str, label: str) -> str:
    parts = []
    for name, value in (("SMILES", smiles), ("Protein", protein), ("Y", label)):
        if value.strip() == "":
            parts.append(f"{name}: value is empty" if value == "" else f"{name}: value is blank ({value!r})")
    return "; ".join(parts)


def _protein_reason(protein: str) -> str:
    stripped = protein.strip()
    bad = sorted(set(_BAD_PROTEIN_CHAR.findall(stripped)), key=stripped.index)
    first = stripped.index(bad[0]) + 1
    chars = ", ".join(repr(c) for c in bad)
    noun = "character" if len(bad) == 1 else "characters"
    return (
        f"Protein: {noun} {chars} not in the amino-acid alphabet {PROTEIN_ALPHABET} "
        f"(first at position {first} of {len(stripped)})"
    )


def _place(source_file: str, source_row: int) -> str:
    return f"{source_file} row {source_row}"


def _normalise_raw(raw: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("SMILES", "Protein", "Y") if c not in raw.columns]
    if missing:
        raise ValueError(f"raw table lacks column(s) {', '.join(missing)}")
    table = pd.DataFrame(index=pd.RangeIndex(len(raw)))
    for column in ("SMILES", "Protein", "Y"):
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


def validate_pairs(raw: pd.DataFrame) -> ValidationResult:
    """Split raw pairs (as read by ``read_source``) into ``valid`` and ``rejected`` tables.

    Every input row lands in exactly one of them; rows keep their input order in both.
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
            [
                _missing_reason(s, p, y)
                for s, p, y in zip(smiles_in[missing], protein_in[missing], label_in[missing])
            ],
        )

    open_ = code == ""
    bad_label = open_ & ~label_s.isin(list(LABEL_VALUES))
    if bad_label.any():
        reject(
            bad_label,
            "invalid_label",
            [f"Y: label {v!r} is not one of 0, 1, 0.0, 1.0" for v in label_in[bad_label]],
        )

    open_ = code == ""
    bad_protein = open_ & protein_s.str.contains(_BAD_PROTEIN_CHAR, regex=True)
    if bad_protein.any():
        reject(bad_protein, "invalid_protein", [_protein_reason(p) for p in protein_in[bad_protein]])

    open_ = code == ""
    parsed = {s: _parse_smiles(s) for s in pd.unique(smiles_s[open_])}
    canonical = pd.Series(np.full(n, None, dtype=object), index=table.index)
    atoms = np.zeros(n, dtype=np.int64)
    open_idx = np.flatnonzero(open_.to_numpy())
    for i, s in zip(open_idx, smiles_s.to_numpy()[open_idx]):
        canonical.iat[i] = parsed[s][0]
        atoms[i] = parsed[s][1]
    bad_smiles = open_ & canonical.isna()
    if bad_smiles.any():
        reject(
            bad_smiles,
            "invalid_smiles",
            [
                f"SMILES: RDKit cannot parse {_shown(s)} ({parsed[s.strip()][2]})"
                for s in smiles_in[bad_smiles]
            ],
        )

    open_ = code == ""
    too_big = open_ & (atoms > MAX_HEAVY_ATOMS)
    if too_big.any():
        reject(
            too_big,
            "too_many_atoms",
            [
                f"SMILES: {a} heavy atoms, more than the limit of {MAX_HEAVY_ATOMS}"
                for a in atoms[too_big.to_numpy()]
            ],
        )

    open_ = code == ""
    keyed = pd.DataFrame(
        {
            "smiles": canonical[open_],
            "protein": protein_s[open_].str.upper(),
            "label": label_s[open_].map(LABEL_VALUES),
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
                f"duplicate of the pair kept from {_place(f, r)} "
                "(same canonical SMILES, protein and label)"
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


def write_result(result: ValidationResult, out_dir: Path) -> tuple[Path, Path]:
    """Write ``valid.parquet`` and ``rejected.parquet`` into ``out_dir`` with fixed schemas."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    valid_schema = pa.schema(
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
    rejected_schema = pa.schema(
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
    valid_path = out_dir / "valid.parquet"
    rejected_path = out_dir / "rejected.parquet"
    pq.write_table(
        pa.Table.from_pandas(result.valid, schema=valid_schema, preserve_index=False), valid_path
    )
    pq.write_table(
        pa.Table.from_pandas(result.rejected, schema=rejected_schema, preserve_index=False),
        rejected_path,
    )
    return valid_path, rejected_path


def validate_file(input: str, out_dir: Path, *, s3_endpoint_url: str | None = None) -> ValidationResult:
    """Read a source (file, folder, URL or S3), validate it and write the two Parquet tables."""
    result = validate_pairs(read_source(input, s3_endpoint_url=s3_endpoint_url))
    write_result(result, Path(out_dir))
    return result
