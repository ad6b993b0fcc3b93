"""Drug featurisation for DrugBAN, without DGL or dgllife.

`drug_graph` reproduces, bit for bit, dgllife 0.3.2's
``smiles_to_bigraph(smiles, add_self_loop=True, node_featurizer=CanonicalAtomFeaturizer(),
edge_featurizer=CanonicalBondFeaturizer(self_loop=True))`` with its default
``canonical_atom_order=True`` (proteins: `ml.features.protein`). Per-atom and per-bond work is limited to reading raw RDKit values;
every one-hot encoding is done with numpy lookup tables.

`drug_graph` and `compact_molecule` do RDKit's work in the calling process: for untrusted SMILES they
run in a sandbox worker (`data.sandbox`), each molecule within its CPU and memory budget, as
`compact_molecules` does for a list.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from drugrepo_assets.data.rules import (
    MAX_DRUG_ATOMS,
    Refusal,
    candidate_refusal,
    parse_smiles,
    written_smiles,
)
from drugrepo_assets.data.sandbox import Sandbox, molecule_map

if TYPE_CHECKING:
    import torch
    from rdkit import Chem

_Item = TypeVar("_Item")

MAX_DRUG_NODES = MAX_DRUG_ATOMS
ATOM_FEATURE_DIM = 74
BOND_FEATURE_DIM = 13

ATOM_TYPES = (
    "C",
    "N",
    "O",
    "S",
    "F",
    "Si",
    "P",
    "Cl",
    "Br",
    "Mg",
    "Na",
    "Ca",
    "Fe",
    "As",
    "Al",
    "I",
    "B",
    "V",
    "K",
    "Tl",
    "Yb",
    "Sb",
    "Sn",
    "Ag",
    "Pd",
    "Co",
    "Se",
    "Ti",
    "Zn",
    "H",
    "Li",
    "Ge",
    "Cu",
    "Au",
    "Ni",
    "Cd",
    "In",
    "Mn",
    "Zr",
    "Cr",
    "Pt",
    "Hg",
    "Pb",
)

# Column layout of CanonicalAtomFeaturizer (74 columns, no "unknown" slots anywhere).
_TYPE_OFFSET = 0  # 43 atom types
_DEGREE_OFFSET = 43  # degree 0..10
_IMPLICIT_VALENCE_OFFSET = 54  # implicit valence 0..6
_CHARGE_COL = 61  # raw formal charge
_RADICAL_COL = 62  # raw number of radical electrons
_HYBRIDIZATION_OFFSET = 63  # SP, SP2, SP3, SP3D, SP3D2
_AROMATIC_COL = 68
_TOTAL_H_OFFSET = 69  # total Hs 0..4
_TRASH_COL = ATOM_FEATURE_DIM  # out-of-vocabulary values are written here and sliced away

# Column layout of CanonicalBondFeaturizer(self_loop=True) (13 columns).
_BOND_TYPE_OFFSET = 0  # SINGLE, DOUBLE, TRIPLE, AROMATIC
_CONJUGATED_COL = 4
_IN_RING_COL = 5
_STEREO_OFFSET = 6  # STEREONONE, STEREOANY, STEREOZ, STEREOE, STEREOCIS, STEREOTRANS
_SELF_LOOP_COL = 12
_BOND_TRASH_COL = BOND_FEATURE_DIM


def _implicit_valence(atom: Chem.Atom) -> int:
    """dgllife's atom.GetImplicitValence(), via the non-deprecated RDKit accessor."""
    return atom.GetValence(_rdkit_tables().implicit)


def _lookup_table(size: int, mapping: dict[int, int], default: int) -> np.ndarray:
    """Dense int64 table: raw RDKit value -> feature column, `default` for everything else."""
    table = np.full(size, default, dtype=np.int64)
    for raw, col in mapping.items():
        table[raw] = col
    return table


def _one_hot_range(offset: int, n: int, size: int, default: int) -> np.ndarray:
    """Table mapping the values 0..n-1 to offset..offset+n-1 and larger values to `default`."""
    return _lookup_table(size, {v: offset + v for v in range(n)}, default)


