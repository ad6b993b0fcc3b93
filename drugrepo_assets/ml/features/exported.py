"""Exported features: a split's featurised pairs as Parquet, read back as `PairData` without RDKit.

RDKit's work (the compact drug encoding, `featurize.CompactMolecules`) is done once, where RDKit is;
a machine with only torch, numpy, pandas and pyarrow then trains on the folder (`read_parts` and
`pipeline.train_and_evaluate`). The encodings are the feature store's (`feature_store.DRUG_KIND`,
`feature_store.PROTEIN_KIND`), checked with its checks on reading. A folder holds:

- ``manifest.json``: the format, the two encodings and the row count of every table;
- ``drugs.parquet``: one row per molecule: ``drug_id``, ``num_atoms``, ``num_bonds``, ``codes`` (int8
  [num_atoms, 8] as bytes) and ``bonds`` (int16 [num_bonds, 2], little-endian, as bytes);
- ``proteins.parquet``: one row per protein: ``target_id`` and ``codes`` (uint8 [1200] as bytes);
- ``<part>.parquet`` per part (``train``, ``val``, ``test``, ...): ``drug_id``, ``target_id``, ``label``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from drugrepo_assets.data.rules import PROTEIN_MAX_LENGTH
from drugrepo_assets.files import write_local_atomic
from drugrepo_assets.ml.features.dataset import MoleculeStore, PairData
from drugrepo_assets.ml.features.feature_store import DRUG_KIND, PROTEIN_KIND, DrugGraphStore, ProteinCodeStore
from drugrepo_assets.ml.features.featurize import ATOM_CODE_WIDTH, CompactMolecules

__all__ = [
    "FORMAT",
    "MANIFEST",
    "ExportedFeatures",
    "ExportedFeaturesError",
    "export_parts",
    "read_parts",
]

FORMAT = "drugrepo-exported-features/1"
MANIFEST = "manifest.json"
DRUGS = "drugs.parquet"
PROTEINS = "proteins.parquet"
PAIR_COLUMNS = ("drug_id", "target_id", "label")
"""The columns a part's table is read from (validated pairs, `data.validate.VALID_SCHEMA`) and written with."""
_BOND_DTYPE = np.dtype("<i2")
_PAIR_SCHEMA = pa.schema([("drug_id", pa.string()), ("target_id", pa.string()), ("label", pa.int8())])


class ExportedFeaturesError(ValueError):
    """An exported-features folder that cannot be read: the message names the file, and the row and field."""


def _write_table(path: Path, table: pa.Table) -> None:
    write_local_atomic(path, lambda handle: pq.write_table(table, handle))


def _drug_table(drug_ids: list[str], molecules: CompactMolecules) -> pa.Table:
    atom_ends = np.cumsum(molecules.num_atoms, dtype=np.int64)[:-1]
    bond_ends = np.cumsum(molecules.num_bonds, dtype=np.int64)[:-1]
    codes = [c.tobytes() for c in np.split(np.ascontiguousarray(molecules.codes, np.int8), atom_ends)]
    bonds = [b.tobytes() for b in np.split(np.ascontiguousarray(molecules.bonds, _BOND_DTYPE), bond_ends)]
    return pa.table(
        {
            "drug_id": pa.array(drug_ids, pa.string()),
            "num_atoms": pa.array(molecules.num_atoms, pa.int32()),
            "num_bonds": pa.array(molecules.num_bonds, pa.int32()),
            "codes": pa.array(codes if len(drug_ids) else [], pa.binary()),
            "bonds": pa.array(bonds if len(drug_ids) else [], pa.binary()),
        }
    )


def _featurise_drugs(drugs: pd.DataFrame) -> CompactMolecules:
    """The compact encoding of each row's ``smiles``, RDKit's work in the process's sandbox; the first
    molecule refused (over its budget) is a ValueError naming it."""
    from drugrepo_assets.ml.features.featurize import compact_molecules

    molecules, refused, _ = compact_molecules(drugs["smiles"].tolist())
    if refused:
        position, reason = refused[0]
        raise ValueError(f"drug {drugs['drug_id'].iat[position]} ({drugs['smiles'].iat[position]!r}): {reason}")
    return molecules


