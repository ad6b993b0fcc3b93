"""The input rules: what a SMILES, a protein sequence and a label must be for DrugBAN to score them.

Validation, the CLI, the screening stage, the API and the model all ask these functions, so one input
gets one verdict everywhere. The order is the cheap checks first: a SMILES is refused for its length
and for the atoms its text certainly holds *before* RDKit parses it (a long chain or a huge ring costs
RDKit ~quadratic time), then for the atoms of the parsed molecule, counted as the model counts them
(every atom of the graph, hydrogens written as isotopes included), before any canonical ranking.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rdkit import Chem

__all__ = [
    "LABEL_VALUES",
    "MAX_DRUG_ATOMS",
    "MAX_PROTEIN_CHARS",
    "MAX_RINGS",
    "MAX_SMILES_CHARS",
    "MIN_CANDIDATE_HEAVY_ATOMS",
    "MOLECULE_CPU_SECONDS",
    "MOLECULE_MEMORY_BYTES",
    "PROTEIN_ALPHABET",
    "PROTEIN_MAX_LENGTH",
    "RULE_CODES",
    "SCREENING_CODES",
    "Refusal",
    "candidate_refusal",
    "canonical_smiles",
    "clean_protein",
    "label_refusal",
    "missing_refusal",
    "over_budget_refusal",
    "parse_label",
    "parse_smiles",
    "protein_refusal",
    "ring_refusal",
    "smiles_refusal",
    "structure_refusal",
    "written_smiles",
]

MAX_DRUG_ATOMS = 290
"""DrugBAN's drug graph holds at most 290 nodes (the reference pads every molecule to 290)."""
MAX_SMILES_CHARS = 10_000
"""Longest SMILES read; a molecule of 290 atoms written with every bracket and ring bond fits easily."""
PROTEIN_ALPHABET = "ACBEDGFIHKMLONQPSRUTWVYXZ"
"""DrugBAN's 25 protein letters (``integer_label_protein``); lower case is accepted and upper-cased."""
PROTEIN_MAX_LENGTH = 1200
"""Residues of a protein the model reads (DrugBAN's ``max_length``): the first 1,200, the rest is cut off."""
MAX_PROTEIN_CHARS = 40_000
"""Longest protein sequence read (titin, the longest known, has ~35,000 residues); the model reads the first
`PROTEIN_MAX_LENGTH`."""
MAX_RINGS = 40
"""Most independent rings (bonds − atoms + fragments) a molecule may have, checked on the unsanitised
parse: RDKit's ring perception in sanitisation is super-linear on bridged cages (a 290-atom cage with 291
rings runs for minutes and gigabytes). The bundled drugs have at most 14; fullerene C70 has 36."""
MOLECULE_CPU_SECONDS = 2.0
"""CPU seconds RDKit may spend on one molecule (parse, sanitise, featurise) before it is refused
(`data.sandbox`; ``DRUGREPO_MOLECULE_CPU_SECONDS``); a drug-like molecule takes milliseconds."""
MOLECULE_MEMORY_BYTES = 512 * 2**20
"""Memory RDKit may take for one molecule, above its worker's own (`data.sandbox`; ``DRUGREPO_MOLECULE_MEMORY_MB``)."""
MIN_CANDIDATE_HEAVY_ATOMS = 2
"""Fewest heavy atoms a screening library's molecule may have: a lone atom or ion (``I``, ``[H+]``,
``[Mg+2]``) is no drug candidate. Training and validation pairs keep them: DrugBAN's bundled Human
files hold 85 such molecules in 1,007 rows (``[Mg+2]`` 340, ``[Zn]`` 296) and BioSNAP's 5 in 14, and the
model is exact to the reference on them."""
LABEL_VALUES: dict[str, int] = {"0": 0, "1": 1, "0.0": 0, "1.0": 1}
"""Accepted spellings of a binary interaction label."""

RULE_CODES: tuple[str, ...] = (
    "missing_value",
    "invalid_label",
    "invalid_protein",
    "invalid_smiles",
    "too_many_atoms",
    "too_many_rings",
    "query_atom",
    "over_budget",
    "too_long",
)
"""The reason codes these rules give (validation adds its own for duplicates and conflicts)."""
SCREENING_CODES: tuple[str, ...] = ("not_a_drug",)
"""The codes only a screening library's molecules get (`candidate_refusal`)."""

_PROTEIN_CHARS = frozenset(PROTEIN_ALPHABET + PROTEIN_ALPHABET.lower())
_ASCII_UPPER = str.maketrans(PROTEIN_ALPHABET.lower(), PROTEIN_ALPHABET)
# Atom tokens of a SMILES: bracket atoms and the organic subset. Bracket hydrogens ([H], [H+] …) are
# left out because RDKit may remove them, so the count is a lower bound of the parsed atoms.
_ATOM_TOKEN = re.compile(r"\[(?!H[^a-z])[^\]]*\]|Br|Cl|[BCNOPSFIbcnops*]")
_SPACE = re.compile(r"\s")
_CX_EXTENSION = re.compile(r"\s+\|[^|]*\|")
_SHOWN_CHARS = 60


