"""Single-linkage clusters of drugs and of proteins, the groups DrugBAN's cross-domain split draws from.

DrugBAN (Bai et al., "Interpretable bilinear attention network with domain adaptation improves drug–target
prediction", Nature Machine Intelligence 5, 126–136, 2023; Methods, cross-domain evaluation, "clustering-based
pair split") clusters drugs on ECFP4 fingerprints and proteins on their pseudo amino-acid composition (PSC)
with the single-linkage algorithm, then draws 60 % of each kind's clusters for the source domain
(`data.splits.cluster_split`). Its authors ship their clusters (the ``drug_cluster`` and ``target_cluster``
columns of ``datasets/{bindingdb,biosnap}/cluster/*.csv`` in github.com/peizhenbai/DrugBAN; the code that
made them is not published, peizhenbai/DrugBAN issue #12), and the choices below were checked against them:

- Drugs: ECFP4 (Morgan radius 2) folded to `DRUG_BITS` = 1,024 bits, Jaccard (Tanimoto) distance ≤ 0.5.
  The 2,048-bit vectors of `screening.fingerprints` are folded by OR-ing their halves, which is exactly
  RDKit's 1,024-bit fingerprint (a Morgan bit is its hash modulo the length). With 1,024 bits every pair
  joined here is joined in the shipped target-domain clusters, and 97 % (BioSNAP) and 91 % (BindingDB) of
  theirs are joined here (the rest chain through drugs outside those files); with 2,048 bits, 57 % of BioSNAP's.
- Proteins: Chou's type-1 PseAAC (Chou, Proteins 43, 246–255, 2001) over the 20 standard residues with the
  three properties of Chou's definition and of PyBioMed's ``_GetPseudoAAC`` (the PSC of DeepPurpose, which
  the paper's baselines use): Tanford hydrophobicity, Hopp–Woods hydrophilicity and side-chain mass, each
  standardised over the 20 residues; λ = 10 correlation tiers, weight w = 0.05 (PyBioMed's defaults), so
  30 numbers a protein. Cosine distance ≤ `PROTEIN_DISTANCE` = 0.004, not 0.5: PseAAC vectors are all
  alike (the median cosine distance between two Human proteins is 0.035), so at 0.5 every protein falls
  in one cluster, unlike the paper's mostly single-protein clusters. 0.004 gives the shipped files' number
  of protein clusters (BindingDB target test: 279 here against 271; BioSNAP target domain: 766 against 775).
- Single linkage at threshold t: two items join when their distance is ≤ t, and a cluster is a connected
  component of that graph (the single-linkage dendrogram cut at t). Components come from a union-find over
  the pairs within t, a block of rows at a time, so memory stays bounded by a block (BindingDB's ~14,000
  drugs never make a 14,000² matrix).

Cluster labels are the position of a cluster's first member in the order given, so the same items in the
same order always get the same labels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd

from drugrepo_assets.data.rules import clean_protein
from drugrepo_assets.data.sandbox import Sandbox
from drugrepo_assets.screening.fingerprints import ECFP_BITS

__all__ = [
    "DRUG_BITS",
    "DRUG_DISTANCE",
    "PROTEIN_DISTANCE",
    "PSEAAC_LAMBDA",
    "PSEAAC_PROPERTIES",
    "PSEAAC_RESIDUES",
    "PSEAAC_WEIGHT",
    "cluster_rows",
    "cosine_clusters",
    "drug_clusters",
    "fold",
    "jaccard_clusters",
    "pair_clusters",
    "protein_clusters",
    "pseaac",
]

DRUG_DISTANCE = 0.5
"""DrugBAN's single-linkage threshold for drugs: ECFP4 Jaccard distance."""
DRUG_BITS = 1024
"""The fold of the ECFP4 vectors compared (DrugBAN's shipped clusters match 1,024 bits, not 2,048)."""
PROTEIN_DISTANCE = 0.004
"""The single-linkage threshold for proteins: PseAAC cosine distance (the module docstring says why not 0.5)."""
PSEAAC_LAMBDA = 10
"""Sequence-order correlation tiers of the PseAAC (θ₁ … θ_λ): PyBioMed's default, 20 + 10 numbers a protein."""
PSEAAC_WEIGHT = 0.05
"""Chou's weight w of the sequence-order terms against the composition (PyBioMed's default)."""
PSEAAC_RESIDUES = "ARNDCQEGHILKMFPSTWYV"
"""The 20 standard residues, in the order of the composition part; other letters (X, B, Z, U, O) are skipped."""
PSEAAC_PROPERTIES: dict[str, tuple[float, ...]] = {
    # Tanford, JACS 84, 4240 (1962)
    "hydrophobicity": (
        0.62, -2.53, -0.78, -0.90, 0.29, -0.85, -0.74, 0.48, -0.40, 1.38,
        1.06, -1.50, 0.64, 1.19, 0.12, -0.18, -0.05, 0.81, 0.26, 1.08,
    ),
    # Hopp & Woods, PNAS 78, 3824 (1981)
    "hydrophilicity": (
        -0.5, 3.0, 0.2, 3.0, -1.0, 0.2, 3.0, 0.0, -0.5, -1.8,
        -1.8, 3.0, -1.3, -2.5, 0.0, 0.3, -0.4, -3.4, -2.3, -1.5,
    ),
    # side-chain mass (CRC Handbook, 66th ed.)
    "side_chain_mass": (
        15.0, 101.0, 58.0, 59.0, 47.0, 72.0, 73.0, 1.0, 82.0, 57.0,
        57.0, 73.0, 75.0, 91.0, 42.0, 31.0, 45.0, 130.0, 107.0, 43.0,
    ),
}  # fmt: skip
"""Chou's three residue properties, in `PSEAAC_RESIDUES` order, before standardisation."""

