"""One table of edge-case inputs and the input rules' verdict on each, shared by every surface's test.

Each verdict is the rules' refusal as text (``"SMILES: …"``, ``"Protein: …"``) or ``""`` for an
accepted value: validation, predict, screen, train, the screening assets and the API must all give it.
"""

from __future__ import annotations

from drugrepo_assets.data.rules import MAX_PROTEIN_CHARS, MAX_SMILES_CHARS, parse_smiles, protein_refusal

SMILES_CASES: dict[str, str] = {
    "plain": "CCO",
    "padded": "  CCO  ",
    "salt": "[Na+].[Cl-]",
    "aromatic": "c1ccccc1",
    "at_limit": "C" * 290,
    "blank": "   ",
    "syntax": "C1CC",
    "words": "not a smiles",
    "valence": "C(C)(C)(C)(C)C",
    "kekulize": "c1cccc1",
    "over_limit": "C" * 291,
    "deuterated": "[2H]C([2H])([2H])" + "C" * 288,  # 289 heavy atoms, 292 atoms in the model's graph
    "hidden_atoms": "C" * 289 + ".[H][H]",  # 289 atom symbols, 291 atoms once parsed
    "big_ring": "C1" + "C" * 9000 + "1",  # RDKit's ring perception is ~quadratic: refused before parsing
    "too_long": "C" * (MAX_SMILES_CHARS + 1),
    "nul": "C\x00C",
    "inner_space": "CC O",  # RDKit would parse "CC" and call "O" a name
}
"""Edge-case SMILES by name (every one can be written to a CSV file)."""

PROTEIN_CASES: dict[str, str] = {
    "plain": "MKTAYIAKQRQISFVKSHFSRQ",
    "lower": "mktayiakqrqisfvkshfsrq",
    "padded": "  MKTAYIAKQ ",
    "blank": "  ",
    "letter_j": "MKJAY",
    "digits": "MK1-AY",
    "inner_space": "MKT AY",
    "unicode_folding": "ßﬀıſ",  # str.upper() would make these "SSFFIS"
    "too_long": "M" * (MAX_PROTEIN_CHARS + 1),
}
"""Edge-case protein sequences by name."""


def smiles_verdict(smiles: str) -> str:
    """The input rules' verdict on a SMILES: its refusal as text, or '' when accepted."""
    _mol, refusal = parse_smiles(smiles)
    return "" if refusal is None else str(refusal)


def protein_verdict(sequence: str) -> str:
    """The input rules' verdict on a protein sequence: its refusal as text, or '' when accepted."""
    refusal = protein_refusal(sequence)
    return "" if refusal is None else str(refusal)
