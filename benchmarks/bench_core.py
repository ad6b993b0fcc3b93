"""Throughput of the DrugBAN core: featurisation, training and inference, beside the reference.

Prints a table and writes JSON (``--json``). CPU with 2 torch threads, and CUDA when present.
Reference figures: ../shared/golden/reference_bench.json (original DrugBAN + DGL, same machine kind).

    python benchmarks/bench_core.py [--json benchmarks/results/core.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.features.featurize import drug_graph
from drugrepo_assets.ml.features.protein import encode_protein
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.runtime import configure_cpu

REFERENCE = {
    "featurize_pairs_per_s": 251.72502823038562,
    "train_pairs_per_s_bs64": 6.246791711945125,
    "infer_pairs_per_s_bs64": 27.716945543880836,
    "infer_pairs_per_s_bs256": 20.082469558678117,
}


def _pairs(split: str) -> pd.DataFrame:
    return pd.read_csv(bundled_root() / "human" / "random" / f"{split}.csv")


def bench_featurize(df: pd.DataFrame) -> dict[str, float]:
    """Featurise every pair as the reference does per item (graph + protein), no caching."""
    smiles, proteins = df.SMILES.tolist(), df.Protein.tolist()
    t = time.perf_counter()
    for s, p in zip(smiles, proteins):
        drug_graph(s)
        encode_protein(p)
    pairs_s = len(smiles) / (time.perf_counter() - t)
    uniq = list(dict.fromkeys(smiles))
    t = time.perf_counter()
    for s in uniq:
        drug_graph(s)
    return {"featurize_pairs_per_s": pairs_s, "featurize_molecules_per_s": len(uniq) / (time.perf_counter() - t)}


def bench_train(data: PairData, device: torch.device, steps: int, batch_size: int = 64) -> float:
    """Training pairs/s (forward, backward, Adam step) at batch 64 after one warm-up step."""
    torch.manual_seed(0)
    model = DrugBAN().to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=5e-5)
    perm = torch.randperm(len(data))
    elapsed = 0.0
    for step in range(steps + 1):
        rows = perm[step * batch_size : (step + 1) * batch_size]
        graphs, proteins = data.batch(rows)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(graphs.to(device), proteins.to(device))
        loss = F.binary_cross_entropy_with_logits(logits.float(), data.labels[rows].to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step > 0:
            elapsed += time.perf_counter() - t
    return steps * batch_size / elapsed


def bench_infer(data: PairData, device: torch.device, batch_size: int) -> float:
    """Eval-mode pairs/s over the whole set (features prepared beforehand, as in the reference)."""
    model = DrugBAN().to(device).eval()
    predict_logits(model, data, batch_size=batch_size, device=device)  # warm-up
    t = time.perf_counter()
    predict_logits(model, data, batch_size=batch_size, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(data) / (time.perf_counter() - t)


def matmul_gflops(device: torch.device) -> float:
    """This machine's float32 matrix-product rate now: the ceiling every figure here is bounded by."""
    a = torch.randn(2048, 2048, device=device)
    a @ a
    start = time.perf_counter()
    for _ in range(10):
        a @ a
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/core.json"))
    parser.add_argument("--train-steps", type=int, default=8)
    args = parser.parse_args()
    configure_cpu(threads=2)
    test = _pairs("test")
    train = _pairs("train")
    results: dict[str, object] = {
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": 2,
    }
    results["cpu"] = bench_featurize(test)
    test_data = PairData.from_lists(test.SMILES.tolist(), test.Protein.tolist(), test.Y.tolist())
    train_data = PairData.from_lists(train.SMILES.tolist(), train.Protein.tolist(), train.Y.tolist())
    unique = test.drop_duplicates("Protein")
    unique_data = PairData.from_lists(unique.SMILES.tolist(), unique.Protein.tolist())
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        r = results.setdefault(device.type, {})
        r["matmul_gflops_before"] = matmul_gflops(device)
        r["train_pairs_per_s_bs64"] = bench_train(train_data, device, args.train_steps if device.type == "cpu" else 50)
        r["infer_pairs_per_s_bs64"] = bench_infer(test_data, device, 64)
        r["infer_pairs_per_s_bs256"] = bench_infer(test_data, device, 256)
        r["infer_unique_proteins_pairs_per_s_bs64"] = bench_infer(unique_data, device, 64)
        r["matmul_gflops_after"] = matmul_gflops(device)
    rows = [
        ("featurisation, pairs/s (graph + protein, uncached)", "featurize_pairs_per_s"),
        ("featurisation, molecules/s", "featurize_molecules_per_s"),
        ("training, pairs/s, batch 64", "train_pairs_per_s_bs64"),
        ("inference, pairs/s, batch 64 (Human test)", "infer_pairs_per_s_bs64"),
        ("inference, pairs/s, batch 256 (Human test)", "infer_pairs_per_s_bs256"),
        ("inference, pairs/s, batch 64, every protein distinct", "infer_unique_proteins_pairs_per_s_bs64"),
    ]
    print(f"{'measure':55} {'device':6} {'drugrepo':>10} {'reference':>10} {'ratio':>7}")
    for device in results:
        if device not in ("cpu", "cuda"):
            continue
        for label, key in rows:
            if key not in results[device]:
                continue
            ours = results[device][key]
            ref = REFERENCE.get(key) or (REFERENCE["infer_pairs_per_s_bs64"] if "unique" in key else None)
            ratio = f"{ours / ref:6.1f}x" if ref and device == "cpu" else ""
            print(f"{label:55} {device:6} {ours:10.1f} {ref if ref else float('nan'):10.1f} {ratio:>7}")
    for device in ("cpu", "cuda"):
        if device in results:
            r = results[device]
            print(
                f"{device} float32 matmul now: {r['matmul_gflops_before']:.0f} GFLOP/s before, {r['matmul_gflops_after']:.0f} after"
                " (PERFORMANCE.md: ~235 on this machine kind, where the reference was measured)"
            )
    results["reference"] = REFERENCE
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
