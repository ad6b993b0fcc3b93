"""CDAN, DrugBAN's cross-domain training, as the reference (peizhenbai/DrugBAN, MIT) does it.

Ported from the reference's ``domain_adaptator.py`` (``ReverseLayerF``, ``Discriminator``; the
gradient reversal layer itself from criteo-research/pytorch-ada), ``models.py`` (``RandomLayer``,
``cross_entropy_logits``, ``entropy_logits``), ``trainer.py`` (``train_da_epoch``, the entropy
weights, ``da_lambda_decay``) and ``configs/DrugBAN_DA.yaml`` (the defaults of `CDANConfig`); the
licence is in ``drugrepo_assets/bundled/drugban/LICENSE.md``.

The reference's CDAN model has a two-logit head (``DECODER.BINARY: 2``) trained with cross-entropy;
`two_class_model` builds it and `one_logit_model` folds it back into the one-logit DrugBAN that
``predict``, ``screen`` and ``serve`` use: softmax(l)[1] = sigmoid(l1 − l0), the reference's score.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from drugrepo_assets.ml.features.featurize import GraphBatch
from drugrepo_assets.ml.model.checkpoint import CheckpointError
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.training.train_config import CDAN_BATCH_SIZE, CDAN_LR, CDANConfig

__all__ = [
    "CDAN",
    "CDAN_BATCH_SIZE",
    "CDAN_KEY",
    "CDAN_LR",
    "CDANConfig",
    "Discriminator",
    "RandomLayer",
    "ReverseLayerF",
    "cdan_step",
    "cross_entropy_logits",
    "da_lambda_decay",
    "entropy_logits",
    "entropy_weights",
    "features_and_scores",
    "one_logit_model",
    "restore_cdan",
    "saved_cdan",
    "two_class_model",
]

N_CLASSES = 2
"""Logits of the reference's CDAN head (``DECODER.BINARY``)."""
CDAN_KEY = "cdan"
"""The checkpoint entry of a CDAN run (`saved_cdan`): beside the one-logit model, what resuming it needs."""


class ReverseLayerF(torch.autograd.Function):
    """Gradient reversal (DANN): identity forward, gradient times −alpha backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: float) -> Tensor:
        ctx.alpha = alpha
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None]:
        return grad_output.neg() * ctx.alpha, None


def reverse_gradient(x: Tensor, alpha: float) -> Tensor:
    """``ReverseLayerF.apply`` with a type."""
    out: Tensor = ReverseLayerF.apply(x, alpha)
    return out


class Discriminator(nn.Module):
    """The reference's domain discriminator (``bigger_discrim``): 2 × (Linear → BatchNorm → ReLU), Linear."""

    def __init__(self, input_size: int = 256, n_class: int = N_CLASSES, hidden: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.bn2 = nn.BatchNorm1d(hidden)
        self.fc3 = nn.Linear(hidden, n_class)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.bn1(self.fc1(x)))
        x = F.relu(self.bn2(self.fc2(x)))
        return self.fc3(x)


class RandomLayer(nn.Module):
    """Randomised multilinear map of (features, class probabilities), the reference's ``ORIGINAL_RANDOM``.

    The reference keeps its fixed Gaussian matrices in a plain list (drawn with ``torch.randn`` in
    this order); here they are buffers, so a checkpoint holds them and a resumed run uses the same.
    """

    def __init__(self, input_dims: tuple[int, ...], output_dim: int = 256) -> None:
        super().__init__()
        self.output_dim = output_dim
        for i, dim in enumerate(input_dims):
            self.register_buffer(f"random_matrix_{i}", torch.randn(dim, output_dim))
        self.n_inputs = len(input_dims)

    def matrices(self) -> list[Tensor]:
        """The fixed random matrices, in input order."""
        return [getattr(self, f"random_matrix_{i}") for i in range(self.n_inputs)]

    def forward(self, inputs: list[Tensor]) -> Tensor:
        products = [torch.mm(x, m) for x, m in zip(inputs, self.matrices(), strict=True)]
        out = products[0] / math.pow(float(self.output_dim), 1.0 / len(products))
        for single in products[1:]:
            out = torch.mul(out, single)
        return out


