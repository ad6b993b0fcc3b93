"""Golden values of the reference's CDAN modules and of its training, and the setup the tests share with them.

Run in the reference's venv (``../shared/reference/setup.sh`` builds it), from the repository root:

    nice -n 19 ~/.cache/drugrepo-reference/venv/bin/python drugrepo_assets_tests/ml/training/reference_training.py

It writes ``drugrepo_assets_tests/ml/training/golden/``: ``pairs.csv`` (24 source and 8 target pairs of the
bundled Human data), ``cdan_modules.npz`` (one step of the reference's ``Trainer.train_da_epoch`` on
fixed features: losses and the gradients reaching the features) and ``train_vanilla.npz`` /
``train_cdan.npz`` (the reference's ``Trainer.train_epoch`` / ``train_da_epoch`` on a small DrugBAN:
loss per step, per-tensor weight checksums per step, the final weights), in float64 on both sides
(see ``test_train_fidelity.py`` for why). Only numpy and torch are
imported at module level, so the tests import the shared setup (sizes, batches, initial weights)
from here; the reference (dgl, dgllife) is imported only when generating.

Initial weights come from numpy's legacy ``RandomState`` (`initial_weights`), whose streams are
fixed across versions, so both sides build them identically and no initial weights are stored.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parent / "golden"
REPO = Path(__file__).resolve().parents[3]
REFERENCE_SRC = REPO.parent / "shared" / "reference" / "src"
HUMAN = REPO / "drugrepo_assets" / "bundled" / "drugban" / "human" / "random"

N_SOURCE, N_TARGET = 24, 8
BATCH = 4
STEPS = 50
CDAN_WARMUP_STEPS = 20
"""CDAN trajectory: the first epoch (warm-up, INIT_EPOCH = 2) has this many steps, the second the rest."""
LR, CDAN_LR, DA_LR = 5e-5, 1e-4, 5e-5
"""The reference's learning rates: DrugBAN.yaml (vanilla), DrugBAN_DA.yaml (CDAN model, discriminator)."""
MODULE_BATCH, MODULE_FEATURES, MODULE_RANDOM_DIM = 6, 32, 16

TINY: dict[str, Any] = {
    "node_in_embedding": 16,
    "hidden_feats": [16, 16],
    "protein_emb_dim": 16,
    "num_filters": [16, 16, 16],
    "kernel_size": [3, 6, 9],
    "mlp_in_dim": 32,
    "mlp_hidden_dim": 32,
    "mlp_out_dim": 16,
    "ban_heads": 2,
    "ban_dropout": 0.0,
}
"""The small DrugBAN of the trajectories, in the project's `DrugBANConfig` names (dropout off)."""


def reference_config(n_class: int, use_da: bool, use_entropy: bool = False, random_dim: int = 16) -> dict[str, Any]:
    """The reference's config (configs.py names) for `TINY`."""
    return {
        "DRUG": {
            "NODE_IN_FEATS": 75,
            "PADDING": True,
            "HIDDEN_LAYERS": TINY["hidden_feats"],
            "NODE_IN_EMBEDDING": TINY["node_in_embedding"],
            "MAX_NODES": 290,
        },
        "PROTEIN": {
            "NUM_FILTERS": TINY["num_filters"],
            "KERNEL_SIZE": TINY["kernel_size"],
            "EMBEDDING_DIM": TINY["protein_emb_dim"],
            "PADDING": True,
        },
        "BCN": {"HEADS": TINY["ban_heads"]},
        "DECODER": {
            "NAME": "MLP",
            "IN_DIM": TINY["mlp_in_dim"],
            "HIDDEN_DIM": TINY["mlp_hidden_dim"],
            "OUT_DIM": TINY["mlp_out_dim"],
            "BINARY": n_class,
        },
        "SOLVER": {"MAX_EPOCH": 2, "BATCH_SIZE": BATCH, "LR": LR, "DA_LR": DA_LR, "NUM_WORKERS": 0, "SEED": 0},
        "RESULT": {"OUTPUT_DIR": "/tmp", "SAVE_MODEL": False},
        "DA": {
            "TASK": use_da,
            "USE": use_da,
            "METHOD": "CDAN",
            "INIT_EPOCH": 2,
            "LAMB_DA": 1,
            "RANDOM_LAYER": True,
            "ORIGINAL_RANDOM": True,
            "RANDOM_DIM": random_dim,
            "USE_ENTROPY": use_entropy,
        },
    }


