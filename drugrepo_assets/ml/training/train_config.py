"""`TrainConfig`, the one place of the training defaults (epochs, batch size, learning rate, patience, seed,
device): `ml.training.train` trains with it, the Dagster `TrainingProfile` and ``drugrepo train``'s options take their
defaults from it. Plain Python, so that building the command line's parser loads no torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["TrainConfig"]


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
