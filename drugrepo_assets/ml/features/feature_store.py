"""Content-addressed feature store: drug graphs and protein codes, each computed once per content id.

Items are keyed by ids that hash their content (``drug_id`` of the canonical SMILES, ``target_id``
of the sequence), so an id names one feature vector forever. New items are written as one shard
per call (``<root>/<kind>/<shard>.npz``, the shard named by the hash of its sorted ids), whole and
atomically (`files.write_bytes_atomic`); a shard is never modified, so concurrent writers and
readers need no locks. Works on a local `Path` or on any `upath.UPath` (S3, ...).

Each shard stores the SHA-256 of its arrays (``sha256``); reading one checks it and the arrays'
shapes and ranges (`CorruptShardError`, naming the file), so a damaged or wrong shard is never
scored. `ensure` featurises again the requested items of a shard that fails the checks (a
shard of the same items is rewritten whole): materialising the feature stage again repairs it.
Shards written before checksums existed are checked for shapes and ranges only.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from drugrepo_assets.data.rules import MAX_DRUG_ATOMS, PROTEIN_ALPHABET, PROTEIN_MAX_LENGTH
from drugrepo_assets.files import StoragePath, write_bytes_atomic
from drugrepo_assets.ml.features.dataset import MoleculeStore, PairData
from drugrepo_assets.ml.features.featurize import ATOM_CODE_WIDTH, ATOM_FEATURE_DIM, CompactMolecules, compact_molecules
from drugrepo_assets.ml.features.protein import encode_proteins

log = logging.getLogger(__name__)

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


CHECKSUM = "sha256"
ONE_HOT_CODES = 5  # the atom code's leading columns: feature columns of one-hot groups (featurize.ATOM_CODE_WIDTH)


class CorruptShardError(ValueError):
    """A feature shard that cannot be read, or whose arrays fail their checksum or the store's checks."""

    def __init__(self, path: StoragePath, reason: str) -> None:
        super().__init__(f"feature shard {path}: {reason}")
        self.path = str(path)


def checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """The SHA-256 a shard stores of its arrays: each one's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _write_npz(path: StoragePath, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed npz with its checksum, atomically (temp file, fsync, rename locally; one PUT on S3)."""
    buffer = io.BytesIO()
    # numpy's stub types every **kwds entry against allow_pickle as well; these are array names.
    np.savez_compressed(buffer, **arrays, **{CHECKSUM: np.asarray(checksum(arrays))})  # type: ignore[arg-type]
    write_bytes_atomic(path, buffer.getvalue())


def _read_npz(path: StoragePath) -> dict[str, np.ndarray]:
    """A shard's arrays, its checksum verified (when it has one); CorruptShardError naming it otherwise."""
    try:
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # zip, zlib, npy header and CRC errors of a damaged file alike
        raise CorruptShardError(path, f"cannot be read ({type(exc).__name__}: {exc})") from exc
    stored = arrays.pop(CHECKSUM, None)
    if stored is not None and str(stored) != checksum(arrays):
        raise CorruptShardError(path, "its arrays' SHA-256 is not the one stored with them")
    return arrays


def _shape(arrays: Mapping[str, np.ndarray], name: str, shape: tuple, kinds: str) -> np.ndarray:
    """Array ``name``, checked to have this shape and a dtype of these kinds (numpy's ``dtype.kind``)."""
    if name not in arrays:
        raise ValueError(f"no {name!r} array")
    array = arrays[name]
    if array.shape != shape:
        raise ValueError(f"{name} of shape {array.shape}, not {shape}")
    if array.dtype.kind not in kinds:
        raise ValueError(f"{name} of dtype {array.dtype}, not an integer one")
    return array


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


