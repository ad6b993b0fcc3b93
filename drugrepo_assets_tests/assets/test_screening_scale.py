"""A 200,000-molecule library through the Dagster stage with the multiprocess executor, against `drugrepo screen`.

The upstream assets the stage reads but does not use with a user's files (the datasets' features)
are stored empty, and the checkpoint asset's value names the golden checkpoint: the test is of the
screening stage, run the way `dagster asset materialize` runs it (steps in their own processes).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets.data.sources import DATASETS, bundled_root
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.records import CheckpointRecord

pytestmark = pytest.mark.scale

REPO = Path(__file__).resolve().parents[2]
MOLECULES = 200_000
SHARD_SIZE = 50_000
TOP = 20


def _library(data: Path) -> Path:
    spec = importlib.util.spec_from_file_location("_bench_make_library", REPO / "benchmarks" / "make_library.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.make_library(MOLECULES, data / f"library-{MOLECULES}.smi.gz")


def _materialize(home: Path, select: str, config: dict, partition: str | None = None) -> None:
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "drugrepo_assets.definitions",
        "--select",
        select,
        "--config-json",
        json.dumps(config),
    ] + (["--partition", partition] if partition else [])
    env = {**os.environ, "DAGSTER_HOME": str(home), "DRUGREPO_ENV": "local"}
    env.pop("DRUGREPO_EXECUTOR", None)  # the local default: the multiprocess executor
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "RUN_SUCCESS" in done.stderr + done.stdout


def _golden_record(golden_dir: Path) -> CheckpointRecord:
    """A checkpoint record naming the golden checkpoint (not trained here: the stage reads its file and dataset)."""
    path = golden_dir / "model_state.pt"
    return CheckpointRecord(
        checkpoint=str(path),
        checkpoint_id=load_checkpoint(str(path))[1]["checkpoint_id"],
        dataset="human",
        strategy="random",
        profile="golden",
        seed=0,
        max_eval_pairs=None,
        train_pairs=0,
        val_pairs=0,
        best_epoch=0,
        best_val_auroc=float("nan"),
        device="cpu",
        wall_seconds=0.0,
        stopped_early=False,
        history=[],
        hpo_params={},
        mlflow_run_id="",
        mlflow_experiment_id="",
        mlflow_run_url="",
        dagster_run_id="",
    )


def test_a_200k_library_through_the_multiprocess_executor_equals_the_cli(tmp_path: Path, golden_dir: Path) -> None:
    library = _library(REPO / "benchmarks" / ".data")
    proteins = pd.read_csv(bundled_root() / "human" / "random" / "train.csv")["Protein"].value_counts().index[:2]
    fasta = tmp_path / "targets.fasta"
    fasta.write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins)))

    home = tmp_path / "home"
    storage = home / "storage"
    shutil.copy(REPO / "dagster.yaml", home.mkdir() or home / "dagster.yaml")
    empty = {
        "drug_graphs": ["drug_id", "smiles", "shard"],
        "validated_pairs": ["drug_id", "target_id", "label"],
        "protein_encodings": ["target_id", "length", "shard"],
    }
    for asset, columns in empty.items():
        (storage / asset).mkdir(parents=True)
        for dataset in DATASETS:
            pd.DataFrame({c: pd.Series(dtype=str) for c in columns}).to_parquet(storage / asset / f"{dataset}.parquet")
    (storage / "drugban_checkpoint").mkdir()
    (storage / "drugban_checkpoint" / "human.json").write_text(_golden_record(golden_dir).model_dump_json())
    settings = {"library": str(library), "targets": str(fasta), "shard_size": SHARD_SIZE, "top_k": TOP}
    config = {"resources": {"screening": {"config": settings}}}
    _materialize(
        home, "screening_library,screening_library_rejected,screening_targets,screening_targets_rejected", config
    )
    _materialize(home, "screening_scores", config, partition="human")

    plan = pd.read_parquet(storage / "screening_library.parquet")
    assert len(plan) == MOLECULES // SHARD_SIZE and plan["molecules"].sum() == MOLECULES
    (checkpoint,) = (storage / "screening_scores" / "human").iterdir()
    files = sorted(p.name.split("-k")[0] for p in (checkpoint / "scores").glob("*.parquet"))
    assert files == sorted(plan["shard"])  # one file per shard
    staged = pd.read_parquet(storage / "screening_scores" / "human.parquet")

    out = tmp_path / "cli"
    assert (
        main(
            [
                "screen",
                "--checkpoint",
                str(golden_dir / "model_state.pt"),
                "--library",
                str(library),
                "--targets",
                str(fasta),
                "--out",
                str(out),
                "--top",
                str(TOP),
                "--quiet",
            ]
        )
        == 0
    )
    cli = pd.read_parquet(out / "top.parquet")
    assert len(cli) == 2 * TOP
    pd.testing.assert_frame_equal(staged, cli, check_dtype=False, atol=1e-6, rtol=0)