@dataclass(frozen=True)
class Refusal:
    """Why one value cannot be used: a reason ``code`` (`RULE_CODES`), the ``field`` and a message."""

    code: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def shown(value: str, limit: int = _SHOWN_CHARS) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters."""
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def missing_refusal(field: str, raw: str) -> Refusal | None:
    """``missing_value`` for an empty or blank value of ``field`` (the blank shown), else None."""
    if raw.strip():
        return None
    return Refusal("missing_value", field, "value is empty" if raw == "" else f"value is blank ({raw!r})")


def smiles_refusal(smiles: str, max_atoms: int = MAX_DRUG_ATOMS) -> Refusal | None:
    """The refusal of a (stripped) SMILES decided from its text alone, or None: empty, too long, or
    more atom symbols than the model takes. Linear in the length, no RDKit."""
    if not smiles:
        return Refusal("missing_value", "SMILES", "value is empty")
    if len(smiles) > MAX_SMILES_CHARS:
        return Refusal("too_long", "SMILES", f"{len(smiles):,} characters, more than the limit of {MAX_SMILES_CHARS:,}")
    if "\x00" in smiles:
        return Refusal("invalid_smiles", "SMILES", f"RDKit cannot parse {shown(smiles)} (NUL character)")
    space = _SPACE.search(smiles)
    if space is not None and not _CX_EXTENSION.fullmatch(smiles, space.start()):
        # RDKit would read only the part before it and call the rest a name; a CXSMILES "|…|" block is fine
        return Refusal("invalid_smiles", "SMILES", f"{shown(smiles)} has whitespace at position {space.start() + 1}")
    atoms = len(_ATOM_TOKEN.findall(smiles.split(None, 1)[0]))  # the SMILES proper, not its CXSMILES block
    if atoms > max_atoms:
        return Refusal("too_many_atoms", "SMILES", f"at least {atoms} atoms, more than the limit of {max_atoms}")
    return None


def parse_smiles(smiles: str, max_atoms: int = MAX_DRUG_ATOMS) -> tuple[Chem.Mol | None, Refusal | None]:
    """(molecule, None) or (None, refusal) for one SMILES, surrounding blanks ignored.

    The atom limit counts the parsed molecule's atoms as the model's graph does and is checked
    before anything costlier than the parse (canonical ranking, writing SMILES back).
    """
    from rdkit import Chem, rdBase

    refusal = missing_refusal("SMILES", smiles) or smiles_refusal(smiles.strip(), max_atoms)
    smiles = smiles.strip()
    if refusal is not None:
        return None, refusal
    with rdBase.BlockLogs():
        try:
            raw = Chem.MolFromSmiles(smiles, sanitize=False)  # linear: the structure before any perception
            refusal = None if raw is None else structure_refusal(raw, max_atoms)
            if refusal is not None:
                return None, refusal
            mol = Chem.MolFromSmiles(smiles)
        except MemoryError:  # past a sandbox's memory cap: over budget (`data.sandbox`), not an invalid SMILES
            raise
        except Exception as exc:  # RDKit raises on a few pathological inputs instead of returning None
            return None, Refusal(
                "invalid_smiles", "SMILES", f"RDKit cannot parse {shown(smiles)} (RDKit error {type(exc).__name__})"
            )
        if mol is None:
            return None, Refusal(
                "invalid_smiles", "SMILES", f"RDKit cannot parse {shown(smiles)} ({_smiles_problem(smiles)})"
            )
    atoms = mol.GetNumAtoms()
    if atoms == 0:
        return None, Refusal("invalid_smiles", "SMILES", f"RDKit cannot parse {shown(smiles)} (no atoms)")
    if atoms > max_atoms:
        return None, Refusal("too_many_atoms", "SMILES", f"{atoms} atoms, more than the limit of {max_atoms}")
    return mol, None


def structure_refusal(mol: Chem.Mol, max_atoms: int = MAX_DRUG_ATOMS) -> Refusal | None:
    """The refusal of an unsanitised molecule's graph, or None: more atoms than the model takes, query
    atoms (``*``, atomic number 0: a pattern, not a molecule), or more rings than `MAX_RINGS`. Linear in its size."""
    from rdkit import Chem

    atoms = mol.GetNumAtoms()
    if atoms > max_atoms:
        return Refusal("too_many_atoms", "SMILES", f"{atoms} atoms, more than the limit of {max_atoms}")
    if any(atom.GetAtomicNum() == 0 for atom in mol.GetAtoms()):
        return Refusal("query_atom", "SMILES", "a query atom (*) is a pattern, not a molecule")
    return ring_refusal(mol.GetNumBonds() - atoms + len(Chem.GetMolFrags(mol)))


def canonical_smiles(smiles: str) -> tuple[str | None, Refusal | None]:
    """(RDKit's canonical SMILES, None) or (None, the refusal) of one SMILES: validation's work on a
    molecule, done in a sandbox worker (`data.sandbox`)."""
    mol, refusal = parse_smiles(smiles)
    return (None, refusal) if mol is None else written_smiles(mol)


def written_smiles(mol: Chem.Mol) -> tuple[str | None, Refusal | None]:
    """(RDKit's canonical SMILES, None) of a parsed molecule, or (None, ``invalid_smiles``) when RDKit cannot write it."""
    from rdkit import Chem

    try:
        return Chem.MolToSmiles(mol), None
    except Exception as exc:  # RDKit raises on a few molecules it parsed
        return None, Refusal("invalid_smiles", "SMILES", f"RDKit cannot write it back as SMILES ({type(exc).__name__})")


def candidate_refusal(mol: Chem.Mol) -> Refusal | None:
    """``not_a_drug`` for a library molecule of fewer than `MIN_CANDIDATE_HEAVY_ATOMS` heavy atoms, else None."""
    heavy = mol.GetNumHeavyAtoms()
    if heavy >= MIN_CANDIDATE_HEAVY_ATOMS:
        return None
    atoms = f"{heavy} heavy atom{'' if heavy == 1 else 's'}"
    return Refusal("not_a_drug", "SMILES", f"{atoms}: a lone atom or ion is not a screening candidate")


def ring_refusal(rings: int) -> Refusal | None:
    """``too_many_rings`` for a molecule of more than `MAX_RINGS` independent rings, else None."""
    if rings <= MAX_RINGS:
        return None
    return Refusal("too_many_rings", "SMILES", f"{rings} rings, more than the limit of {MAX_RINGS}")


def over_budget_refusal(what: str) -> Refusal:
    """``over_budget``: RDKit's work on the molecule passed its CPU-time or memory budget (``what`` says which)."""
    return Refusal("over_budget", "SMILES", f"RDKit's work on it passed {what}; refused")


def _smiles_problem(smiles: str) -> str:
    """RDKit's first complaint about an unparseable SMILES, in one line."""
    from rdkit import Chem, rdBase

    with rdBase.BlockLogs():
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


def protein_refusal(sequence: str, length: int | None = None) -> Refusal | None:
    """The refusal of a protein sequence (surrounding blanks ignored), or None.

    Only DrugBAN's 25 ASCII letters, in either case, are accepted: a character is checked before
    any case change, so "ß" or "ﬀ" never become letters of the alphabet. ``length``: the whole
    sequence's, when a stream kept only its start (`screening.targets` keeps a FASTA record's first
    ``MAX_PROTEIN_CHARS`` + 1 letters).
    """
    if (missing := missing_refusal("Protein", sequence)) is not None:
        return missing
    sequence = sequence.strip()
    length = len(sequence) if length is None else length
    if length > MAX_PROTEIN_CHARS:
        return Refusal("too_long", "Protein", f"{length:,} letters, more than the limit of {MAX_PROTEIN_CHARS:,}")
    bad = [c for c in dict.fromkeys(sequence) if c not in _PROTEIN_CHARS]
    if bad:
        first = min(sequence.index(c) for c in bad) + 1
        chars = ", ".join(repr(c) for c in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        noun = "character" if len(bad) == 1 else "characters"
        return Refusal(
            "invalid_protein",
            "Protein",
            f"{noun} {chars} not in the amino-acid alphabet {PROTEIN_ALPHABET} (first at position {first} of {len(sequence)})",
        )
    return None


def clean_protein(sequence: str) -> str:
    """A sequence as the model reads it: blanks around it removed, its ASCII letters upper-cased."""
    return sequence.strip().translate(_ASCII_UPPER)


def label_refusal(value: str) -> Refusal | None:
    """The refusal of a label (surrounding blanks ignored), or None."""
    if (missing := missing_refusal("Y", value)) is not None:
        return missing
    value = value.strip()
    if value not in LABEL_VALUES:
        return Refusal("invalid_label", "Y", f"label {shown(value)} is not one of 0, 1, 0.0, 1.0")
    return None


def parse_label(value: str) -> int:
    """The label 0 or 1 of an accepted spelling; ValueError naming the value otherwise."""
    refusal = label_refusal(value)
    if refusal is not None:
        raise ValueError(str(refusal))
    return LABEL_VALUES[value.strip()]
