"""Library-scale screening: `drugrepo screen --top 100` on 100k and 1M molecules × 8 targets.

For each library size (made deterministically from the bundled drugs by `make_library.py`):
- end to end: ``drugrepo screen --top 100`` as a fresh process, wall time and the peak RSS of its
  whole process tree (the featurisation workers included), sampled every 50 ms (`proctree.py`);
- featurisation alone: the same stream, shards and process pool, no scoring (molecules/s);
- engine alone: the compact features of the first ``--engine-sample`` molecules scored against the
  8 targets, in this process with the CLI's settings (pairs/s), scaled to the library.
The end-to-end time is compared with featurisation + engine. Prints a table and writes JSON.

    python benchmarks/bench_scale.py [--sizes 100000 1000000] [--json benchmarks/results/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.data.library import iter_library
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.featurize import CompactMolecules
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.screening.engine import ScreeningEngine
from drugrepo_assets.screening.library import FeaturePool, default_workers, iter_shards
from drugrepo_assets.screening.native import kernel_info
from drugrepo_assets.screening.plan import SHARD_SIZE

sys.path.insert(0, str(Path(__file__).parent))
from make_library import make_library
from proctree import run_measured

HERE = Path(__file__).resolve().parent
CHECKPOINT = HERE.parent.parent / "shared" / "golden" / "model_state.pt"
TARGETS = 8
TOP = 100


def write_targets(path: Path, n: int = TARGETS) -> Path:
    """The ``n`` proteins with the most pairs in the bundled Human data, as FASTA."""
    rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv")
    proteins = rows["Protein"].value_counts().index[:n]
    path.write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins)))
    return path


def featurise_alone(library: Path, keep: int) -> tuple[float, int, CompactMolecules]:
    """Seconds to read and featurise the whole library as `drugrepo screen` does; the first ``keep`` molecules."""
    kept: list[CompactMolecules] = []
    held = 0
    molecules = 0
    start = time.perf_counter()
    with FeaturePool(default_workers()) as pool:
        pending = None
        for shard in iter_shards(iter_library(str(library)), SHARD_SIZE):
            job = pool.submit(shard.rows["smiles"].tolist())
            if pending is not None:
                done, _, _ = pool.result(pending)
                molecules += len(done)
                if held < keep:
                    kept.append(done)
                    held += len(done)
            pending = job
        if pending is not None:
            done, _, _ = pool.result(pending)
            molecules += len(done)
            if held < keep:
                kept.append(done)
    seconds = time.perf_counter() - start
    sample = CompactMolecules.concat(kept)
    return seconds, molecules, sample.take(np.arange(min(keep, len(sample))))


def engine_alone(sample: CompactMolecules, fasta: Path) -> float:
    """Pairs/s of the engine on compact features already in memory (the CLI's settings)."""
    from drugrepo_assets.screening.targets import read_target_set

    configure_cpu(None)
    engine = ScreeningEngine(load_checkpoint(str(CHECKPOINT)).model, drug_chunk=1024)
    codes = torch.from_numpy(encode_proteins(read_target_set(fasta).kept["sequence"].tolist()))
    terms = [engine.target_terms(codes[s]) for s in engine.target_chunks(codes)]
    start = time.perf_counter()
    engine.score_compact(sample, codes, terms)
    return len(sample) * len(codes) / (time.perf_counter() - start)


def measure(n: int, data: Path, sample: int) -> dict:
    library = make_library(n, data / f"library-{n}.smi.gz")
    fasta = write_targets(data / "targets.fasta")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as out:
        cmd = [
            sys.executable,
            "-m",
            "drugrepo_assets.cli",
            "screen",
            "--checkpoint",
            str(CHECKPOINT),
            "--library",
            str(library),
            "--targets",
            str(fasta),
            "--out",
            out,
            "--top",
            str(TOP),
            "--quiet",
        ]
        run = run_measured(cmd)
        if run.returncode != 0:
            raise SystemExit(f"drugrepo screen failed ({run.returncode}):\n{run.stderr[-3000:]}")
        top = pd.read_parquet(Path(out) / "top.parquet")
    feat_s, molecules, kept = featurise_alone(library, sample)
    engine_rate = engine_alone(kept, fasta)
    pairs = molecules * TARGETS
    engine_s = pairs / engine_rate
    return {
        "molecules": molecules,
        "targets": TARGETS,
        "pairs": pairs,
        "top_rows": len(top),
        "wall_s": run.wall_s,
        "pairs_per_s": pairs / run.wall_s,
        "peak_rss_bytes": run.peak_rss_bytes,
        "peak_processes": run.peak_processes,
        "featurise_s": feat_s,
        "featurise_mol_per_s": molecules / feat_s,
        "engine_pairs_per_s": engine_rate,
        "engine_sample": len(kept),
        "engine_s": engine_s,
        "wall_over_parts": run.wall_s / (feat_s + engine_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engine-sample", type=int, default=100_000, help="molecules scored for the engine-alone rate")
    parser.add_argument("--data", type=Path, default=HERE / ".data", help="where the generated libraries are cached")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "scale.json")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    rows = [measure(n, args.data, args.engine_sample) for n in args.sizes]
    info = {
        "cores": os.cpu_count(),
        "workers": default_workers(),
        "torch_threads": torch.get_num_threads(),
        "kernel": kernel_info().kernel,
        "shard_size": SHARD_SIZE,
        "top": TOP,
    }
    print(f"drugrepo screen --top {TOP}, {TARGETS} targets; {info}")
    print(
        "| molecules | pairs | wall s | pairs/s | peak RSS (tree) | featurise mol/s | engine pairs/s | wall / (featurise + engine) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['molecules']:,} | {r['pairs']:,} | {r['wall_s']:.0f} | {r['pairs_per_s']:,.0f} | "
            f"{r['peak_rss_bytes'] / 2**30:.2f} GiB ({r['peak_processes']} processes) | {r['featurise_mol_per_s']:,.0f} | "
            f"{r['engine_pairs_per_s']:,.0f} | {r['wall_over_parts']:.2f} |"
        )
    if len(rows) > 1:
        growth = rows[-1]["peak_rss_bytes"] / rows[0]["peak_rss_bytes"] - 1
        print(f"peak memory from {rows[0]['molecules']:,} to {rows[-1]['molecules']:,} molecules: {growth:+.1%}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "runs": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
