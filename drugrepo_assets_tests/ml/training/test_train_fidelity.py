"""Training goes where the reference's goes: same initial weights, same batches, dropout off, 50 steps.

The goldens are the reference's own ``Trainer.train_epoch`` / ``train_da_epoch`` on a small DrugBAN
(``reference_training.py``, run in the reference's venv): loss per step, per-tensor weight checksums
per step, and the final weights. Here the project's `train.train_step` / `train.cdan_step` take the
same steps.

Both sides run in float64, at the reference's learning rates. In float32 the reference does not
agree with itself to better than ~1e-2 here: its padded molecules are ~270 identical virtual rows
out of 290, so the pooled features of a batch's pairs lie close together, and the BatchNorm after
the BAN divides their spread by its own small standard deviation, amplifying summation-order
rounding by ~1e4 in the first step (seen: GCN outputs within 5e-5, logits apart by 4e-3).

Tolerances, and why: the first step agrees to 2e-12. After it, Adam turns rounding noise into
whole steps wherever a gradient is nearly zero (it divides by the gradient's own size), so a weight
can drift by up to lr per step: final weights within STEPS × lr (absolute); per-tensor checksums
within 1e-3 relative; losses within 1e-5 relative (seen: 8e-7 vanilla). A wrong loss, optimiser
setting, BatchNorm mode or warm-up moves the losses by 1e-3 or more from the first steps on
(`test_a_wrong_step_is_seen_in_the_first_losses`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.training.cdan import CDAN, CDANConfig, cdan_step, two_class_model
from drugrepo_assets.ml.training.train import adam, train_step
from drugrepo_assets_tests.ml.training.reference_training import (
    CDAN_LR,
    CDAN_WARMUP_STEPS,
    DA_LR,
    DISCRIMINATOR_SEED,
    LR,
    MODEL_SEED,
    N_SOURCE,
    N_TARGET,
    STEPS,
    TINY,
    batch_rows,
    checksums,
    discriminator_shapes,
    initial_weights,
    random_matrices,
    reference_config,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
LOSS_RTOL, CHECKSUM_RTOL = 1e-5, 1e-3


def _golden(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / name) as data:
        return dict(data)


def _pairs(part: slice = slice(None)) -> PairData:
    frame = pd.read_csv(GOLDEN / "pairs.csv")[part]
    return PairData.from_lists(frame["SMILES"].tolist(), frame["Protein"].tolist(), frame["Y"].tolist())


def _model(two_class: bool = False) -> DrugBAN:
    model = DrugBAN(DrugBANConfig.from_dict(TINY))
    if two_class:
        model = two_class_model(model)
    model.load_state_dict(initial_weights({k: tuple(v.shape) for k, v in model.state_dict().items()}, MODEL_SEED))
    return model.double().train()


def _final_weights(golden: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k.removeprefix("final/"): v for k, v in golden.items() if k.startswith("final/")}


def _assert_weights(model: DrugBAN, expected: dict[str, np.ndarray], lr: float) -> None:
    state = model.state_dict()
    assert list(state) == list(expected), "the state_dict keys, in the reference's order"
    for key, value in expected.items():
        np.testing.assert_allclose(state[key].numpy(), value, rtol=0, atol=STEPS * lr, err_msg=key)


def test_vanilla_training_follows_the_reference_step_by_step() -> None:
    golden = _golden("train_vanilla.npz")
    data, model = _pairs(), _model()
    optimizer = adam(model, LR)
    losses, sums = [], []
    for step in range(STEPS):
        rows = torch.tensor(batch_rows(step, N_SOURCE))
        graphs, proteins = data.batch(rows)
        labels = data.require_labels()[rows].double()
        losses.append(float(train_step(model, optimizer, graphs, proteins, labels)))
        sums.append(checksums(model.state_dict().values()))
    np.testing.assert_allclose(losses, golden["loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(np.stack(sums), golden["checksums"], rtol=CHECKSUM_RTOL)
    _assert_weights(model, _final_weights(golden), LR)


def test_a_wrong_step_is_seen_in_the_first_losses() -> None:
    """The tolerance can fail: eval-mode BatchNorm instead of train mode is off by far more than LOSS_RTOL."""
    golden = _golden("train_vanilla.npz")
    data, model = _pairs(), _model()
    optimizer = adam(model, LR)
    rows = torch.tensor(batch_rows(0, N_SOURCE))
    graphs, proteins = data.batch(rows)
    train_step(model, optimizer, graphs, proteins, data.require_labels()[rows].double())
    model.eval()
    rows = torch.tensor(batch_rows(1, N_SOURCE))
    with torch.no_grad():
        logits = model(*data.batch(rows))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, data.require_labels()[rows].double())
    assert float(loss) != pytest.approx(float(golden["loss"][1]), rel=1e-3)


def _cdan() -> CDAN:
    random_dim = reference_config(2, True)["DA"]["RANDOM_DIM"]
    cdan = CDAN(TINY["mlp_in_dim"], CDANConfig(random_dim=random_dim))
    cdan.discriminator.load_state_dict(initial_weights(discriminator_shapes(random_dim), DISCRIMINATOR_SEED))
    for buffer, matrix in zip(
        cdan.random_layer.matrices(), random_matrices(TINY["mlp_in_dim"], random_dim), strict=True
    ):
        buffer.copy_(matrix)
    return cdan.double()


def test_cdan_training_follows_the_reference_step_by_step() -> None:
    """A warm-up epoch (classification loss only), then an epoch with the domain loss, as the reference's."""
    golden = _golden("train_cdan.npz")
    source, target = _pairs(slice(0, N_SOURCE)), _pairs(slice(N_SOURCE, N_SOURCE + N_TARGET))
    model, cdan = _model(two_class=True), _cdan()
    optimizers = (adam(model, CDAN_LR), adam(cdan.discriminator, DA_LR))
    totals, model_losses, da_losses, sums = [], [], [], []
    for step in range(STEPS):
        rows, rows_t = torch.tensor(batch_rows(step, N_SOURCE)), torch.tensor(batch_rows(step, N_TARGET))
        batch = (*source.batch(rows), source.require_labels()[rows].double())
        total, model_loss, da_loss = cdan_step(
            model, cdan, optimizers, batch, target.batch(rows_t), adapt=step >= CDAN_WARMUP_STEPS
        )
        totals.append(float(total))
        model_losses.append(float(model_loss))
        da_losses.append(float("nan") if da_loss is None else float(da_loss))
        sums.append(checksums([*model.state_dict().values(), *cdan.discriminator.state_dict().values()]))
    np.testing.assert_allclose(totals, golden["loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(model_losses, golden["model_loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(da_losses, golden["da_loss"], rtol=LOSS_RTOL)
    np.testing.assert_allclose(np.stack(sums), golden["checksums"], rtol=CHECKSUM_RTOL)
    _assert_weights(model, _final_weights(golden), CDAN_LR)
