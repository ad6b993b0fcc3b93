"""The applicability domain of a checkpoint: how near each screened drug and target is to its training data.

A score for a molecule unlike any training drug, or a protein unlike any training target, is an
extrapolation, however confident it looks. So every checkpoint carries a `DomainReference` of its training
pairs, written beside it at training time (`record_reference`, `reference_path`: ``best.pt.domain.parquet``),
and each reported pair gets:

- ``nearest_training_drug``, ``drug_similarity``: the training drug of highest ECFP4 Tanimoto (`nearest_drugs`);
- ``nearest_training_target``, ``target_similarity``: the training target of highest 3-mer Jaccard
  (`nearest_targets`, whose docstring says why that measure).

Both are Jaccard indices of bit sets, |A ∩ B| / |A ∪ B| in [0, 1], so the two columns read on one scale:
1 is a training input itself (or one indistinguishable by its bits), near 0 nothing alike. Ties go to
the first in reference order (drugs and targets sorted by id). The intersections of a block of queries
with every reference row are one sparse-by-dense product (torch's CSR kernel), so 10,000 drugs against
10,000 training drugs take seconds.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from upath import UPath

from drugrepo_assets.data.rules import PROTEIN_ALPHABET, PROTEIN_MAX_LENGTH, Refusal
from drugrepo_assets.data.sandbox import Sandbox, molecule_map
from drugrepo_assets.files import storage_path, write_bytes_atomic
from drugrepo_assets.screening.fingerprints import (
    ECFP_BITS,
    ECFP_BYTES,
    ECFP_RADIUS,
    KMER,
    KMER_BITS,
    KMER_BYTES,
    ecfp4,
    kmer_bits,
)

__all__ = [
    "DRUG_COLUMNS",
    "REFERENCE_SUFFIX",
    "TARGET_COLUMNS",
    "DomainReference",
    "build_reference",
    "drug_fingerprints",
    "jaccard_blocks",
    "nearest_drugs",
    "nearest_targets",
    "read_reference",
    "record_reference",
    "reference_for_checkpoint",
    "reference_path",
    "training_reference",
    "write_reference",
]

log = logging.getLogger(__name__)

REFERENCE_SUFFIX = ".domain.parquet"
"""What `reference_path` appends to a checkpoint's file name: ``best.pt`` → ``best.pt.domain.parquet``."""
DRUG_COLUMNS: tuple[str, ...] = ("nearest_training_drug", "drug_similarity")
"""The columns of `nearest_drugs`."""
TARGET_COLUMNS: tuple[str, ...] = ("nearest_training_target", "target_similarity")
"""The columns of `nearest_targets`."""

_METADATA_KEY = b"drugrepo.domain"
_FORMAT = "drugrepo.domain/1"
_SETTINGS: dict[str, object] = {
    "format": _FORMAT,
    "ecfp_radius": ECFP_RADIUS,
    "ecfp_bits": ECFP_BITS,
    "kmer": KMER,
    "alphabet": PROTEIN_ALPHABET,
    "max_residues": PROTEIN_MAX_LENGTH,
}
"""What a reference file's bits mean; a file written under other settings cannot be compared with this code's."""
_SCHEMA = pa.schema([("kind", pa.string()), ("id", pa.string()), ("bits", pa.binary())])
_CELLS = 2**22
"""Similarities computed at once (queries × reference rows), and dense query bits at once: a block takes ~150 MB
whatever the numbers of queries and reference rows."""


@dataclass(frozen=True, eq=False)
class DomainReference:
    """The distinct drugs and targets a checkpoint was trained on, as packed bit vectors (`screening.fingerprints`).

    Rows are sorted by id; ``drug_bits`` is uint8 [drugs, `ECFP_BYTES`] (ECFP4), ``target_bits`` uint8
    [targets, `KMER_BYTES`] (3-mer sets). ``refused_drugs`` counts the training molecules that could not be
    fingerprinted (left out).
    """

    drug_ids: tuple[str, ...]
    drug_bits: np.ndarray
    target_ids: tuple[str, ...]
    target_bits: np.ndarray
    refused_drugs: int = 0

    def __post_init__(self) -> None:
        expected = {"drug_bits": (len(self.drug_ids), ECFP_BYTES), "target_bits": (len(self.target_ids), KMER_BYTES)}
        for name, shape in expected.items():
            bits = getattr(self, name)
            if bits.dtype != np.uint8 or bits.shape != shape:
                raise ValueError(f"DomainReference.{name}: uint8 {shape} expected, got {bits.dtype} {bits.shape}")

    @functools.cached_property
    def _drug_matrix(self) -> _BitMatrix:
        return _BitMatrix.of(self.drug_bits, ECFP_BITS)

    @functools.cached_property
    def _target_matrix(self) -> _BitMatrix:
        return _BitMatrix.of(self.target_bits, KMER_BITS)


