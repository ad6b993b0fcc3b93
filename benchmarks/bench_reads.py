"""Bounded reads: `drugrepo validate`'s wall time and peak process-tree memory at and past the table limits.

Cases (each a fresh ``drugrepo validate`` process, its whole tree sampled every 50 ms, `proctree.py`):
- ``pairs``: DrugBAN-like pairs (bundled rows repeated) up to ``--mib`` MiB of CSV (the limit: 512);
- ``short_rows``: ``--rows`` short rows (the row limit: 2 M);
- ``sparse_4g``: a 4 GB sparse CSV (issue 21, finding 4): refused from its size;
- ``parquet_20m``: a Parquet file of 20 M rows in a few hundred KB: refused from its metadata.
Prints a table and writes JSON.

    python benchmarks/bench_reads.py [--mib 512] [--rows 2000000] [--json benchmarks/results/reads.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from drugrepo_assets.data.sources import bundled_root

sys.path.insert(0, str(Path(__file__).parent))
from proctree import run_measured

HERE = Path(__file__).resolve().parent


def write_pairs(path: Path, mib: int) -> Path:
    """Bundled Human pairs repeated (labels kept) until the CSV holds ``mib`` MiB."""
    rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv")[["SMILES", "Protein", "Y"]]
    block = rows.to_csv(index=False, header=False).encode()
    with path.open("wb") as out:
        out.write(b"SMILES,Protein,Y\n")
        for _ in range(max(1, (mib << 20) // len(block))):
            out.write(block)
    return path


def write_short_rows(path: Path, rows: int) -> Path:
    """``rows`` rows of one short pair each (distinct labels, so nothing is a duplicate of the next)."""
    with path.open("w") as out:
        out.write("SMILES,Protein,Y\n")
        line = "CCO,MKV,{}\n"
        out.writelines(line.format(i % 2) for i in range(rows))
    return path


def write_sparse(path: Path) -> Path:
    """A header line, then 4 GB of nothing (a sparse file: no disk used)."""
    with path.open("wb") as out:
        out.write(b"SMILES,Protein,Y\n")
        out.truncate(4 << 30)
    return path


def write_parquet_rows(path: Path, rows: int = 20_000_000) -> Path:
    """``rows`` identical rows in one Parquet file (dictionary-encoded: a few hundred KB)."""
    zeros = pa.array(np.zeros(rows, np.int32))
    table = pa.table(
        {
            "SMILES": pa.DictionaryArray.from_arrays(zeros, pa.array(["CCO"])),
            "Protein": pa.DictionaryArray.from_arrays(zeros, pa.array(["MKV"])),
            "Y": pa.array(np.zeros(rows, np.int8)),
        }
    )
    pq.write_table(table, path, compression="zstd")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "reads.json")
    args = parser.parse_args()
    drugrepo = shutil.which("drugrepo") or str(Path(sys.executable).parent / "drugrepo")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-reads-") as tmp:
        folder = Path(tmp)
        cases = {
            f"pairs ({args.mib} MiB)": write_pairs(folder / "pairs.csv", args.mib),
            f"short_rows ({args.rows:,})": write_short_rows(folder / "short.csv", args.rows),
            "sparse_4g": write_sparse(folder / "sparse.csv"),
            "parquet_20m": write_parquet_rows(folder / "rows.parquet"),
        }
        for name, path in cases.items():
            out = folder / f"out-{path.stem}"
            run = run_measured([drugrepo, "validate", str(path), "--out", str(out)], timeout=1800)
            results.append(
                {
                    "case": name,
                    "input_bytes": path.stat().st_size,
                    "exit": run.returncode,
                    "wall_s": round(run.wall_s, 2),
                    "peak_tree_rss_mb": round(run.peak_rss_bytes / 2**20),
                    "peak_processes": run.peak_processes,
                    "message": (run.stderr.strip().splitlines() or [""])[-1][:160],
                }
            )
            shutil.rmtree(out, ignore_errors=True)
    print(f"{'case':<26} {'exit':>4} {'wall s':>8} {'peak MB':>8} {'procs':>5}  message")
    for r in results:
        print(
            f"{r['case']:<26} {r['exit']:>4} {r['wall_s']:>8} {r['peak_tree_rss_mb']:>8} {r['peak_processes']:>5}  {r['message']}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