_CELLS = 2**22
"""Distances computed at once (block rows × all rows): a protein block takes ~32 MB in float64."""
_CODES = np.full(256, -1, dtype=np.int64)
_CODES[np.frombuffer(PSEAAC_RESIDUES.encode("ascii"), dtype=np.uint8)] = np.arange(len(PSEAAC_RESIDUES))


def _theta_table() -> np.ndarray:
    """Θ(a, b): the mean over the properties of the squared difference of the standardised values (20 × 20)."""
    values = np.array(list(PSEAAC_PROPERTIES.values()), dtype=np.float64)  # [properties, 20]
    standard = (values - values.mean(axis=1, keepdims=True)) / values.std(axis=1, keepdims=True)
    return ((standard[:, :, None] - standard[:, None, :]) ** 2).mean(axis=0)


_THETA = _theta_table()


def pseaac(sequence: str, lam: int = PSEAAC_LAMBDA, weight: float = PSEAAC_WEIGHT) -> np.ndarray:
    """Chou's type-1 pseudo amino-acid composition of one protein: 20 + ``lam`` float64 numbers summing to 1.

    ``X_u = f_u / (1 + w Σθ)`` for the residue frequencies ``f_u`` and ``X_{20+k} = w θ_k / (1 + w Σθ)``,
    where ``θ_k`` is the mean Θ of the residues k apart. Only the standard residues count (the others
    are skipped, closing the gap); a tier the sequence is too short for has θ = 0; a sequence without a
    standard residue is all zeros. Unrounded (PyBioMed rounds to 3 places and scales by 100).
    """
    codes = _CODES[np.frombuffer(clean_protein(sequence).encode("ascii", "replace"), dtype=np.uint8)]
    codes = codes[codes >= 0]
    out = np.zeros(len(PSEAAC_RESIDUES) + lam, dtype=np.float64)
    if len(codes) == 0:
        return out
    frequency = np.bincount(codes, minlength=len(PSEAAC_RESIDUES)) / len(codes)
    theta = np.array([_THETA[codes[:-k], codes[k:]].mean() if k < len(codes) else 0.0 for k in range(1, lam + 1)])
    denominator = 1.0 + weight * theta.sum()
    out[: len(PSEAAC_RESIDUES)] = frequency / denominator
    out[len(PSEAAC_RESIDUES) :] = weight * theta / denominator
    return out


def _union(parent: np.ndarray, first: np.ndarray, second: np.ndarray) -> None:
    """Join the sets of each pair (``first[i]``, ``second[i]``) in the forest ``parent``, in place.

    Every root points to itself and every other node to a smaller index, so hooking the larger root of
    each pair under the smaller (the smallest, where several pairs share a root) never makes a cycle;
    pointer jumping then flattens the forest. Rounds repeat until each pair shares a root.
    """
    while True:
        _flatten(parent)
        a, b = parent[first], parent[second]
        differ = a != b
        if not differ.any():
            return
        a, b = a[differ], b[differ]
        np.minimum.at(parent, np.maximum(a, b), np.minimum(a, b))


def _flatten(parent: np.ndarray) -> None:
    """Point every node of the forest ``parent`` straight at its root, in place."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return
        parent[:] = grand


def cluster_rows(n: int, near: Iterator[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Single-linkage cluster labels of ``n`` items from the pairs within the threshold, given a block at a time
    (index arrays ``i``, ``j``): each item's label is its cluster's first member (int64 [n])."""
    parent = np.arange(n, dtype=np.int64)
    for first, second in near:
        if len(first):
            _union(parent, first.astype(np.int64), second.astype(np.int64))
    _flatten(parent)
    return parent


