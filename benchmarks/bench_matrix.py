"""The repurposing matrix: `drugrepo screen` on drugs × the bundled proteome, memory flat along both axes.

Cases (``--cases``, all by default), each `drugrepo screen --top 10 --top-per-drug 10` run as a fresh
process with the peak RSS of its whole process tree sampled every 50 ms (`proctree.py`):
- proteome: every bundled drug (the distinct SMILES of every bundled CSV, less what the screen refuses)
  × every distinct bundled protein the rules accept of at most 1,200 residues, the targets' terms
  computed into a fresh --target-terms folder: wall, peak memory, pairs/s; then featurisation alone
  (`bench_scale.featurise_alone`: the same stream, shards and process pool, no scoring) and the engine
  alone (every target's terms, then the first ``--engine-sample`` molecules' compact features scored
  against every target, block by block, in this process with the CLI's settings, scaled to the
  library); and wall / (featurisation + engine);
- flat: peak memory of a small library (``--flat-drugs``) against 500, 3,000 and 20,000 targets (past the
  bundled proteins, deterministic point mutants of them) and the spread of the peaks;
- drug: one drug (imatinib, a bundled drug; ``--drug``) × every bundled protein: a first screen stores the
  targets' terms in --target-terms, a second screen of the same drug into a fresh folder reuses them;
  wall and memory of both;
- scale: bench_scale.py's measurement of ``--scale-size`` molecules × 8 targets, against the same size's
  run in results/scale.json.
Prints a table per case and the issue's checks, and writes the cases run into the JSON (the cases not run
keep their earlier results there, each with the time it was measured).

Disk: stored terms take about 1.1 MiB a target (the upper triangle of a 768 × 768 fp32 Gram matrix), so
the flat case's 20,000 targets write about 22 GiB, in a temporary folder removed after each run.

    python benchmarks/bench_matrix.py [--cases all|proteome|flat|drug|scale ...] [--drugs N] [--targets N]
        [--flat-targets 500 3000 20000] [--flat-drugs 50] [--engine-sample 1000] [--drug SMILES]
        [--scale-size 1000000] [--scale-engine-sample 100000] [--data DIR] [--json benchmarks/results/matrix.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from drugrepo_assets.data.rules import PROTEIN_MAX_LENGTH, protein_refusal
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.featurize import CompactMolecules
from drugrepo_assets.ml.features.protein import encode_proteins
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.screening.engine import ScreeningEngine
from drugrepo_assets.screening.library import default_workers
from drugrepo_assets.screening.native import kernel_info
from drugrepo_assets.screening.plan import BLOCK_SIZE, SHARD_SIZE

sys.path.insert(0, str(Path(__file__).parent))
import bench_scale
from proctree import Measured, run_measured

HERE = Path(__file__).resolve().parent
CHECKPOINT = bench_scale.CHECKPOINT
TOP = 10
CASES = ("proteome", "flat", "drug", "scale")
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"  # the letters a point mutant takes
MEMORY_BUDGET = 1.5e9  # Done when: the proteome's peak tree memory under 1.5 GB
WALL_OVER_PARTS = 1.2  # Done when: wall ≤ 1.2 × (featurisation alone + engine alone)
FLAT_SPREAD = 0.15  # Done when: the flat case's peaks within 15 % of each other
IMATINIB = "Cc1ccc(NC(=O)c2ccc(CN3CCN(C)CC3)cc2)cc1Nc1nccc(-c2cccnc2)n1"  # as the bundled data writes it
SCALE_SLACK = 0.05  # "no worse than today": peak and pairs/s within the noise of repeated runs (±5 %)


def _bundled_rows() -> pd.DataFrame:
    """The SMILES and Protein columns of every bundled CSV."""
    files = sorted(bundled_root().rglob("*.csv"))
    return pd.concat([pd.read_csv(p, usecols=["SMILES", "Protein"]) for p in files], ignore_index=True)


def bundled_drugs() -> list[str]:
    """Every distinct SMILES of the bundled data, sorted (the screen refuses what the rules refuse)."""
    return sorted(_bundled_rows()["SMILES"].dropna().unique())


def bundled_proteins() -> list[str]:
    """Every distinct bundled protein the rules accept with at most PROTEIN_MAX_LENGTH residues, sorted."""
    proteins = _bundled_rows()["Protein"].dropna().unique()
    return sorted(p for p in proteins if len(p) <= PROTEIN_MAX_LENGTH and protein_refusal(p) is None)


def sample(items: list[str], n: int | None, seed: int = 0) -> list[str]:
    """``n`` of ``items`` drawn with a seeded generator, in their original order (all of them when n is None)."""
    if n is None or n >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), size=n, replace=False))
    return [items[i] for i in keep]


def protein_variants(proteins: list[str], n: int, seed: int = 0) -> list[str]:
    """``n`` distinct sequences: the proteins, then point mutants of them in turn (one more mutation per round).

    Variant i mutates protein i mod len(proteins) at 1 + i // len(proteins) positions, each to another of the
    20 amino acids, drawn from a generator seeded with (seed, i); lengths are unchanged, so every variant
    stays within the length limit, and a mutant equal to a sequence already taken is drawn again.
    """
    sequences = list(dict.fromkeys(proteins))[:n]
    taken = set(sequences)
    i = 0
    while len(sequences) < n:
        parent = list(proteins[i % len(proteins)])
        rng = np.random.default_rng([seed, i])
        while True:
            mutant = parent.copy()
            for position in rng.choice(len(parent), size=min(1 + i // len(proteins), len(parent)), replace=False):
                mutant[position] = rng.choice([a for a in AMINO_ACIDS if a != parent[position]])
            text = "".join(mutant)
            if text not in taken:
                break
        taken.add(text)
        sequences.append(text)
        i += 1
    return sequences


def write_library(smiles: list[str], path: Path) -> Path:
    """A library file as make_library writes them (``smiles<TAB>id``), ids D000001... in order."""
    path.write_text("smiles\tid\n" + "".join(f"{s}\tD{i:06d}\n" for i, s in enumerate(smiles, 1)))
    return path


def write_fasta(sequences: list[str], path: Path) -> Path:
    """The sequences as FASTA, ids T000001... in order."""
    path.write_text("".join(f">T{i:06d}\n{s}\n" for i, s in enumerate(sequences, 1)))
    return path


def screen(library: Path, fasta: Path, out: Path, terms: Path) -> Measured:
    """`drugrepo screen --top 10 --top-per-drug 10` as a fresh process, its process tree measured."""
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
        str(out),
        "--top",
        str(TOP),
        "--top-per-drug",
        str(TOP),
        "--target-terms",
        str(terms),
        "--quiet",
    ]
    run = run_measured(cmd)
    if run.returncode != 0:
        raise SystemExit(f"drugrepo screen failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return run


def _run_figures(run: Measured, out: Path) -> dict:
    """Wall, peak memory and what the screen kept and refused."""
    rejected = pd.read_csv(out / "rejected.csv")
    return {
        "wall_s": run.wall_s,
        "peak_rss_bytes": run.peak_rss_bytes,
        "peak_processes": run.peak_processes,
        "top_rows": len(pd.read_parquet(out / "top.parquet")),
        "top_per_drug_rows": len(pd.read_parquet(out / "top_per_drug.parquet")),
        "molecules_refused": int((rejected["kind"] == "molecule").sum()),
        "targets_refused": int((rejected["kind"] == "target").sum()),
    }


def engine_alone(molecules: CompactMolecules, sequences: list[str]) -> tuple[float, float]:
    """(pairs/s scoring the molecules against every target, seconds computing the targets' terms), one
    block of BLOCK_SIZE targets at a time as the screen holds them, with the CLI's engine settings."""
    configure_cpu(None)
    engine = ScreeningEngine(load_checkpoint(str(CHECKPOINT)).model, drug_chunk=1024)
    scoring = terms_s = 0.0
    for b0 in range(0, len(sequences), BLOCK_SIZE):
        codes = torch.from_numpy(encode_proteins(sequences[b0 : b0 + BLOCK_SIZE]))
        start = time.perf_counter()
        terms = [engine.target_terms(codes[s]) for s in engine.target_chunks(codes)]
        terms_s += time.perf_counter() - start
        start = time.perf_counter()
        engine.score_compact(molecules, codes, terms)
        scoring += time.perf_counter() - start
    return len(molecules) * len(sequences) / scoring, terms_s


def measure_proteome(drugs: list[str], proteins: list[str], data: Path, engine_sample: int) -> dict:
    """The whole matrix through the CLI, then featurisation and engine alone."""
    library = write_library(drugs, data / f"proteome-drugs-{len(drugs)}.smi")
    fasta = write_fasta(proteins, data / f"proteome-targets-{len(proteins)}.fasta")
    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp:
        run = screen(library, fasta, Path(tmp) / "out", Path(tmp) / "terms")
        figures = _run_figures(run, Path(tmp) / "out")
    feat_s, molecules, kept = bench_scale.featurise_alone(library, engine_sample)
    engine_rate, terms_s = engine_alone(kept, proteins)
    pairs = molecules * len(proteins)
    engine_s = terms_s + pairs / engine_rate
    return {
        "drugs": len(drugs),
        "molecules": molecules,
        "targets": len(proteins),
        "pairs": pairs,
        **figures,
        "pairs_per_s": pairs / run.wall_s,
        "featurise_s": feat_s,
        "engine_sample": len(kept),
        "engine_pairs_per_s": engine_rate,
        "engine_s": engine_s,
        "target_terms_s": terms_s,
        "wall_over_parts": run.wall_s / (feat_s + engine_s),
    }


def measure_flat(drugs: list[str], proteins: list[str], sizes: list[int], data: Path) -> dict:
    """Peak memory of the same small library against more and more targets."""
    library = write_library(drugs, data / f"flat-drugs-{len(drugs)}.smi")
    runs = []
    for n in sizes:
        fasta = write_fasta(protein_variants(proteins, n), data / f"flat-targets-{n}.fasta")
        with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp:
            run = screen(library, fasta, Path(tmp) / "out", Path(tmp) / "terms")
            figures = _run_figures(run, Path(tmp) / "out")
        runs.append({"drugs": len(drugs), "targets": n, **figures})
    peaks = [r["peak_rss_bytes"] for r in runs]
    return {"runs": runs, "spread": max(peaks) / min(peaks) - 1}


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure_drug(drug: str, proteins: list[str], data: Path) -> dict:
    """One drug against every target: a first screen stores the terms, a second reuses them."""
    library = write_library([drug], data / "drug-1.smi")
    fasta = write_fasta(proteins, data / f"drug-targets-{len(proteins)}.fasta")
    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp:
        terms = Path(tmp) / "terms"
        cold = screen(library, fasta, Path(tmp) / "cold", terms)
        stored = _folder_bytes(terms)
        warm = screen(library, fasta, Path(tmp) / "warm", terms)
        figures = _run_figures(warm, Path(tmp) / "warm")
    return {
        "smiles": drug,
        "targets": len(proteins),
        "cold_wall_s": cold.wall_s,
        "cold_peak_rss_bytes": cold.peak_rss_bytes,
        "terms_stored_bytes": stored,
        **figures,
    }


def measure_scale(n: int, data: Path, engine_sample: int) -> dict:
    """bench_scale.py's run of ``n`` molecules × 8 targets, beside the same size's run in results/scale.json."""
    run = bench_scale.measure(n, data, engine_sample)
    saved = HERE / "results" / "scale.json"
    earlier = (
        [r for r in json.loads(saved.read_text())["runs"] if r["molecules"] == run["molecules"]]
        if saved.exists()
        else []
    )
    return {**run, "baseline": earlier[-1] if earlier else None}


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _verdict(ok: bool) -> str:
    return "yes" if ok else "NO"


def report(results: dict) -> None:
    """A table per case and the issue's checks."""
    if (p := results.get("proteome")) is not None:
        print(f"\nproteome: drugrepo screen --top {TOP} --top-per-drug {TOP} --target-terms (fresh)")
        print(
            "| molecules | targets | pairs | wall s | pairs/s | peak (tree) | featurise s | engine: terms s | engine: pairs/s | engine s | wall / (featurise + engine) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        print(
            f"| {p['molecules']:,} ({p['molecules_refused']} refused) | {p['targets']:,} | {p['pairs']:,} | {p['wall_s']:.0f} | "
            f"{p['pairs_per_s']:,.0f} | {_gb(p['peak_rss_bytes'])} ({p['peak_processes']} processes) | {p['featurise_s']:.0f} | "
            f"{p['target_terms_s']:.0f} | {p['engine_pairs_per_s']:,.0f} | {p['engine_s']:.0f} | {p['wall_over_parts']:.2f} |"
        )
        print(
            f"peak under {_gb(MEMORY_BUDGET)}: {_verdict(p['peak_rss_bytes'] < MEMORY_BUDGET)}; "
            f"wall / parts ≤ {WALL_OVER_PARTS}: {_verdict(p['wall_over_parts'] <= WALL_OVER_PARTS)}"
        )
    if (f := results.get("flat")) is not None:
        print("\nflat: peak memory against the number of targets")
        print("| drugs | targets | wall s | peak (tree) |")
        print("| --- | --- | --- | --- |")
        for r in f["runs"]:
            print(
                f"| {r['drugs']} | {r['targets']:,} | {r['wall_s']:.0f} | {_gb(r['peak_rss_bytes'])} ({r['peak_processes']} processes) |"
            )
        print(
            f"spread of the peaks {f['spread']:.1%}; within {FLAT_SPREAD:.0%}: {_verdict(f['spread'] <= FLAT_SPREAD)}"
        )
    if (d := results.get("drug")) is not None:
        print(f"\ndrug: 1 drug × {d['targets']:,} targets ({d['smiles']})")
        print("| terms | wall s | peak (tree) |")
        print("| --- | --- | --- |")
        print(
            f"| computed and stored ({d['terms_stored_bytes'] / 2**20:.0f} MiB) | {d['cold_wall_s']:.1f} | {_gb(d['cold_peak_rss_bytes'])} |"
        )
        print(f"| stored | {d['wall_s']:.1f} | {_gb(d['peak_rss_bytes'])} |")
    if (s := results.get("scale")) is not None:
        print(f"\nscale: {s['molecules']:,} molecules × {s['targets']} targets (bench_scale.py)")
        print(f"wall {s['wall_s']:.0f} s, {s['pairs_per_s']:,.0f} pairs/s, peak {_gb(s['peak_rss_bytes'])}")
        if (b := s["baseline"]) is not None:
            ok = s["peak_rss_bytes"] <= b["peak_rss_bytes"] * (1 + SCALE_SLACK) and s["pairs_per_s"] >= b[
                "pairs_per_s"
            ] * (1 - SCALE_SLACK)
            print(
                f"results/scale.json: {b['pairs_per_s']:,.0f} pairs/s, peak {_gb(b['peak_rss_bytes'])}; "
                f"no worse (±{SCALE_SLACK:.0%}): {_verdict(ok)}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=("all", *CASES), default=["all"])
    parser.add_argument(
        "--drugs", type=int, default=None, help="proteome: a seeded sample of this many bundled drugs (default all)"
    )
    parser.add_argument(
        "--targets",
        type=int,
        default=None,
        help="proteome and drug: a seeded sample of this many proteins (default all)",
    )
    parser.add_argument(
        "--engine-sample", type=int, default=1_000, help="proteome: molecules scored for the engine-alone rate"
    )
    parser.add_argument("--flat-targets", type=int, nargs="+", default=[500, 3_000, 20_000])
    parser.add_argument("--flat-drugs", type=int, default=50, help="flat: a seeded sample of this many bundled drugs")
    parser.add_argument("--drug", default=IMATINIB, metavar="SMILES", help="drug: the molecule of the query")
    parser.add_argument("--scale-size", type=int, default=1_000_000)
    parser.add_argument("--scale-engine-sample", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=HERE / ".data", help="where the generated inputs are kept")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "matrix.json")
    args = parser.parse_args()
    cases = CASES if "all" in args.cases else tuple(c for c in CASES if c in args.cases)
    args.data.mkdir(parents=True, exist_ok=True)

    drugs = bundled_drugs()
    proteins = bundled_proteins()
    print(
        f"bundled: {len(drugs):,} distinct drugs, {len(proteins):,} proteins of ≤ {PROTEIN_MAX_LENGTH:,} residues",
        flush=True,
    )
    targets = sample(proteins, args.targets)
    measurers = {
        "proteome": lambda: measure_proteome(sample(drugs, args.drugs), targets, args.data, args.engine_sample),
        "flat": lambda: measure_flat(sample(drugs, args.flat_drugs), proteins, args.flat_targets, args.data),
        "drug": lambda: measure_drug(args.drug, targets, args.data),
        "scale": lambda: measure_scale(args.scale_size, args.data, args.scale_engine_sample),
    }
    results = {}
    for case in cases:
        print(f"measuring {case}...", flush=True)
        results[case] = {**measurers[case](), "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    report(results)

    info = {
        "cores": os.cpu_count(),
        "workers": default_workers(),
        "torch_threads": torch.get_num_threads(),
        "kernel": kernel_info().kernel,
        "shard_size": SHARD_SIZE,
        "target_block": BLOCK_SIZE,
        "top": TOP,
        "top_per_drug": TOP,
    }
    saved = json.loads(args.json.read_text()) if args.json.exists() else {}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({**saved, "machine": info, **results}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