class _ShardedStore:
    """Shards of one kind of feature under ``<root>/<kind>``; subclasses pack, check and unpack items."""

    kind: str

    def __init__(self, root: StoragePath) -> None:
        self.dir = root / self.kind
        self._index: dict[str, str] | None = None
        self._verified: set[str] = set()

    def index(self) -> dict[str, str]:
        """id → shard name of every stored item (read once per instance from the shards' id lists).

        A shard whose ids cannot be read is left out (logged), so its items count as not stored.
        """
        if self._index is None:
            self._index = {}
            if self.dir.exists():
                for path in sorted(self.dir.glob("*.npz")):
                    try:
                        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
                            ids = npz["ids"]
                    except Exception as exc:  # a damaged file: zip, zlib or npy header errors
                        log.warning(
                            "%s; its items are featurised again when asked for",
                            CorruptShardError(path, f"cannot be read ({exc})"),
                        )
                        continue
                    self._index.update(dict.fromkeys(ids.tolist(), path.name.removesuffix(".npz")))
        return self._index

    def _stored(self, ids: Iterable[str]) -> dict[str, str]:
        """The index, less the items of those of ``ids``' shards that are gone or fail their checks (each
        shard read once per instance), which are then featurised again like new ones."""
        index = self.index()
        for shard in sorted({index[i] for i in ids if i in index} - self._verified):
            try:
                self._read(shard)
            except (CorruptShardError, FileNotFoundError) as exc:
                log.warning("%s; its items are featurised again", exc)
                for item in [i for i, s in index.items() if s == shard]:
                    del index[item]
                continue
            self._verified.add(shard)
        return index

    def _read(self, shard: str) -> dict[str, np.ndarray]:
        """A shard's arrays, checked: checksum, then shapes and ranges (`_check`)."""
        path = self.dir / f"{shard}.npz"
        arrays = _read_npz(path)
        try:
            self._check(arrays)
        except ValueError as exc:
            raise CorruptShardError(path, str(exc)) from None
        return arrays

    def _publish(self, names: list[str], arrays: dict[str, np.ndarray]) -> str:
        """Write items ``names`` (sorted) as one shard, checked first: a wrong shard is never written."""
        arrays = {"ids": np.asarray(names, dtype=str), **arrays}
        self._check(arrays)
        shard = _shard_name(names)
        _write_npz(self.dir / f"{shard}.npz", arrays)
        self._verified.add(shard)
        return shard

    def ensure(self, ids: Sequence[str], sources: Sequence[str]) -> EnsureResult:
        """Featurise the items not stored yet (``sources[i]`` is the content of ``ids[i]``) as one new shard."""
        wanted = dict(zip(ids, sources))
        index = self._stored(wanted)
        missing = sorted(i for i in wanted if i not in index)
        shard = None
        if missing:
            shard = self._publish(missing, self._pack([wanted[i] for i in missing]))
            index.update(dict.fromkeys(missing, shard))
        return EnsureResult({i: index[i] for i in wanted}, len(missing), len(wanted) - len(missing), shard)

    def _shard_rows(
        self, ids: Sequence[str], shards: Sequence[str]
    ) -> Iterable[tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]]:
        """Per shard: its arrays (checked), the positions in ``ids`` it serves and the rows within the shard."""
        ids_arr = np.asarray(ids, dtype=str)
        shards_arr = np.asarray(shards, dtype=str)
        for shard in np.unique(shards_arr):
            arrays = self._read(str(shard))
            wanted = np.flatnonzero(shards_arr == shard)
            lookup = {item: row for row, item in enumerate(arrays["ids"].tolist())}
            try:
                rows = np.fromiter((lookup[i] for i in ids_arr[wanted]), dtype=np.int64, count=len(wanted))
            except KeyError as exc:
                raise KeyError(f"{exc.args[0]} is not in shard {shard} of {self.dir}") from None
            yield arrays, wanted, rows

    def _pack(self, sources: list[str]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _check(self, arrays: Mapping[str, np.ndarray]) -> None:
        """ValueError saying what is wrong with a shard's arrays (ids and the kind's own)."""
        raise NotImplementedError


def _ids(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    ids = arrays.get("ids")
    if ids is None or ids.ndim != 1 or ids.dtype.kind != "U":
        raise ValueError("no 1-D string array of ids")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("an id is stored twice")
    return ids


class DrugGraphStore(_ShardedStore):
    """Drug graphs as compact atom codes and bonds (`featurize.CompactMolecules`, ~10 bytes an atom),
    expanded into DrugBAN's features only when a batch is built."""

    kind = DRUG_KIND

    def _pack(self, sources: list[str]) -> dict[str, np.ndarray]:
        """Compact features of ``sources``, RDKit's work in the process's shared sandbox (`featurize.compact_molecules`)."""
        molecules, refused, _ = compact_molecules(sources)
        if refused:
            position, reason = refused[0]
            raise ValueError(f"cannot featurise {sources[position]!r}: {reason}")
        return self._arrays(molecules)

    @staticmethod
    def _arrays(molecules: CompactMolecules) -> dict[str, np.ndarray]:
        return {
            "codes": molecules.codes,
            "bonds": molecules.bonds,
            "num_atoms": molecules.num_atoms,
            "num_bonds": molecules.num_bonds,
        }

    @staticmethod
    def _check(arrays: Mapping[str, np.ndarray]) -> None:
        """Ids one per molecule; atom counts within the rules (`rules.MAX_DRUG_ATOMS`) and summing to the
        codes' rows, bond counts to the bonds'; feature columns in range; every bond between atoms of its molecule."""
        n = len(_ids(arrays))
        if "num_atoms" in arrays and arrays["num_atoms"].ndim == 1 and len(arrays["num_atoms"]) != n:
            raise ValueError(f"{n} ids for {len(arrays['num_atoms'])} molecules")
        num_atoms = _shape(arrays, "num_atoms", (n,), "iu")
        num_bonds = _shape(arrays, "num_bonds", (n,), "iu")
        if (num_atoms > MAX_DRUG_ATOMS).any():
            bad = _first(num_atoms > MAX_DRUG_ATOMS)
            raise ValueError(f"molecule {bad} has {num_atoms[bad]} atoms, more than {MAX_DRUG_ATOMS}")
        if (num_atoms < 0).any() or (num_bonds < 0).any():
            raise ValueError(f"molecule {_first((num_atoms < 0) | (num_bonds < 0))} has a negative atom or bond count")
        atoms, links = int(num_atoms.astype(np.int64).sum()), int(num_bonds.astype(np.int64).sum())
        if "codes" in arrays and len(arrays["codes"]) != atoms:
            raise ValueError(f"atom counts sum to {atoms}, the codes hold {len(arrays['codes'])} atoms")
        if "bonds" in arrays and len(arrays["bonds"]) != links:
            raise ValueError(f"bond counts sum to {links}, the bonds hold {len(arrays['bonds'])}")
        codes = _shape(arrays, "codes", (atoms, ATOM_CODE_WIDTH), "i")
        bonds = _shape(arrays, "bonds", (links, 2), "iu")
        columns = codes[:, :ONE_HOT_CODES]
        wrong = (columns < 0) | (columns > ATOM_FEATURE_DIM)
        if wrong.any():
            atom, col = np.argwhere(wrong)[0]
            raise ValueError(f"atom {atom} has a feature column {columns[atom, col]} outside 0..{ATOM_FEATURE_DIM}")
        owner_atoms = np.repeat(num_atoms.astype(np.int64), num_bonds.astype(np.int64))[:, None]
        wrong = (bonds < 0) | (bonds >= owner_atoms)
        if wrong.any():
            bond, end = np.argwhere(wrong)[0]
            molecule = int(np.searchsorted(np.cumsum(num_bonds.astype(np.int64)), bond, side="right"))
            raise ValueError(
                f"molecule {molecule} has a bond to atom {bonds[bond, end]}, outside its {num_atoms[molecule]} atoms"
            )

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

    @staticmethod
    def _check(arrays: Mapping[str, np.ndarray]) -> None:
        """One row of `PROTEIN_MAX_LENGTH` codes per id, each a letter of `rules.PROTEIN_ALPHABET` or 0 (padding)."""
        n = len(_ids(arrays))
        codes = _shape(arrays, "codes", (n, PROTEIN_MAX_LENGTH), "u")
        if codes.size and codes.max() > len(PROTEIN_ALPHABET):
            row, col = np.argwhere(codes > len(PROTEIN_ALPHABET))[0]
            raise ValueError(f"protein {row} has code {codes[row, col]}, outside 0..{len(PROTEIN_ALPHABET)}")

    def load(self, ids: Sequence[str], shards: Sequence[str]) -> torch.Tensor:
        """int64 codes [len(ids), 1200] of the proteins ``ids`` (stored in ``shards``), in that order."""
        out = np.zeros((len(ids), PROTEIN_MAX_LENGTH), dtype=np.int64)
        for arrays, wanted, rows in self._shard_rows(ids, shards):
            out[wanted] = arrays["codes"][rows]
        return torch.from_numpy(out)


class FeatureStore:
    """Drug graphs and protein codes under one root folder (local path or `UPath`)."""

    def __init__(self, root: StoragePath) -> None:
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
