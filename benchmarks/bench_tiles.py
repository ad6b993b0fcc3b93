"""One Dagster tile op's rates on this machine: the figures the README's k8s arithmetic starts from.

Runs the `score_tile` op of `drugrepo_assets.defs.screening.screening_tiles` directly (no run, no step process), on
raw shards stored as `screening_library` stores them, against one target block, with the golden
checkpoint:

- tile 1: shard 1 × the block, target terms computed now (a cold store);
- tile 2: shard 2 × the same block, terms read from the store (every later tile of a block);
- featurisation alone: the shard's SMILES through a `FeaturePool` of one worker per core.

Each tile's wall time (the op's: the checkpoint loaded, the shard read and featurised, terms, engine,
files written) and engine time (the tile report's ``seconds``) give pairs/s. Results go to
``benchmarks/results/tiles.json``.

    python benchmarks/bench_tiles.py [--molecules 5000] [--targets 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

HERE = Path(__file__).resolve().parent
CHECKPOINT = HERE.parent.parent / "shared" / "golden" / "model_state.pt"
RESULTS = HERE / "results" / "tiles.json"


def _library(molecules: int) -> Path:
    """``2 × molecules`` library molecules (`make_library.py`), cached under ``benchmarks/.data``."""
    sys.path.insert(0, str(HERE))
    from make_library import make_library

    return make_library(2 * molecules, HERE / ".data" / f"library-{2 * molecules}.smi.gz")


def _targets(n: int) -> pd.DataFrame:
    """The ``n`` most frequent proteins of the bundled human training set, as `screening_targets` holds them."""
    from drugrepo_assets.data.sources import bundled_root
    from drugrepo_assets.data.validate import target_id

    proteins = pd.read_csv(bundled_root() / "human" / "random" / "train.csv")["Protein"].value_counts().index[:n]
    return pd.DataFrame(
        {
            "target_id": [f"T{i}" for i in range(n)],
            "sequence": list(proteins),
            "feature_id": [target_id(p) for p in proteins],
            "known_positives": 0,
        }
    )


def _record(checkpoint: Path) -> Any:
    from drugrepo_assets.lib.records import CheckpointRecord
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint

    checkpoint_id = str(load_checkpoint(str(checkpoint)).checkpoint_id)
    return CheckpointRecord.imported(str(checkpoint), checkpoint_id, dataset="human", profile="golden")


def measure(molecules: int, targets: int, folder: Path) -> dict[str, Any]:
    """Two tiles of ``molecules`` × ``targets`` (terms computed, then read) and featurisation alone."""
    from dagster import build_op_context

    from drugrepo_assets.defs.screening.screening_tiles import TileTask, blocks_of, library_root, score_tile
    from drugrepo_assets.lib.resources import ScreeningSettings
    from drugrepo_assets.lib.storage import StorageResource
    from drugrepo_assets.screening.library import FeaturePool, default_workers
    from drugrepo_assets.screening.native import kernel_info
    from drugrepo_assets.screening.stored_library import read_shard, store_file

    storage = StorageResource(base_path=str(folder / "storage"))
    library = str(_library(molecules))
    stored = store_file(library, library, None, library_root(storage), molecules)
    shards = [r.shard for r in stored.refs][:2]
    table = _targets(targets)
    (block,) = blocks_of(table, targets)
    settings = ScreeningSettings(shard_size=molecules, target_block=targets, top_k=100, top_per_drug=5)
    record = _record(CHECKPOINT)
    tiles = []
    for position, shard in enumerate(shards):
        task = TileTask(position=position, shard=shard, block=0, block_name=block.name)
        start = time.perf_counter()
        output = score_tile(build_op_context(), task, record, table, settings, storage)
        wall = time.perf_counter() - start
        report = output.value.report
        pairs = report["molecules"] * report["targets"]
        tiles.append(
            {
                "molecules": report["molecules"],
                "targets": report["targets"],
                "pairs": pairs,
                "terms_computed": report["terms_computed"],
                "terms_read": report["terms_read"],
                "engine_seconds": round(report["seconds"], 2),
                "engine_pairs_per_second": round(pairs / report["seconds"]),
                "op_seconds": round(wall, 2),
                "op_pairs_per_second": round(pairs / wall),
            }
        )
    smiles = read_shard(library_root(storage), shards[0]).rows["smiles"].astype(str).tolist()
    with FeaturePool(default_workers()) as pool:
        start = time.perf_counter()
        pool.result(pool.submit(smiles))
        featurise = time.perf_counter() - start
    return {
        "machine": {
            "cores": default_workers(),
            "load_average_1m": round(os.getloadavg()[0], 1),
            **asdict(kernel_info()),
        },
        "python": platform.python_version(),
        "tiles": tiles,
        "featurisation_molecules_per_second": round(len(smiles) / featurise),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write `RESULTS`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecules", type=int, default=5000)
    parser.add_argument("--targets", type=int, default=64)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bench-tiles-"))
    try:
        result = measure(args.molecules, args.targets, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
