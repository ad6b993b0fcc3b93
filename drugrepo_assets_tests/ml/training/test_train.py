"""Training: determinism, exact resumption, best-epoch selection and early stopping, on real pairs.

The loop is what is proved, not learning: the model is the small DrugBAN (`small.SMALL`); the reference
config's training is guarded against the reference itself by test_train_fidelity.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.training.train import TrainConfig, train
from drugrepo_assets_tests.ml.training.small import SMALL


@pytest.fixture(scope="module")
def small() -> tuple[PairData, PairData]:
    rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv").head(80)
    make = lambda t: PairData.from_lists(t.SMILES.tolist(), t.Protein.tolist(), t.Y.tolist())  # noqa: E731
    return make(rows.head(48)), make(rows.tail(32))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_training_is_deterministic_and_resumes_exactly(small: tuple[PairData, PairData], tmp_path: Path) -> None:
    train_data, val_data = small
    config = TrainConfig(epochs=2, batch_size=16, patience=None, seed=5)
    straight = train(train_data, val_data, tmp_path / "a", config, SMALL)
    again = train(train_data, val_data, tmp_path / "b", config, SMALL)
    train(train_data, val_data, tmp_path / "c", TrainConfig(epochs=1, batch_size=16, patience=None, seed=5), SMALL)
    resumed = train(train_data, val_data, tmp_path / "c", config, SMALL, resume=True)
    for other in (tmp_path / "b", tmp_path / "c"):
        for key, value in _weights(tmp_path / "a" / "last.pt").items():
            assert torch.equal(value, _weights(other / "last.pt")[key]), (other, key)
    assert [h.train_loss for h in straight.history] == [h.train_loss for h in again.history]
    assert [h.epoch for h in resumed.history] == [1, 2]
    assert [h.val_auroc for h in resumed.history] == [h.val_auroc for h in straight.history]


def test_checkpoint_is_complete_and_loads_weights_only(small: tuple[PairData, PairData], tmp_path: Path) -> None:
    train_data, val_data = small
    result = train(train_data, val_data, tmp_path, TrainConfig(epochs=1, batch_size=16, seed=1), SMALL)
    last = torch.load(result.last_path, weights_only=True)
    assert {"config", "state_dict", "optimizer", "epoch", "history", "best_epoch", "train_config"} <= set(last)
    assert last["epoch"] == 1 and last["train_config"]["batch_size"] == 16
    best = torch.load(result.best_path, weights_only=True)
    assert best["val_auroc"] == pytest.approx(result.best_val_auroc)


def test_best_epoch_and_patience(small: tuple[PairData, PairData], tmp_path: Path) -> None:
    train_data, val_data = small
    result = train(
        train_data, val_data, tmp_path, TrainConfig(epochs=6, batch_size=16, patience=1, seed=3, lr=1e-3), SMALL
    )
    aurocs = [h.val_auroc for h in result.history]
    assert result.best_epoch == 1 + aurocs.index(max(aurocs))
    assert result.best_val_auroc == max(aurocs)
    ran = len(result.history)
    assert ran == min(6, result.best_epoch + 1)
    assert result.stopped_early == (ran < 6)


def test_time_budget_stops_at_an_epoch_boundary(small: tuple[PairData, PairData], tmp_path: Path) -> None:
    train_data, val_data = small
    result = train(train_data, val_data, tmp_path, TrainConfig(epochs=5, batch_size=16, max_seconds=0.0), SMALL)
    assert len(result.history) == 1 and result.stopped_early


def test_labels_are_required(small: tuple[PairData, PairData], tmp_path: Path) -> None:
    train_data, val_data = small
    unlabeled = PairData(train_data.molecules, train_data.proteins, train_data.drug_idx, train_data.protein_idx)
    with pytest.raises(ValueError, match="need labels"):
        train(unlabeled, val_data, tmp_path)
