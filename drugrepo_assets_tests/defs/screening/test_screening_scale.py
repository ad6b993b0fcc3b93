"""The Dagster screening stage run as `dagster asset materialize` runs it (the multiprocess executor, every step
its own process) against `drugrepo screen` on the same inputs: a reduced matrix equal to the CLI's, a tile
that fails once retried alone, and a generated library fanned out over six shards.

The upstream assets the stage reads are stored as values (`screening_setup`): real validated pairs and
the golden checkpoint with its domain reference, so the test is of the screening stage alone.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from dagster import AssetKey, AssetSelection, DagsterEventType, DagsterInstance, materialize

from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.definitions import all_assets
from drugrepo_assets.defs.screening.screening_tiles import blocks_of
from drugrepo_assets.lib.environments import asset_resources
from drugrepo_assets.lib.resources import ScreeningSettings
from drugrepo_assets.screening.plan import tile_name
from drugrepo_assets_tests.defs.screening.screening_setup import stage_storage, validated_human, write_inputs

pytestmark = [pytest.mark.scale, pytest.mark.slow(140)]

REPO = Path(__file__).resolve().parents[3]
INPUTS = "screening_library,screening_library_rejected,screening_targets,screening_targets_rejected"
SCORES = "screening_scores,repurposing_candidates,screening_enrichment"


def _home(tmp_path: Path, golden_dir: Path, validated: pd.DataFrame) -> Path:
    """A Dagster home (the repository's instance config) whose storage holds the stage's upstream values."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    stage_storage(home / "storage", golden_dir, validated)
    return home


def _materialize_command(home: Path, select: str, settings: dict[str, Any], partition: str | None) -> list[str]:
    config = {"resources": {"screening": {"config": settings}}}
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "drugrepo_assets.definitions"]
    command += ["--select", select, "--config-json", json.dumps(config)]
    return command + (["--partition", partition] if partition else [])


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "DAGSTER_HOME": str(home), "DRUGREPO_ENV": "local"}
    env.pop("DRUGREPO_EXECUTOR", None)  # the local default: the multiprocess executor
    return env


def _materialize(home: Path, select: str, settings: dict[str, Any], partition: str | None = None) -> None:
    done = subprocess.run(
        _materialize_command(home, select, settings, partition),
        env=_env(home),
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "RUN_SUCCESS" in done.stderr + done.stdout


def _materialize_inputs(home: Path, settings: dict[str, Any]) -> None:
    """The library and targets, in this process (cheap steps: nothing featurised) on the home's instance."""
    with DagsterInstance.from_config(str(home)) as instance:
        result = materialize(
            all_assets,
            selection=AssetSelection.assets(*INPUTS.split(",")),
            instance=instance,
            resources=asset_resources("local", screening=ScreeningSettings(**settings)),
        )
        assert result.success


def _screen(out: Path, checkpoint: Path, library: Path, targets: Path, *options: str) -> None:
    """The real `drugrepo screen`, as a process."""
    command = [sys.executable, "-m", "drugrepo_assets.cli", "screen", "--checkpoint", str(checkpoint)]
    command += ["--library", str(library), "--targets", str(targets), "--out", str(out), "--quiet", *options]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-4000:]


def _scores_root(storage: Path) -> Path:
    (root,) = (storage / "screening_scores" / "human").iterdir()
    return root


def _sorted_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values(["kind", "file", "line"]).reset_index(drop=True)


