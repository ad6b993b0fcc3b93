"""`TrainConfig`, the one place of the training defaults (epochs, batch size, learning rate, patience, seed,
device), and CDAN's (`CDANConfig`, `CDAN_LR`, `CDAN_BATCH_SIZE`): `ml.training.train` trains with them, the Dagster
`TrainingProfile` and ``drugrepo train``'s options take their defaults from them. What an epoch produced
(`EpochRecord`, `CDANEpochRecord`) is here too, as the stored records hold it. Plain Python, so that building
the command line's parser and loading the Dagster definitions load no torch (`ml.training.cdan`, which uses
CDAN's, does)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CDAN_BATCH_SIZE", "CDAN_LR", "CDANConfig", "CDANEpochRecord", "EpochRecord", "TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults are the reference's (Adam, lr 5e-5, batch 64, 100 epochs)."""

    epochs: int = 100
    batch_size: int = 64
    lr: float = 5e-5
    patience: int | None = 20
    seed: int = 0
    eval_batch_size: int = 256
    amp: bool = True
    device: str = "auto"
    max_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints and experiment tracking."""
        return asdict(self)


CDAN_LR = 1e-4
"""The model's learning rate in the reference's configs/DrugBAN_DA.yaml (``SOLVER.LR``; vanilla's is 5e-5)."""
CDAN_BATCH_SIZE = 32
"""The batch size of source and of target pairs in configs/DrugBAN_DA.yaml (``SOLVER.BATCH_SIZE``; vanilla's is 64)."""


@dataclass(frozen=True)
class CDANConfig:
    """CDAN settings; defaults are the reference's configs/DrugBAN_DA.yaml (and its configs.py for the rest)."""

    da_lr: float = 5e-5
    init_epoch: int = 10
    random_dim: int = 256
    use_entropy: bool = False
    alpha: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for checkpoints."""
        return asdict(self)


@dataclass
class EpochRecord:
    """What one epoch produced."""

    epoch: int
    train_loss: float
    val_auroc: float
    val_auprc: float
    seconds: float
    pairs_per_s: float


@dataclass
class CDANEpochRecord(EpochRecord):
    """What one CDAN epoch produced: ``train_loss`` is the total, as the reference logs it; ``da_loss`` is
    NaN in the warm-up epochs (before ``init_epoch``), which train the classification loss only."""

    model_loss: float = math.nan
    da_loss: float = math.nan
