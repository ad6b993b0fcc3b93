"""CDAN training end to end: the epoch loop, its warm-up, exact resumption, and a best.pt that predict loads."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.model.calibration import TEMPERATURE_KEY
from drugrepo_assets.ml.model.checkpoint import CheckpointError, load_checkpoint
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.training.cdan import CDAN_KEY, CDANConfig, restore_cdan
from drugrepo_assets.ml.training.train import TrainConfig, _cycled_batches, _Run, train
from drugrepo_assets_tests.ml.training.small import SMALL

Parts = tuple[PairData, PairData, PairData]


@pytest.fixture(scope="module")
def parts() -> Parts:
    """48 labelled source pairs, 32 validation pairs and 32 target pairs without labels."""
    rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv").head(112)

    def make(t: pd.DataFrame, labelled: bool = True) -> PairData:
        return PairData.from_lists(t.SMILES.tolist(), t.Protein.tolist(), t.Y.tolist() if labelled else None)

    return make(rows.head(48)), make(rows.iloc[48:80]), make(rows.tail(32), labelled=False)


def _config(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=16, patience=None, seed=5)


def _tensors(payload: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint's nested entries, by path."""
    if isinstance(payload, torch.Tensor):
        return {prefix: payload}
    if isinstance(payload, dict):
        return {k: v for key, value in payload.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(payload, list | tuple):
        return {k: v for i, value in enumerate(payload) for k, v in _tensors(value, f"{prefix}/{i}").items()}
    return {}


def test_cdan_training_resumes_exactly_and_adapts_from_init_epoch(parts: Parts, tmp_path: Path) -> None:
    """Epoch 1 is warm-up (no domain loss), 2 and 3 adapt; stopping after 2 and resuming gives the same last.pt."""
    source, val, target = parts
    da = CDANConfig(init_epoch=2)
    straight = train(source, val, tmp_path / "a", _config(3), SMALL, da=da, target_data=target)
    train(source, val, tmp_path / "b", _config(2), SMALL, da=da, target_data=target)
    resumed = train(source, val, tmp_path / "b", _config(3), SMALL, resume=True, da=da, target_data=target)
    a, b = (torch.load(p / "last.pt", weights_only=True) for p in (tmp_path / "a", tmp_path / "b"))
    tensors_a, tensors_b = (
        _tensors({k: a[k] for k in ("state_dict", CDAN_KEY)}),
        _tensors({k: b[k] for k in ("state_dict", CDAN_KEY)}),
    )
    assert tensors_a.keys() == tensors_b.keys()
    assert {f"/{CDAN_KEY}/head/weight", f"/{CDAN_KEY}/state_dict/discriminator.fc1.weight"} <= tensors_a.keys()
    for key, value in tensors_a.items():
        assert torch.equal(value, tensors_b[key]), key
    assert [h.epoch for h in resumed.history] == [1, 2, 3]
    assert [h.val_auroc for h in resumed.history] == [h.val_auroc for h in straight.history]
    da_losses = [h.da_loss for h in straight.history]  # type: ignore[attr-defined]
    assert math.isnan(da_losses[0]) and all(math.isfinite(x) and x > 0 for x in da_losses[1:])
    for h in straight.history[1:]:
        assert h.train_loss == pytest.approx(h.model_loss + h.da_loss)  # type: ignore[attr-defined]


def test_cdan_best_checkpoint_is_the_folded_one_logit_model(parts: Parts, tmp_path: Path) -> None:
    """best.pt loads as the one-logit DrugBAN (what predict, screen and serve use); its logit is the
    two-logit head's l1 − l0, restored from the checkpoint's cdan entry beside it."""
    source, val, target = parts
    result = train(source, val, tmp_path, _config(1), SMALL, da=CDANConfig(init_epoch=1), target_data=target)
    loaded = load_checkpoint(str(result.best_path))
    model, extra = loaded.model, loaded.extra
    assert model.mlp_classifier.fc4.out_features == 1
    assert list(model.state_dict()) == list(result.model.state_dict())
    assert extra[CDAN_KEY]["config"] == CDANConfig(init_epoch=1).to_dict() and TEMPERATURE_KEY in extra
    assert "optimizer" not in extra[CDAN_KEY]  # best.pt keeps the discriminator, last.pt also its optimiser
    one_logit = predict_logits(model, val)
    two_class, cdan = restore_cdan(load_checkpoint(str(result.best_path)).model, extra[CDAN_KEY])
    two_class.eval()
    graphs, proteins = val.batch(torch.arange(len(val)))
    with torch.no_grad():
        logits = two_class(graphs, proteins)
    np.testing.assert_allclose(one_logit, (logits[:, 1] - logits[:, 0]).numpy(), rtol=1e-4, atol=1e-5)
    assert cdan.discriminator.fc3.out_features == 2


def test_warm_up_leaves_the_discriminator_untouched_and_resume_checks_the_kind(parts: Parts, tmp_path: Path) -> None:
    """Before init_epoch only the classifier trains; a CDAN last.pt is not resumed as a vanilla run."""
    source, val, target = parts
    config, da = _config(1), CDANConfig(init_epoch=2)
    result = train(source, val, tmp_path, config, SMALL, da=da, target_data=target)
    assert math.isnan(result.history[0].da_loss)  # type: ignore[attr-defined]
    fresh = _Run.new(config, SMALL, da, torch.device("cpu"))
    assert fresh.cdan is not None
    saved = torch.load(result.last_path, weights_only=True)[CDAN_KEY]["state_dict"]
    for key, value in fresh.cdan.state_dict().items():
        assert torch.equal(value, saved[key]), key
    with pytest.raises(CheckpointError, match="written by a CDAN run"):
        train(source, val, tmp_path, _config(2), SMALL, resume=True)
    with pytest.raises(CheckpointError, match="CDAN settings"):
        train(source, val, tmp_path, _config(2), SMALL, resume=True, da=CDANConfig(init_epoch=3), target_data=target)


def test_domain_adaptation_needs_both_settings_and_target_pairs(parts: Parts, tmp_path: Path) -> None:
    source, val, target = parts
    with pytest.raises(ValueError, match="needs both da and target_data"):
        train(source, val, tmp_path, _config(1), SMALL, da=CDANConfig())
    with pytest.raises(ValueError, match="needs both da and target_data"):
        train(source, val, tmp_path, _config(1), SMALL, target_data=target)


def test_the_shorter_domain_is_cycled_a_fresh_shuffle_per_pass() -> None:
    """As the reference's MultiDataLoader: whole batches only, every pass a permutation, then reshuffled."""
    batches = [b.tolist() for b in _cycled_batches(10, 4, 5, seed=1)]
    assert [len(b) for b in batches] == [4] * 5
    passes = [batches[0] + batches[1], batches[2] + batches[3]]
    assert all(len(set(p)) == 8 for p in passes)
    assert passes[0] != passes[1]
    assert batches == [b.tolist() for b in _cycled_batches(10, 4, 5, seed=1)]
