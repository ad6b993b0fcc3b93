"""Interpretable descriptors of a molecule and of a protein, the features drift monitoring compares.

Shared by the prediction API (it logs them per request) and the drift report (it computes them on
the training set and on newly landed pairs), so both sides describe inputs the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rdkit import rdBase
from rdkit.Chem import Crippen, Descriptors, rdMolDescriptors

from drugrepo_assets.data.rules import parse_smiles

if TYPE_CHECKING:
    import pandas as pd

MOLECULE_COLUMNS = ("mol_weight", "logp", "tpsa", "rings", "aromatic_rings", "heavy_atoms")
PROTEIN_GROUPS = {
    "hydrophobic": "AILMFVW",
    "charged": "DEKRH",
    "polar": "STNQCY",
    "aromatic": "FWY",
    "small": "GPA",
}
PROTEIN_COLUMNS = ("protein_length", *(f"frac_{name}" for name in PROTEIN_GROUPS))
DESCRIPTOR_COLUMNS = MOLECULE_COLUMNS + PROTEIN_COLUMNS

rdBase.DisableLog("rdApp.*")  # what RDLogger.DisableLog re-exports; RDKit's stub for RDLogger omits it


def molecule_descriptors(smiles: str) -> dict[str, float] | None:
    """Weight, logP, TPSA, ring counts and heavy atoms of a SMILES; None when the input rules refuse it
    (`data.rules.parse_smiles`: its structure is checked before RDKit's costlier perception)."""
    mol, _ = parse_smiles(smiles)
    if mol is None:
        return None
    return {
        # RDKit defines MolWt and MolLogP as module-level lambdas, which its generated stubs leave out.
        "mol_weight": float(Descriptors.MolWt(mol)),  # type: ignore[attr-defined]
        "logp": float(Crippen.MolLogP(mol)),  # type: ignore[attr-defined]
        "tpsa": float(rdMolDescriptors.CalcTPSA(mol)),
        "rings": float(rdMolDescriptors.CalcNumRings(mol)),
        "aromatic_rings": float(rdMolDescriptors.CalcNumAromaticRings(mol)),
        "heavy_atoms": float(mol.GetNumHeavyAtoms()),
    }


def protein_descriptors(sequence: str) -> dict[str, float]:
    """Length and the share of each residue group (hydrophobic, charged, polar, aromatic, small)."""
    seq = sequence.strip().upper()
    n = max(len(seq), 1)
    out = {"protein_length": float(len(seq))}
    for name, letters in PROTEIN_GROUPS.items():
        out[f"frac_{name}"] = sum(seq.count(c) for c in letters) / n
    return out


def pair_descriptor_table(smiles: Iterable[str], proteins: Iterable[str]) -> pd.DataFrame:
    """One row of molecule and protein descriptors per pair; unparseable molecules are left out."""
    import pandas as pd

    mol_cache: dict[str, dict[str, float] | None] = {}
    prot_cache: dict[str, dict[str, float]] = {}
    rows = []
    for s, p in zip(smiles, proteins):
        if s not in mol_cache:
            mol_cache[s] = molecule_descriptors(s)
        if p not in prot_cache:
            prot_cache[p] = protein_descriptors(p)
        molecule = mol_cache[s]
        if molecule is not None:
            rows.append({**molecule, **prot_cache[p]})
    return pd.DataFrame(rows, columns=list(DESCRIPTOR_COLUMNS))
