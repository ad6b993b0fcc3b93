"""One GPU check of DrugBAN, ready for a machine with torch, numpy, pandas and pyarrow but no RDKit.

It measures, within ``--budget-seconds`` (default 480, 8 minutes, imports included):

1. CUDA against CPU logit parity on the golden pairs (``../shared/golden``: the reference checkpoint
   and its logits), float32 with TF32 off: CPU against the reference within 1e-5 (the forward-pass
   test's tolerance), CUDA against CPU within 1e-4 (reductions run in another order there);
2. the Human random full profile: `TrainConfig`'s defaults, the reference's settings (100 epochs,
   batch 64, Adam lr 5e-5, patience 20, bfloat16 autocast on CUDA), bounded by
   ``TrainConfig.max_seconds`` set to what is left of the budget less a reserve for the last epoch
   and the test; its test AUROC beside the paper's 0.982;
3. the screening engine's pairs/s (`screening.engine.ScreeningEngine.score_compact`, the torch path a GPU
   runs: target terms, compact molecules expanded a chunk at a time) for 8 and 64 targets.

Two steps, the first where RDKit is (it writes every input the second reads, and nothing else is read):

    python benchmarks/gpu_check.py benchmarks/.data/gpu-inputs --prepare           # here (git ignores the folder)
    PYTHONPATH=. python3 benchmarks/gpu_check.py benchmarks/.data/gpu-inputs --json OUT.json   # on the GPU machine

``--smoke`` runs a tiny profile on CPU in seconds (prepare with ``--smoke`` too): the test suite runs
it so that the script cannot rot. It prints a table and writes JSON (default
``benchmarks/results/gpu_check.json`` when run on CUDA).
"""

# ruff: noqa: E402  (the clock starts before the imports: the budget counts them)
from __future__ import annotations

import time

STARTED = time.perf_counter()  # the budget counts the imports too

import argparse
import json
import math
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drugrepo_assets.ml.features.exported import ExportedFeatures, read_parts
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.training.pipeline import train_and_evaluate
from drugrepo_assets.ml.training.train import TrainConfig
from drugrepo_assets.screening.engine import ScreeningEngine

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_check.json"
GOLDEN = Path(__file__).resolve().parents[2] / "shared" / "golden"
PAPER_HUMAN_RANDOM_AUROC = 0.982
"""DrugBAN's Human random test AUROC (Bai et al., Nature Machine Intelligence 2023, Table 1)."""
BUDGET_SECONDS = 480.0
RESERVE_SECONDS = 45.0
"""Kept from the training's time budget: the epoch that crosses it finishes (max_seconds is checked at epoch
ends), then the best checkpoint is loaded and val and test are scored."""
GOLDEN_TOLERANCE = 1e-5
DEVICE_TOLERANCE = 1e-4
SCREEN_TARGETS = (8, 64)
SCREEN_MOLECULES = 20_000
SCREEN_SECONDS = 20.0
"""Each target count is timed in rounds until this many seconds (at least one round after a warm-up)."""
SMOKE_PAIRS = {"train": 64, "val": 64, "test": 64}
SMOKE_MOLECULES = 64


def _golden_table(golden: Path) -> Any:
    """The golden pairs, in order, as `ml.features.exported` takes them: each molecule featurised from the SMILES text the
    reference was given (as the forward-pass test does), so its id is that text's; no pair dropped."""
    import pandas as pd

    from drugrepo_assets.data.validate import drug_id, target_id

    pairs = pd.read_csv(golden / "model_pairs.csv")
    return pd.DataFrame(
        {
            "drug_id": [drug_id(s) for s in pairs["SMILES"]],
            "target_id": [target_id(p) for p in pairs["Protein"]],
            "smiles": pairs["SMILES"],
            "protein": pairs["Protein"],
            "label": pairs["Y"].astype(np.int8),
        }
    )


def _human_parts(smoke: bool) -> dict[str, Any]:
    """Human random's bundled train, val and test, validated (in smoke, a seeded sample of each first)."""
    from drugrepo_assets.data.columns import read_pairs
    from drugrepo_assets.data.sources import bundled_root
    from drugrepo_assets.data.validate import validate_pairs

    parts = {}
    for name, size in SMOKE_PAIRS.items():
        raw = read_pairs(str(bundled_root() / "human" / "random" / f"{name}.csv"))
        if smoke:
            raw = raw.sample(n=size, random_state=0)
        parts[name] = validate_pairs(raw).valid
    return parts