@dataclass(frozen=True)
class _BitMatrix:
    """Reference rows as a sparse 0/1 matrix (CSR, float32) and each row's number of set bits."""

    rows: torch.Tensor
    counts: np.ndarray

    @classmethod
    def of(cls, packed: np.ndarray, nbits: int) -> _BitMatrix:
        counts = np.bitwise_count(packed).sum(axis=1, dtype=np.int64)
        crow = np.concatenate([[0], np.cumsum(counts)])
        step = max(1, _CELLS // nbits)
        columns = [
            np.nonzero(np.unpackbits(packed[s : s + step], axis=1, count=nbits))[1] for s in range(0, len(packed), step)
        ]
        col = np.concatenate([np.zeros(0, dtype=np.int64), *columns]).astype(np.int64)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
            rows = torch.sparse_csr_tensor(
                torch.from_numpy(crow),
                torch.from_numpy(col),
                torch.ones(len(col), dtype=torch.float32),
                size=(len(packed), nbits),
                check_invariants=False,
            )
        return cls(rows, counts)

    def nearest(self, packed: np.ndarray, nbits: int) -> tuple[np.ndarray, np.ndarray]:
        """For each packed query row: the index of the reference row of highest Jaccard (the first of equals)
        and that Jaccard, in float64 as RDKit's Tanimoto computes it (−1 and NaN with no reference rows)."""
        index = np.full(len(packed), -1, dtype=np.int64)
        best = np.full(len(packed), np.nan)
        if len(self.counts) == 0:
            return index, best
        for s, similarity in self.similarities(packed, nbits):
            stop = s + similarity.shape[1]
            index[s:stop] = similarity.argmax(axis=0)
            best[s:stop] = similarity[index[s:stop], np.arange(stop - s)]
        return index, best

    def similarities(self, packed: np.ndarray, nbits: int) -> Iterator[tuple[int, np.ndarray]]:
        """The Jaccard of packed query rows with every reference row, a block of queries at a time: (the block's
        first query, float64 [reference, block]), as RDKit's Tanimoto computes it (0 where both are empty)."""
        step = max(1, min(_CELLS // max(1, len(self.counts)), _CELLS // nbits))
        for s in range(0, len(packed), step):
            block = packed[s : s + step]
            dense = np.unpackbits(block, axis=1, count=nbits).T.astype(np.float32)
            common = (self.rows @ torch.from_numpy(dense)).numpy().astype(np.float64)  # [reference, queries]
            union = self.counts[:, None] + np.bitwise_count(block).sum(axis=1, dtype=np.int64)[None, :] - common
            yield s, np.divide(common, union, out=np.zeros_like(common), where=union > 0)


def jaccard_blocks(reference: np.ndarray, queries: np.ndarray, nbits: int) -> Iterator[tuple[int, np.ndarray]]:
    """The Jaccard of every packed query row with every packed reference row (uint8, ``nbits`` bits a row), a
    block of queries at a time: (the block's first query, float64 [reference, block]); memory bounded by `_CELLS`."""
    return _BitMatrix.of(reference, nbits).similarities(queries, nbits)


def drug_fingerprints(smiles: Sequence[str], sandbox: Sandbox | None = None) -> tuple[np.ndarray, list[Refusal | None]]:
    """Packed ECFP4 bits of each SMILES (uint8 [n, `ECFP_BYTES`]; zeros where refused) and its refusal or None,
    computed in ``sandbox`` (else the process's shared one), so a hostile molecule costs its budget only."""
    answers = molecule_map(ecfp4, list(smiles), sandbox=sandbox)
    bits = np.zeros((len(answers), ECFP_BYTES), dtype=np.uint8)
    refusals: list[Refusal | None] = []
    for i, answer in enumerate(answers):
        if isinstance(answer, Refusal):
            refusals.append(answer)
        else:
            bits[i] = np.frombuffer(answer, dtype=np.uint8)
            refusals.append(None)
    return bits, refusals


def _distinct(table: pd.DataFrame, value: str, what: str) -> pd.DataFrame:
    """The first row of each id of ``table`` (columns ``id`` and ``value``), sorted by id."""
    missing = [c for c in ("id", value) if c not in table.columns]
    if missing:
        raise ValueError(f"the training {what} need columns id and {value} (missing: {', '.join(missing)})")
    rows = table[["id", value]].astype({"id": str, value: str}).drop_duplicates("id")
    return rows.sort_values("id", kind="stable").reset_index(drop=True)


def build_reference(drugs: pd.DataFrame, targets: pd.DataFrame, sandbox: Sandbox | None = None) -> DomainReference:
    """The reference of a training set: its distinct drugs (``id``, ``smiles``) and targets (``id``, ``sequence``).

    Molecules are fingerprinted in ``sandbox`` (`drug_fingerprints`); one that is refused is left out,
    counted in ``refused_drugs`` and logged.
    """
    drugs, targets = _distinct(drugs, "smiles", "drugs"), _distinct(targets, "sequence", "targets")
    bits, refusals = drug_fingerprints(drugs["smiles"].tolist(), sandbox)
    kept = np.array([r is None for r in refusals], dtype=bool)
    refused = [(i, r) for i, r in zip(drugs["id"], refusals) if r is not None]
    if refused:
        first_id, first = refused[0]
        log.warning(
            "%d of %d training drugs left out of the applicability domain (first: %s, %s)",
            len(refused),
            len(drugs),
            first_id,
            first,
        )
    return DomainReference(
        drug_ids=tuple(drugs["id"][kept]),
        drug_bits=bits[kept],
        target_ids=tuple(targets["id"]),
        target_bits=kmer_bits(targets["sequence"].tolist()),
        refused_drugs=len(refused),
    )


def training_reference(pairs: pd.DataFrame, sandbox: Sandbox | None = None) -> DomainReference:
    """The reference of validated training pairs (``drug_id``, ``smiles``, ``target_id``, ``protein``, as
    `data.validate` and `data.splits` write them)."""
    drugs = pairs[["drug_id", "smiles"]].rename(columns={"drug_id": "id"})
    targets = pairs[["target_id", "protein"]].rename(columns={"target_id": "id", "protein": "sequence"})
    return build_reference(drugs, targets, sandbox)


def _as_path(path: str | Path | UPath) -> UPath:
    return path if isinstance(path, UPath) else storage_path(str(path))


def write_reference(path: str | Path | UPath, ref: DomainReference) -> None:
    """Write ``ref`` as one Parquet file (zstd; kind, id, packed bits), locally or on S3, atomically."""
    kinds = ["drug"] * len(ref.drug_ids) + ["target"] * len(ref.target_ids)
    bits = [row.tobytes() for row in ref.drug_bits] + [row.tobytes() for row in ref.target_bits]
    settings = {**_SETTINGS, "refused_drugs": ref.refused_drugs}
    table = pa.table(
        [
            pa.array(kinds, pa.string()),
            pa.array([*ref.drug_ids, *ref.target_ids], pa.string()),
            pa.array(bits, pa.binary()),
        ],
        schema=_SCHEMA.with_metadata({_METADATA_KEY: json.dumps(settings).encode()}),
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    write_bytes_atomic(_as_path(path), buffer.getvalue())


def _rows(table: pa.Table, kind: str, width: int, where: str) -> tuple[tuple[str, ...], np.ndarray]:
    """The ids and packed bits of one kind of row; ValueError naming the file and row of a wrong width."""
    rows = table.filter(pc.equal(table["kind"], kind))
    bits = rows["bits"].to_pylist()
    for i, value in enumerate(bits):
        if value is None or len(value) != width:
            raise ValueError(
                f"{where}: {kind} row {i + 1} ({rows['id'][i]}) has {0 if value is None else len(value)} bytes of bits, not {width}"
            )
    packed = np.frombuffer(b"".join(bits), dtype=np.uint8).reshape(len(bits), width).copy()
    return tuple(str(i) for i in rows["id"].to_pylist()), packed


def read_reference(path: str | Path | UPath) -> DomainReference:
    """The reference written by `write_reference`; a ValueError naming the file if it is not one, or was
    written under other fingerprint settings."""
    where = str(path)
    data = _as_path(path).read_bytes()
    try:
        table = pq.read_table(io.BytesIO(data))
        settings = json.loads((table.schema.metadata or {})[_METADATA_KEY])
    except (pa.ArrowException, KeyError, ValueError) as exc:
        raise ValueError(f"{where}: not an applicability-domain reference ({type(exc).__name__}: {exc})") from None
    different = {k: settings.get(k) for k, v in _SETTINGS.items() if settings.get(k) != v}
    if different or table.schema.names != _SCHEMA.names:
        raise ValueError(f"{where}: written with {different or table.schema.names}, not this version's {_SETTINGS}")
    drug_ids, drug_bits = _rows(table, "drug", ECFP_BYTES, where)
    target_ids, target_bits = _rows(table, "target", KMER_BYTES, where)
    return DomainReference(drug_ids, drug_bits, target_ids, target_bits, int(settings.get("refused_drugs", 0)))


def reference_path(checkpoint: str | Path | UPath) -> UPath:
    """Where the reference of a checkpoint file lies: beside it, its name + `REFERENCE_SUFFIX`."""
    path = _as_path(checkpoint)
    return path.with_name(path.name + REFERENCE_SUFFIX)


def record_reference(checkpoint: str | Path | UPath, pairs: pd.DataFrame, sandbox: Sandbox | None = None) -> UPath:
    """Write the reference of training ``pairs`` (`training_reference`) beside ``checkpoint``; returns its path.

    Training calls it before the checkpoint is published, so a published checkpoint has its reference.
    """
    path = reference_path(checkpoint)
    write_reference(path, training_reference(pairs, sandbox))
    return path


def reference_for_checkpoint(checkpoint: str | Path | UPath) -> DomainReference | None:
    """The reference recorded beside ``checkpoint``, or None when there is none (trained before references
    were recorded, or copied without it)."""
    path = reference_path(checkpoint)
    if not path.exists():
        return None
    return read_reference(path)


def _answer(ids: tuple[str, ...], index: np.ndarray, similarity: np.ndarray, columns: tuple[str, ...]) -> pd.DataFrame:
    names = np.array([None, *ids], dtype=object)[index + 1]  # index −1 (nothing to compare) → None
    return pd.DataFrame({columns[0]: names, columns[1]: similarity.astype(np.float64)})


def nearest_drugs(ref: DomainReference, smiles: Sequence[str], sandbox: Sandbox | None = None) -> pd.DataFrame:
    """For each SMILES, in order: the training drug of highest ECFP4 Tanimoto and that Tanimoto (`DRUG_COLUMNS`).

    Tanimoto is |A ∩ B| / |A ∪ B| of the 2,048-bit Morgan radius-2 fingerprints, equal to RDKit's
    ``DataStructs.TanimotoSimilarity``. A molecule that cannot be fingerprinted (the input rules refuse
    it, or it passes its sandbox budget) gets None and NaN.
    """
    distinct = list(dict.fromkeys(smiles))
    bits, refusals = drug_fingerprints(distinct, sandbox)
    index, similarity = ref._drug_matrix.nearest(bits, ECFP_BITS)
    refused = np.array([r is not None for r in refusals], dtype=bool)
    index[refused], similarity[refused] = -1, np.nan
    position = {s: i for i, s in enumerate(distinct)}
    rows = np.array([position[s] for s in smiles], dtype=np.int64)
    return _answer(ref.drug_ids, index[rows], similarity[rows], DRUG_COLUMNS)


def nearest_targets(ref: DomainReference, sequences: Sequence[str]) -> pd.DataFrame:
    """For each protein, in order: the training target of highest 3-mer Jaccard and that Jaccard (`TARGET_COLUMNS`).

    A protein is the set of its overlapping 3-residue words (`fingerprints.kmer_codes`: as the model reads
    it, its first 1,200 residues); similarity is |A ∩ B| / |A ∪ B| of two such sets. Why this measure:

    - alignment-free and cheap: a set is built in linear time and two sets compare as bit vectors, so
      20,000 proteins against thousands of training targets is a sparse product, where Smith-Waterman
      identity costs O(L²) per pair (about 10¹³ cell updates for that screen);
    - k = 3 is the word size of BLASTP's seeds: 25³ = 15,625 possible words, of which a protein of 1,000
      residues holds fewer than 1,000, so unrelated proteins share few (Jaccard ~0.02 to 0.05) while
      homologues share many. With k = 2 (625 words) nearly every protein holds most dimers and every
      pair looks alike; with k = 4 (390,625 words) distant homologues share almost no exact word;
    - a Jaccard of sets, like the drugs' Tanimoto (itself a Jaccard of bits), lies in [0, 1] and is symmetric,
      so both columns read on one scale. It measures shared local words, not alignment identity.

    A protein with no 3-mer of the alphabet (shorter than 3 residues) gets None and NaN.
    """
    bits = kmer_bits(list(sequences))
    index, similarity = ref._target_matrix.nearest(bits, KMER_BITS)
    empty = ~bits.any(axis=1)
    index[empty], similarity[empty] = -1, np.nan
    return _answer(ref.target_ids, index, similarity, TARGET_COLUMNS)
