"""Metrics for binary DTI prediction, with the decision threshold chosen on validation only.

The reference picks its threshold on the test set and reports sensitivity and specificity
swapped; here the threshold is the F1-optimal one on validation, applied unchanged to test.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class BinaryMetrics:
    """Threshold-free (AUROC, AUPRC) and thresholded metrics of one set of scores."""

    auroc: float
    auprc: float
    threshold: float
    accuracy: float
    sensitivity: float
    specificity: float
    precision: float
    f1: float
    n: int
    positives: int

    def as_dict(self) -> dict[str, float]:
        """Plain dict for logging (MLflow, JSON, Dagster metadata)."""
        return asdict(self)


@dataclass(frozen=True)
class SplitMetrics:
    """Validation and test metrics, both at the threshold chosen on validation (`evaluate`)."""

    val: BinaryMetrics
    test: BinaryMetrics

    def items(self) -> tuple[tuple[str, BinaryMetrics], ...]:
        """(split name, metrics) in the order written, val then test: the names metrics.json and MLflow use."""
        return (("val", self.val), ("test", self.test))

    def as_dict(self) -> dict[str, dict[str, float]]:
        """Each split's plain dict, keyed by its name, as metrics.json and Dagster metadata write them."""
        return {name: metrics.as_dict() for name, metrics in self.items()}


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Interaction probability from logits, in float64 so that large logits neither overflow nor tie."""
    x = np.asarray(logits, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN (an unscored row) stays NaN
        return np.exp(-np.logaddexp(0.0, -x))


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels ({labels.shape[0]}) and scores ({scores.shape[0]}) differ in length")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    if len(np.unique(labels)) != 2:
        raise ValueError("AUROC needs both classes among the labels")
    return labels, scores


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold maximising F1 on these (validation) labels; predict positive if ≥ it."""
    from sklearn.metrics import precision_recall_curve  # here, not at module level: scikit-learn imports in ~1 s

    labels, scores = _check(labels, scores)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> BinaryMetrics:
    """AUROC, AUPRC and accuracy / sensitivity (TPR) / specificity (TNR) / F1 at ``threshold``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels, scores = _check(labels, scores)
    pred = scores >= threshold
    pos = labels == 1
    tp = int((pred & pos).sum())
    tn = int((~pred & ~pos).sum())
    fp = int((pred & ~pos).sum())
    fn = int((~pred & pos).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    sensitivity = tp / (tp + fn)
    return BinaryMetrics(
        auroc=float(roc_auc_score(labels, scores)),
        auprc=float(average_precision_score(labels, scores)),
        threshold=float(threshold),
        accuracy=(tp + tn) / len(labels),
        sensitivity=sensitivity,
        specificity=tn / (tn + fp),
        precision=precision,
        f1=2 * precision * sensitivity / (precision + sensitivity) if precision + sensitivity else 0.0,
        n=len(labels),
        positives=int(pos.sum()),
    )


def evaluate(
    val_labels: np.ndarray, val_scores: np.ndarray, test_labels: np.ndarray, test_scores: np.ndarray
) -> SplitMetrics:
    """Validation and test metrics, both at the threshold chosen on validation."""
    threshold = choose_threshold(val_labels, val_scores)
    return SplitMetrics(
        val=binary_metrics(val_labels, val_scores, threshold),
        test=binary_metrics(test_labels, test_scores, threshold),
    )
