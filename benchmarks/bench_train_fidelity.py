"""Training fidelity, statistical: the reference DrugBAN and this project trained alike, test AUROC side by side.

Human random (the bundled split), one deterministic subsample of train / val / test for both, the reference's
defaults (Adam lr 5e-5, batch 64, best epoch by validation AUROC, test scored by that epoch's model) for every
seed. Per seed the reference runs first, then the project, so that load on the machine hits both alike. The
reference is its own ``main.py`` path (``configs/DrugBAN.yaml`` over ``get_cfg_defaults``, ``set_seed``,
``DTIDataset``, its ``DataLoader`` and ``Trainer.train``), run in its venv (``../shared/reference/setup.sh``)
by this file with ``--reference-worker``; the project is `ml.training.pipeline.train_and_evaluate` with
``TrainConfig(epochs, seed)``. The two cannot share random streams (DGL against our own batching), so what is
compared is the spread over seeds, not single runs. Prints a table; writes JSON (``--json``).

    nice -n 19 .venv/bin/python benchmarks/bench_train_fidelity.py --train 512 --val 256 --test 512 \
        --seeds 0 1 2 --epochs 5 --json benchmarks/results/train_fidelity.json

Only the standard library, numpy and pandas are imported at module level: the reference worker runs this file
in the reference's venv, which has no ``drugrepo_assets``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
REFERENCE_SRC = REPO.parent / "shared" / "reference" / "src"
REFERENCE_PYTHON = Path.home() / ".cache" / "drugrepo-reference" / "venv" / "bin" / "python"
SOURCE = "bundled:human/random"
SUBSAMPLE_SEED = 0
SPLITS = ("train", "val", "test")


def subsample(sizes: dict[str, int], out: Path) -> dict[str, int]:
    """Write ``SPLITS`` of `SOURCE`, each cut to ``sizes`` rows that validation keeps, as the reference's CSVs.

    Rows are taken in one fixed random order (``SUBSAMPLE_SEED``) and the first ``sizes[split]`` that
    `validate_pairs` accepts are kept (only a margin beyond them is validated: validating a whole split costs
    minutes on a loaded machine); they are written with the valid table's SMILES, so the reference featurises
    exactly the molecules the project does.
    """
    from drugrepo_assets.cli.common import resolve_input
    from drugrepo_assets.data.columns import read_pairs
    from drugrepo_assets.data.validate import validate_pairs

    counts = {}
    for split in SPLITS:
        raw = read_pairs(resolve_input(f"{SOURCE}/{split}.csv"))
        order = np.random.RandomState(SUBSAMPLE_SEED).permutation(len(raw))
        drawn = raw.iloc[order[: sizes[split] + sizes[split] // 10 + 16]].reset_index(drop=True)
        part = validate_pairs(drawn).valid.head(sizes[split])  # valid rows keep the drawn order
        table = pd.DataFrame({"SMILES": part["smiles"], "Protein": part["protein"], "Y": part["label"].astype(int)})
        table.to_csv(out / f"{split}.csv", index=False)
        counts[split] = len(table)
    return counts


def project_run(data: Path, seed: int, epochs: int, work: Path) -> dict[str, Any]:
    """This project's training and test evaluation on the subsample (wall time includes featurisation)."""
    from drugrepo_assets.data.columns import read_pairs
    from drugrepo_assets.data.validate import validate_pairs
    from drugrepo_assets.ml.training.pipeline import pair_data, train_and_evaluate
    from drugrepo_assets.ml.training.train import TrainConfig

    t0, c0 = time.perf_counter(), time.process_time()
    parts = {}
    for split in SPLITS:
        checked = validate_pairs(read_pairs(str(data / f"{split}.csv")))
        if len(checked.rejected):
            raise SystemExit(f"{data / split}.csv: {len(checked.rejected)} rows rejected; the subsample must be valid")
        parts[split] = pair_data(checked.valid)
    config = TrainConfig(epochs=epochs, seed=seed, device="cpu")
    result, evaluation = train_and_evaluate(parts, work / f"project-seed{seed}", config)
    assert evaluation is not None
    test = evaluation.metrics.test
    return {
        "best_epoch": result.best_epoch,
        "val_auroc": [h.val_auroc for h in result.history],
        "test_auroc": test.auroc,
        "test_auprc": test.auprc,
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
    }


