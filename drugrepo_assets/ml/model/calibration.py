"""Calibrated probabilities by temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", 2017).

One scalar T is fitted on the validation logits by minimising their negative log-likelihood; the calibrated
probability of a logit z is sigmoid(z / T). T > 0 divides every logit alike, so ranks, AUROC and the order of
every table are unchanged: only the probabilities move. Training stores T in the checkpoint's extras
(`TEMPERATURE_KEY`; the checkpoint id depends on the weights only, so it is unchanged); a checkpoint without
one (the golden checkpoint, a reference state_dict) is read as T = 1 and says so (`Temperature.note`).

How calibrated a set of probabilities is: the Brier score (mean squared error against the 0/1 labels) and the
expected calibration error of Guo et al. with their binning, `ECE_BINS` equal-width bins ((m-1)/M, m/M],
0 in the first, each bin's |mean probability − positive rate| weighted by its share of the pairs. It is
taken on the positive-class probability (the score reported), as for a binary classifier's reliability
diagram (scikit-learn's ``calibration_curve``), not on the top-label confidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from drugrepo_assets.ml.evaluate import sigmoid

__all__ = [
    "CALIBRATED_COLUMN",
    "ECE_BINS",
    "LOG_TEMPERATURE_BOUNDS",
    "TEMPERATURE_KEY",
    "Calibration",
    "Reliability",
    "Temperature",
    "brier_score",
    "calibration",
    "checkpoint_temperature",
    "expected_calibration_error",
    "fit_temperature",
    "reliability",
]

ECE_BINS = 15
"""Equal-width probability bins of the expected calibration error and the reliability diagram (Guo et al.'s M)."""
TEMPERATURE_KEY = "temperature"
"""The checkpoint extra holding the fitted temperature."""
CALIBRATED_COLUMN = "calibrated_score"
"""The calibrated probability sigmoid(logit / T), beside ``logit`` and ``score`` in every table and response."""
LOG_TEMPERATURE_BOUNDS = (-5.0, 5.0)
"""The search interval of log T (T from 0.0067 to 148): far outside any fitted value, so it never binds in practice."""
_SEARCH_STEPS = 120
"""Golden-section steps: the interval shrinks by 0.618 a step, so 120 steps leave it below 1e-24 wide."""


def _nll(labels: np.ndarray, logits: np.ndarray, log_t: float) -> float:
    """Mean binary cross-entropy of sigmoid(logits / exp(log_t)), computed stably from the logits."""
    z = logits / math.exp(log_t)
    return float(np.mean(np.logaddexp(0.0, z) - labels * z))


def _pairs(labels: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (0/1, float64) and values (float64), checked: same length, at least one, all finite."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    x = np.asarray(values, dtype=np.float64).ravel()
    if y.shape != x.shape:
        raise ValueError(f"labels ({len(y)}) and values ({len(x)}) differ in length")
    if not len(y):
        raise ValueError("no pairs to calibrate on")
    if not (np.isfinite(x).all() and np.isin(y, (0.0, 1.0)).all()):
        raise ValueError("calibration needs finite values and 0/1 labels")
    return y, x


def fit_temperature(labels: np.ndarray, logits: np.ndarray) -> float:
    """The T > 0 minimising the NLL of sigmoid(logits / T) on these (validation) labels; deterministic.

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search over
    `LOG_TEMPERATURE_BOUNDS` finds its minimum to float precision, with no random start and no solver state.
    """
    y, z = _pairs(labels, logits)
    lo, hi = LOG_TEMPERATURE_BOUNDS
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _nll(y, z, a), _nll(y, z, b)
    for _ in range(_SEARCH_STEPS):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - ratio) * (hi - lo)
            fa = _nll(y, z, a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _nll(y, z, b)
    return math.exp((lo + hi) / 2)


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean squared difference between the probabilities and the 0/1 labels (0 is perfect, 0.25 a coin)."""
    y, p = _pairs(labels, probabilities)
    return float(np.mean((p - y) ** 2))


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's data: per bin ((edges[m], edges[m+1]]), its pairs, mean probability and positive rate.

    Empty bins hold count 0 and NaN means.
    """

    edges: list[float]
    counts: list[int]
    mean_probability: list[float]
    positive_rate: list[float]

    def as_dict(self) -> dict[str, list[Any]]:
        """Plain lists for JSON and Dagster metadata."""
        return asdict(self)


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> Reliability:
    """Pairs binned by probability into ``bins`` equal-width bins ((m-1)/M, m/M], 0 in the first."""
    y, p = _pairs(labels, probabilities)
    which = np.clip(np.ceil(p * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(which, weights=p, minlength=bins) / counts
        rate = np.bincount(which, weights=y, minlength=bins) / counts
    return Reliability(
        edges=np.linspace(0.0, 1.0, bins + 1).tolist(),
        counts=counts.tolist(),
        mean_probability=mean_p.tolist(),
        positive_rate=rate.tolist(),
    )


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ_m (n_m / n) · |mean probability_m − positive rate_m| over the ``bins`` equal-width bins (Guo et al.)."""
    table = reliability(labels, probabilities, bins)
    n = sum(table.counts)
    return float(
        sum(c / n * abs(p - r) for c, p, r in zip(table.counts, table.mean_probability, table.positive_rate) if c > 0)
    )


@dataclass(frozen=True)
class Temperature:
    """The temperature a checkpoint records; ``fitted`` is False where it records none and T = 1 stands in."""

    value: float = 1.0
    fitted: bool = False

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities sigmoid(logits / T), float64; NaN (an unscored row) stays NaN."""
        return sigmoid(np.asarray(logits, dtype=np.float64) / self.value)

    def note(self) -> str | None:
        """The one line that says a checkpoint is uncalibrated (None when T was fitted)."""
        if self.fitted:
            return None
        return f"the checkpoint records no temperature: {CALIBRATED_COLUMN} = score (T = 1, not calibrated)"


def checkpoint_temperature(extra: Mapping[str, Any]) -> Temperature:
    """The temperature in a checkpoint's extras (`model.load_checkpoint`); T = 1, not fitted, where there is none."""
    value = extra.get(TEMPERATURE_KEY)
    if value is None:
        return Temperature()
    if isinstance(value, bool) or not isinstance(value, int | float) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{TEMPERATURE_KEY} = {value!r} is not a positive finite number")
    return Temperature(float(value), fitted=True)


@dataclass(frozen=True)
class Calibration:
    """Brier score and ECE of one labelled set before (sigmoid(logit)) and after (sigmoid(logit / T)) scaling."""

    temperature: float
    fitted: bool
    n: int
    brier_raw: float
    brier_calibrated: float
    ece_raw: float
    ece_calibrated: float

    def as_dict(self) -> dict[str, float | int | bool]:
        """Plain dict for metrics.json, MLflow and Dagster metadata."""
        return asdict(self)


def calibration(labels: np.ndarray, logits: np.ndarray, temperature: Temperature) -> Calibration:
    """How calibrated the raw and the temperature-scaled probabilities of these labelled logits are."""
    y, z = _pairs(labels, logits)
    raw, scaled = sigmoid(z), temperature.apply(z)
    return Calibration(
        temperature=temperature.value,
        fitted=temperature.fitted,
        n=len(y),
        brier_raw=brier_score(y, raw),
        brier_calibrated=brier_score(y, scaled),
        ece_raw=expected_calibration_error(y, raw),
        ece_calibrated=expected_calibration_error(y, scaled),
    )
