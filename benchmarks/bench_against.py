"""`drugrepo screen` of this checkout against another commit's, in the same run, rounds interleaved.

The machine's speed drifts between days, so "no worse than before" is measured here, not read from an old
JSON: the same library and targets (bench_scale.py's), each round running the other tree's screen then
this one's as fresh processes, with the peak RSS of each whole process tree (`proctree.py`).

    git worktree add /tmp/old <commit>
    python benchmarks/bench_against.py /tmp/old [--size 100000] [--rounds 2] [--json benchmarks/results/against.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).parent))
import bench_scale
from proctree import run_measured

HERE = Path(__file__).resolve().parent


def screen(tree: Path, library: Path, fasta: Path) -> tuple[float, int]:
    """Wall seconds and peak tree RSS of one `drugrepo screen --top 100` run from ``tree``'s code."""
    with tempfile.TemporaryDirectory(prefix="bench-against-") as out:
        cmd = [sys.executable, "-m", "drugrepo_assets.cli", "screen", "--checkpoint", str(bench_scale.CHECKPOINT)]
        cmd += ["--library", str(library), "--targets", str(fasta), "--out", out, "--top", "100", "--quiet"]
        run = run_measured(cmd, cwd=tree)
        if run.returncode != 0:
            raise SystemExit(f"{tree}: drugrepo screen failed ({run.returncode}):\n{run.stderr[-3000:]}")
        return run.wall_s, run.peak_rss_bytes


def commit(tree: Path) -> str:
    """The commit checked out at ``tree``."""
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="a checkout (git worktree) of the commit to compare with")
    parser.add_argument("--size", type=int, default=100_000, help="molecules in the library (× 8 targets)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--data", type=Path, default=HERE / ".data")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "against.json")
    args = parser.parse_args()
    library = bench_scale.make_library(args.size, args.data / f"library-{args.size}.smi.gz")
    fasta = bench_scale.write_targets(args.data / "targets.fasta")
    trees = {"other": args.other.resolve(), "this": HERE.parent}
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():
            runs[name].append(screen(tree, library, fasta))
    pairs = args.size * 8
    rows = {
        name: {
            "commit": commit(tree),
            "wall_s": [w for w, _ in runs[name]],
            "peak_rss_bytes": [p for _, p in runs[name]],
            "pairs_per_s": pairs / median(w for w, _ in runs[name]),
        }
        for name, tree in trees.items()
    }
    print("| tree | commit | wall s (each round) | pairs/s (median) | peak, whole tree (each round) |")
    print("| --- | --- | --- | --- | --- |")
    for name, row in rows.items():
        walls = ", ".join(f"{w:.0f}" for w in row["wall_s"])
        peaks = ", ".join(f"{p / 1e9:.2f} GB" for p in row["peak_rss_bytes"])
        print(f"| {name} | {row['commit']} | {walls} | {row['pairs_per_s']:,.0f} | {peaks} |")
    ratio = rows["this"]["pairs_per_s"] / rows["other"]["pairs_per_s"]
    print(f"this / other pairs/s: {ratio:.3f}")
    result = {"molecules": args.size, "targets": 8, "rounds": args.rounds, "trees": rows, "speed_ratio": ratio}
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