def reference_worker(data: Path, seed: int, epochs: int) -> None:
    """(Reference venv) The reference's ``main.py`` without Comet or output files; prints one JSON line."""
    import torch

    sys.path.insert(0, str(REFERENCE_SRC))
    from configs import get_cfg_defaults
    from dataloader import DTIDataset
    from models import DrugBAN
    from torch.utils.data import DataLoader
    from trainer import Trainer
    from utils import graph_collate_func, set_seed

    t0, c0 = time.perf_counter(), time.process_time()
    cfg = get_cfg_defaults()
    cfg.merge_from_file(str(REFERENCE_SRC / "configs" / "DrugBAN.yaml"))
    cfg.SOLVER.MAX_EPOCH, cfg.SOLVER.SEED = epochs, seed
    cfg.RESULT.OUTPUT_DIR = str(data)
    set_seed(cfg.SOLVER.SEED)
    frames = {split: pd.read_csv(data / f"{split}.csv") for split in SPLITS}
    sets = {split: DTIDataset(frame.index.values, frame) for split, frame in frames.items()}
    params = {"batch_size": cfg.SOLVER.BATCH_SIZE, "num_workers": 0, "collate_fn": graph_collate_func}
    train_loader = DataLoader(sets["train"], shuffle=True, drop_last=True, **params)
    val_loader, test_loader = (DataLoader(sets[s], shuffle=False, drop_last=False, **params) for s in ("val", "test"))
    model = DrugBAN(**cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.SOLVER.LR)
    trainer = Trainer(model, opt, torch.device("cpu"), train_loader, val_loader, test_loader, experiment=None, **cfg)
    metrics = trainer.train()
    result = {
        "best_epoch": metrics["best_epoch"],
        "val_auroc": [float(x) for x in trainer.val_auroc_epoch],
        "test_auroc": float(metrics["auroc"]),
        "test_auprc": float(metrics["auprc"]),
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
    }
    print("RESULT " + json.dumps(result), flush=True)


def reference_run(python: Path, data: Path, seed: int, epochs: int) -> dict[str, Any]:
    """Run `reference_worker` in the reference's venv (same niceness as this process) and read its result."""
    command = [str(python), __file__, "--reference-worker", str(data), "--seeds", str(seed), "--epochs", str(epochs)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"reference run (seed {seed}) failed: {done.stderr.strip().splitlines()[-1:]}")
    return dict(json.loads(lines[-1][len("RESULT ") :]))


def spread(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (n − 1)."""
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each side's test AUROC / AUPRC spread, and of the per-seed difference project − reference."""
    out: dict[str, Any] = {}
    for metric in ("test_auroc", "test_auprc", "wall_s", "cpu_s"):
        sides = {side: [r[metric] for r in runs if r["side"] == side] for side in ("reference", "project")}
        out[metric] = {side: spread(values) for side, values in sides.items()}
        out[metric]["project_minus_reference"] = spread(
            [p - r for p, r in zip(sides["project"], sides["reference"], strict=True)]
        )
    return out


def result(args: argparse.Namespace, counts: dict[str, int], runs: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """The JSON record: command, subsample, every run so far and, once every seed has both sides, the summary."""
    complete = len(runs) == 2 * len(args.seeds)
    return {
        "command": "nice -n 19 .venv/bin/python " + shlex.join(["benchmarks/bench_train_fidelity.py", *sys.argv[1:]]),
        "data": SOURCE,
        "subsample": {"pairs": counts, "seed": SUBSAMPLE_SEED, "of": "rows validate_pairs accepts, per split"},
        "epochs": args.epochs,
        "seeds": args.seeds,
        "device": "cpu",
        "complete": complete,
        "total_wall_s": wall,
        "runs": runs,
        "summary": summary(runs) if complete else None,
    }


def write(path: Path | None, record: dict[str, Any]) -> None:
    """Write the record (after every run, so an interrupted benchmark leaves what it measured)."""
    if path is not None:
        path.write_text(json.dumps(record, indent=2) + "\n")


def main() -> None:
    """Train both sides per seed, interleaved; print a table and (optionally) write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=512, help="training pairs of the subsample")
    parser.add_argument("--val", type=int, default=256)
    parser.add_argument("--test", type=int, default=512)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--reference-python", type=Path, default=REFERENCE_PYTHON)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--reference-worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reference_worker is not None:
        reference_worker(args.reference_worker, args.seeds[0], args.epochs)
        return
    from drugrepo_assets.ml.runtime import configure_cpu

    configure_cpu()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="train-fidelity-") as tmp:
        data = Path(tmp)
        counts = subsample({"train": args.train, "val": args.val, "test": args.test}, data)
        runs = []
        print(
            f"{'side':10} {'seed':>4} {'best':>4} {'test AUROC':>10} {'test AUPRC':>10} {'wall s':>7} {'CPU s':>7}",
            flush=True,
        )
        for seed in args.seeds:
            for side in ("reference", "project"):
                if side == "reference":
                    run = reference_run(args.reference_python, data, seed, args.epochs)
                else:
                    run = project_run(data, seed, args.epochs, data)
                runs.append({"side": side, "seed": seed, "epochs": args.epochs, **run})
                write(args.json, result(args, counts, runs, time.perf_counter() - t0))
                print(
                    f"{side:10} {seed:>4} {run['best_epoch']:>4} {run['test_auroc']:>10.4f} "
                    f"{run['test_auprc']:>10.4f} {run['wall_s']:>7.0f} {run['cpu_s']:>7.0f}",
                    flush=True,
                )
    final = result(args, counts, runs, time.perf_counter() - t0)
    write(args.json, final)
    for metric in ("test_auroc", "test_auprc"):
        s = final["summary"][metric]
        print(
            f"{metric}: reference {s['reference']['mean']:.4f} ± {s['reference']['sd']:.4f}, "
            f"project {s['project']['mean']:.4f} ± {s['project']['sd']:.4f}, "
            f"project − reference {s['project_minus_reference']['mean']:+.4f} ± {s['project_minus_reference']['sd']:.4f}"
        )


if __name__ == "__main__":
    main()
