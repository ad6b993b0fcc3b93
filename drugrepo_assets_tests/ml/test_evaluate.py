"""Metrics and the validation-chosen threshold, on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest

from drugrepo_assets.ml.evaluate import binary_metrics, choose_threshold, evaluate, sigmoid


def test_binary_metrics_hand_computed() -> None:
    labels = np.array([1, 1, 0, 0, 1])
    scores = np.array([0.9, 0.4, 0.35, 0.1, 0.8])
    m = binary_metrics(labels, scores, 0.5)  # predicted [1, 0, 0, 0, 1]: tp 2, fn 1, tn 2, fp 0
    assert (m.accuracy, m.sensitivity, m.specificity, m.precision) == (0.8, pytest.approx(2 / 3), 1.0, 1.0)
    assert m.f1 == pytest.approx(0.8)
    assert m.auroc == 1.0  # every positive outscores every negative
    assert (m.n, m.positives, m.threshold) == (5, 3, 0.5)


def test_sensitivity_and_specificity_are_not_swapped() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.2, 0.1, 0.3, 0.05])
    m = binary_metrics(labels, scores, 0.5)
    assert m.sensitivity == 0.5  # 2 of 4 positives found
    assert m.specificity == 1.0  # both negatives below the threshold


def test_threshold_maximises_f1_on_validation() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.6, 0.8])
    assert choose_threshold(labels, scores) == pytest.approx(0.3)  # all of 0.3, 0.7, 0.8 positive: F1 6/7


def test_test_metrics_use_the_validation_threshold() -> None:
    val_labels, val_scores = np.array([0, 1, 0, 1]), np.array([0.2, 0.6, 0.4, 0.9])
    test_labels, test_scores = np.array([0, 1, 1, 0]), np.array([0.1, 0.65, 0.5, 0.3])
    result = evaluate(val_labels, val_scores, test_labels, test_scores)
    assert result.val.threshold == result.test.threshold == pytest.approx(0.6)
    assert result.test.sensitivity == 0.5  # 0.5 < 0.6: the test set's own best cut is not used


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="both classes"):
        binary_metrics(np.array([1, 1]), np.array([0.2, 0.3]), 0.5)
    with pytest.raises(ValueError, match="NaN"):
        binary_metrics(np.array([1, 0]), np.array([np.nan, 0.3]), 0.5)
    with pytest.raises(ValueError, match="differ in length"):
        binary_metrics(np.array([1, 0, 1]), np.array([0.2, 0.3]), 0.5)


def test_sigmoid_is_stable_for_large_logits() -> None:
    np.testing.assert_allclose(sigmoid(np.array([-800.0, 0.0, 800.0])), [0.0, 0.5, 1.0])
