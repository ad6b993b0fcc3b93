"""Train and evaluate DrugBAN: the one pipeline of ``drugrepo train`` and the training assets.

Scores are probabilities (``sigmoid(logit)``) everywhere a threshold is chosen or applied: the
threshold is the F1-optimal one on validation (`evaluate.choose_threshold`), applied unchanged to test.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.ml.dataset import PairData
from drugrepo_assets.ml.evaluate import BinaryMetrics, evaluate, sigmoid
from drugrepo_assets.ml.model import DrugBAN, DrugBANConfig
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.train import EpochRecord, TrainConfig, TrainResult, train


def pair_data(table: pd.DataFrame) -> PairData:
    """Validated pairs (``smiles``, ``protein``, ``label``, as `data.validate` writes them) as model inputs."""
    return PairData.from_lists(table["smiles"].tolist(), table["protein"].tolist(), table["label"].tolist())


@dataclass(frozen=True)
class Evaluation:
    """Validation and test metrics at the validation threshold, and the scores (probabilities) behind them."""

    metrics: dict[str, BinaryMetrics]
    scores: dict[str, np.ndarray]

    @property
    def threshold(self) -> float:
        """The probability threshold chosen on validation."""
        return self.metrics["val"].threshold


def evaluate_model(
    model: DrugBAN, val: PairData, test: PairData, device: str | torch.device = "cpu", batch_size: int = 256
) -> Evaluation:
    """Score ``val`` and ``test`` with ``model``; metrics on both at the threshold chosen on ``val``."""
    scores = {
        name: sigmoid(predict_logits(model, data, batch_size, device)) for name, data in (("val", val), ("test", test))
    }
    if val.labels is None or test.labels is None:
        raise ValueError("evaluation needs labelled validation and test pairs")
    metrics = evaluate(val.labels.numpy(), scores["val"], test.labels.numpy(), scores["test"])
    return Evaluation(metrics=metrics, scores=scores)


def train_and_evaluate(
    parts: Mapping[str, PairData],
    out_dir: Path,
    config: TrainConfig | None = None,
    model_config: DrugBANConfig | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> tuple[TrainResult, Evaluation | None]:
    """Train on ``parts["train"]`` (best epoch by ``parts["val"]``), then evaluate on ``parts["test"]`` when given."""
    config = config or TrainConfig()
    result = train(parts["train"], parts["val"], out_dir, config, model_config, resume=resume, on_epoch=on_epoch)
    test = parts.get("test")
    if test is None or test.labels is None or not len(test):
        return result, None
    return result, evaluate_model(result.model, parts["val"], test, result.device, config.eval_batch_size)