_DEGREE_TO_COL = _one_hot_range(_DEGREE_OFFSET, 11, 12, _TRASH_COL)
_IMPLICIT_VALENCE_TO_COL = _one_hot_range(_IMPLICIT_VALENCE_OFFSET, 7, 8, _TRASH_COL)
_TOTAL_H_TO_COL = _one_hot_range(_TOTAL_H_OFFSET, 5, 6, _TRASH_COL)


@dataclass(frozen=True)
class _RDKitTables:
    """The tables keyed by RDKit's own values: atomic number, hybridisation, bond type and stereo to column."""

    implicit: Chem.ValenceType
    atomic_num: np.ndarray
    hybridization: np.ndarray
    bond_type: np.ndarray
    stereo: np.ndarray


@functools.cache
def _rdkit_tables() -> _RDKitTables:
    """RDKit's tables, built on first use: importing this module needs no RDKit (a machine that trains on
    exported features, `ml.features.exported`, has none)."""
    from rdkit import Chem

    periodic = Chem.GetPeriodicTable()
    hyb, bt, bs = Chem.HybridizationType, Chem.BondType, Chem.BondStereo
    stereo = (bs.STEREONONE, bs.STEREOANY, bs.STEREOZ, bs.STEREOE, bs.STEREOCIS, bs.STEREOTRANS)
    return _RDKitTables(
        implicit=Chem.ValenceType.IMPLICIT,
        atomic_num=_lookup_table(
            128, {periodic.GetAtomicNumber(s): _TYPE_OFFSET + i for i, s in enumerate(ATOM_TYPES)}, _TRASH_COL
        ),
        hybridization=_lookup_table(
            max(int(h) for h in hyb.values.values()) + 2,
            {int(h): _HYBRIDIZATION_OFFSET + i for i, h in enumerate((hyb.SP, hyb.SP2, hyb.SP3, hyb.SP3D, hyb.SP3D2))},
            _TRASH_COL,
        ),
        bond_type=_lookup_table(
            max(int(b) for b in bt.values.values()) + 2,
            {int(b): _BOND_TYPE_OFFSET + i for i, b in enumerate((bt.SINGLE, bt.DOUBLE, bt.TRIPLE, bt.AROMATIC))},
            _BOND_TRASH_COL,
        ),
        stereo=_lookup_table(
            max(int(s) for s in bs.values.values()) + 2,
            {int(s): _STEREO_OFFSET + i for i, s in enumerate(stereo)},
            _BOND_TRASH_COL,
        ),
    )


class InvalidSmilesError(ValueError):
    """Raised for a SMILES the input rules refuse (`data.rules.parse_smiles`): unparseable, empty, too long or too big."""

    def __init__(self, smiles: str, refusal: Refusal | None = None) -> None:
        """Keep the offending SMILES and the rules' refusal on the exception so callers can report it."""
        self.refusal = refusal or Refusal("invalid_smiles", "SMILES", f"RDKit cannot parse {smiles[:60]!r}")
        super().__init__(str(self.refusal))
        self.smiles = smiles


@dataclass(frozen=True, eq=False)
class DrugGraph:
    """A molecule as a directed graph: atom features, (src, dst) edges and edge features.

    Matches the DGLGraph dgllife builds: each bond as u->v then v->u, then one self loop per node.
    """

    node_feats: np.ndarray
    edge_index: np.ndarray
    edge_feats: np.ndarray

    def __post_init__(self) -> None:
        """Validate shapes and dtypes so a malformed graph (e.g. from a cache) fails early."""
        nf, ei, ef = self.node_feats, self.edge_index, self.edge_feats
        if nf.dtype != np.float32 or nf.ndim != 2 or nf.shape[1] != ATOM_FEATURE_DIM:
            raise ValueError(f"node_feats must be float32 [n, 74], got {nf.dtype} {nf.shape}")
        if ei.dtype != np.int64 or ei.ndim != 2 or ei.shape[0] != 2:
            raise ValueError(f"edge_index must be int64 [2, E], got {ei.dtype} {ei.shape}")
        if ef.dtype != np.float32 or ef.shape != (ei.shape[1], BOND_FEATURE_DIM):
            raise ValueError(f"edge_feats must be float32 [{ei.shape[1]}, 13], got {ef.dtype} {ef.shape}")

    @property
    def num_nodes(self) -> int:
        """Number of atoms (graph nodes)."""
        return int(self.node_feats.shape[0])

    @property
    def num_edges(self) -> int:
        """Number of directed edges, self loops included."""
        return int(self.edge_index.shape[1])


