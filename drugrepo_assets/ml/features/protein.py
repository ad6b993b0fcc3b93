"""Protein encoding for DrugBAN: its ``integer_label_protein``, vectorised with a byte lookup table.

`encode_protein` / `encode_proteins` reproduce it: letters of `PROTEIN_ALPHABET` (1-based, case-insensitive)
in the first `PROTEIN_MAX_LENGTH` residues, anything else 0 (padding), named in one warning per call.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from drugrepo_assets.data.rules import PROTEIN_ALPHABET, PROTEIN_MAX_LENGTH

logger = logging.getLogger(__name__)


def _protein_byte_table() -> np.ndarray:
    """256-entry table: ASCII byte -> DrugBAN code (upper and lower case), 0 for the rest."""
    table = np.zeros(256, dtype=np.int64)
    for code, letter in enumerate(PROTEIN_ALPHABET, start=1):
        table[ord(letter)] = code
        table[ord(letter.lower())] = code
    return table


_PROTEIN_TABLE = _protein_byte_table()
_PROTEIN_CODES = {letter: code for code, letter in enumerate(PROTEIN_ALPHABET, start=1)}


def _warn_unknown(characters: set[str]) -> None:
    """Log, once per call, the characters that were encoded as padding (DrugBAN warns too)."""
    if characters:
        logger.warning(
            "characters %s are not in the protein alphabet; encoded as 0 (padding)",
            ", ".join(repr(c) for c in sorted(characters)),
        )


def _encode_non_ascii(sequence: str, max_length: int) -> tuple[np.ndarray, set[str]]:
    """Slow path for non-ASCII input: per-character str.upper() exactly as DrugBAN does."""
    encoding = np.zeros(max_length, dtype=np.int64)
    unknown: set[str] = set()
    for i, char in enumerate(sequence[:max_length]):
        code = _PROTEIN_CODES.get(char.upper(), 0)
        encoding[i] = code
        if code == 0:
            unknown.add(char)
    return encoding, unknown


def _encode_protein_rows(sequences: Sequence[str], max_length: int) -> tuple[np.ndarray, set[str]]:
    """Encode sequences into an [N, max_length] int64 matrix and collect unknown characters."""
    out = np.zeros((len(sequences), max_length), dtype=np.int64)
    unknown: set[str] = set()
    if max_length == 0 or len(sequences) == 0:
        return out, unknown
    lengths = np.fromiter((min(len(s), max_length) for s in sequences), dtype=np.int64)
    try:
        raw = np.array(sequences, dtype=f"S{max_length}")
        ascii_rows = np.arange(len(sequences))
    except UnicodeEncodeError:
        is_ascii = [s.isascii() for s in sequences]
        ascii_rows = np.flatnonzero(is_ascii)
        raw = np.array([sequences[i] for i in ascii_rows.tolist()], dtype=f"S{max_length}")
        for i in np.flatnonzero(~np.asarray(is_ascii)).tolist():
            out[i], bad = _encode_non_ascii(sequences[i], max_length)
            unknown |= bad
    if ascii_rows.size:
        byte_matrix = raw.view(np.uint8).reshape(ascii_rows.size, max_length)
        codes = _PROTEIN_TABLE[byte_matrix]
        out[ascii_rows] = codes
        in_sequence = np.arange(max_length) < lengths[ascii_rows, None]
        bad_bytes = np.unique(byte_matrix[in_sequence & (codes == 0)])
        unknown |= {chr(b) for b in bad_bytes.tolist()}
    return out, unknown


def encode_protein(sequence: str, max_length: int = PROTEIN_MAX_LENGTH) -> np.ndarray:
    """Integer-encode one amino-acid sequence like DrugBAN's integer_label_protein (int64).

    Letters map through PROTEIN_ALPHABET (1-based, case-insensitive); anything else becomes 0.
    """
    out, unknown = _encode_protein_rows([sequence], max_length)
    _warn_unknown(unknown)
    return out[0]


def encode_proteins(sequences: Sequence[str], max_length: int = PROTEIN_MAX_LENGTH) -> np.ndarray:
    """Vectorised encode_protein over many sequences: an [N, max_length] int64 matrix.

    Uses a 256-entry byte lookup table over a fixed-width byte matrix (no per-character loop).
    """
    out, unknown = _encode_protein_rows(list(sequences), max_length)
    _warn_unknown(unknown)
    return out
