"""The bit vectors the applicability domain compares: a molecule's ECFP4, a protein's set of 3-mers.

Apart from `screening.domain` because `ecfp4` runs in the molecule sandbox's workers (`data.sandbox`),
which import RDKit and numpy only, never pandas or torch. Both kinds of vector are packed with
``np.packbits`` (one uint8 per 8 bits, the first bit the highest), the form a `DomainReference` stores.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from rdkit.Chem import rdFingerprintGenerator

from drugrepo_assets.data.rules import PROTEIN_ALPHABET, PROTEIN_MAX_LENGTH, Refusal, clean_protein, parse_smiles

__all__ = [
    "ECFP_BITS",
    "ECFP_BYTES",
    "ECFP_RADIUS",
    "KMER",
    "KMER_BITS",
    "KMER_BYTES",
    "ecfp4",
    "kmer_bits",
    "kmer_codes",
]

ECFP_RADIUS = 2
"""Morgan radius of ECFP4 (diameter 4)."""
ECFP_BITS = 2048
"""Length of the folded ECFP4 bit vector (RDKit's ``GetMorganGenerator(radius=2, fpSize=2048)``)."""
ECFP_BYTES = ECFP_BITS // 8
KMER = 3
"""Residues per word of a protein's word set (`screening.domain.nearest_targets` says why 3)."""
KMER_BITS = len(PROTEIN_ALPHABET) ** KMER
"""Possible words: every 3-letter word over DrugBAN's 25 protein letters (15,625)."""
KMER_BYTES = -(-KMER_BITS // 8)

_LETTER_CODES = np.full(256, -1, dtype=np.int64)
_LETTER_CODES[np.frombuffer(PROTEIN_ALPHABET.encode("ascii"), dtype=np.uint8)] = np.arange(len(PROTEIN_ALPHABET))


@functools.cache
def _morgan() -> rdFingerprintGenerator.FingerprintGenerator64:
    """RDKit's ECFP4 generator, made once per process (generators do not pickle, so never sent to a worker)."""
    return rdFingerprintGenerator.GetMorganGenerator(radius=ECFP_RADIUS, fpSize=ECFP_BITS)


def ecfp4(smiles: str) -> bytes | Refusal:
    """The packed ECFP4 bits of one SMILES (`ECFP_BYTES` bytes), or why the input rules refuse it
    (`data.rules.parse_smiles`); a molecule sandbox's work on one molecule (`data.sandbox.molecule_map`)."""
    mol, refusal = parse_smiles(smiles)
    if mol is None:
        assert refusal is not None
        return refusal
    return np.packbits(_morgan().GetFingerprintAsNumPy(mol).astype(bool)).tobytes()


def kmer_codes(sequence: str) -> np.ndarray:
    """The distinct 3-mers of a protein as the model reads it (cleaned, its first `PROTEIN_MAX_LENGTH`
    residues), each coded ``a·25² + b·25 + c`` over `PROTEIN_ALPHABET`, sorted; a word holding a letter
    outside the alphabet is left out."""
    residues = clean_protein(sequence)[:PROTEIN_MAX_LENGTH].encode("ascii", "replace")  # non-ASCII → "?": no letter
    letters = _LETTER_CODES[np.frombuffer(residues, dtype=np.uint8)]
    if len(letters) < KMER:
        return np.zeros(0, dtype=np.int64)
    words = np.lib.stride_tricks.sliding_window_view(letters, KMER)
    size = len(PROTEIN_ALPHABET)
    codes = words @ (size ** np.arange(KMER - 1, -1, -1))
    return np.unique(codes[(words >= 0).all(axis=1)])


def kmer_bits(sequences: Sequence[str]) -> np.ndarray:
    """The packed 3-mer sets of proteins: a uint8 [len(sequences), `KMER_BYTES`] array (`kmer_codes`)."""
    packed = np.zeros((len(sequences), KMER_BYTES), dtype=np.uint8)
    row = np.zeros(KMER_BYTES * 8, dtype=bool)
    for i, sequence in enumerate(sequences):
        codes = kmer_codes(sequence)
        row[codes] = True
        packed[i] = np.packbits(row)
        row[codes] = False
    return packed
