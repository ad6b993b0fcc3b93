"""Screening throughput: the exact engine against the plain batched predict path and the reference.

Cases (CPU, 2 torch threads; CUDA too when present):
- end to end: ``drugrepo screen`` as a fresh process on 2,500 drugs × 4 targets, start-up, file
  reading, featurisation and writing included;
- engine only, features cached: 1 target × 2,500 drugs and 4 × 2,500 and 32 × 2,500 (C kernel on
  CPU), and 4 × 2,500 through the torch matmul path;
- plain batched ``predict`` on a sample of the same pairs.
Each figure is the median of 5 timed runs (3 for the end-to-end process). Prints a table and writes
JSON (``--json``). Reference: 27.7 pairs/s (../shared/golden/reference_bench.json).

    python benchmarks/bench_screen.py [--drugs 2500] [--json benchmarks/results/screen.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.dataset import MoleculeStore, PairData
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.checkpoint import save_checkpoint
from drugrepo_assets.ml.model.drugban import DrugBAN
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.screening.engine import ScreeningEngine

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import matmul_gflops

REFERENCE_INFER = 27.716945543880836


def _inputs(n_drugs: int, n_targets: int) -> tuple[list[str], list[str]]:
    """Distinct real molecules and targets from the bundled data (all within DrugBAN's 290 atoms)."""
    frames = [pd.read_csv(p) for p in sorted(bundled_root().glob("*/*/*.csv"))]
    rows = pd.concat(frames)
    smiles = [s for s in dict.fromkeys(rows["SMILES"]) if len(s) < 200][:n_drugs]
    proteins = list(dict.fromkeys(rows["Protein"]))[:n_targets]
    return smiles, proteins


def _timed(fn, repeat: int = 5) -> float:
    """Median wall time of ``repeat`` calls (a VM's neighbours make single runs vary by ±10 %)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drugs", type=int, default=2500)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/screen.json"))
    args = parser.parse_args()
    configure_cpu(threads=2)
    smiles, proteins = _inputs(args.drugs, 32)
    torch.manual_seed(0)
    model = DrugBAN().eval()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        ckpt = tmp_path / "model.pt"
        save_checkpoint(str(ckpt), model)
        pd.DataFrame({"id": [f"d{i}" for i in range(len(smiles))], "SMILES": smiles}).to_csv(
            tmp_path / "lib.csv", index=False
        )
        (tmp_path / "t.fasta").write_text("".join(f">t{i}\n{p}\n" for i, p in enumerate(proteins[:4])))
        runs = iter(range(3))  # a fresh output folder per run: on a used one, drugrepo screen resumes
        command = [
            sys.executable,
            "-m",
            "drugrepo_assets.cli",
            "screen",
            "--checkpoint",
            str(ckpt),
            "--library",
            str(tmp_path / "lib.csv"),
            "--targets",
            str(tmp_path / "t.fasta"),
            "--threads",
            "2",
            "--quiet",
            "--out",
        ]
        seconds = _timed(
            lambda: subprocess.run([*command, str(tmp_path / f"out{next(runs)}")], check=True, capture_output=True),
            repeat=3,
        )
        pairs = len(smiles) * 4
        results.append(
            {
                "case": f"end to end, {len(smiles)} drugs × 4 targets (drugrepo screen)",
                "device": "cpu",
                "pairs": pairs,
                "seconds": seconds,
            }
        )
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    molecules = MoleculeStore.from_smiles(smiles)
    for device in devices:
        engine = ScreeningEngine(model, device=device)
        if device.type == "cpu":  # the same identity as torch batched matmuls, for comparison with the C kernel
            torch_path = ScreeningEngine(model, device=device, drug_chunk=64, native=False)
            codes = torch.from_numpy(encode_proteins(proteins[:4]))
            torch_path.score_matrix(MoleculeStore.from_smiles(smiles[:64]), codes)
            seconds = _timed(lambda e=torch_path, c=codes: e.score_matrix(molecules, c))
            results.append(
                {
                    "case": f"engine, torch matmul path, {len(smiles)} drugs × 4 targets",
                    "device": device.type,
                    "pairs": len(smiles) * 4,
                    "seconds": seconds,
                }
            )
        for n_targets in (1, 4, 32):
            codes = torch.from_numpy(encode_proteins(proteins[:n_targets]))
            engine.score_matrix(MoleculeStore.from_smiles(smiles[:64]), codes)  # warm-up
            seconds = _timed(lambda e=engine, c=codes: e.score_matrix(molecules, c))
            results.append(
                {
                    "case": f"engine, features cached, {len(smiles)} drugs × {n_targets} targets",
                    "device": device.type,
                    "pairs": len(smiles) * n_targets,
                    "seconds": seconds,
                }
            )
        sample = 1024
        rng = np.random.default_rng(0)
        pick_s, pick_p = rng.integers(0, len(smiles), sample), rng.integers(0, 4, sample)
        data = PairData.from_lists([smiles[i] for i in pick_s], [proteins[i] for i in pick_p])
        predict_logits(model.to(device), PairData.from_lists(smiles[:64], [proteins[0]] * 64), device=device)
        seconds = _timed(lambda d=device, x=data: predict_logits(model.to(d), x, batch_size=256, device=d))
        results.append(
            {
                "case": f"plain batched predict, {sample} pairs of the 4-target screen",
                "device": device.type,
                "pairs": sample,
                "seconds": seconds,
            }
        )
    gflops = {str(d): matmul_gflops(d) for d in devices}
    print(
        f"float32 matmul now: {', '.join(f'{d} {g:.0f} GFLOP/s' for d, g in gflops.items())} (235 on a quiet CPU of this kind)"
    )
    print(f"{'case':66} {'device':6} {'pairs/s':>10} {'× reference':>12}")
    for r in results:
        r["pairs_per_s"] = r["pairs"] / r["seconds"]
        ratio = r["pairs_per_s"] / REFERENCE_INFER
        print(f"{r['case']:66} {r['device']:6} {r['pairs_per_s']:10.0f} {ratio:11.0f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"reference_infer_pairs_per_s": REFERENCE_INFER, "matmul_gflops": gflops, "results": results}, indent=2
        )
    )
    print(f"written {args.json}")


if __name__ == "__main__":
    main()
