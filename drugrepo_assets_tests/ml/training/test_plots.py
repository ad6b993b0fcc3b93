"""Evaluation pictures: ROC/PR curves and attention drawn on molecules are real PNGs."""

import numpy as np
import pytest
import torch

from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.model.calibration import reliability
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.training.plots import atom_attention, attention_png, pr_png, reliability_png, roc_png

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMILES = ["CC(=O)Oc1ccccc1C(=O)O", "CCO"]
PROTEINS = ["MKTAYIAKQRQISFVKSHFSRQ" * 3, "MSTNPKPQRKTKRNTNRRPQDVKFPGG"]


def test_curves_are_pngs() -> None:
    labels = np.array([0, 1, 0, 1, 1, 0])
    scores = np.array([0.1, 0.8, 0.3, 0.6, 0.2, 0.4])
    assert roc_png(labels, scores, "ROC", 0.78).startswith(PNG_MAGIC)
    assert pr_png(labels, scores, "PR", 0.7).startswith(PNG_MAGIC)


def test_reliability_diagram_is_a_png() -> None:
    labels = np.array([0, 1, 0, 1, 1, 0])
    curves = {
        "raw": reliability(labels, np.array([0.1, 0.8, 0.3, 0.6, 0.2, 0.4])),
        "empty bins": reliability(labels, np.full(6, 0.5)),
    }
    assert reliability_png(curves, "reliability").startswith(PNG_MAGIC)


def test_attention_has_one_weight_per_atom_and_draws() -> None:
    torch.manual_seed(0)
    model = DrugBAN().eval()
    data = PairData.from_lists(SMILES, PROTEINS, [1, 0])
    graphs, proteins = data.batch(torch.arange(2))
    weights = atom_attention(model, graphs, proteins)
    assert [len(w) for w in weights] == graphs.num_nodes.tolist()
    assert all(np.isfinite(w).all() for w in weights)
    # PairData orders molecules by SMILES; row i of the batch is pair i
    first = data.molecules.num_nodes[data.drug_idx[0]].item()
    assert len(weights[0]) == first == 13
    assert attention_png(SMILES[0], weights[0]).startswith(PNG_MAGIC)
    with pytest.raises(ValueError, match="do not fit"):
        attention_png(SMILES[1], weights[0])


def test_attention_of_a_single_atom_molecule_is_the_atom_drawn_alone() -> None:
    assert attention_png("[Na+]", np.array([1.0])).startswith(PNG_MAGIC)