def _parse_smiles(smiles: str, max_atoms: int = MAX_DRUG_ATOMS, library: bool = False) -> Chem.Mol:
    """The molecule the input rules accept (`data.rules.parse_smiles`, and for a screening ``library``
    `data.rules.candidate_refusal`); InvalidSmilesError otherwise."""
    mol, refusal = parse_smiles(smiles, max_atoms)
    if mol is not None and library:
        refusal = candidate_refusal(mol)
    if mol is None or refusal is not None:
        raise InvalidSmilesError(smiles, refusal)
    return mol


def _int_column(getter: Callable[[_Item], int], items: Sequence[_Item], count: int) -> np.ndarray:
    """Read one integer RDKit property of every atom or bond into an int64 array."""
    return np.fromiter(map(getter, items), dtype=np.int64, count=count)


def _lookup(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Map raw RDKit values through a column table; values past its end hit the last entry."""
    return table[np.minimum(values, table.size - 1)]


ATOM_CODE_WIDTH = 8
"""A compact atom: the feature columns set by its five one-hot groups (type, degree, implicit
valence, hybridisation, total Hs; 74 = none), then its formal charge, radical electrons and
aromatic flag: 8 bytes instead of 74 floats, expanded exactly by `expand_atoms`."""
_CODE_RAW_COLS = (_CHARGE_COL, _RADICAL_COL, _AROMATIC_COL)


def _canonical_atoms(mol: Chem.Mol) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Atom codes [n, 8] in dgllife's canonical order, and each bond's (begin, end) in that order."""
    from rdkit import Chem
    from rdkit.Chem import rdmolfiles

    tables = _rdkit_tables()
    n = mol.GetNumAtoms()
    num_bonds = mol.GetNumBonds()
    atoms = list(map(mol.GetAtomWithIdx, range(n)))
    bonds = list(map(mol.GetBondWithIdx, range(num_bonds)))
    begin = _int_column(Chem.Bond.GetBeginAtomIdx, bonds, num_bonds)
    end = _int_column(Chem.Bond.GetEndAtomIdx, bonds, num_bonds)
    # GetDegree counts bonds to explicit atoms, i.e. the atom's incidence count in the bond list.
    degree = np.bincount(np.concatenate((begin, end)), minlength=n)

    # dgllife passes the ranks themselves as RenumberAtoms' new order: node k is old atom rank[k].
    order = np.fromiter(rdmolfiles.CanonicalRankAtoms(mol), dtype=np.int64, count=n)
    new_index = np.empty(n, dtype=np.int64)
    new_index[order] = np.arange(n, dtype=np.int64)

    codes = np.stack(
        (
            _lookup(tables.atomic_num, _int_column(Chem.Atom.GetAtomicNum, atoms, n)),
            _lookup(_DEGREE_TO_COL, degree),
            _lookup(_IMPLICIT_VALENCE_TO_COL, _int_column(_implicit_valence, atoms, n)),
            _lookup(tables.hybridization, _int_column(Chem.Atom.GetHybridization, atoms, n)),
            _lookup(_TOTAL_H_TO_COL, _int_column(Chem.Atom.GetTotalNumHs, atoms, n)),
            _int_column(Chem.Atom.GetFormalCharge, atoms, n),
            _int_column(Chem.Atom.GetNumRadicalElectrons, atoms, n),
            _int_column(Chem.Atom.GetIsAromatic, atoms, n),
        ),
        axis=1,
    )[order]
    if codes.size and (codes.min() < -128 or codes.max() > 127):
        smiles = Chem.MolToSmiles(mol)
        raise InvalidSmilesError(
            smiles, Refusal("invalid_smiles", "SMILES", f"a charge or radical count out of range in {smiles[:60]!r}")
        )
    return codes.astype(np.int8), new_index[begin], new_index[end], bonds


def expand_atoms(codes: np.ndarray) -> np.ndarray:
    """CanonicalAtomFeaturizer's float32 features [n, 74] of compact atom codes [n, 8], exactly."""
    n = len(codes)
    buf = np.zeros((n, ATOM_FEATURE_DIM + 1), dtype=np.float32)
    buf[np.arange(n)[:, None], codes[:, :5].astype(np.int64)] = 1.0
    buf[:, list(_CODE_RAW_COLS)] = codes[:, 5:]
    return np.ascontiguousarray(buf[:, :ATOM_FEATURE_DIM])


def bond_edges(bonds: np.ndarray, num_nodes: int) -> np.ndarray:
    """dgllife's edge list [2, 2b + n] of bonds [b, 2]: each bond u->v then v->u, then a self loop per node."""
    b = len(bonds)
    edge_index = np.empty((2, 2 * b + num_nodes), dtype=np.int64)
    pairs = edge_index[:, : 2 * b].reshape(2, b, 2)
    pairs[0, :, 0] = pairs[1, :, 1] = bonds[:, 0]
    pairs[0, :, 1] = pairs[1, :, 0] = bonds[:, 1]
    edge_index[:, 2 * b :] = np.arange(num_nodes, dtype=np.int64)
    return edge_index


def drug_graph(smiles: str, max_atoms: int = MAX_DRUG_ATOMS, library: bool = False) -> DrugGraph:
    """Featurise a SMILES exactly like dgllife's smiles_to_bigraph with Canonical featurizers.

    A SMILES the input rules refuse (`data.rules`: unparseable, too long, over 290 atoms; with
    ``library``, a lone atom or ion too) raises InvalidSmilesError before any featurisation. Atoms
    follow dgllife's canonical_atom_order=True, i.e. RenumberAtoms(mol, CanonicalRankAtoms), applied
    here as a permutation of the feature rows instead of rebuilding the molecule.
    """
    from rdkit import Chem

    mol = _parse_smiles(smiles, max_atoms, library)
    codes, begin, end, bonds = _canonical_atoms(mol)
    tables = _rdkit_tables()
    n, num_bonds = len(codes), len(bonds)
    node_feats = expand_atoms(codes)
    edge_index = bond_edges(np.stack((begin, end), axis=1), n)

    num_bond_edges = 2 * num_bonds
    num_edges = num_bond_edges + n
    bond_buf = np.zeros((num_bonds, BOND_FEATURE_DIM + 1), dtype=np.float32)
    bond_cols = np.stack(
        (
            _lookup(tables.bond_type, _int_column(Chem.Bond.GetBondType, bonds, num_bonds)),
            _lookup(tables.stereo, _int_column(Chem.Bond.GetStereo, bonds, num_bonds)),
        ),
        axis=1,
    )
    bond_buf[np.arange(num_bonds)[:, None], bond_cols] = 1.0
    bond_buf[:, _CONJUGATED_COL] = _int_column(Chem.Bond.GetIsConjugated, bonds, num_bonds)
    bond_buf[:, _IN_RING_COL] = _int_column(Chem.Bond.IsInRing, bonds, num_bonds)
    edge_feats = np.zeros((num_edges, BOND_FEATURE_DIM), dtype=np.float32)
    edge_feats[:num_bond_edges] = np.repeat(bond_buf[:, :BOND_FEATURE_DIM], 2, axis=0)
    edge_feats[num_bond_edges:, _SELF_LOOP_COL] = 1.0

    for array in (node_feats, edge_index, edge_feats):
        array.setflags(write=False)
    return DrugGraph(node_feats=node_feats, edge_index=edge_index, edge_feats=edge_feats)


@dataclass(frozen=True, eq=False)
class CompactMolecule:
    """One molecule as compact atom codes (int8 [n, 8], `ATOM_CODE_WIDTH`) and bonds (int16 [b, 2], atom
    ids in canonical order), with its RDKit canonical SMILES when it was asked for."""

    codes: np.ndarray
    bonds: np.ndarray
    canonical: str | None = None


def compact_molecule(
    smiles: str, max_atoms: int = MAX_DRUG_NODES, canonical: bool = False, library: bool = False
) -> CompactMolecule | Refusal:
    """One SMILES featurised compactly, or the input rules' refusal (`_parse_smiles`): the work on one
    molecule that a sandbox worker does for `compact_molecules` (RDKit and numpy only)."""
    try:
        mol = _parse_smiles(smiles, max_atoms, library)  # the atom limit holds before the ~quadratic canonical ranking
        codes, begin, end, _ = _canonical_atoms(mol)
    except InvalidSmilesError as exc:
        return exc.refusal
    name = None
    if canonical:
        name, refusal = written_smiles(mol)
        if refusal is not None:
            return refusal
    return CompactMolecule(codes, np.stack((begin, end), axis=1).astype(np.int16), name)


@dataclass
class CompactMolecules:
    """Molecules as compact atom codes and bonds (numpy only, ~10 bytes an atom): what screening
    featurises in worker processes, ships between them and holds per library shard."""

    codes: np.ndarray  # int8 [ΣN, 8], see ATOM_CODE_WIDTH
    bonds: np.ndarray  # int16 [ΣB, 2], atom ids local to each molecule, canonical order
    num_atoms: np.ndarray  # int32 [M]
    num_bonds: np.ndarray  # int32 [M]

    def __len__(self) -> int:
        return len(self.num_atoms)

    @classmethod
    def empty(cls) -> CompactMolecules:
        """No molecule."""
        return cls(
            np.zeros((0, ATOM_CODE_WIDTH), np.int8),
            np.zeros((0, 2), np.int16),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
        )

    @classmethod
    def stack(cls, molecules: Sequence[CompactMolecule]) -> CompactMolecules:
        """Single molecules one after the other."""
        if not molecules:
            return cls.empty()
        return cls(
            np.concatenate([m.codes for m in molecules]),
            np.concatenate([m.bonds for m in molecules]),
            np.fromiter((len(m.codes) for m in molecules), np.int32, len(molecules)),
            np.fromiter((len(m.bonds) for m in molecules), np.int32, len(molecules)),
        )

    @classmethod
    def concat(cls, parts: Sequence[CompactMolecules]) -> CompactMolecules:
        """Molecules of ``parts`` one after the other."""
        if not parts:
            return cls.empty()
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("codes", "bonds", "num_atoms", "num_bonds"))
        )

    def take(self, idx: np.ndarray) -> CompactMolecules:
        """Molecules ``idx`` (in that order)."""
        atom_off = np.concatenate([[0], np.cumsum(self.num_atoms, dtype=np.int64)])
        bond_off = np.concatenate([[0], np.cumsum(self.num_bonds, dtype=np.int64)])
        atoms = (
            np.concatenate([np.arange(atom_off[i], atom_off[i + 1]) for i in idx])
            if len(idx)
            else np.zeros(0, np.int64)
        )
        bonds = (
            np.concatenate([np.arange(bond_off[i], bond_off[i + 1]) for i in idx])
            if len(idx)
            else np.zeros(0, np.int64)
        )
        return CompactMolecules(self.codes[atoms], self.bonds[bonds], self.num_atoms[idx], self.num_bonds[idx])

    def node_feats(self) -> np.ndarray:
        """Every atom's float32 features [ΣN, 74] (`expand_atoms`)."""
        return expand_atoms(self.codes)

    def edge_index(self) -> np.ndarray:
        """Every molecule's dgllife edge list, concatenated [2, Σ(2B + N)], local atom ids."""
        return np.concatenate(
            [np.zeros((2, 0), np.int64)]
            + [
                bond_edges(b, int(n))
                for b, n in zip(np.split(self.bonds, np.cumsum(self.num_bonds)[:-1]), self.num_atoms)
            ],
            axis=1,
        )


