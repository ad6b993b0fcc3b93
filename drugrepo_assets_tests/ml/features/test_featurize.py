"""Featurisation must reproduce the reference DrugBAN stack (dgllife 0.3.2 + DrugBAN) exactly."""

from pathlib import Path

import numpy as np
import pytest
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import rdmolfiles, rdmolops

from drugrepo_assets.ml.features.featurize import (
    ATOM_TYPES,
    MAX_DRUG_NODES,
    DrugGraph,
    InvalidSmilesError,
    collate_graphs,
    drug_graph,
)


@pytest.fixture(scope="module")
def golden_molecules(golden_dir: Path) -> dict[str, np.ndarray]:
    """The reference's dgllife graphs (featurize.npz), loaded once."""
    with np.load(golden_dir / "featurize.npz") as data:
        return {key: data[key] for key in data.files}


def test_every_golden_molecule_is_reproduced_exactly(golden_molecules: dict[str, np.ndarray]) -> None:
    """Node features, edge order and edge features equal dgllife's for all 392 molecules."""
    g = golden_molecules
    assert len(g["smiles"]) == 392 and g["ok"].all()
    node_start = np.concatenate(([0], np.cumsum(g["n_nodes"])))
    edge_start = np.concatenate(([0], np.cumsum(g["n_edges"])))
    mismatches = []
    for i, smiles in enumerate(g["smiles"]):
        graph = drug_graph(str(smiles))
        nodes = slice(node_start[i], node_start[i + 1])
        edges = slice(edge_start[i], edge_start[i + 1])
        expected_index = np.stack((g["edge_src"][edges], g["edge_dst"][edges]))
        same = (
            graph.num_nodes == g["n_nodes"][i]
            and graph.edge_index.shape[1] == g["n_edges"][i]
            and np.array_equal(graph.node_feats, g["node_feats"][nodes])
            and np.array_equal(graph.edge_index, expected_index)
            and np.array_equal(graph.edge_feats, g["edge_feats"][edges])
        )
        if not same:
            mismatches.append((i, str(smiles)))
    assert mismatches == []


def test_graph_arrays_have_the_documented_types() -> None:
    """float32 [n, 74] nodes, int64 [2, E] edges, float32 [E, 13] edge features, read-only."""
    graph = drug_graph("CC(=O)Oc1ccccc1C(=O)O")
    assert graph.num_nodes == 13 and graph.num_edges == 2 * 13 + 13
    assert graph.node_feats.dtype == np.float32 and graph.node_feats.shape == (13, 74)
    assert graph.edge_index.dtype == np.int64 and graph.edge_index.shape == (2, 39)
    assert graph.edge_feats.dtype == np.float32 and graph.edge_feats.shape == (39, 13)
    assert not graph.node_feats.flags.writeable
    assert MAX_DRUG_NODES == 290 and len(ATOM_TYPES) == 43


def test_atom_order_is_dgllifes_rank_permutation() -> None:
    """dgllife renumbers with the ranks themselves, so the node order depends on the SMILES order."""
    methyl, methylene, hydroxyl = [0, 44, 57, 65, 72], [0, 45, 56, 65, 71], [2, 44, 55, 65, 70]

    def rows(smiles: str) -> list[list[int]]:
        return [np.flatnonzero(r).tolist() for r in drug_graph(smiles).node_feats]

    assert rows("CCO") == [methyl, hydroxyl, methylene]
    assert rows("OCC") == [methylene, methyl, hydroxyl]
    assert drug_graph("OCC").edge_index.tolist() == [[2, 0, 0, 1, 0, 1, 2], [0, 2, 1, 0, 0, 1, 2]]


