"""CDAN against the reference: one step of its ``train_da_epoch`` on fixed features, and its schedule.

Golden values from ``reference_training.py`` (run in the reference's venv). The computation is the
same sequence of float32 operations on one small batch, so agreement is to float32 rounding (1e-6).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.training.cdan import (
    CDAN,
    CDANConfig,
    ReverseLayerF,
    cross_entropy_logits,
    da_lambda_decay,
    one_logit_model,
    two_class_model,
)
from drugrepo_assets_tests.ml.training.reference_training import (
    DISCRIMINATOR_SEED,
    MODULE_BATCH,
    MODULE_RANDOM_DIM,
    checksums,
    discriminator_shapes,
    initial_weights,
)

GOLDEN = Path(__file__).resolve().parent / "golden" / "cdan_modules.npz"


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return dict(data)


def _cdan(golden: dict[str, np.ndarray], use_entropy: bool) -> CDAN:
    features = golden["features"].shape[1]
    cdan = CDAN(features, CDANConfig(random_dim=MODULE_RANDOM_DIM, use_entropy=use_entropy))
    cdan.discriminator.load_state_dict(initial_weights(discriminator_shapes(MODULE_RANDOM_DIM), DISCRIMINATOR_SEED))
    for i in range(2):
        getattr(cdan.random_layer, f"random_matrix_{i}").copy_(torch.tensor(golden[f"random_matrix_{i}"]))
    return cdan


@pytest.mark.parametrize("use_entropy", [False, True], ids=["plain", "entropy"])
def test_domain_loss_and_gradients_equal_the_reference(golden: dict[str, np.ndarray], use_entropy: bool) -> None:
    tag = "entropy" if use_entropy else "plain"
    cdan = _cdan(golden, use_entropy)
    features = torch.tensor(golden["features"], requires_grad=True)
    head = torch.nn.Linear(features.shape[1], 2)
    head.load_state_dict({"weight": torch.tensor(golden["head_weight"]), "bias": torch.tensor(golden["head_bias"])})
    scores = head(features)
    b = MODULE_BATCH
    model_loss = cross_entropy_logits(scores[:b], torch.tensor(golden["labels"]))
    da_loss = cdan.loss(features[:b], scores[:b], features[b:], scores[b:])
    (model_loss + da_loss).backward()
    assert float(model_loss.detach()) == pytest.approx(float(golden[f"{tag}/model_loss"]), rel=1e-6)
    assert float(da_loss.detach()) == pytest.approx(float(golden[f"{tag}/da_loss"]), rel=1e-6)
    assert features.grad is not None and head.weight.grad is not None
    np.testing.assert_allclose(features.grad.numpy(), golden[f"{tag}/grad_features"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(head.weight.grad.numpy(), golden[f"{tag}/grad_head_weight"], rtol=1e-5, atol=1e-7)
    # Linear biases before a BatchNorm have a zero gradient in exact arithmetic: atol covers their rounding noise.
    np.testing.assert_allclose(checksums(_grads(cdan.discriminator)), golden[f"{tag}/grad_discriminator"], 1e-5, 1e-6)
    np.testing.assert_allclose(checksums(cdan.discriminator.buffers()), golden[f"{tag}/discriminator_buffers"], 1e-5)


def _grads(module: torch.nn.Module) -> list[torch.Tensor]:
    grads = [p.grad for p in module.parameters()]
    assert all(g is not None for g in grads), "every discriminator parameter gets a gradient"
    return [g for g in grads if g is not None]


def test_the_gradient_reaching_the_features_is_reversed() -> None:
    x = torch.ones(3, requires_grad=True)
    ReverseLayerF.apply(x, 0.5).sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad, torch.full((3,), -0.5))


def test_da_lambda_decay_is_the_reference_schedule(golden: dict[str, np.ndarray]) -> None:
    values = [da_lambda_decay(epoch, init_epoch=5, max_epoch=20, n_batches=7) for epoch in range(1, 21)]
    np.testing.assert_allclose(values, golden["da_lambda_decay"], rtol=1e-12)


def test_the_one_logit_model_scores_as_the_two_class_softmax() -> None:
    torch.manual_seed(0)
    model = two_class_model(DrugBAN(DrugBANConfig(hidden_feats=(8,), num_filters=(8, 8, 8), mlp_in_dim=8)))
    x = torch.randn(5, model.mlp_classifier.fc4.in_features)
    folded = one_logit_model(model)
    two = model.mlp_classifier.fc4(x)
    one = folded.mlp_classifier.fc4(x).squeeze(-1)
    torch.testing.assert_close(torch.sigmoid(one), torch.softmax(two, dim=1)[:, 1], rtol=1e-6, atol=1e-7)
    assert model.mlp_classifier.fc4.out_features == 2, "the two-class model is left as it was"