def export_parts(parts: Mapping[str, pd.DataFrame], out: Path) -> dict[str, int]:
    """Featurise the validated pairs of each part (``drug_id``, ``target_id``, ``smiles``, ``protein``,
    ``label``: `data.validate`) once per unique molecule and protein and write them to ``out``;
    returns the row count of every table written."""
    from drugrepo_assets.ml.features.protein import encode_proteins

    frames = list(parts.values())
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["drug_id", "target_id"])
    drugs = pairs.drop_duplicates("drug_id").sort_values("drug_id")[["drug_id", "smiles"]]
    proteins = pairs.drop_duplicates("target_id").sort_values("target_id")[["target_id", "protein"]]
    codes = encode_proteins(proteins["protein"].tolist(), PROTEIN_MAX_LENGTH).astype(np.uint8)
    out.mkdir(parents=True, exist_ok=True)
    _write_table(out / DRUGS, _drug_table(drugs["drug_id"].tolist(), _featurise_drugs(drugs)))
    _write_table(
        out / PROTEINS,
        pa.table(
            {
                "target_id": pa.array(proteins["target_id"].tolist(), pa.string()),
                "codes": pa.array([row.tobytes() for row in codes], pa.binary(PROTEIN_MAX_LENGTH)),
            }
        ),
    )
    counts = {"drugs": len(drugs), "proteins": len(proteins)}
    for name, table in parts.items():
        frame = table[list(PAIR_COLUMNS)].astype({"label": np.int8})
        _write_table(out / f"{name}.parquet", pa.Table.from_pandas(frame, _PAIR_SCHEMA, preserve_index=False))
        counts[name] = len(table)
    manifest = {"format": FORMAT, "drug_encoding": DRUG_KIND, "protein_encoding": PROTEIN_KIND, "rows": counts}
    write_local_atomic(out / MANIFEST, lambda handle: handle.write(json.dumps(manifest, indent=2).encode()))
    return counts


def _read_table(path: Path, columns: Mapping[str, pa.DataType], rows: int) -> pa.Table:
    """The Parquet file ``path``, checked to have ``columns`` of these types and the manifest's row count."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise ExportedFeaturesError(f"{path}: cannot be read ({exc})") from None
    for name, kind in columns.items():
        if name not in table.column_names:
            raise ExportedFeaturesError(f"{path}: no column {name!r}")
        if not table.schema.field(name).type.equals(kind):
            raise ExportedFeaturesError(f"{path}: column {name!r} is {table.schema.field(name).type}, not {kind}")
        if table.column(name).null_count:
            row = int(np.flatnonzero(table.column(name).is_null().to_numpy(zero_copy_only=False))[0])
            raise ExportedFeaturesError(f"{path}: row {row}: {name} is empty")
    if table.num_rows != rows:
        raise ExportedFeaturesError(f"{path}: {table.num_rows} rows, the manifest says {rows}")
    return table


def _joined(path: Path, table: pa.Table, column: str, lengths: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The bytes of ``column``, checked row by row to hold ``lengths`` items of ``dtype``, as one array."""
    values = table.column(column).to_pylist()
    sizes = np.fromiter(map(len, values), np.int64, len(values))
    wrong = np.flatnonzero(sizes != lengths * dtype.itemsize)
    if len(wrong):
        row = int(wrong[0])
        raise ExportedFeaturesError(
            f"{path}: row {row}: {column} holds {sizes[row]} bytes, not {lengths[row] * dtype.itemsize}"
        )
    return np.frombuffer(b"".join(values), dtype).copy()


def _check(path: Path, check: Callable[[Mapping[str, np.ndarray]], None], arrays: dict[str, np.ndarray]) -> None:
    """The feature store's checks of one kind's arrays (`feature_store`), failing with this file's name."""
    try:
        check(arrays)
    except ValueError as exc:
        raise ExportedFeaturesError(f"{path}: {exc}") from None