def _jaccard_pairs(bits: np.ndarray, nbits: int, distance: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs (i < j) of packed bit rows whose Jaccard distance is at most ``distance``, block by block."""
    from drugrepo_assets.screening.domain import jaccard_blocks

    for start, similarity in jaccard_blocks(bits, bits, nbits):
        reference, query = np.nonzero(1.0 - similarity <= distance)
        query = query + start
        keep = reference < query
        yield reference[keep], query[keep]


def drug_clusters(smiles: Sequence[str], distance: float = DRUG_DISTANCE, sandbox: Sandbox | None = None) -> np.ndarray:
    """Single-linkage cluster labels of molecules on `DRUG_BITS` ECFP4 Jaccard distance ≤ ``distance`` (int64 [n]).

    Fingerprints are computed in ``sandbox`` (else the process's shared one); a molecule the input rules
    refuse has no bits, shares none with anything, and so is a cluster of its own.
    """
    from drugrepo_assets.screening.domain import drug_fingerprints

    bits, _refusals = drug_fingerprints(smiles, sandbox)
    return jaccard_clusters(fold(bits), DRUG_BITS, distance)


def jaccard_clusters(bits: np.ndarray, nbits: int, distance: float) -> np.ndarray:
    """Single-linkage cluster labels of packed bit rows (uint8, ``nbits`` bits a row) on Jaccard distance ≤ ``distance``."""
    return cluster_rows(len(bits), _jaccard_pairs(bits, nbits, distance))


def fold(bits: np.ndarray, nbits: int = DRUG_BITS) -> np.ndarray:
    """Packed ECFP4 rows (`ECFP_BITS` bits) folded to ``nbits`` by OR-ing equal slices: RDKit's own ``nbits``
    fingerprint, since a Morgan bit is its hash modulo the length (``nbits`` must divide `ECFP_BITS` by a power of 2)."""
    if nbits % 8 or ECFP_BITS % nbits or (ECFP_BITS // nbits) & (ECFP_BITS // nbits - 1):
        raise ValueError(f"cannot fold {ECFP_BITS} bits to {nbits}")
    width = nbits // 8
    folded = bits[:, :width].copy()
    for start in range(width, bits.shape[1], width):
        folded |= bits[:, start : start + width]
    return folded


def _cosine_pairs(vectors: np.ndarray, distance: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The pairs (i < j) of rows whose cosine distance is at most ``distance``, block by block (a zero row: none)."""
    norms = np.linalg.norm(vectors, axis=1)
    unit = np.divide(vectors, norms[:, None], out=np.zeros_like(vectors), where=norms[:, None] > 0)
    step = max(1, _CELLS // max(1, len(unit)))
    for start in range(0, len(unit), step):
        similarity = unit[start : start + step] @ unit.T  # [block, all]
        within = (1.0 - similarity <= distance) & (norms[start : start + step, None] > 0) & (norms[None, :] > 0)
        row, column = np.nonzero(within)
        row = row + start
        keep = row < column
        yield row[keep], column[keep]


def protein_clusters(sequences: Sequence[str], distance: float = PROTEIN_DISTANCE) -> np.ndarray:
    """Single-linkage cluster labels of proteins on PseAAC (`pseaac`) cosine distance ≤ ``distance`` (int64 [n])."""
    width = len(PSEAAC_RESIDUES) + PSEAAC_LAMBDA  # not -1: no proteins is a [0, width] table too
    vectors = np.array([pseaac(s) for s in sequences], dtype=np.float64).reshape(len(sequences), width)
    return cosine_clusters(vectors, distance)


def cosine_clusters(vectors: np.ndarray, distance: float) -> np.ndarray:
    """Single-linkage cluster labels of float rows on cosine distance ≤ ``distance`` (a zero row is alone)."""
    return cluster_rows(len(vectors), _cosine_pairs(vectors, distance))


def pair_clusters(valid: pd.DataFrame, sandbox: Sandbox | None = None) -> tuple[pd.Series, pd.Series]:
    """The cluster of each distinct drug (by ``drug_id``) and target (by ``target_id``) of validated pairs.

    Items are clustered in id order, so a label (its cluster's first member there) does not depend on
    the order of the rows; `drug_clusters` and `protein_clusters` say how.
    """
    drugs = valid[["drug_id", "smiles"]].drop_duplicates("drug_id").sort_values("drug_id", kind="stable")
    targets = valid[["target_id", "protein"]].drop_duplicates("target_id").sort_values("target_id", kind="stable")
    drug_labels = drug_clusters(drugs["smiles"].tolist(), sandbox=sandbox)
    target_labels = protein_clusters(targets["protein"].tolist())
    return (
        pd.Series(drug_labels, index=drugs["drug_id"].to_numpy(), name="drug_cluster"),
        pd.Series(target_labels, index=targets["target_id"].to_numpy(), name="target_cluster"),
    )
