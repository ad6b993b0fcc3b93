"""Vanilla DrugBAN and CDAN on the same deterministic cluster split of the bundled Human data.

The split is `drugrepo split`'s (`data.splits.cluster_split`, seed ``--split-seed``): both runs train on
its source ``train`` pairs, choose their best epoch on the source ``val`` pairs and are tested on the
target-domain ``test`` pairs; CDAN also sees the ``target_train`` pairs, without their labels. Each run
uses its reference config: vanilla configs/DrugBAN_Non_DA.yaml (batch 32, lr 5e-5), CDAN
configs/DrugBAN_DA.yaml (batch 32, lr 1e-4, discriminator lr 5e-5), but ``--epochs`` and
``--init-epoch`` as given. ``--max-pairs`` subsamples source train and target train (seeded) on a
small machine. Writes JSON (``--json``).

    python benchmarks/bench_cdan.py --epochs 3 --init-epoch 2 --json benchmarks/results/cdan_cluster.json
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from drugrepo_assets.cli.common import resolve_input
from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.splits import TARGET_TRAIN, cluster_split
from drugrepo_assets.data.validate import validate_pairs
from drugrepo_assets.ml.training.cdan import CDAN_BATCH_SIZE, CDAN_LR, CDANConfig
from drugrepo_assets.ml.training.pipeline import pair_data, train_and_evaluate
from drugrepo_assets.ml.training.train import TrainConfig

VANILLA_LR = 5e-5
"""configs/DrugBAN_Non_DA.yaml's learning rate (its batch size is CDAN's, 32)."""
HISTORY_FIELDS = ("epoch", "train_loss", "model_loss", "da_loss", "val_auroc")
"""What the JSON keeps of each epoch's record."""


def _parts(split_seed: int, max_pairs: int | None, seed: int) -> dict[str, pd.DataFrame]:
    """The cluster split's train, val, target_train and test pairs; train and target_train capped at ``max_pairs``."""
    valid = validate_pairs(read_pairs(resolve_input("bundled:human"))).valid
    table = cluster_split(valid, seed=split_seed)
    parts = {
        name: table[table["split"] == name].reset_index(drop=True) for name in ("train", "val", TARGET_TRAIN, "test")
    }
    for name in ("train", TARGET_TRAIN):
        if max_pairs is not None and len(parts[name]) > max_pairs:
            parts[name] = parts[name].sample(n=max_pairs, random_state=seed).reset_index(drop=True)
    return parts


def _run(
    name: str, parts: dict[str, pd.DataFrame], out: Path, config: TrainConfig, da: CDANConfig | None
) -> dict[str, Any]:
    """Train one model and report its epochs, source-val AUROC (best epoch) and target-test AUROC."""
    data = {split: pair_data(parts[split]) for split in ("train", "val", "test")}
    target = pair_data(parts[TARGET_TRAIN], labelled=False) if da is not None else None
    t0 = time.perf_counter()
    result, evaluation = train_and_evaluate(data, out / name, config, da=da, target_data=target)
    assert evaluation is not None
    return {
        "train_config": config.to_dict(),
        "cdan_config": None if da is None else da.to_dict(),
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "source_val_auroc": evaluation.metrics.val.auroc,
        "target_test_auroc": evaluation.metrics.test.auroc,
        "target_test_auprc": evaluation.metrics.test.auprc,
        "history": [  # NaN (no domain loss in a warm-up epoch) as null: strict JSON
            {k: None if v != v else v for k, v in vars(h).items() if k in HISTORY_FIELDS} for h in result.history
        ],
        "wall_seconds": time.perf_counter() - t0,
    }


def main() -> None:
    """Run vanilla and CDAN on one cluster split and print (and optionally write) both as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--init-epoch", type=int, default=2, help="CDAN's first adapting epoch (the reference: 10)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (and the subsample's)")
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--max-pairs", type=int, default=None, help="cap on source train and on target train pairs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parts = _parts(args.split_seed, args.max_pairs, args.seed)

    def config(lr: float) -> TrainConfig:
        return TrainConfig(
            epochs=args.epochs, batch_size=CDAN_BATCH_SIZE, lr=lr, patience=None, seed=args.seed, device="cpu"
        )

    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "vanilla": _run("vanilla", parts, Path(tmp), config(VANILLA_LR), None),
            "cdan": _run("cdan", parts, Path(tmp), config(CDAN_LR), CDANConfig(init_epoch=args.init_epoch)),
        }
    result = {
        "dataset": "bundled:human",
        "split": {"strategy": "cluster", "seed": args.split_seed},
        "pairs": {name: len(table) for name, table in parts.items()},
        "max_pairs": args.max_pairs,
        "threads": args.threads,
        "machine": platform.machine(),
        "torch": torch.__version__,
        "runs": runs,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
