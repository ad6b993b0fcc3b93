"""Ranking a screen's score data set: every pair (per-target fan-out) and the top K (merge of shard top-Ks).

Writes a score data set of ``--molecules`` × ``--targets`` pairs in shards of `screening.plan.SHARD_SIZE` (random logits
rounded to 1/64, so ties occur as in real scores) and times `screening.scores.rank_dataset` (each target's
logits sorted once, 4 bytes a pair; every pair's rank and percentile by binary search) and
`screening.scores.merge_top`, with this process's peak RSS. The score files are the engine's output
format, so the model is not needed. Prints a table and writes JSON.

    python benchmarks/bench_rank.py [--molecules 1000000] [--targets 8] [--json benchmarks/results/rank.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from drugrepo_assets.screening.plan import SHARD_SIZE
from drugrepo_assets.screening.scores import ShardScores, merge_top, part_name, rank_dataset, write_shard

sys.path.insert(0, str(Path(__file__).parent))
from proctree import PeakTreeRSS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=1_000_000)
    parser.add_argument("--targets", type=int, default=8)
    parser.add_argument("--top", type=int, default=100)
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "rank.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    targets = [f"T{i}" for i in range(args.targets)]
    with tempfile.TemporaryDirectory(prefix="bench-rank-") as tmp:
        root = Path(tmp)
        names = []
        for shard, start in enumerate(range(0, args.molecules, SHARD_SIZE)):
            n = min(SHARD_SIZE, args.molecules - start)
            logits = (np.round(rng.normal(size=(n, args.targets)) * 64) / 64).astype(np.float32)
            ids = np.array([f"M{i:09d}" for i in range(start, start + n)], dtype=object)
            write_shard(root, part_name(shard), ShardScores(ids, ids, logits, targets), args.top)
            names.append(part_name(shard))
        with PeakTreeRSS() as top_rss:
            start = time.perf_counter()
            merge_top(root, names, targets, args.molecules, args.top, "bench")
            top_s = time.perf_counter() - start
        with PeakTreeRSS() as rank_rss:
            start = time.perf_counter()
            pairs = rank_dataset(root, names, targets, "bench")
            rank_s = time.perf_counter() - start
    rows = [
        {
            "case": f"top {args.top} per target (merge of {len(names)} shard top-Ks)",
            "seconds": top_s,
            "peak_rss_bytes": top_rss.peak_rss_bytes,
        },
        {
            "case": f"every pair ranked ({pairs:,} pairs, per-target fan-out)",
            "seconds": rank_s,
            "peak_rss_bytes": rank_rss.peak_rss_bytes,
            "pairs_per_s": pairs / rank_s,
        },
    ]
    print(f"| {args.molecules:,} molecules × {args.targets} targets | seconds | peak RSS (this process) |")
    print("| --- | --- | --- |")
    for r in rows:
        print(f"| {r['case']} | {r['seconds']:.1f} | {r['peak_rss_bytes'] / 2**20:,.0f} MiB |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"molecules": args.molecules, "targets": args.targets, "runs": rows}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
