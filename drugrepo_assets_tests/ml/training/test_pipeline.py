"""The one train-and-evaluate pipeline: thresholds on probabilities chosen on validation, no evaluation without test pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.data.validate import validate_pairs
from drugrepo_assets.ml.evaluate import binary_metrics, choose_threshold, sigmoid
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.model.checkpoint import checkpoint_id, load_checkpoint
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.training.pipeline import evaluate_model, pair_data, train_and_evaluate
from drugrepo_assets.ml.training.train import TrainConfig, TrainResult

SMALL = DrugBANConfig(
    node_in_embedding=16,
    hidden_feats=(16, 16, 16),
    protein_emb_dim=16,
    num_filters=(16, 16, 16),
    mlp_in_dim=16,
    mlp_hidden_dim=32,
    mlp_out_dim=16,
)
"""A small DrugBAN: these tests check the pipeline's wiring and thresholds, not the model."""
CONFIG = TrainConfig(epochs=1, batch_size=16, seed=2)


@pytest.fixture(scope="module")
def parts() -> dict[str, PairData]:
    """96 real human pairs, validated as every surface validates them, cut into train, val and test."""
    valid = validate_pairs(read_pairs(str(bundled_root() / "human" / "random" / "train.csv"))).valid.head(96)
    return {"train": pair_data(valid.head(48)), "val": pair_data(valid.iloc[48:72]), "test": pair_data(valid.tail(24))}


@pytest.fixture(scope="module")
def trained(parts: dict[str, PairData], tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, Path]:
    """One epoch without test pairs: no evaluation comes back."""
    out = tmp_path_factory.mktemp("run")
    result, evaluation = train_and_evaluate({"train": parts["train"], "val": parts["val"]}, out, CONFIG, SMALL)
    assert evaluation is None
    return result, out


def test_pair_data_reads_the_validated_columns() -> None:
    table = pd.DataFrame({"smiles": ["CCO", "c1ccccc1", "CCO"], "protein": ["MKT", "MKV", "MKV"], "label": [1, 0, 1]})
    data = pair_data(table)
    assert len(data) == 3 and data.require_labels().tolist() == [1.0, 0.0, 1.0]
    assert data.drug_idx.tolist() == [0, 1, 0] and data.protein_idx.tolist() == [0, 1, 1]


def test_no_evaluation_without_test_pairs(
    parts: dict[str, PairData], trained: tuple[TrainResult, Path], tmp_path: Path
) -> None:
    result, out = trained
    assert result.best_epoch == 1 and result.best_path.is_file()
    empty = PairData.from_lists([], [], [])
    again, evaluation = train_and_evaluate(
        {"train": parts["train"], "val": parts["val"], "test": empty}, out, CONFIG, SMALL, resume=True
    )
    assert evaluation is None and again.best_epoch == 1


def test_train_and_evaluate_chooses_the_probability_threshold_on_val(
    parts: dict[str, PairData], trained: tuple[TrainResult, Path]
) -> None:
    _, out = trained
    result, evaluation = train_and_evaluate(parts, out, CONFIG, SMALL, resume=True)  # the epoch is done: evaluate
    assert evaluation is not None
    loaded = load_checkpoint(str(result.best_path))
    model = loaded.model
    assert loaded.checkpoint_id == checkpoint_id(result.model)
    probabilities = {name: sigmoid(predict_logits(model, parts[name])) for name in ("val", "test")}
    for name, scores in probabilities.items():
        np.testing.assert_allclose(evaluation.scores[name], scores, rtol=0, atol=1e-6)
        assert ((scores > 0) & (scores < 1)).all()
    val_labels = parts["val"].require_labels().numpy()
    assert 0.0 <= evaluation.threshold <= 1.0
    assert evaluation.threshold == evaluation.metrics.val.threshold == evaluation.metrics.test.threshold
    assert evaluation.threshold == choose_threshold(val_labels, evaluation.scores["val"])
    assert evaluation.threshold == pytest.approx(choose_threshold(val_labels, probabilities["val"]), rel=1e-5)
    test_labels = parts["test"].require_labels().numpy()
    assert evaluation.metrics.test == binary_metrics(test_labels, evaluation.scores["test"], evaluation.threshold)


def test_evaluate_model_needs_labelled_pairs(parts: dict[str, PairData], trained: tuple[TrainResult, Path]) -> None:
    model = trained[0].model
    test = parts["test"]
    unlabelled = PairData(test.molecules, test.proteins, test.drug_idx, test.protein_idx)
    with pytest.raises(ValueError, match="labelled validation and test pairs"):
        evaluate_model(model, parts["val"], unlabelled)
    evaluation = evaluate_model(model, parts["val"], test)
    assert evaluation.threshold == choose_threshold(parts["val"].require_labels().numpy(), evaluation.scores["val"])