def compact_answers(
    smiles: Sequence[str],
    max_atoms: int = MAX_DRUG_NODES,
    canonical: bool = False,
    *,
    library: bool = False,
    sandbox: Sandbox | None = None,
) -> list[CompactMolecule | Refusal]:
    """`compact_molecule` of each SMILES, in order, each in ``sandbox`` (a `data.sandbox.molecule_sandbox`,
    else the process's shared one) within its budget: one over it gets the ``over_budget`` refusal."""
    return molecule_map(compact_molecule, smiles, max_atoms, canonical, library, sandbox=sandbox)


def gather_compact(
    answers: Sequence[CompactMolecule | Refusal],
) -> tuple[CompactMolecules, list[tuple[int, str]], list[str]]:
    """`compact_answers` as (the kept molecules, (position, reason) of the refused, their canonical SMILES)."""
    kept = [a for a in answers if isinstance(a, CompactMolecule)]
    refused = [(i, str(a)) for i, a in enumerate(answers) if isinstance(a, Refusal)]
    return CompactMolecules.stack(kept), refused, [m.canonical for m in kept if m.canonical is not None]


def compact_molecules(
    smiles: Sequence[str],
    max_atoms: int = MAX_DRUG_NODES,
    canonical: bool = False,
    *,
    library: bool = False,
    sandbox: Sandbox | None = None,
) -> tuple[CompactMolecules, list[tuple[int, str]], list[str]]:
    """Featurise SMILES compactly: (molecules, refused as (position, reason), canonical SMILES).

    Reasons are the input rules' (`data.rules.parse_smiles`; with ``library``, `candidate_refusal`
    too) or the sandbox's ``over_budget``, naming the field, e.g. ``SMILES: 300 atoms, more than the
    limit of 290``. With ``canonical``, each kept molecule's RDKit canonical SMILES (its content id,
    `data.validate.drug_id`) comes from the same parse. RDKit's work runs in ``sandbox``'s workers
    (`compact_answers`).
    """
    return gather_compact(compact_answers(smiles, max_atoms, canonical, library=library, sandbox=sandbox))


