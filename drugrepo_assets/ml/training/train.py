"""DrugBAN training: Adam, early stopping and best-epoch selection on validation AUROC, resumable.

Every epoch writes ``last.pt`` (weights, config, optimiser, epoch, history); the best epoch by
validation AUROC is kept as ``best.pt``. Both are written atomically, so a run killed mid-write
leaves the previous complete file (its half-written temporary is removed when the next run starts). Shuffling and dropout are seeded per epoch, so a run
resumed from ``last.pt`` continues exactly as an uninterrupted one would (on CPU).

With a `cdan.CDANConfig` and unlabelled target-domain pairs, the epochs are CDAN's (the reference's
``train_da_epoch``); the checkpoints then hold the one-logit model that ``predict``, ``screen`` and
``serve`` load, and CDAN's two-logit head, discriminator and random layer beside it (``cdan`` entry).
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
from drugrepo_assets.ml.evaluate import binary_metrics
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.features.featurize import GraphBatch
from drugrepo_assets.ml.model.calibration import TEMPERATURE_KEY, fit_temperature
from drugrepo_assets.ml.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.training.cdan import (
    CDAN,
    CDAN_KEY,
    CDANConfig,
    cdan_step,
    one_logit_model,
    restore_cdan,
    saved_cdan,
    two_class_model,
)
from drugrepo_assets.ml.training.train_config import CDANEpochRecord, EpochRecord, TrainConfig


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
    *,
    da: CDANConfig | None = None,
    target_data: PairData | None = None,
) -> TrainResult:
    """Train DrugBAN; keep the epoch with the best validation AUROC.

    Stops after ``patience`` epochs without gain, or at the first epoch boundary past ``max_seconds``.
    With ``da`` (and ``target_data``, unlabelled target-domain pairs; labels are ignored) the training
    is CDAN's (`train_da_epoch` of the reference, `cdan.cdan_step`); the best epoch is still chosen on
    ``val_data`` (source-domain pairs), and best.pt holds the one-logit model (`cdan.one_logit_model`).
    """
    if train_data.labels is None or val_data.labels is None:
        raise ValueError("training and validation pairs need labels")
    if (da is None) != (target_data is None):
        raise ValueError("domain adaptation needs both da and target_data (unlabelled target-domain pairs)")
    if target_data is not None and not len(target_data):
        raise ValueError("domain adaptation needs at least one target-domain pair")
    config, model_config = config or TrainConfig(), model_config or DrugBANConfig()
    with _deterministic(resolve_device(config.device).type == "cpu"):
        return _train(train_data, val_data, target_data, Path(out_dir), config, model_config, da, resume, on_epoch)


_TARGET_STREAM = 1 << 40
"""Offset of the target pairs' shuffling seeds from the source pairs' (two streams that never meet)."""


def _cycled_batches(n: int, batch_size: int, n_batches: int, seed: int) -> Iterator[torch.Tensor]:
    """``n_batches`` batches of row numbers of ``n`` pairs: shuffled passes without the ragged last batch,
    reshuffled at each new pass, as the reference's ``MultiDataLoader`` cycles its shorter loader."""
    generator = torch.Generator().manual_seed(seed)
    per_pass = max(1, n // batch_size)
    perm = torch.empty(0, dtype=torch.long)
    for b in range(n_batches):
        if b % per_pass == 0:
            perm = torch.randperm(n, generator=generator)
        i = b % per_pass
        yield perm[i * batch_size : (i + 1) * batch_size]


def _train_cdan_epoch(
    run: _Run, data: PairData, target: PairData, config: TrainConfig, epoch: int, device: torch.device
) -> tuple[dict[str, float], int]:
    """One epoch of the reference's ``train_da_epoch``: as many steps as the longer of the source and
    target passes, the shorter cycled; the domain loss from ``init_epoch`` on. Mean losses, pairs trained."""
    assert run.cdan is not None and run.optimizer_da is not None
    run.model.train()
    run.cdan.train()
    torch.manual_seed(config.seed * 100_003 + epoch)
    bs = config.batch_size
    n_batches = max(max(1, len(data) // bs), max(1, len(target) // bs))
    base = config.seed * 100_003 + epoch
    source_rows = _cycled_batches(len(data), bs, n_batches, base)  # its first pass: vanilla's shuffle
    target_rows = _cycled_batches(len(target), bs, n_batches, base + _TARGET_STREAM)
    adapt = epoch >= run.cdan.config.init_epoch  # the reference: current_epoch >= INIT_EPOCH (1-based)
    use_amp = config.amp and device.type == "cuda"
    labels = data.require_labels()
    total = model_total = da_total = 0.0
    seen = 0
    for rows, rows_t in zip(source_rows, target_rows, strict=True):
        graphs, proteins = data.batch(rows)
        source = (graphs.to(device), proteins.to(device), labels[rows].to(device))
        target_batch = None
        if adapt:
            graphs_t, proteins_t = target.batch(rows_t)
            target_batch = (graphs_t.to(device), proteins_t.to(device))
        loss, model_loss, da_loss = cdan_step(
            run.model, run.cdan, (run.optimizer, run.optimizer_da), source, target_batch, adapt, use_amp
        )
        total += float(loss)
        model_total += float(model_loss)
        da_total += math.nan if da_loss is None else float(da_loss)
        seen += len(rows)
    losses = {"train_loss": total / n_batches, "model_loss": model_total / n_batches, "da_loss": da_total / n_batches}
    return losses, seen


@dataclass
class _Run:
    """The model being trained and its optimiser; for CDAN also the two-logit head's discriminator side."""

    model: DrugBAN
    optimizer: torch.optim.Optimizer
    cdan: CDAN | None = None
    optimizer_da: torch.optim.Optimizer | None = None

    @classmethod
    def new(cls, config: TrainConfig, model_config: DrugBANConfig, da: CDANConfig | None, device: torch.device) -> _Run:
        """Freshly initialised, seeded with ``config.seed`` (for CDAN: model, then discriminator, as the reference)."""
        torch.manual_seed(config.seed)
        model = DrugBAN(model_config).to(device)
        if da is None:
            return cls(model, adam(model, config.lr))
        model = two_class_model(model)
        cdan = CDAN(model_config.mlp_in_dim, da).to(device)
        return cls(model, adam(model, config.lr), cdan, adam(cdan.discriminator, da.da_lr))

    @classmethod
    def resumed(
        cls, path: Path, config: TrainConfig, da: CDANConfig | None, device: torch.device
    ) -> tuple[_Run, dict[str, Any]]:
        """The run ``path`` (a last.pt) holds, and its other entries; refused if it is not this kind of run."""
        loaded = load_checkpoint(str(path), map_location=device)
        model, state = loaded.model, loaded.extra
        saved = state.get(CDAN_KEY)
        if saved is None and da is not None:
            raise CheckpointError(f"{path}: written by a vanilla run; resume it without domain adaptation")
        if saved is not None and da is None:
            raise CheckpointError(f"{path}: written by a CDAN run; resume it with domain adaptation (da)")
        if saved is None:
            run = cls(model, adam(model, config.lr))
        else:
            model, cdan = restore_cdan(model, saved, str(path))
            if cdan.config != da:
                raise CheckpointError(f"{path}: its CDAN settings {cdan.config.to_dict()} are not this run's {da}")
            run = cls(model, adam(model, config.lr), cdan, adam(cdan.discriminator, cdan.config.da_lr))
            assert run.optimizer_da is not None
            run.optimizer_da.load_state_dict(saved["optimizer"])
        run.optimizer.load_state_dict(state["optimizer"])
        return run, state

    @property
    def record_type(self) -> type[EpochRecord]:
        """The history's record: `CDANEpochRecord` for CDAN (its model and domain losses too)."""
        return EpochRecord if self.cdan is None else CDANEpochRecord

    def train_epoch(
        self, data: PairData, target: PairData | None, config: TrainConfig, epoch: int, device: torch.device
    ) -> tuple[dict[str, float], int]:
        """One epoch; its mean losses (by `EpochRecord` field) and the number of pairs trained on."""
        if self.cdan is None or target is None:
            loss = _train_epoch(self.model, data, self.optimizer, config, epoch, device)
            return {"train_loss": loss}, len(data) // config.batch_size * config.batch_size or len(data)
        return _train_cdan_epoch(self, data, target, config, epoch, device)

    def scoring_model(self) -> DrugBAN:
        """The one-logit model scored and saved: the model itself, or the CDAN model folded (`one_logit_model`)."""
        return self.model if self.cdan is None else one_logit_model(self.model)

    def extras(self, last: bool) -> dict[str, Any]:
        """A checkpoint's entries beyond the one-logit model: CDAN's (`saved_cdan`; with its optimiser in last.pt)."""
        if self.cdan is None:
            return {}
        return {CDAN_KEY: saved_cdan(self.model, self.cdan, self.optimizer_da if last else None)}


@dataclass
class _Progress:
    """Where a run stands between epochs: its history, the best epoch and its validation AUROC, epochs since it."""

    history: list[EpochRecord] = field(default_factory=list)
    start_epoch: int = 1
    best_epoch: int = 0
    best_auroc: float = -math.inf
    since_best: int = 0

    @classmethod
    def resumed(cls, run: _Run, state: dict[str, Any]) -> _Progress:
        """Where the run of a last.pt (``state``: its entries beyond the model) stopped."""
        history = [run.record_type(**h) for h in state["history"]]
        start_epoch = int(state["epoch"]) + 1
        best_epoch, best_auroc = int(state["best_epoch"]), float(state["best_val_auroc"])
        return cls(history, start_epoch, best_epoch, best_auroc, start_epoch - 1 - best_epoch)


@dataclass
class _Epochs:
    """One training run's epochs: what each trains and is scored on, and the two checkpoints each writes."""

    run: _Run
    train_data: PairData
    val_data: PairData
    target_data: PairData | None
    config: TrainConfig
    device: torch.device
    last_path: Path
    best_path: Path
    val_labels: np.ndarray

    def run_epoch(self, epoch: int, progress: _Progress) -> EpochRecord:
        """Train epoch ``epoch``, score it on the validation pairs and write its checkpoints; its record."""
        record, scorer, val_scores = self._train_and_score(epoch)
        progress.history.append(record)
        if val_scores is not None and record.val_auroc > progress.best_auroc:
            progress.best_epoch, progress.best_auroc, progress.since_best = epoch, record.val_auroc, 0
            self._save_best(scorer, epoch, progress.best_auroc, val_scores)
        else:
            progress.since_best += 1
        self._save_last(scorer, epoch, progress)
        return record

    def _train_and_score(self, epoch: int) -> tuple[EpochRecord, DrugBAN, np.ndarray | None]:
        """One epoch trained and scored: its record, the one-logit model, its validation logits (None unless all finite)."""
        t_epoch = time.perf_counter()
        losses, pairs = self.run.train_epoch(self.train_data, self.target_data, self.config, epoch, self.device)
        train_seconds = time.perf_counter() - t_epoch
        scorer = self.run.scoring_model()
        val_scores = predict_logits(scorer, self.val_data, self.config.eval_batch_size, self.device)
        val = binary_metrics(self.val_labels, val_scores, 0.0) if np.isfinite(val_scores).all() else None
        record = self.run.record_type(
            epoch=epoch,
            val_auroc=val.auroc if val else float("nan"),
            val_auprc=val.auprc if val else float("nan"),
            seconds=time.perf_counter() - t_epoch,
            pairs_per_s=pairs / train_seconds,
            **losses,
        )
        return record, scorer, val_scores if val is not None else None

    def _save_best(self, scorer: DrugBAN, epoch: int, val_auroc: float, val_scores: np.ndarray) -> None:
        """best.pt: the scored model, with the temperature fitted on the validation logits just scored."""
        save_checkpoint(
            str(self.best_path),
            scorer,
            epoch=epoch,
            val_auroc=val_auroc,
            train_config=self.config.to_dict(),
            **{TEMPERATURE_KEY: fit_temperature(self.val_labels, val_scores)},
            **self.run.extras(last=False),
        )

    def _save_last(self, scorer: DrugBAN, epoch: int, progress: _Progress) -> None:
        """last.pt: the scored model with all a resumed run needs (optimiser, history, the best so far)."""
        save_checkpoint(
            str(self.last_path),
            scorer,
            optimizer=self.run.optimizer.state_dict(),
            epoch=epoch,
            history=[asdict(h) for h in progress.history],
            best_epoch=progress.best_epoch,
            best_val_auroc=progress.best_auroc,
            train_config=self.config.to_dict(),
            **self.run.extras(last=True),
        )


def _train(
    train_data: PairData,
    val_data: PairData,
    target_data: PairData | None,
    out_dir: Path,
    config: TrainConfig,
    model_config: DrugBANConfig,
    da: CDANConfig | None,
    resume: bool,
    on_epoch: Callable[[EpochRecord], None] | None,
) -> TrainResult:
    """`train` past its checks: start (or resume) the run, train its epochs, return the best one."""
    last_path, best_path = _checkpoint_paths(out_dir)
    device = resolve_device(config.device)
    run, progress = _start(last_path, resume, config, model_config, da, device)
    t0 = time.perf_counter()
    val_labels = val_data.require_labels().numpy()
    epochs = _Epochs(run, train_data, val_data, target_data, config, device, last_path, best_path, val_labels)
    stopped_early = _run_epochs(epochs, progress, on_epoch, t0)
    return _best_result(epochs, progress, t0, stopped_early)


def _checkpoint_paths(out_dir: Path) -> tuple[Path, Path]:
    """last.pt and best.pt in ``out_dir`` (created), a killed run's half-written temporaries of them removed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    for path in (last_path, best_path):
        remove_partial_writes(path)  # a killed run's half-written checkpoint; the file itself is whole
    return last_path, best_path


def _start(
    last_path: Path,
    resume: bool,
    config: TrainConfig,
    model_config: DrugBANConfig,
    da: CDANConfig | None,
    device: torch.device,
) -> tuple[_Run, _Progress]:
    """A new run, or with ``resume`` the one ``last_path`` holds where there is one, and where it stands."""
    run = _Run.new(config, model_config, da, device)
    if not (resume and last_path.exists()):
        return run, _Progress()
    run, state = _Run.resumed(last_path, config, da, device)
    return run, _Progress.resumed(run, state)


def _run_epochs(
    epochs: _Epochs, progress: _Progress, on_epoch: Callable[[EpochRecord], None] | None, t0: float
) -> bool:
    """The epochs from where ``progress`` stands to the last; True when patience or ``max_seconds`` ended them early."""
    config = epochs.config
    for epoch in range(progress.start_epoch, config.epochs + 1):
        if config.patience is not None and progress.since_best >= config.patience:
            return True
        record = epochs.run_epoch(epoch, progress)
        if on_epoch is not None:
            on_epoch(record)
        if config.max_seconds is not None and time.perf_counter() - t0 >= config.max_seconds and epoch < config.epochs:
            return True
    return False


def _best_result(epochs: _Epochs, progress: _Progress, t0: float, stopped_early: bool) -> TrainResult:
    """The run's outcome, best.pt's model loaded; RuntimeError when no epoch had a finite validation AUROC."""
    if progress.best_epoch == 0:
        raise RuntimeError("no epoch produced a finite validation AUROC (NaN losses?)")
    best_model = load_checkpoint(str(epochs.best_path), map_location=epochs.device).model
    return TrainResult(
        model=best_model,
        best_epoch=progress.best_epoch,
        best_val_auroc=progress.best_auroc,
        history=progress.history,
        best_path=epochs.best_path,
        last_path=epochs.last_path,
        device=str(epochs.device),
        wall_seconds=time.perf_counter() - t0,
        stopped_early=stopped_early,
    )