def cross_entropy_logits(logits: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """The reference's cross-entropy of [B, C] logits; with ``weights``, their weighted mean."""
    log_probs = F.log_softmax(logits, dim=1)
    target = labels.long().view(labels.size(0))
    if weights is None:
        return F.nll_loss(log_probs, target)
    losses = F.nll_loss(log_probs, target, reduction="none")
    return torch.sum(weights * losses) / torch.sum(weights)


def entropy_logits(logits: Tensor) -> Tensor:
    """Entropy of softmax(logits) per row, with the reference's +1e-5 inside the log."""
    p = F.softmax(logits, dim=1)
    return -torch.sum(p * torch.log(p + 1e-5), dim=1)


def entropy_weights(logits: Tensor, alpha: float) -> Tensor:
    """CDAN+E weights 1 + exp(−H): confident predictions count more; H's gradient reversed, as the reference."""
    return 1.0 + torch.exp(-reverse_gradient(entropy_logits(logits), alpha))


def da_lambda_decay(epoch: int, init_epoch: int, max_epoch: int, n_batches: int, lamb_da: float = 1.0) -> float:
    """The reference's ``Trainer.da_lambda_decay`` (its formula as written), for epoch ``epoch`` (1-based).

    The reference computes this schedule but trains with weight 1 (the call is commented out, and the
    weight is only logged); `CDAN` does the same, and this function is kept for the record.
    """
    delta_epoch = epoch - init_epoch
    p = (epoch + delta_epoch * n_batches) / ((max_epoch - init_epoch) * n_batches)
    return lamb_da * float(2.0 / (1.0 + np.exp(-10 * p)) - 1)


class CDAN(nn.Module):
    """The discriminator side of CDAN: random layer, discriminator and the domain loss of ``train_da_epoch``."""

    def __init__(self, feature_dim: int, config: CDANConfig | None = None) -> None:
        super().__init__()
        self.config = config or CDANConfig()
        # The reference builds the discriminator (main.py) before the random layer (Trainer): same RNG order.
        self.discriminator = Discriminator(input_size=self.config.random_dim, n_class=N_CLASSES)
        self.random_layer = RandomLayer((feature_dim, N_CLASSES), self.config.random_dim)

    def domain_scores(self, features: Tensor, scores: Tensor) -> Tensor:
        """Discriminator logits for one domain: features through gradient reversal, detached class probabilities."""
        reversed_features = reverse_gradient(features, self.config.alpha)
        probs = F.softmax(scores, dim=1).detach()
        out = self.random_layer([reversed_features, probs])
        return self.discriminator(out.view(-1, out.size(1)))

    def loss(self, features: Tensor, scores: Tensor, features_t: Tensor, scores_t: Tensor) -> Tensor:
        """Domain loss: source pairs labelled 0, target pairs 1, entropy-weighted when ``use_entropy``."""
        adv_s = self.domain_scores(features, scores)
        adv_t = self.domain_scores(features_t, scores_t)
        w_s = w_t = None
        if self.config.use_entropy:
            e_s, e_t = entropy_weights(scores, self.config.alpha), entropy_weights(scores_t, self.config.alpha)
            w_s, w_t = e_s / torch.sum(e_s), e_t / torch.sum(e_t)
        zeros, ones = adv_s.new_zeros(len(adv_s)), adv_t.new_ones(len(adv_t))
        return cross_entropy_logits(adv_s, zeros, w_s) + cross_entropy_logits(adv_t, ones, w_t)


def two_class_model(model: DrugBAN) -> DrugBAN:
    """``model`` with the reference's two-logit CDAN head (``mlp_classifier.fc4`` → 2 outputs), in place."""
    fc4 = model.mlp_classifier.fc4
    model.mlp_classifier.fc4 = nn.Linear(fc4.in_features, N_CLASSES).to(fc4.weight.device)
    return model


def one_logit_model(model: DrugBAN) -> DrugBAN:
    """A copy of a two-logit model whose one logit is l1 − l0: sigmoid of it is the reference's softmax score."""
    out = copy.deepcopy(model)
    fc4 = model.mlp_classifier.fc4
    head = nn.Linear(fc4.in_features, 1).to(fc4.weight.device)
    with torch.no_grad():
        head.weight.copy_(fc4.weight[1:2] - fc4.weight[0:1])
        head.bias.copy_(fc4.bias[1:2] - fc4.bias[0:1])
    out.mlp_classifier.fc4 = head
    return out


def features_and_scores(model: DrugBAN, graphs: GraphBatch, proteins: Tensor) -> tuple[Tensor, Tensor]:
    """The BAN's pooled features (the reference's ``f``, input of the MLP) and the head's logits.

    Taken with a forward pre-hook on ``mlp_classifier``, so the model's one forward pass serves both.
    """
    kept: list[Tensor] = []

    def keep(_: nn.Module, args: tuple[Tensor, ...]) -> None:
        kept.append(args[0])

    handle = model.mlp_classifier.register_forward_pre_hook(keep)
    try:
        scores = model(graphs, proteins)
    finally:
        handle.remove()
    return kept[0], scores


def cdan_step(
    model: DrugBAN,
    cdan: CDAN,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    source: tuple[GraphBatch, Tensor, Tensor],
    target: tuple[GraphBatch, Tensor] | None,
    adapt: bool,
    use_amp: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One step of the reference's ``train_da_epoch``: (total, model, domain) loss of the batch.

    ``source`` is (graphs, protein codes, labels), ``target`` unlabelled (graphs, protein codes), all on
    the model's device. Before ``adapt`` (the warm-up epochs, ``INIT_EPOCH``) only the classification
    loss is trained and the target batch is not used (it may be None), as in the reference. ``use_amp``: the forward
    passes in bfloat16 (on CUDA), the losses in the labels' dtype.
    """
    if adapt and target is None:
        raise ValueError("the domain loss needs a target batch")
    optimizer, optimizer_da = optimizers
    optimizer.zero_grad(set_to_none=True)
    optimizer_da.zero_grad(set_to_none=True)
    graphs, proteins, labels = source
    device = labels.device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
        features, scores = features_and_scores(model, graphs, proteins)
        features_t, scores_t = features_and_scores(model, *target) if adapt and target else (None, None)
    features, scores = features.to(labels.dtype), scores.to(labels.dtype)
    model_loss = cross_entropy_logits(scores, labels)
    da_loss = None
    loss = model_loss
    if features_t is not None and scores_t is not None:
        da_loss = cdan.loss(features, scores, features_t.to(labels.dtype), scores_t.to(labels.dtype))
        loss = model_loss + da_loss
    loss.backward()
    optimizer.step()
    optimizer_da.step()
    return loss.detach(), model_loss.detach(), None if da_loss is None else da_loss.detach()


def saved_cdan(model: DrugBAN, cdan: CDAN, optimizer_da: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """What a checkpoint keeps of a CDAN run beside its one-logit model (`CDAN_KEY`): the two-logit
    head, the discriminator and random layer, the settings and (for resuming) the discriminator's optimiser."""
    fc4 = model.mlp_classifier.fc4
    saved: dict[str, Any] = {
        "config": cdan.config.to_dict(),
        "head": {"weight": fc4.weight.detach().clone(), "bias": fc4.bias.detach().clone()},
        "state_dict": cdan.state_dict(),
    }
    if optimizer_da is not None:
        saved["optimizer"] = optimizer_da.state_dict()
    return saved


def restore_cdan(model: DrugBAN, saved: Any, where: str = "checkpoint") -> tuple[DrugBAN, CDAN]:
    """The two-logit model (``model``, a checkpoint's one-logit model, changed in place) and the `CDAN`
    module of a `saved_cdan` entry; a malformed entry is a `CheckpointError` naming ``where`` and the field."""
    try:
        config = CDANConfig(**saved["config"])
        head = saved["head"]
        model = two_class_model(model)
        model.mlp_classifier.fc4.load_state_dict({"weight": head["weight"], "bias": head["bias"]})
        cdan = CDAN(model.config.mlp_in_dim, config).to(model.mlp_classifier.fc4.weight.device)
        cdan.load_state_dict(saved["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(
            f"{where}: its {CDAN_KEY} entry is not a CDAN run's ({type(exc).__name__}: {exc})"
        ) from None
    return model, cdan