def prepare(out: Path, smoke: bool) -> None:
    """Write every input of the check under ``out``: exported features (`ml.features.exported`), the golden model and logits."""
    from drugrepo_assets.ml.features.exported import export_parts

    (out / "golden").mkdir(parents=True, exist_ok=True)
    export_parts({"golden": _golden_table(GOLDEN)}, out / "golden")
    shutil.copyfile(GOLDEN / "model_state.pt", out / "golden" / "model_state.pt")
    np.save(out / "golden" / "logits.npy", np.load(GOLDEN / "model_io.npz")["logit"])
    counts = export_parts(_human_parts(smoke), out / "human_random")
    (out / "prepared.json").write_text(json.dumps({"smoke": smoke, "human_random": counts}, indent=2))
    print(f"prepared {out}: golden pairs, Human random {counts}")


def _parity(inputs: Path, device: torch.device) -> dict[str, Any]:
    """Golden logits on CPU and on ``device``, float32, TF32 off (and back as it was for what follows)."""
    data = ExportedFeatures.load(inputs / "golden").pairs("golden")
    reference = np.load(inputs / "golden" / "logits.npy")
    model = load_checkpoint(str(inputs / "golden" / "model_state.pt")).model
    cpu = predict_logits(model, data, 64, "cpu")
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        on_device = predict_logits(model.to(device), data, 64, device)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    cpu_error = float(np.abs(cpu - reference).max())
    device_error = float(np.abs(on_device - cpu).max())
    return {
        "pairs": len(data),
        "device": str(device),
        "max_abs_cpu_vs_reference": cpu_error,
        "max_abs_device_vs_cpu": device_error,
        "max_abs_device_vs_reference": float(np.abs(on_device - reference).max()),
        "tolerance_cpu_vs_reference": GOLDEN_TOLERANCE,
        "tolerance_device_vs_cpu": DEVICE_TOLERANCE,
        "passed": cpu_error <= GOLDEN_TOLERANCE and device_error <= DEVICE_TOLERANCE,
    }


def _screening(inputs: Path, device: torch.device, smoke: bool) -> dict[str, Any]:
    """Pairs/s of the engine's torch path over Human's molecules (repeated to a library) × 8 and 64 targets."""
    features = ExportedFeatures.load(inputs / "human_random")
    model = load_checkpoint(str(inputs / "golden" / "model_state.pt")).model
    engine = ScreeningEngine(model, device, native=False)
    size = SMOKE_MOLECULES if smoke else SCREEN_MOLECULES
    library = features.molecules.take(np.arange(size) % len(features.molecules))
    results: dict[str, Any] = {"molecules": size, "device": str(device)}
    for count in SCREEN_TARGETS:
        codes = torch.from_numpy(features.proteins[np.arange(count) % len(features.proteins)].astype(np.int64))
        engine.score_compact(library.take(np.arange(min(size, 256))), codes)  # warm-up: kernels, allocator
        rounds: list[float] = []
        t_end = time.perf_counter() + (0.0 if smoke else SCREEN_SECONDS)
        while not rounds or time.perf_counter() < t_end:
            t = time.perf_counter()
            logits = engine.score_compact(library, codes)
            rounds.append(time.perf_counter() - t)
        results[str(count)] = {
            "targets": count,
            "pairs": size * count,
            "rounds": len(rounds),
            "best_seconds": min(rounds),
            "pairs_per_s": size * count / min(rounds),
            "finite": bool(np.isfinite(logits).all()),
        }
    return results


