"""Evaluation pictures as PNG bytes: ROC, PR and reliability curves (matplotlib, Agg) and attention on molecules (RDKit).

Everything returns bytes, so callers decide where the pictures go (files, MLflow, UI metadata).
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdmolfiles
from rdkit.Chem.Draw import SimilarityMaps, rdMolDraw2D
from sklearn.metrics import precision_recall_curve, roc_curve

from drugrepo_assets.figures import png_bytes
from drugrepo_assets.ml.features.featurize import GraphBatch
from drugrepo_assets.ml.model.calibration import Reliability
from drugrepo_assets.ml.model.drugban import DrugBAN


def roc_png(labels: np.ndarray, scores: np.ndarray, title: str, auroc: float) -> bytes:
    """ROC curve with the chance diagonal and the AUROC in the legend."""
    fpr, tpr, _ = roc_curve(labels, scores)
    figure, ax = plt.subplots(figsize=(4, 3.5))
    ax.plot(fpr, tpr, label=f"AUROC {auroc:.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return png_bytes(figure)


def pr_png(labels: np.ndarray, scores: np.ndarray, title: str, auprc: float) -> bytes:
    """Precision–recall curve with the positive rate as the chance line and the AUPRC in the legend."""
    precision, recall, _ = precision_recall_curve(labels, scores)
    figure, ax = plt.subplots(figsize=(4, 3.5))
    ax.plot(recall, precision, label=f"AUPRC {auprc:.3f}")
    ax.axhline(float(np.mean(labels)), linestyle="--", color="grey", linewidth=0.8)
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower left")
    return png_bytes(figure)


def reliability_png(curves: Mapping[str, Reliability], title: str) -> bytes:
    """Reliability diagram: each curve's positive rate against its mean probability per bin, and the diagonal."""
    figure, ax = plt.subplots(figsize=(4, 3.5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    for label, curve in curves.items():
        shown = np.asarray(curve.counts) > 0
        x, y = np.asarray(curve.mean_probability)[shown], np.asarray(curve.positive_rate)[shown]
        ax.plot(x, y, marker="o", markersize=3, label=label)
    ax.set(xlabel="mean predicted probability", ylabel="fraction positive", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize="small")
    return png_bytes(figure)


def atom_attention(model: DrugBAN, graphs: GraphBatch, proteins: torch.Tensor) -> list[np.ndarray]:
    """Per-atom weight of each pair: its attention map summed over heads and the real protein positions.

    Weights are in the featuriser's (canonical) atom order, one array of length n_atoms per pair.
    """
    maps = model.attention_maps(graphs, proteins).float().cpu()  # [B, heads, 290, L']
    lengths = (proteins != 0).sum(1).clamp(min=1, max=maps.shape[-1]).tolist()
    n_atoms = graphs.num_nodes.tolist()
    return [maps[b, :, : n_atoms[b], : lengths[b]].sum(dim=(0, 2)).numpy() for b in range(maps.shape[0])]


def attention_png(smiles: str, weights: np.ndarray, size: int = 320) -> bytes:
    """The molecule with its per-atom weights (canonical order, as `atom_attention` gives) as a heat map."""
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() != len(weights):
        raise ValueError(f"{len(weights)} weights do not fit the atoms of {smiles!r}")
    order = np.fromiter(rdmolfiles.CanonicalRankAtoms(mol), dtype=np.int64, count=mol.GetNumAtoms())
    per_atom = np.empty(len(weights), dtype=np.float64)
    per_atom[order] = weights  # node k of the graph is RDKit atom order[k]
    centred = per_atom - per_atom.mean()
    scale = np.abs(centred).max()
    if scale > 0:
        centred = centred / scale
    drawer = rdMolDraw2D.MolDraw2DCairo(size, size)
    if mol.GetNumAtoms() < 2:  # RDKit draws no similarity map of a single atom (an ion): draw the atom alone
        drawer.DrawMolecule(mol)
    else:
        SimilarityMaps.GetSimilarityMapFromWeights(mol, centred.tolist(), draw2d=drawer)
    drawer.FinishDrawing()
    return drawer.GetDrawingText()