@dataclass
class GraphBatch:
    """Several DrugGraphs as one disjoint graph, with edge ids offset into the joint node ids."""

    node_feats: torch.Tensor
    edge_index: torch.Tensor
    num_nodes: torch.Tensor

    @property
    def num_graphs(self) -> int:
        """Number of molecules in the batch."""
        return int(self.num_nodes.shape[0])

    def to(self, device: torch.device | str) -> GraphBatch:
        """The same batch on ``device`` (non-blocking where the source memory allows)."""
        return GraphBatch(
            node_feats=self.node_feats.to(device, non_blocking=True),
            edge_index=self.edge_index.to(device, non_blocking=True),
            num_nodes=self.num_nodes.to(device, non_blocking=True),
        )


def collate_graphs(graphs: Sequence[DrugGraph]) -> GraphBatch:
    """Concatenate graphs into one GraphBatch (numpy concatenation, one tensor conversion each).

    Node ids of graph i are shifted by the number of nodes of graphs 0..i-1.
    """
    import torch

    if len(graphs) == 0:
        raise ValueError("collate_graphs needs at least one graph")
    num_nodes = np.fromiter((g.node_feats.shape[0] for g in graphs), dtype=np.int64)
    num_edges = np.fromiter((g.edge_index.shape[1] for g in graphs), dtype=np.int64)
    node_offsets = np.cumsum(num_nodes) - num_nodes
    node_feats = np.concatenate([g.node_feats for g in graphs], axis=0)
    edge_index = np.concatenate([g.edge_index for g in graphs], axis=1)
    edge_index += np.repeat(node_offsets, num_edges)
    return GraphBatch(
        node_feats=torch.from_numpy(node_feats),
        edge_index=torch.from_numpy(edge_index),
        num_nodes=torch.from_numpy(num_nodes),
    )
