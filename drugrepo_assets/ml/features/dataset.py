"""Featurise once, batch by index: packed molecule graphs and protein codes for training and scoring.

The reference rebuilds every molecular graph for every item in every epoch. Here each unique
molecule and protein of a dataset is featurised once (RDKit's work in a sandbox worker, each molecule
within its budget: `featurize.compact_molecules`); a batch is then a few vectorised gathers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from drugrepo_assets.data.rules import MAX_DRUG_ATOMS, PROTEIN_MAX_LENGTH, Refusal
from drugrepo_assets.data.sandbox import Sandbox
from drugrepo_assets.ml.features.featurize import (
    CompactMolecule,
    CompactMolecules,
    DrugGraph,
    GraphBatch,
    InvalidSmilesError,
    compact_answers,
)
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.drugban import segment_ranges


@dataclass
class MoleculeStore:
    """Graphs of many molecules packed into flat tensors, addressed by molecule index."""

    node_feats: Tensor  # float32 [ΣN, 74]
    edge_index: Tensor  # int64 [2, ΣE], local node ids per molecule
    node_offsets: Tensor  # int64 [M + 1]
    edge_offsets: Tensor  # int64 [M + 1]

    @classmethod
    def from_graphs(cls, graphs: Sequence[DrugGraph]) -> MoleculeStore:
        """Pack featurised graphs (order kept: molecule i is ``graphs[i]``)."""
        n = np.fromiter((g.node_feats.shape[0] for g in graphs), dtype=np.int64, count=len(graphs))
        e = np.fromiter((g.edge_index.shape[1] for g in graphs), dtype=np.int64, count=len(graphs))
        feats = np.concatenate([g.node_feats for g in graphs]) if graphs else np.zeros((0, 74), np.float32)
        edges = np.concatenate([g.edge_index for g in graphs], axis=1) if graphs else np.zeros((2, 0), np.int64)
        return cls(
            node_feats=torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32)),
            edge_index=torch.from_numpy(np.ascontiguousarray(edges, dtype=np.int64)),
            node_offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(n)])),
            edge_offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(e)])),
        )

    @classmethod
    def from_compact(cls, molecules: CompactMolecules) -> MoleculeStore:
        """Expand compact molecules (atom codes, bonds) into the same store `from_graphs` builds."""
        n = molecules.num_atoms.astype(np.int64)
        e = 2 * molecules.num_bonds.astype(np.int64) + n
        return cls(
            node_feats=torch.from_numpy(molecules.node_feats()),
            edge_index=torch.from_numpy(molecules.edge_index()),
            node_offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(n)])),
            edge_offsets=torch.from_numpy(np.concatenate([[0], np.cumsum(e)])),
        )

    @classmethod
    def from_smiles(cls, smiles: Iterable[str], sandbox: Sandbox | None = None) -> MoleculeStore:
        """Featurise and pack molecules in ``sandbox`` (`featurize.compact_answers`); the first SMILES the
        rules refuse, or over its budget, raises ``InvalidSmilesError``."""
        smiles = list(smiles)
        answers = compact_answers(smiles, MAX_DRUG_ATOMS, sandbox=sandbox)
        for s, answer in zip(smiles, answers):
            if isinstance(answer, Refusal):
                raise InvalidSmilesError(s, answer)
        return cls.from_compact(CompactMolecules.stack([a for a in answers if isinstance(a, CompactMolecule)]))

    def __len__(self) -> int:
        return len(self.node_offsets) - 1

    @property
    def num_nodes(self) -> Tensor:
        """Atoms per molecule [M]."""
        return self.node_offsets.diff()

    def batch(self, idx: Tensor) -> GraphBatch:
        """The graphs of molecules ``idx`` (repeats allowed) as one disjoint-union batch."""
        n = self.num_nodes[idx]
        e = self.edge_offsets.diff()[idx]
        _, node_idx = segment_ranges(self.node_offsets[idx], n)
        edge_seg, edge_idx = segment_ranges(self.edge_offsets[idx], e)
        new_start = torch.cumsum(n, 0) - n
        edge_index = self.edge_index[:, edge_idx] + new_start[edge_seg]
        return GraphBatch(node_feats=self.node_feats[node_idx], edge_index=edge_index, num_nodes=n)


@dataclass
class PairData:
    """Pairs as indices into a molecule store and a protein code table, with optional labels."""

    molecules: MoleculeStore
    proteins: Tensor  # int64 [P, max_length]
    drug_idx: Tensor  # int64 [N]
    protein_idx: Tensor  # int64 [N]
    labels: Tensor | None = None  # float32 [N]

    def __len__(self) -> int:
        return len(self.drug_idx)

    def require_labels(self) -> Tensor:
        """The labels; ValueError when these pairs have none (training and evaluation need them)."""
        if self.labels is None:
            raise ValueError("these pairs have no labels")
        return self.labels

    @classmethod
    def from_lists(
        cls,
        smiles: Sequence[str],
        proteins: Sequence[str],
        labels: Sequence[float] | None = None,
        max_protein_length: int = PROTEIN_MAX_LENGTH,
        sandbox: Sandbox | None = None,
    ) -> PairData:
        """Featurise each unique SMILES (in ``sandbox``, `MoleculeStore.from_smiles`) and protein once and
        index the pairs into them."""
        uniq_s, drug_idx = np.unique(np.asarray(smiles, dtype=object), return_inverse=True)
        uniq_p, prot_idx = np.unique(np.asarray(proteins, dtype=object), return_inverse=True)
        return cls(
            molecules=MoleculeStore.from_smiles(uniq_s.tolist(), sandbox),
            proteins=torch.from_numpy(encode_proteins(uniq_p.tolist(), max_protein_length)),
            drug_idx=torch.from_numpy(drug_idx.astype(np.int64).reshape(-1)),
            protein_idx=torch.from_numpy(prot_idx.astype(np.int64).reshape(-1)),
            labels=None if labels is None else torch.as_tensor(np.asarray(labels, dtype=np.float32)),
        )

    def batch(self, rows: Tensor) -> tuple[GraphBatch, Tensor]:
        """Graphs and protein codes of pairs ``rows``."""
        return self.molecules.batch(self.drug_idx[rows]), self.proteins[self.protein_idx[rows]]