@dataclass
class ExportedFeatures:
    """An exported-features folder in memory: every molecule (compact), every protein's codes, and the parts."""

    folder: Path
    drug_ids: np.ndarray  # str [M]
    molecules: CompactMolecules
    target_ids: np.ndarray  # str [P]
    proteins: np.ndarray  # uint8 [P, 1200]
    rows: dict[str, int]

    @classmethod
    def load(cls, folder: str | Path) -> ExportedFeatures:
        """Read and check the manifest, the molecules and the proteins of ``folder``."""
        folder = Path(folder)
        manifest = cls._manifest(folder)
        rows = manifest["rows"]
        drugs = _read_table(
            folder / DRUGS,
            {
                "drug_id": pa.string(),
                "num_atoms": pa.int32(),
                "num_bonds": pa.int32(),
                "codes": pa.binary(),
                "bonds": pa.binary(),
            },
            rows["drugs"],
        )
        num_atoms = drugs.column("num_atoms").to_numpy()
        num_bonds = drugs.column("num_bonds").to_numpy()
        arrays = {
            "ids": np.asarray(drugs.column("drug_id").to_pylist(), dtype=str),
            "codes": _joined(folder / DRUGS, drugs, "codes", num_atoms * ATOM_CODE_WIDTH, np.dtype(np.int8)),
            "bonds": _joined(folder / DRUGS, drugs, "bonds", num_bonds * 2, _BOND_DTYPE),
            "num_atoms": num_atoms,
            "num_bonds": num_bonds,
        }
        arrays["codes"] = arrays["codes"].reshape(-1, ATOM_CODE_WIDTH)
        arrays["bonds"] = arrays["bonds"].reshape(-1, 2).astype(np.int16)
        _check(folder / DRUGS, DrugGraphStore._check, arrays)
        proteins = _read_table(
            folder / PROTEINS, {"target_id": pa.string(), "codes": pa.binary(PROTEIN_MAX_LENGTH)}, rows["proteins"]
        )
        codes = np.frombuffer(b"".join(proteins.column("codes").to_pylist()), np.uint8).reshape(-1, PROTEIN_MAX_LENGTH)
        target_ids = np.asarray(proteins.column("target_id").to_pylist(), dtype=str)
        _check(folder / PROTEINS, ProteinCodeStore._check, {"ids": target_ids, "codes": codes})
        molecules = CompactMolecules(arrays["codes"], arrays["bonds"], num_atoms, num_bonds)
        parts = {k: int(v) for k, v in rows.items() if k not in ("drugs", "proteins")}
        return cls(folder, arrays["ids"], molecules, target_ids, codes, parts)

    @staticmethod
    def _manifest(folder: Path) -> dict:
        path = folder / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise ExportedFeaturesError(f"{path}: not found (write it with 'drugrepo export-features')") from None
        except (OSError, ValueError) as exc:
            raise ExportedFeaturesError(f"{path}: cannot be read ({exc})") from None
        expected = {"format": FORMAT, "drug_encoding": DRUG_KIND, "protein_encoding": PROTEIN_KIND}
        for field, value in expected.items():
            if not isinstance(manifest, dict) or manifest.get(field) != value:
                found = manifest.get(field) if isinstance(manifest, dict) else None
                raise ExportedFeaturesError(f"{path}: {field} is {found!r}, this version reads {value!r}")
        rows = manifest.get("rows")
        if not isinstance(rows, dict) or not all(isinstance(rows.get(k), int) for k in ("drugs", "proteins")):
            raise ExportedFeaturesError(f"{path}: rows must give the row count of drugs, proteins and each part")
        return manifest

    def pairs(self, part: str) -> PairData:
        """The pairs of ``part`` as `PairData` over the molecules and proteins they use (expanded here)."""
        path = self.folder / f"{part}.parquet"
        if part not in self.rows:
            raise ExportedFeaturesError(f"{self.folder / MANIFEST}: no part {part!r} (has {', '.join(self.rows)})")
        table = _read_table(path, dict(zip(_PAIR_SCHEMA.names, _PAIR_SCHEMA.types)), self.rows[part])
        drug_row = self._rows(path, table, "drug_id", self.drug_ids)
        protein_row = self._rows(path, table, "target_id", self.target_ids)
        labels = table.column("label").to_numpy()
        if len(labels) and not np.isin(labels, (0, 1)).all():
            raise ExportedFeaturesError(
                f"{path}: row {int(np.flatnonzero(~np.isin(labels, (0, 1)))[0])}: label is not 0 or 1"
            )
        drugs, drug_idx = np.unique(drug_row, return_inverse=True)
        targets, protein_idx = np.unique(protein_row, return_inverse=True)
        return PairData(
            molecules=MoleculeStore.from_compact(self.molecules.take(drugs)),
            proteins=torch.from_numpy(self.proteins[targets].astype(np.int64)),
            drug_idx=torch.from_numpy(drug_idx.astype(np.int64).reshape(-1)),
            protein_idx=torch.from_numpy(protein_idx.astype(np.int64).reshape(-1)),
            labels=torch.from_numpy(labels.astype(np.float32)),
        )

    @staticmethod
    def _rows(path: Path, table: pa.Table, column: str, ids: np.ndarray) -> np.ndarray:
        """Each pair's row in the molecules (or proteins) by its id; an id not exported names its row."""
        wanted = np.asarray(table.column(column).to_pylist(), dtype=str)
        order = np.argsort(ids)
        pos = np.searchsorted(ids, wanted, sorter=order).clip(max=max(len(ids) - 1, 0))
        found = order[pos] if len(ids) else np.zeros(len(wanted), np.int64)
        missing = np.flatnonzero(ids[found] != wanted) if len(ids) else np.arange(len(wanted))
        if len(missing):
            row = int(missing[0])
            raise ExportedFeaturesError(f"{path}: row {row}: {column} {wanted[row]} is not among the exported features")
        return found


def read_parts(folder: str | Path, names: tuple[str, ...] | None = None) -> dict[str, PairData]:
    """The parts ``names`` (default: every part) of an exported-features folder as `PairData`: what
    `pipeline.train_and_evaluate` takes, read with torch, numpy and pyarrow alone."""
    features = ExportedFeatures.load(folder)
    return {name: features.pairs(name) for name in (names or tuple(features.rows))}