_HYBRIDIZATIONS = [getattr(Chem.HybridizationType, h) for h in ("SP", "SP2", "SP3", "SP3D", "SP3D2")]
_BOND_TYPES = [getattr(Chem.BondType, b) for b in ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")]
_STEREOS = [
    getattr(Chem.BondStereo, s) for s in ("STEREONONE", "STEREOANY", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS")
]


def _one_hot(value: object, allowed: list) -> list[bool]:
    """dgllife's one_hot_encoding with encode_unknown=False."""
    return [value == a for a in allowed]


def _reference_graph(smiles: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A literal, slow transcription of dgllife's smiles_to_bigraph + Canonical featurizers."""
    mol = Chem.MolFromSmiles(smiles)
    mol = rdmolops.RenumberAtoms(mol, list(rdmolfiles.CanonicalRankAtoms(mol)))
    nodes = [
        _one_hot(a.GetSymbol(), list(ATOM_TYPES))
        + _one_hot(a.GetDegree(), list(range(11)))
        + _one_hot(a.GetValence(Chem.ValenceType.IMPLICIT), list(range(7)))
        + [a.GetFormalCharge(), a.GetNumRadicalElectrons()]
        + _one_hot(a.GetHybridization(), _HYBRIDIZATIONS)
        + [a.GetIsAromatic()]
        + _one_hot(a.GetTotalNumHs(), list(range(5)))
        for a in mol.GetAtoms()
    ]
    src, dst, feats = [], [], []
    for bond in mol.GetBonds():
        u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        row = [
            *_one_hot(bond.GetBondType(), _BOND_TYPES),
            bond.GetIsConjugated(),
            bond.IsInRing(),
            *_one_hot(bond.GetStereo(), _STEREOS),
            0,
        ]
        src += [u, v]
        dst += [v, u]
        feats += [row, row]
    n = mol.GetNumAtoms()
    src += list(range(n))
    dst += list(range(n))
    feats += [[0] * 12 + [1]] * n
    return (
        np.array(nodes, dtype=np.float32).reshape(n, 74),
        np.array([src, dst], dtype=np.int64),
        np.array(feats, dtype=np.float32).reshape(-1, 13),
    )


@pytest.mark.parametrize(
    "smiles",
    [
        "[Na+].[Cl-]",  # no bonds: self loops only
        "[Gd+3]",  # element outside the 43 types: all-zero type block
        "[U]",
        "FS(F)(F)(F)(F)F",  # degree 6, SP3D2
        "P(C)(C)(C)(C)C",  # SP3D
        "[CH2]C",  # radical
        "[C]",
        "C/C=C/C",
        "C/C=C\\C",
        "[2H]C",
        "[H][H]",
        "F[Sb-](F)(F)(F)(F)F",
        "C[N+](C)(C)C",
        "[O-][n+]1ccccc1",
        "C=C=C",
        "Cl[Al](Cl)Cl",
        "C[S@@+]([O-])c1ccccc1",
    ],
)
def test_unusual_molecules_match_a_literal_dgllife_transcription(smiles: str) -> None:
    """Lookup tables agree with per-atom one-hot lists, also for values outside each vocabulary."""
    graph = drug_graph(smiles)
    node_feats, edge_index, edge_feats = _reference_graph(smiles)
    assert np.array_equal(graph.node_feats, node_feats)
    assert np.array_equal(graph.edge_index, edge_index)
    assert np.array_equal(graph.edge_feats, edge_feats)


@pytest.mark.parametrize(
    ("smiles", "code"),
    [
        ("C1CC", "invalid_smiles"),
        ("not a smiles", "invalid_smiles"),
        ("C(C)(C)(C)(C)C", "invalid_smiles"),
        ("*C", "query_atom"),  # a dummy atom: a pattern, not a molecule
        ("", "missing_value"),
        ("C" * 291, "too_many_atoms"),
        ("C" * 10_001, "too_long"),
    ],
)
def test_invalid_smiles_raises_with_the_rules_refusal(smiles: str, code: str) -> None:
    """SMILES the input rules refuse raise InvalidSmilesError carrying the SMILES and the rules' verdict."""
    with pytest.raises(InvalidSmilesError) as info:
        drug_graph(smiles)
    assert info.value.smiles == smiles
    assert info.value.refusal.code == code
    assert str(info.value) == str(info.value.refusal) and str(info.value).startswith("SMILES: ")
    if code == "invalid_smiles":
        assert repr(smiles) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_rdkit_log_state_is_restored_after_parsing() -> None:
    """Parse noise is silenced only for the parse call; RDKit's logging is left as it was."""
    before = rdBase.LogStatus()
    with pytest.raises(InvalidSmilesError):
        drug_graph("C1CC")
    drug_graph("CCO")
    assert rdBase.LogStatus() == before


def test_drug_graph_rejects_malformed_arrays() -> None:
    """DrugGraph validates dtypes and shapes, e.g. when rebuilt from a cache."""
    good = drug_graph("CO")
    with pytest.raises(ValueError, match="node_feats"):
        DrugGraph(good.node_feats.astype(np.float64), good.edge_index, good.edge_feats)
    with pytest.raises(ValueError, match="edge_feats"):
        DrugGraph(good.node_feats, good.edge_index, good.edge_feats[:-1])


def test_collate_graphs_offsets_edges_into_the_joint_node_ids() -> None:
    """Edges of graph i are shifted by the node count of graphs 0..i-1."""
    graphs = [drug_graph("O"), drug_graph("CO"), drug_graph("CCO")]
    assert [g.edge_index.tolist() for g in graphs] == [
        [[0], [0]],
        [[0, 1, 0, 1], [1, 0, 0, 1]],
        [[0, 2, 2, 1, 0, 1, 2], [2, 0, 1, 2, 0, 1, 2]],
    ]
    batch = collate_graphs(graphs)
    assert batch.num_graphs == 3
    assert batch.num_nodes.dtype == torch.int64 and batch.num_nodes.tolist() == [1, 2, 3]
    assert batch.edge_index.dtype == torch.int64
    assert batch.edge_index.tolist() == [
        [0, 1, 2, 1, 2, 3, 5, 5, 4, 3, 4, 5],
        [0, 2, 1, 1, 2, 5, 3, 4, 5, 3, 4, 5],
    ]
    assert batch.node_feats.dtype == torch.float32 and batch.node_feats.shape == (6, 74)
    expected = np.concatenate([g.node_feats for g in graphs])
    assert torch.equal(batch.node_feats, torch.from_numpy(expected))
    assert graphs[2].edge_index.tolist()[0] == [0, 2, 2, 1, 0, 1, 2], "inputs must stay untouched"


def test_collate_graphs_needs_a_graph() -> None:
    """An empty batch is a caller bug, reported as such."""
    with pytest.raises(ValueError):
        collate_graphs([])


def test_compact_molecules_expand_to_the_same_features_bit_for_bit() -> None:
    import pandas as pd

    from drugrepo_assets.data.sources import bundled_root
    from drugrepo_assets.data.validate import canonicalize
    from drugrepo_assets.ml.features.dataset import MoleculeStore
    from drugrepo_assets.ml.features.featurize import compact_molecules

    smiles = pd.read_csv(bundled_root() / "human" / "random" / "val.csv")["SMILES"].unique()[:150].tolist()
    smiles += ["C", "[NH4+]", "[CH3]", "[2H]C([2H])([2H])O", "c1ccccc1[O-]", "[Fe+3]", "C[Si](C)(C)C"]
    molecules, refused, canonical = compact_molecules(smiles, canonical=True)
    assert refused == [] and len(molecules) == len(smiles)
    assert molecules.codes.dtype == np.int8 and molecules.bonds.dtype == np.int16
    # compact codes made in sandbox workers against drug_graph in this process (the dgllife transcription)
    full = MoleculeStore.from_graphs([drug_graph(s) for s in smiles])
    for store in (MoleculeStore.from_compact(molecules), MoleculeStore.from_smiles(smiles)):
        for field in ("node_feats", "edge_index", "node_offsets", "edge_offsets"):
            assert torch.equal(getattr(store, field), getattr(full, field)), field
    assert canonical == [canonicalize(s) for s in smiles]
    picked = np.array([5, 0, len(smiles) - 1, 5])
    taken = MoleculeStore.from_compact(molecules.take(picked))
    assert torch.equal(taken.node_feats, MoleculeStore.from_graphs([drug_graph(smiles[i]) for i in picked]).node_feats)


def test_compact_molecules_refuse_with_a_reason_per_position() -> None:
    from drugrepo_assets.ml.features.featurize import compact_molecules

    molecules, refused, _ = compact_molecules(["CCO", "", "C1CC", "C" * 5000, "c1ccccc1"], max_atoms=290)
    assert len(molecules) == 2 and molecules.num_atoms.tolist() == [3, 6]
    assert refused == [
        (1, "SMILES: value is empty"),
        (2, "SMILES: RDKit cannot parse 'C1CC' (SMILES syntax error)"),
        (3, "SMILES: at least 5000 atoms, more than the limit of 290"),  # refused before parsing
    ]