def _training(inputs: Path, device: torch.device, smoke: bool, deadline: float) -> dict[str, Any]:
    """The Human random full profile (smoke: 1 epoch of batch 32), bounded by ``deadline`` via max_seconds."""
    parts = read_parts(inputs / "human_random", ("train", "val", "test"))
    left = deadline - time.perf_counter() - RESERVE_SECONDS
    if smoke:
        config = TrainConfig(epochs=1, batch_size=32, patience=None, device=str(device))
    else:
        config = TrainConfig(device=str(device), max_seconds=max(left, 1.0))
    with tempfile.TemporaryDirectory() as out:
        result, evaluation = train_and_evaluate(parts, Path(out), config)
    if evaluation is None:
        raise RuntimeError("the test part is empty")
    test = evaluation.metrics.test
    epochs = len(result.history)
    since_best = epochs - result.best_epoch
    patience_hit = config.patience is not None and since_best >= config.patience
    stopped = "epochs" if epochs == config.epochs else ("patience" if patience_hit else "time budget")
    return {
        "pairs": {name: len(data) for name, data in parts.items()},
        "train_config": config.to_dict(),
        "epochs_run": epochs,
        "stopped_by": stopped,
        "best_epoch": result.best_epoch,
        "best_val_auroc": result.best_val_auroc,
        "test_auroc": test.auroc,
        "test_auprc": test.auprc,
        "paper_test_auroc": PAPER_HUMAN_RANDOM_AUROC,
        "test_auroc_minus_paper": test.auroc - PAPER_HUMAN_RANDOM_AUROC,
        "train_seconds": result.wall_seconds,
        "mean_epoch_seconds": float(np.mean([h.seconds for h in result.history])),
        "train_pairs_per_s": float(np.mean([h.pairs_per_s for h in result.history])),
    }


def _table(report: dict[str, Any]) -> str:
    p, t = report["parity"], report["training"]
    rows = [
        (
            "golden parity: max |CPU - reference|",
            f"{p['max_abs_cpu_vs_reference']:.2e} (≤ {p['tolerance_cpu_vs_reference']:g})",
        ),
        (
            f"golden parity: max |{p['device']} - CPU|",
            f"{p['max_abs_device_vs_cpu']:.2e} (≤ {p['tolerance_device_vs_cpu']:g})",
        ),
        ("golden parity", "passed" if p["passed"] else "FAILED"),
        (
            "Human random test AUROC",
            f"{t['test_auroc']:.4f} (paper {t['paper_test_auroc']}; {t['epochs_run']} epochs, best {t['best_epoch']}, "
            f"stopped by {t['stopped_by']})",
        ),
        (
            "training",
            f"{t['train_seconds']:.0f} s, {t['mean_epoch_seconds']:.2f} s/epoch, {t['train_pairs_per_s']:.0f} pairs/s",
        ),
    ]
    for count in SCREEN_TARGETS:
        s = report["screening"][str(count)]
        rows.append(
            (
                f"screening, {count} targets",
                f"{s['pairs_per_s']:,.0f} pairs/s ({s['pairs']:,} pairs, {s['rounds']} rounds)",
            )
        )
    rows.append(
        ("wall", f"{report['wall_seconds']:.0f} s of {report['budget_seconds']:.0f} s ({report['device_name']})")
    )
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run(inputs: Path, smoke: bool, budget: float, device_name: str) -> dict[str, Any]:
    """Parity, screening, then training with what is left of the budget; the report as a dict."""
    device = torch.device(device_name)
    deadline = STARTED + budget
    if smoke:
        torch.set_num_threads(1)
    report: dict[str, Any] = {
        "smoke": smoke,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "budget_seconds": budget,
    }
    report["parity"] = _parity(inputs, device)
    report["screening"] = _screening(inputs, device, smoke)
    report["training"] = _training(inputs, device, smoke, deadline)
    report["wall_seconds"] = time.perf_counter() - STARTED
    report["within_budget"] = report["wall_seconds"] <= budget
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", metavar="DIR", help="the inputs folder (--prepare writes it, the check reads only it)")
    parser.add_argument("--prepare", action="store_true", help="write DIR's inputs (needs RDKit and ../shared/golden)")
    parser.add_argument("--smoke", action="store_true", help="a tiny profile on CPU, seconds")
    parser.add_argument("--json", type=Path, default=None, help=f"where to write the report (CUDA default: {RESULTS})")
    parser.add_argument("--budget-seconds", type=float, default=BUDGET_SECONDS)
    parser.add_argument("--device", default=None, help="default: cuda when present (cpu with --smoke)")
    args = parser.parse_args()
    if args.prepare:
        prepare(Path(args.dir), args.smoke)
        return
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    report = run(Path(args.dir), args.smoke, args.budget_seconds, device)
    print(_table(report))
    path = args.json or (RESULTS if device.startswith("cuda") and not args.smoke else None)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
        print(f"wrote {path}")
    if not all(math.isfinite(v) for v in (report["training"]["test_auroc"], report["wall_seconds"])):
        raise SystemExit("a result is not finite")


if __name__ == "__main__":
    main()