def test_a_reduced_matrix_through_the_multiprocess_executor_equals_the_cli(tmp_path: Path, golden_dir: Path) -> None:
    """32 molecules (2 refused by the rules) × 4 targets as 2 shards × 2 blocks: the per-target, per-drug and
    repurposing tables, the refused rows and the enrichment report equal `drugrepo screen`'s."""
    validated = validated_human()
    home = _home(tmp_path, golden_dir, validated)
    storage = home / "storage"
    inputs = write_inputs(tmp_path / "inputs", validated, molecules=30, targets=4)
    settings = {
        "library": str(inputs.library),
        "targets": str(inputs.targets),
        "shard_size": 16,
        "target_block": 2,
        "top_k": 6,
        "top_per_drug": 2,
    }
    _materialize_inputs(home, settings)
    _materialize(home, SCORES, settings, partition="human")
    out = tmp_path / "cli"
    options = ["--top", "6", "--top-per-drug", "2", "--target-block", "2", "--shard-size", "16"]
    _screen(
        out,
        storage / "checkpoints" / "model_state.pt",
        inputs.library,
        inputs.targets,
        *options,
        "--known",
        str(inputs.known),
    )

    staged = pd.read_parquet(storage / "screening_scores" / "human.parquet")
    pd.testing.assert_frame_equal(staged, pd.read_parquet(out / "top.parquet"))
    root = _scores_root(storage)
    for name in ("top_per_drug.parquet", "repurposing.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(root / name), pd.read_parquet(out / name), obj=name)
    pd.testing.assert_frame_equal(
        _sorted_rows(pd.read_csv(root / "rejected.csv")), _sorted_rows(pd.read_csv(out / "rejected.csv"))
    )
    pd.testing.assert_frame_equal(
        pd.read_parquet(storage / "screening_enrichment" / "human.parquet"),
        pd.read_csv(out / "enrichment.csv"),
        check_dtype=False,
    )
    assert staged["known"].any() and staged["nearest_training_drug"].notna().all()  # neither column is trivial
    with DagsterInstance.from_config(str(home)) as instance:
        record = instance.fetch_materializations(AssetKey("screening_scores"), limit=1).records[0]
        metadata = record.asset_materialization.metadata
        assert (metadata["tiles"].value, metadata["tiles_scored_now"].value, metadata["molecules"].value) == (4, 4, 30)


def _events(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> list[Any]:
    return list(instance.all_logs(run_id, of_type=kind))


def test_a_tile_that_fails_once_is_retried_alone(tmp_path: Path, golden_dir: Path) -> None:
    """20 molecules × 2 targets as 2 shards × 1 block. One tile's output path is taken by a directory (as a stray folder on a shared volume would be): its op
    fails writing, Dagster retries it in a new process once the path is freed, and no other tile runs twice.

    The fault is real, outside the product: the test frees the path when the retry is announced in the
    run's event log (the retry policy waits 2 s, then a new step process starts), never by a timer.
    """
    validated = validated_human()
    home = _home(tmp_path, golden_dir, validated)
    storage = home / "storage"
    inputs = write_inputs(tmp_path / "inputs", validated, molecules=20, targets=2, bad=False)
    settings = {"library": str(inputs.library), "targets": str(inputs.targets), "shard_size": 10, "target_block": 2}
    _materialize_inputs(home, settings)
    plan = pd.read_parquet(storage / "screening_library.parquet")
    blocks = blocks_of(pd.read_parquet(storage / "screening_targets.parquet"), 2)
    assert (len(plan), len(blocks)) == (2, 1)
    checkpoint_id = json.loads((storage / "drugban_checkpoint" / "human.json").read_text())["checkpoint_id"]
    tile = tile_name(plan["shard"][1], blocks[0].name)
    obstacle = storage / "screening_scores" / "human" / checkpoint_id / "scores" / f"{tile}.parquet"
    (obstacle / "stray").mkdir(parents=True)
    failing = "screening_scores.score_tile[shard_1_block_0]"

    with DagsterInstance.from_config(str(home)) as instance:
        before = {r.run_id for r in instance.get_runs()}
        process = subprocess.Popen(
            _materialize_command(home, "screening_scores", settings, "human"),
            env=_env(home),
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

        def retry_announced() -> bool:
            runs = [r.run_id for r in instance.get_runs() if r.run_id not in before]
            return bool(runs) and any(
                e.step_key == failing for e in _events(instance, runs[0], DagsterEventType.STEP_UP_FOR_RETRY)
            )

        while process.poll() is None and not retry_announced():
            try:
                process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
        shutil.rmtree(obstacle)
        _, stderr = process.communicate()
        assert process.returncode == 0, stderr[-4000:]

        (run_id,) = [r.run_id for r in instance.get_runs() if r.run_id not in before]
        retries = _events(instance, run_id, DagsterEventType.STEP_UP_FOR_RETRY)
        assert {e.step_key for e in retries} == {failing}
        assert "IsADirectoryError" in str(retries[0].dagster_event.event_specific_data.error)
        starts = Counter(
            e.step_key
            for kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_RESTARTED)  # a retry restarts its step
            for e in _events(instance, run_id, kind)
        )
        tiles = {k: n for k, n in starts.items() if ".score_tile[" in k}
        assert len(tiles) == 2 and tiles.pop(failing) == 1 + len(retries)
        assert set(tiles.values()) == {1} and starts["screening_scores.merge_tiles"] == 1
        outputs = {
            e.step_key: e.dagster_event.event_specific_data.metadata
            for e in _events(instance, run_id, DagsterEventType.STEP_OUTPUT)
        }
        assert (outputs[failing]["terms_read"].value, outputs[failing]["terms_computed"].value) == (
            2,
            0,
        )  # its first try stored them
        metadata = (
            instance.fetch_materializations(AssetKey("screening_scores"), limit=1)
            .records[0]
            .asset_materialization.metadata
        )
        assert (metadata["tiles_scored_now"].value, metadata["tiles_kept"].value) == (2, 0)


MOLECULES = 600
SHARDS = 6  # the fan-out is what is tested; the size is measured by benchmarks/bench_scale.py, not asserted
TOP = 20


def _make_library(data: Path) -> Path:
    spec = importlib.util.spec_from_file_location("_bench_make_library", REPO / "benchmarks" / "make_library.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.make_library(MOLECULES, data / f"library-{MOLECULES}.smi.gz")


def test_a_generated_library_in_many_shards_through_the_multiprocess_executor_equals_the_cli(
    tmp_path: Path, golden_dir: Path
) -> None:
    """The benchmarks' generated library (600 molecules) × 2 targets as 6 shards of 100, one step process per
    tile: the merged top table equals `drugrepo screen`'s on the same files."""
    library = _make_library(REPO / "benchmarks" / ".data")
    proteins = pd.read_csv(bundled_root() / "human" / "random" / "train.csv")["Protein"].value_counts().index[:2]
    fasta = tmp_path / "targets.fasta"
    fasta.write_text("".join(f">T{i}\n{p}\n" for i, p in enumerate(proteins)))
    home = _home(tmp_path, golden_dir, validated_human())
    storage = home / "storage"
    shard_size = MOLECULES // SHARDS
    settings = {"library": str(library), "targets": str(fasta), "shard_size": shard_size, "top_k": TOP}
    _materialize_inputs(home, settings)
    _materialize(home, "screening_scores", settings, partition="human")

    plan = pd.read_parquet(storage / "screening_library.parquet")
    assert len(plan) == SHARDS and plan["molecules"].sum() == MOLECULES
    tiles = sorted(p.stem for p in (_scores_root(storage) / "tiles").glob("*.json"))
    assert [t.split("-")[0] for t in tiles] == sorted(plan["shard"])  # one tile per shard: 2 targets, one block
    out = tmp_path / "cli"
    _screen(out, storage / "checkpoints" / "model_state.pt", library, fasta, "--top", str(TOP))
    cli = pd.read_parquet(out / "top.parquet")
    assert len(cli) == 2 * TOP
    pd.testing.assert_frame_equal(pd.read_parquet(storage / "screening_scores" / "human.parquet"), cli)
