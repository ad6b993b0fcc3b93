"""Train and evaluate DrugBAN: the one pipeline of ``drugrepo train`` and the training assets.

Scores are probabilities (``sigmoid(logit)``) everywhere a threshold is chosen or applied: the
threshold is the F1-optimal one on validation (`evaluate.choose_threshold`), applied unchanged to test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.ml.evaluate import SplitMetrics, evaluate, sigmoid
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.model.calibration import (
    Calibration,
    Reliability,
    Temperature,
    calibration,
    reliability,
)
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.training.cdan import CDANConfig
from drugrepo_assets.ml.training.train import EpochRecord, TrainConfig, TrainResult, train


def pair_data(table: pd.DataFrame, labelled: bool = True) -> PairData:
    """Validated pairs (``smiles``, ``protein``, ``label``, as `data.validate` writes them) as model inputs;
    ``labelled=False`` leaves the labels out (CDAN's target-domain training pairs)."""
    labels = table["label"].tolist() if labelled else None
    return PairData.from_lists(table["smiles"].tolist(), table["protein"].tolist(), labels)


@dataclass(frozen=True)
class Evaluation:
    """Validation and test metrics at the validation threshold, the scores (probabilities) and logits behind
    them, and the checkpoint's temperature (`ml.model.calibration`)."""

    metrics: SplitMetrics
    scores: dict[str, np.ndarray]
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    temperature: Temperature = field(default_factory=Temperature)

    def calibration(self) -> dict[str, Calibration]:
        """Brier score and ECE of each split before and after temperature scaling."""
        return {name: calibration(self.labels[name], logits, self.temperature) for name, logits in self.logits.items()}

    def reliability(self, split: str) -> dict[str, Reliability]:
        """Reliability curves of ``split``, raw and temperature-scaled, keyed by a legend label."""
        labels, logits = self.labels[split], self.logits[split]
        scaled = f"T = {self.temperature.value:.3g}" if self.temperature.fitted else "T = 1 (none recorded)"
        return {
            "raw": reliability(labels, sigmoid(logits)),
            scaled: reliability(labels, self.temperature.apply(logits)),
        }

    @property
    def threshold(self) -> float:
        """The probability threshold chosen on validation."""
        return self.metrics.val.threshold


def evaluate_model(
    model: DrugBAN,
    val: PairData,
    test: PairData,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    temperature: Temperature | None = None,
) -> Evaluation:
    """Score ``val`` and ``test`` with ``model``; metrics on both at the threshold chosen on ``val``, and
    calibration with the checkpoint's ``temperature`` (None: T = 1, not fitted)."""
    logits = {name: predict_logits(model, data, batch_size, device) for name, data in (("val", val), ("test", test))}
    scores = {name: sigmoid(x) for name, x in logits.items()}
    if val.labels is None or test.labels is None:
        raise ValueError("evaluation needs labelled validation and test pairs")
    labels = {"val": val.labels.numpy(), "test": test.labels.numpy()}
    metrics = evaluate(labels["val"], scores["val"], labels["test"], scores["test"])
    return Evaluation(metrics, scores, logits, labels, temperature or Temperature())


def train_and_evaluate(
    parts: Mapping[str, PairData],
    out_dir: Path,
    config: TrainConfig | None = None,
    model_config: DrugBANConfig | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    *,
    da: CDANConfig | None = None,
    target_data: PairData | None = None,
) -> tuple[TrainResult, Evaluation | None]:
    """Train on ``parts["train"]`` (best epoch by ``parts["val"]``), then evaluate on ``parts["test"]`` when given.

    With ``da`` and ``target_data`` (unlabelled target-domain pairs, e.g. a cluster split's ``target_train``)
    the training is CDAN's (`train.train`); ``val`` is then the source domain's and ``test`` the target's.
    """
    config = config or TrainConfig()
    result = train(
        parts["train"],
        parts["val"],
        out_dir,
        config,
        model_config,
        resume=resume,
        on_epoch=on_epoch,
        da=da,
        target_data=target_data,
    )
    test = parts.get("test")
    if test is None or test.labels is None or not len(test):
        return result, None
    temperature = load_checkpoint(str(result.best_path)).temperature  # fitted by training
    return result, evaluate_model(result.model, parts["val"], test, result.device, config.eval_batch_size, temperature)
