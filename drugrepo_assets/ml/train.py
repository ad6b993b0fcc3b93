"""DrugBAN training: Adam, early stopping and best-epoch selection on validation AUROC, resumable.

Every epoch writes ``last.pt`` (weights, config, optimiser, epoch, history); the best epoch by
validation AUROC is kept as ``best.pt``. Both are written atomically, so a run killed mid-write
leaves the previous complete file (its half-written temporary is removed when the next run starts). Shuffling and dropout are seeded per epoch, so a run
resumed from ``last.pt`` continues exactly as an uninterrupted one would (on CPU).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from drugrepo_assets.files import remove_partial_writes
from drugrepo_assets.ml.calibration import TEMPERATURE_KEY, fit_temperature
from drugrepo_assets.ml.dataset import PairData
from drugrepo_assets.ml.evaluate import binary_metrics
from drugrepo_assets.ml.featurize import GraphBatch
from drugrepo_assets.ml.model import DrugBAN, DrugBANConfig, load_checkpoint, save_checkpoint
from drugrepo_assets.ml.predict import predict_logits


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
class TrainResult:
    """The outcome of a training run; ``model`` holds the best epoch's weights, in eval mode."""

    model: DrugBAN
    best_epoch: int
    best_val_auroc: float
    history: list[EpochRecord]
    best_path: Path
    last_path: Path
    device: str
    wall_seconds: float
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _train_epoch(
    model: DrugBAN,
    data: PairData,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    epoch: int,
    device: torch.device,
) -> float:
    """One pass over shuffled training pairs; returns the mean loss (NaN if any batch was NaN)."""
    model.train()
    torch.manual_seed(config.seed * 100_003 + epoch)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch))
    n_batches = max(1, len(perm) // config.batch_size)  # drop the ragged last batch, as the reference does
    use_amp = config.amp and device.type == "cuda"
    total, seen = 0.0, 0
    for b in range(n_batches):
        rows = perm[b * config.batch_size : (b + 1) * config.batch_size]
        graphs, proteins = data.batch(rows)
        loss = train_step(model, optimizer, graphs, proteins, data.require_labels()[rows].to(device), use_amp)
        total += float(loss) * len(rows)
        seen += len(rows)
    return total / seen


def adam(model: torch.nn.Module, lr: float) -> torch.optim.Adam:
    """The reference's optimiser: Adam at its defaults (betas 0.9/0.999, eps 1e-8, no weight decay) but ``lr``."""
    return torch.optim.Adam(model.parameters(), lr=lr)


def train_step(
    model: DrugBAN,
    optimizer: torch.optim.Optimizer,
    graphs: GraphBatch,
    proteins: torch.Tensor,
    labels: torch.Tensor,
    use_amp: bool = False,
) -> torch.Tensor:
    """One step of the reference's ``train_epoch`` on one batch (train mode); returns the batch's mean loss.

    The loss is BCE on the logit (``binary_cross_entropy_with_logits``), the reference's
    ``BCELoss(sigmoid(logit))`` without its saturation: equal wherever that is finite. It is taken in
    the labels' dtype (float32 under AMP; float64 in the step-by-step comparison with the reference).
    """
    device = labels.device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(graphs.to(device), proteins.to(device))
    loss = F.binary_cross_entropy_with_logits(logits.to(labels.dtype), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """Deterministic kernels for the duration (on CPU: ordered scatter-adds in the graph gathers)."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def train(
    train_data: PairData,
    val_data: PairData,
    out_dir: Path,
    config: TrainConfig | None = None,
    model_config: DrugBANConfig | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train DrugBAN; keep the epoch with the best validation AUROC.

    Stops after ``patience`` epochs without gain, or at the first epoch boundary past ``max_seconds``.
    """
    if train_data.labels is None or val_data.labels is None:
        raise ValueError("training and validation pairs need labels")
    config, model_config = config or TrainConfig(), model_config or DrugBANConfig()
    with _deterministic(resolve_device(config.device).type == "cpu"):
        return _train(train_data, val_data, Path(out_dir), config, model_config, resume, on_epoch)


def _train(
    train_data: PairData,
    val_data: PairData,
    out_dir: Path,
    config: TrainConfig,
    model_config: DrugBANConfig,
    resume: bool,
    on_epoch: Callable[[EpochRecord], None] | None,
) -> TrainResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    for path in (last_path, best_path):
        remove_partial_writes(path)  # a killed run's half-written checkpoint; the file itself is whole
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = DrugBAN(model_config).to(device)
    optimizer = adam(model, config.lr)
    history: list[EpochRecord] = []
    start_epoch, best_epoch, best_auroc, since_best = 1, 0, -math.inf, 0
    if resume and last_path.exists():
        model, state = load_checkpoint(str(last_path), map_location=device)
        optimizer = adam(model, config.lr)
        optimizer.load_state_dict(state["optimizer"])
        history = [EpochRecord(**h) for h in state["history"]]
        start_epoch = int(state["epoch"]) + 1
        best_epoch, best_auroc = int(state["best_epoch"]), float(state["best_val_auroc"])
        since_best = start_epoch - 1 - best_epoch
    t0 = time.perf_counter()
    val_labels = val_data.require_labels().numpy()
    stopped_early = False
    for epoch in range(start_epoch, config.epochs + 1):
        if config.patience is not None and since_best >= config.patience:
            stopped_early = True
            break
        t_epoch = time.perf_counter()
        loss = _train_epoch(model, train_data, optimizer, config, epoch, device)
        train_seconds = time.perf_counter() - t_epoch
        val_scores = predict_logits(model, val_data, config.eval_batch_size, device)
        val = binary_metrics(val_labels, val_scores, 0.0) if np.isfinite(val_scores).all() else None
        record = EpochRecord(
            epoch=epoch,
            train_loss=loss,
            val_auroc=val.auroc if val else float("nan"),
            val_auprc=val.auprc if val else float("nan"),
            seconds=time.perf_counter() - t_epoch,
            pairs_per_s=(len(train_data) // config.batch_size * config.batch_size or len(train_data)) / train_seconds,
        )
        history.append(record)
        if val is not None and record.val_auroc > best_auroc:
            best_epoch, best_auroc, since_best = epoch, record.val_auroc, 0
            save_checkpoint(
                str(best_path),
                model,
                epoch=epoch,
                val_auroc=best_auroc,
                train_config=config.to_dict(),
                **{TEMPERATURE_KEY: fit_temperature(val_labels, val_scores)},  # on the logits just scored
            )
        else:
            since_best += 1
        save_checkpoint(
            str(last_path),
            model,
            optimizer=optimizer.state_dict(),
            epoch=epoch,
            history=[asdict(h) for h in history],
            best_epoch=best_epoch,
            best_val_auroc=best_auroc,
            train_config=config.to_dict(),
        )
        if on_epoch is not None:
            on_epoch(record)
        if config.max_seconds is not None and time.perf_counter() - t0 >= config.max_seconds and epoch < config.epochs:
            stopped_early = True
            break
    if best_epoch == 0:
        raise RuntimeError("no epoch produced a finite validation AUROC (NaN losses?)")
    best_model, _ = load_checkpoint(str(best_path), map_location=device)
    return TrainResult(
        model=best_model,
        best_epoch=best_epoch,
        best_val_auroc=best_auroc,
        history=history,
        best_path=best_path,
        last_path=last_path,
        device=str(device),
        wall_seconds=time.perf_counter() - t0,
        stopped_early=stopped_early,
    )