def _is_batch_norm(key: str) -> bool:
    parts = key.split(".")
    return len(parts) > 1 and parts[-2].startswith("bn")


def initial_weights(shapes: Mapping[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    """Deterministic weights for a state_dict's keys: uniform ±1/√fan_in, BatchNorm at its defaults."""
    rng = np.random.RandomState(seed)
    out: dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        name = key.rsplit(".", 1)[-1]
        if name == "num_batches_tracked":
            out[key] = torch.tensor(0)
            continue
        if name == "running_var" or (_is_batch_norm(key) and name == "weight"):
            value = np.ones(shape)
        elif name == "running_mean" or (_is_batch_norm(key) and name == "bias"):
            value = np.zeros(shape)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            bound = 1 / np.sqrt(fan_in) if len(shape) > 1 else 0.5
            value = rng.uniform(-bound, bound, shape)
        if key.endswith("embedding.weight"):
            value[0] = 0  # the padding row, as nn.Embedding(padding_idx=0) keeps it
        out[key] = torch.tensor(value, dtype=torch.float64)  # load_state_dict casts to the module's dtype
    return out


def batch_rows(step: int, n: int) -> list[int]:
    """Rows (of ``n`` pairs) of batch ``step`` (0-based): a deterministic draw, without repeats within a batch."""
    return [int(i) for i in np.random.RandomState(1000 + step).choice(n, BATCH, replace=False)]


def checksums(tensors: Iterable[torch.Tensor]) -> np.ndarray:
    """Per tensor: the sum of absolute values and the sum of squares, in float64 (neither cancels)."""
    return np.array([[float(t.double().abs().sum()), float(t.double().pow(2).sum())] for t in tensors])


def module_inputs() -> dict[str, np.ndarray]:
    """Fixed features, classifier head and labels of the module-level CDAN step."""
    rng = np.random.RandomState(7)
    b, f = MODULE_BATCH, MODULE_FEATURES
    return {
        "features": rng.normal(size=(2 * b, f)).astype(np.float32),
        "head_weight": rng.uniform(-0.5, 0.5, (2, f)).astype(np.float32),
        "head_bias": rng.uniform(-0.5, 0.5, 2).astype(np.float32),
        "labels": rng.randint(0, 2, b).astype(np.float32),
        "random_matrix_0": rng.normal(size=(f, MODULE_RANDOM_DIM)).astype(np.float32),
        "random_matrix_1": rng.normal(size=(2, MODULE_RANDOM_DIM)).astype(np.float32),
    }


DISCRIMINATOR_SEED, MODEL_SEED, RANDOM_SEED = 11, 12, 13


def discriminator_shapes(input_size: int, hidden: int = 256) -> dict[str, tuple[int, ...]]:
    """The reference Discriminator's state_dict shapes (``bigger_discrim``, two classes)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (fan_in, out) in enumerate(((input_size, hidden), (hidden, hidden), (hidden, 2)), start=1):
        shapes[f"fc{i}.weight"], shapes[f"fc{i}.bias"] = (out, fan_in), (out,)
        if i < 3:
            for name in ("weight", "bias", "running_mean", "running_var"):
                shapes[f"bn{i}.{name}"] = (out,)
            shapes[f"bn{i}.num_batches_tracked"] = ()
    return shapes


def random_matrices(feature_dim: int, random_dim: int) -> list[torch.Tensor]:
    """Fixed matrices of the random layer (features, two class probabilities)."""
    rng = np.random.RandomState(RANDOM_SEED)
    return [torch.tensor(rng.normal(size=(d, random_dim)), dtype=torch.float64) for d in (feature_dim, 2)]


# ----------------------------------------------------------------------------------------------------
# Generation (reference venv only)


class _Recorder:
    """Stands in for the Comet experiment the reference's Trainer logs to after every optimiser step."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.modules = modules
        self.losses: dict[str, list[float]] = {}
        self.sums: list[np.ndarray] = []

    def log_metric(self, name: str, value: float, step: int | None = None, epoch: int | None = None) -> None:
        if not name.startswith("train_step"):
            return
        self.losses.setdefault(name, []).append(value)
        if name == "train_step model loss":
            self.sums.append(checksums(t for m in self.modules for t in m.state_dict().values()))


def _trainer(model: Any, opt: Any, batches: Any, config: dict[str, Any], **kwargs: Any) -> Any:
    from trainer import Trainer

    return Trainer(model, opt, torch.device("cpu"), batches, None, None, **kwargs, **config)


def _module_goldens() -> dict[str, np.ndarray]:
    """One ``train_da_epoch`` step on fixed features (a stub model), with and without entropy weights."""
    from domain_adaptator import Discriminator

    x = module_inputs()
    b = MODULE_BATCH
    out: dict[str, np.ndarray] = dict(x)

    class Stub(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.f = torch.nn.Parameter(torch.tensor(x["features"]))
            self.head = torch.nn.Linear(MODULE_FEATURES, 2)
            self.head.load_state_dict({"weight": torch.tensor(x["head_weight"]), "bias": torch.tensor(x["head_bias"])})

        def forward(self, idx: torch.Tensor, v_p: torch.Tensor) -> tuple[Any, ...]:
            f = self.f[idx]
            return idx, v_p, f, self.head(f)

    for use_entropy in (False, True):
        tag = "entropy" if use_entropy else "plain"
        stub = Stub()
        disc = Discriminator(input_size=MODULE_RANDOM_DIM, n_class=2)
        disc.load_state_dict(initial_weights(discriminator_shapes(MODULE_RANDOM_DIM), DISCRIMINATOR_SEED))
        config = reference_config(2, True, use_entropy, MODULE_RANDOM_DIM)
        config["SOLVER"]["BATCH_SIZE"] = b
        config["DECODER"]["IN_DIM"] = MODULE_FEATURES
        source = (torch.arange(b), torch.zeros(b), torch.tensor(x["labels"]))
        target = (torch.arange(b, 2 * b), torch.zeros(b), torch.zeros(b))
        zero_lr = [torch.optim.SGD(m.parameters(), lr=0.0) for m in (stub, disc)]
        trainer = _trainer(stub, zero_lr[0], [[source, target]], config, opt_da=zero_lr[1], discriminator=disc)
        trainer.random_layer.random_matrix = [torch.tensor(x["random_matrix_0"]), torch.tensor(x["random_matrix_1"])]
        trainer.current_epoch = 2
        _, model_loss, da_loss, _ = trainer.train_da_epoch()
        out[f"{tag}/model_loss"] = np.float64(model_loss)
        out[f"{tag}/da_loss"] = np.float64(da_loss)
        out[f"{tag}/grad_features"] = stub.f.grad.numpy()
        out[f"{tag}/grad_head_weight"] = stub.head.weight.grad.numpy()
        out[f"{tag}/grad_discriminator"] = checksums(p.grad for p in disc.parameters())
        out[f"{tag}/discriminator_buffers"] = checksums(disc.buffers())
    lambdas = []
    for epoch in range(1, 21):
        trainer.current_epoch, trainer.epochs, trainer.nb_training, trainer.da_init_epoch = epoch, 20, 7, 5
        lambdas.append(trainer.da_lambda_decay())
    out["da_lambda_decay"] = np.array(lambdas)
    return out


def _dataset(frame: Any) -> Any:
    from dataloader import DTIDataset

    return DTIDataset(frame.index.values, frame)


def _batches(dataset: Any, first: int, steps: int, n: int) -> list[Any]:
    """The reference's collated batches, node features in float64."""
    from utils import graph_collate_func

    batches = [graph_collate_func([dataset[i] for i in batch_rows(s, n)]) for s in range(first, first + steps)]
    for graphs, _, _ in batches:
        graphs.ndata["h"] = graphs.ndata["h"].double()
    return batches


def _model(n_class: int) -> Any:
    from models import DrugBAN

    model = DrugBAN(**reference_config(n_class, n_class == 2))
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # dropout off: the trajectories compare deterministic steps
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(initial_weights(shapes, MODEL_SEED))
    return model.double()


def _vanilla_goldens(frame: Any) -> dict[str, np.ndarray]:
    """``Trainer.train_epoch`` over `STEPS` batches of the source pairs."""
    model = _model(1)
    dataset = _dataset(frame.head(N_SOURCE))
    recorder = _Recorder([model])
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    trainer = _trainer(model, opt, _batches(dataset, 0, STEPS, N_SOURCE), reference_config(1, False))
    trainer.experiment = recorder
    trainer.current_epoch = 1
    trainer.train_epoch()
    state = {f"final/{k}": v.numpy() for k, v in model.state_dict().items()}
    return {"loss": np.array(recorder.losses["train_step model loss"]), "checksums": np.stack(recorder.sums), **state}


def _cdan_goldens(frame: Any) -> dict[str, np.ndarray]:
    """``Trainer.train_da_epoch``: a warm-up epoch (model loss only), then an epoch with the CDAN loss."""
    from domain_adaptator import Discriminator

    config = reference_config(2, True)
    model = _model(2)
    disc = Discriminator(input_size=config["DA"]["RANDOM_DIM"], n_class=2).double()
    disc.load_state_dict(initial_weights(discriminator_shapes(config["DA"]["RANDOM_DIM"]), DISCRIMINATOR_SEED))
    source = _dataset(frame.head(N_SOURCE))
    target = _dataset(frame.tail(N_TARGET).reset_index(drop=True))
    recorder = _Recorder([model, disc])
    opt, opt_da = torch.optim.Adam(model.parameters(), lr=CDAN_LR), torch.optim.Adam(disc.parameters(), lr=DA_LR)
    epochs = [(0, CDAN_WARMUP_STEPS), (CDAN_WARMUP_STEPS, STEPS - CDAN_WARMUP_STEPS)]
    loaders = [
        list(zip(_batches(source, first, steps, N_SOURCE), _batches(target, first, steps, N_TARGET), strict=True))
        for first, steps in epochs
    ]
    trainer = _trainer(model, opt, loaders[0], config, opt_da=opt_da, discriminator=disc)
    trainer.random_layer.random_matrix = random_matrices(TINY["mlp_in_dim"], config["DA"]["RANDOM_DIM"])
    trainer.experiment = recorder
    for epoch, loader in enumerate(loaders, start=1):
        trainer.current_epoch, trainer.train_dataloader = epoch, loader
        trainer.train_da_epoch()
    state = {f"final/{k}": v.numpy() for k, v in model.state_dict().items()}
    da = np.full(STEPS, np.nan)
    da[CDAN_WARMUP_STEPS:] = recorder.losses["train_step da loss"]
    return {
        "loss": np.array(recorder.losses["train_step total loss"]),
        "model_loss": np.array(recorder.losses["train_step model loss"]),
        "da_loss": da,
        "checksums": np.stack(recorder.sums),
        **state,
    }


def _pairs() -> Any:
    """The first `N_SOURCE` + `N_TARGET` single-molecule pairs of Human's train.csv with proteins ≤ 1,200 letters."""
    import pandas as pd

    frame = pd.read_csv(HUMAN / "train.csv")
    keep = ~frame["SMILES"].str.contains(".", regex=False) & (frame["Protein"].str.len() <= 1200)
    return frame[keep].head(N_SOURCE + N_TARGET).reset_index(drop=True)


def _labels_in_the_model_dtype() -> None:
    """The reference's BCE loss with its labels cast to the scores' dtype (its Trainer casts them to float32)."""
    import models
    import trainer

    trainer.binary_cross_entropy = lambda score, labels: models.binary_cross_entropy(score, labels.to(score.dtype))


def main() -> None:
    """Write the golden files (reference venv)."""
    sys.path.insert(0, str(REFERENCE_SRC))
    torch.set_num_threads(1)
    _labels_in_the_model_dtype()
    GOLDEN.mkdir(exist_ok=True)
    frame = _pairs()
    frame.to_csv(GOLDEN / "pairs.csv", index=False)
    np.savez_compressed(GOLDEN / "cdan_modules.npz", **_module_goldens())
    np.savez_compressed(GOLDEN / "train_vanilla.npz", **_vanilla_goldens(frame))
    np.savez_compressed(GOLDEN / "train_cdan.npz", **_cdan_goldens(frame))
    versions = {"torch": torch.__version__, "numpy": np.__version__}
    (GOLDEN / "versions.json").write_text(json.dumps(versions, indent=2) + "\n")


if __name__ == "__main__":
    main()
