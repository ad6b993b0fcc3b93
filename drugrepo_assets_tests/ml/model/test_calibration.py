"""Temperature scaling, ECE and Brier score: a known temperature recovered, hand-computed values, ranks kept,
and the temperature stored with a trained checkpoint without changing its id."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.evaluate import sigmoid
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.model.calibration import (
    ECE_BINS,
    TEMPERATURE_KEY,
    Temperature,
    brier_score,
    calibration,
    checkpoint_temperature,
    expected_calibration_error,
    fit_temperature,
    reliability,
)
from drugrepo_assets.ml.model.checkpoint import checkpoint_id, load_checkpoint, save_checkpoint
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.training.train import TrainConfig, train

# Hand-computed: bins of width 1/15; 0.05 → bin 0, 0.1 → bin 1, 0.5 and 0.52 → bin 7, 0.9 → bin 13, 0.95 → bin 14.
HAND_P = np.array([0.05, 0.1, 0.5, 0.52, 0.9, 0.95])
HAND_Y = np.array([0, 0, 1, 0, 1, 1])
HAND_ECE = (0.05 + 0.1 + 2 * abs(0.51 - 0.5) + 0.1 + 0.05) / 6
HAND_BRIER = (0.05**2 + 0.1**2 + 0.5**2 + 0.52**2 + 0.1**2 + 0.05**2) / 6


def _calibrated_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a calibrated model (labels drawn from sigmoid(logit)), and those labels."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, n)
    labels = (rng.random(n) < sigmoid(logits)).astype(np.int64)
    return logits, labels


@pytest.mark.parametrize("factor", [0.4, 1.0, 2.5])
def test_fit_recovers_a_known_temperature(factor: float) -> None:
    logits, labels = _calibrated_sample(40_000, seed=7)
    fitted = fit_temperature(labels, logits * factor)  # over- (factor > 1) or under-confident (< 1) by a known factor
    assert fitted == pytest.approx(factor, rel=0.05)
    assert fit_temperature(labels, logits * factor) == fitted  # deterministic


def test_scaling_lowers_the_calibration_error_of_an_overconfident_model() -> None:
    logits, labels = _calibrated_sample(20_000, seed=3)
    overconfident = logits * 3.0
    report = calibration(labels, overconfident, Temperature(fit_temperature(labels, overconfident), fitted=True))
    assert report.ece_calibrated < report.ece_raw / 3
    assert report.brier_calibrated < report.brier_raw
    assert report.n == 20_000 and report.fitted


def test_ece_and_brier_against_hand_computed_values() -> None:
    assert expected_calibration_error(HAND_Y, HAND_P) == pytest.approx(HAND_ECE, abs=1e-12)
    assert brier_score(HAND_Y, HAND_P) == pytest.approx(HAND_BRIER, abs=1e-12)
    table = reliability(HAND_Y, HAND_P)
    assert len(table.counts) == ECE_BINS and len(table.edges) == ECE_BINS + 1
    assert [i for i, c in enumerate(table.counts) if c] == [0, 1, 7, 13, 14]
    assert table.counts[7] == 2 and table.mean_probability[7] == pytest.approx(0.51)
    assert table.positive_rate[7] == pytest.approx(0.5) and np.isnan(table.mean_probability[2])


def test_probabilities_zero_and_one_fall_in_the_end_bins() -> None:
    table = reliability(np.array([0, 1]), np.array([0.0, 1.0]))
    assert table.counts[0] == 1 and table.counts[-1] == 1
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_scaling_is_monotonic_and_keeps_ranks() -> None:
    logits, labels = _calibrated_sample(2_000, seed=11)
    for t in (0.3, 1.0, 4.0):
        scaled = Temperature(t, fitted=True).apply(logits)
        order = np.argsort(logits, kind="stable")
        assert (np.diff(scaled[order]) >= 0).all()
        assert np.array_equal(np.argsort(scaled, kind="stable"), order)
        assert roc_auc_score(labels, scaled) == roc_auc_score(labels, logits)
    assert np.isnan(Temperature(2.0, fitted=True).apply(np.array([np.nan]))).all()


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        fit_temperature(np.array([0, 1]), np.array([0.1]))
    with pytest.raises(ValueError, match="finite"):
        brier_score(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="0/1 labels"):
        expected_calibration_error(np.array([0, 2]), np.array([0.1, 0.2]))


def test_a_checkpoint_without_a_temperature_reads_as_one_and_says_so() -> None:
    missing = checkpoint_temperature({"checkpoint_id": "x"})
    assert missing == Temperature(1.0, fitted=False)
    assert missing.note() is not None and "T = 1" in (missing.note() or "")
    assert np.array_equal(missing.apply(np.array([-2.0, 0.5])), sigmoid(np.array([-2.0, 0.5])))
    stored = checkpoint_temperature({TEMPERATURE_KEY: 1.5})
    assert stored == Temperature(1.5, fitted=True) and stored.note() is None
    for bad in (0.0, -1.0, float("nan"), float("inf"), "2", True):
        with pytest.raises(ValueError, match=TEMPERATURE_KEY):
            checkpoint_temperature({TEMPERATURE_KEY: bad})


def test_the_temperature_travels_in_the_checkpoint_and_leaves_its_id(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DrugBAN().eval()
    save_checkpoint(str(tmp_path / "t.pt"), model, **{TEMPERATURE_KEY: 1.75})
    loaded = load_checkpoint(str(tmp_path / "t.pt"))
    assert loaded.temperature == Temperature(1.75, fitted=True)
    assert loaded.checkpoint_id == checkpoint_id(loaded.model) == checkpoint_id(model)


def test_training_stores_the_temperature_fitted_on_the_best_epochs_validation_logits(tmp_path: Path) -> None:
    rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv").head(80)
    make = lambda t: PairData.from_lists(t.SMILES.tolist(), t.Protein.tolist(), t.Y.tolist())  # noqa: E731
    train_data, val_data = make(rows.head(48)), make(rows.tail(32))
    result = train(train_data, val_data, tmp_path, TrainConfig(epochs=1, batch_size=16, seed=2))
    temperature = load_checkpoint(str(result.best_path)).temperature
    expected = fit_temperature(val_data.require_labels().numpy(), predict_logits(result.model, val_data))
    assert temperature == Temperature(expected, fitted=True)
