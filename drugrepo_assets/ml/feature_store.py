"""Content-addressed feature store: drug graphs and protein codes, each computed once per content id.

Items are keyed by ids that hash their content (``drug_id`` of the canonical SMILES, ``target_id``
of the sequence), so an id names one feature vector forever. New items are written as one shard
per call (``<root>/<kind>/<shard>.npz``, the shard named by the hash of its sorted ids); a shard is
never modified, so concurrent writers and readers need no locks. Works on a local `Path` or on any
`upath.UPath` (S3, ...).
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from drugrepo_assets.ml.dataset import MoleculeStore, PairData
from drugrepo_assets.ml.featurize import PROTEIN_MAX_LENGTH, CompactMolecules, compact_molecules, encode_proteins

DRUG_KIND = "drug_graphs-v2"  # v2: compact atom codes and bonds (featurize.CompactMolecules)
PROTEIN_KIND = f"protein_codes-{PROTEIN_MAX_LENGTH}-v1"


@dataclass(frozen=True)
class EnsureResult:
    """Which shard holds each requested id, and how many ids were featurised now vs found stored."""

    shard_of: dict[str, str]
    new: int
    reused: int
    new_shard: str | None


def _shard_name(ids: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:20]


def _is_local(path: Any) -> bool:
    return isinstance(path, Path) or getattr(path, "protocol", "") in ("", "file", "local")


def _write_npz(path: Any, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed npz atomically (temp file + rename locally; one PUT on object stores)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    if _is_local(path):
        final = Path(str(getattr(path, "path", path)))
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    else:
        path.write_bytes(data)


def _read_npz(path: Any) -> dict[str, np.ndarray]:
    with path.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


class _ShardedStore:
    """Shards of one kind of feature under ``<root>/<kind>``; subclasses pack and unpack items."""

    kind: str

    def __init__(self, root: Any) -> None:
        self.dir = root / self.kind
        self._index: dict[str, str] | None = None

    def index(self) -> dict[str, str]:
        """id → shard name of every stored item (read once per instance from the shards' id lists)."""
        if self._index is None:
            self._index = {}
            if self.dir.exists():
                for path in sorted(self.dir.glob("*.npz")):
                    with path.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
                        ids = npz["ids"]
                    self._index.update(dict.fromkeys(ids.tolist(), path.name.removesuffix(".npz")))
        return self._index

    def ensure(self, ids: Sequence[str], sources: Sequence[str]) -> EnsureResult:
        """Featurise the items not stored yet (``sources[i]`` is the content of ``ids[i]``) as one new shard."""
        index = self.index()
        wanted = dict(zip(ids, sources))
        missing = sorted(i for i in wanted if i not in index)
        shard = None
        if missing:
            shard = _shard_name(missing)
            arrays = self._pack([wanted[i] for i in missing])
            _write_npz(self.dir / f"{shard}.npz", {"ids": np.asarray(missing, dtype=str), **arrays})
            index.update(dict.fromkeys(missing, shard))
        return EnsureResult({i: index[i] for i in wanted}, len(missing), len(wanted) - len(missing), shard)

    def _shard_rows(self, ids: Sequence[str], shards: Sequence[str]) -> Iterable[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
        """Per shard: its arrays, the positions in ``ids`` it serves and the rows within the shard."""
        ids_arr = np.asarray(ids, dtype=str)
        shards_arr = np.asarray(shards, dtype=str)
        for shard in np.unique(shards_arr):
            arrays = _read_npz(self.dir / f"{shard}.npz")
            wanted = np.flatnonzero(shards_arr == shard)
            lookup = {item: row for row, item in enumerate(arrays["ids"].tolist())}
            try:
                rows = np.fromiter((lookup[i] for i in ids_arr[wanted]), dtype=np.int64, count=len(wanted))
            except KeyError as exc:
                raise KeyError(f"{exc.args[0]} is not in shard {shard} of {self.dir}") from None
            yield arrays, wanted, rows

    def _pack(self, sources: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError


class DrugGraphStore(_ShardedStore):
    """Drug graphs as compact atom codes and bonds (`featurize.CompactMolecules`, ~10 bytes an atom),
    expanded into DrugBAN's features only when a batch is built."""

    kind = DRUG_KIND

    def _pack(self, sources: list[str]) -> dict[str, np.ndarray]:
        molecules, refused, _ = compact_molecules(sources)
        if refused:
            position, reason = refused[0]
            raise ValueError(f"cannot featurise {sources[position]!r}: {reason}")
        return self._arrays(molecules)

    @staticmethod
    def _arrays(molecules: CompactMolecules) -> dict[str, np.ndarray]:
        return {"codes": molecules.codes, "bonds": molecules.bonds, "num_atoms": molecules.num_atoms, "num_bonds": molecules.num_bonds}

    def put(self, ids: Sequence[str], molecules: CompactMolecules) -> EnsureResult:
        """Store molecules featurised elsewhere (a process pool), ``ids[i]`` naming molecule i; stored ids are kept."""
        index = self.index()
        first: dict[str, int] = {}
        for i, item in enumerate(ids):
            if item not in index:
                first.setdefault(item, i)
        shard = None
        if first:
            names = sorted(first)
            shard = _shard_name(names)
            arrays = self._arrays(molecules.take(np.asarray([first[n] for n in names], dtype=np.int64)))
            _write_npz(self.dir / f"{shard}.npz", {"ids": np.asarray(names, dtype=str), **arrays})
            index.update(dict.fromkeys(names, shard))
        return EnsureResult({i: index[i] for i in ids}, len(first), len(set(ids)) - len(first), shard)

    def load_compact(self, ids: Sequence[str], shards: Sequence[str]) -> CompactMolecules:
        """The molecules ``ids`` (stored in ``shards``) in that order, compact."""
        parts: list[CompactMolecules] = []
        positions: list[np.ndarray] = []
        for arrays, wanted, rows in self._shard_rows(ids, shards):
            stored = CompactMolecules(arrays["codes"], arrays["bonds"], arrays["num_atoms"], arrays["num_bonds"])
            parts.append(stored.take(rows))
            positions.append(wanted)
        if not parts:
            return CompactMolecules.empty()
        joined = CompactMolecules.concat(parts)
        return joined.take(np.argsort(np.concatenate(positions), kind="stable"))

    def load(self, ids: Sequence[str], shards: Sequence[str]) -> MoleculeStore:
        """The molecules ``ids`` (stored in ``shards``) packed in that order."""
        return MoleculeStore.from_compact(self.load_compact(ids, shards))


class ProteinCodeStore(_ShardedStore):
    """Protein sequences as DrugBAN integer codes (first 1200 residues), stored as uint8."""

    kind = PROTEIN_KIND

    def _pack(self, sources: list[str]) -> dict[str, np.ndarray]:
        return {"codes": encode_proteins(sources, PROTEIN_MAX_LENGTH).astype(np.uint8)}

    def load(self, ids: Sequence[str], shards: Sequence[str]) -> torch.Tensor:
        """int64 codes [len(ids), 1200] of the proteins ``ids`` (stored in ``shards``), in that order."""
        out = np.zeros((len(ids), PROTEIN_MAX_LENGTH), dtype=np.int64)
        for arrays, wanted, rows in self._shard_rows(ids, shards):
            out[wanted] = arrays["codes"][rows]
        return torch.from_numpy(out)


class FeatureStore:
    """Drug graphs and protein codes under one root folder (local path or `UPath`)."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.drugs = DrugGraphStore(root)
        self.proteins = ProteinCodeStore(root)

    def pair_data(
        self,
        drug_ids: Sequence[str],
        target_ids: Sequence[str],
        shard_of_drug: Mapping[str, str],
        shard_of_target: Mapping[str, str],
        labels: Sequence[float] | None = None,
    ) -> PairData:
        """Pairs as `PairData` over stored features: no featurisation, each item loaded once."""
        uniq_d, drug_idx = np.unique(np.asarray(drug_ids, dtype=str), return_inverse=True)
        uniq_t, target_idx = np.unique(np.asarray(target_ids, dtype=str), return_inverse=True)
        return PairData(
            molecules=self.drugs.load(uniq_d.tolist(), [shard_of_drug[i] for i in uniq_d.tolist()]),
            proteins=self.proteins.load(uniq_t.tolist(), [shard_of_target[i] for i in uniq_t.tolist()]),
            drug_idx=torch.from_numpy(drug_idx.astype(np.int64).reshape(-1)),
            protein_idx=torch.from_numpy(target_idx.astype(np.int64).reshape(-1)),
            labels=None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.float32)),
        )
