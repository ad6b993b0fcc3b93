"""The ops of `screening_scores`' 2-D fan-out, and where the screening stage keeps its files.

`plan_tiles` yields one `TileTask` per tile (library shard × target block, `screening.plan`); each
`score_tile` op (a GPU pod under k8s, in the `gpu` pool, retried alone) featurises its shard in a sandbox
and scores it against its one block with `tiles.score_tiles`, the targets' terms read from (or added to)
the store under ``<storage>/target_terms``; `merge_tiles` reads only the tiles' summaries through
`driver.answer` and writes the tables and pictures (`driver.write_answers`) under `scores_root`. The
storage layout (`library_root`, `scores_root`, `terms_store`) and the refused-rows table are shared by
every screening asset (`defs.screening.screening`).
"""

import io
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd
from dagster import (
    Backoff,
    DynamicOut,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    op,
)
from pydantic import BaseModel, ConfigDict

from drugrepo_assets.files import uri_of, write_bytes_atomic
from drugrepo_assets.lib.k8s import GPU_OP_TAGS, GPU_POOL
from drugrepo_assets.lib.metadata import image_markdown, table_metadata
from drugrepo_assets.lib.records import CheckpointRecord
from drugrepo_assets.lib.resources import ScreeningSettings
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.screening.driver import PICTURES, ScreenRun, answer, rejected_rows, write_answers
from drugrepo_assets.screening.library import REJECTED_COLUMNS, FeaturePool, Featurised, default_workers
from drugrepo_assets.screening.plan import TargetBlock, target_blocks, tile_name
from drugrepo_assets.screening.stored_library import content_path, dataset_pairs, plan_refs, read_shard, write_content
from drugrepo_assets.screening.tiles import TileReport, TileSettings, score_tiles

if TYPE_CHECKING:
    from drugrepo_assets.screening.terms import TargetTermStore

TILE_RETRIES = RetryPolicy(max_retries=2, delay=2, backoff=Backoff.EXPONENTIAL)
"""A tile op that fails (a lost pod, a transient store error) is retried alone; its files make it idempotent."""
TARGET_TERMS = "target_terms"
"""The target-terms store under the storage root, shared by every tile op (and the CLI or API pointed there)."""
DATASET_PAIRS = "dataset_pairs.parquet"
"""The dataset's pairs as the screen names them, written by the merge beside the answers."""
SHOWN_TILES = 200
"""Tiles listed in `screening_scores`' metadata table (the totals count every tile)."""
SHOWN_PAIRS = 10


def rejected_table(frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Refused rows in the shared columns (`screening.library.REJECTED_COLUMNS`)."""
    frame = pd.DataFrame(columns=REJECTED_COLUMNS) if frame is None or not len(frame) else frame
    types = {"kind": str, "file": str, "line": "int64", "id": str, "value": str, "reason": str}
    return frame[REJECTED_COLUMNS].astype(types).reset_index(drop=True)


def library_root(storage: StorageResource) -> Any:
    """Where the library's shard tables, per-file records and content ids live: ``<storage>/screening_library``."""
    return storage.base() / "screening_library"


def scores_root(storage: StorageResource, dataset: str, checkpoint: str) -> Any:
    """Where one dataset checkpoint's tiles and answers live: ``<storage>/screening_scores/<dataset>/<checkpoint_id>``."""
    return storage.base() / "screening_scores" / dataset / checkpoint


def terms_store(storage: StorageResource, checkpoint_id: str) -> "TargetTermStore":
    """The target terms of a checkpoint under ``<storage>/target_terms``."""
    from drugrepo_assets.screening.terms import TargetTermStore

    return TargetTermStore(storage.base() / TARGET_TERMS, checkpoint_id)


def blocks_of(targets: pd.DataFrame, block_size: int) -> list[TargetBlock]:
    """`screening_targets` cut into target blocks (`plan.target_blocks`), as every op of a run cuts them."""
    return target_blocks(targets.rename(columns={"target_id": "id"}), block_size)


class TileTask(BaseModel):
    """One tile handed to a `score_tile` op: its shard (by name, place in library order) and its block (by index and name)."""

    model_config = ConfigDict(frozen=True)

    position: int
    shard: str
    block: int
    block_name: str


class TileResult(BaseModel):
    """What one `score_tile` op did: its task, its tile's report (`tiles.TileReport`), the checkpoint and the root."""

    model_config = ConfigDict(frozen=True)

    task: TileTask
    report: dict[str, Any]
    checkpoint_id: str
    root: str


@op(out=DynamicOut(TileTask, io_manager_key="json_io_manager"))
def plan_tiles(
    screening_library: pd.DataFrame, screening_targets: pd.DataFrame, screening: ScreeningSettings
) -> Iterator[DynamicOutput[TileTask]]:
    """One mapped `score_tile` op per tile: every library shard × every target block."""
    blocks = blocks_of(screening_targets, screening.target_block)
    for position, ref in enumerate(plan_refs(screening_library)):
        for block in blocks:
            task = TileTask(position=position, shard=ref.shard, block=block.index, block_name=block.name)
            yield DynamicOutput(task, mapping_key=f"shard_{position}_block_{block.index}")


def tile_settings(screening: ScreeningSettings) -> TileSettings:
    """What each tile keeps: the best ``top_k`` molecules per target, the best ``top_per_drug`` targets per molecule."""
    return TileSettings(top=screening.top_k, top_per_drug=screening.top_per_drug)


class _ShardFeatures:
    """A tile op's shard featurised at most once, in a sandbox started only when needed (a kept tile needs none)."""

    def __init__(self, smiles: list[str], workers: int) -> None:
        self.smiles, self.workers = smiles, workers
        self.pool: FeaturePool | None = None
        self.result: Featurised | None = None

    def _pool(self) -> FeaturePool:
        if self.pool is None:
            self.pool = FeaturePool(self.workers)
        return self.pool

    def sandbox(self) -> Any:
        """The sandbox of the tile's featurisation workers, for other work on the shard's molecules."""
        return self._pool().sandbox

    def __call__(self) -> Featurised:
        if self.result is None:
            pool = self._pool()
            self.result = pool.result(pool.submit(self.smiles))
        return self.result

    def close(self) -> None:
        """Stop the workers, if they were started."""
        if self.pool is not None:
            self.pool.close()


@op(
    tags=GPU_OP_TAGS,
    pool=GPU_POOL,
    retry_policy=TILE_RETRIES,
    out=Out(TileResult, io_manager_key="json_io_manager"),
)
def score_tile(
    context: OpExecutionContext,
    tile: TileTask,
    drugban_checkpoint: CheckpointRecord,
    screening_targets: pd.DataFrame,
    screening: ScreeningSettings,
    storage: StorageResource,
) -> Output[TileResult]:
    """One tile: its shard read and featurised here, scored against its one target block (CUDA when
    present) by `tiles.score_tiles`, its files written under the scores root; kept if already done."""
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.ml.training.train import resolve_device
    from drugrepo_assets.screening.engine import ScreeningEngine

    start = time.perf_counter()
    configure_cpu(screening.threads)
    device = resolve_device(screening.device)
    blocks = blocks_of(screening_targets, screening.target_block)
    block = blocks[tile.block]
    if block.name != tile.block_name:
        raise Failure(description=f"target block {tile.block} is {block.name}, not the {tile.block_name} planned")
    loaded = load_checkpoint(str(storage.local_copy(drugban_checkpoint.checkpoint)), map_location=device)
    model, checkpoint_id = loaded.model, loaded.checkpoint_id
    engine = ScreeningEngine(model, device=device)
    root = scores_root(storage, drugban_checkpoint.dataset, checkpoint_id)
    shards = library_root(storage)
    shard = read_shard(shards, tile.shard)
    features = _ShardFeatures(shard.rows["smiles"].astype(str).tolist(), screening.workers or default_workers())
    try:
        if tile.block == 0 and not content_path(shards, tile.shard).exists():
            write_content(shards, tile.shard, shard.rows, features.sandbox())
        (report,), _ = score_tiles(
            engine,
            shard,
            tile.shard,
            [block],
            root,
            tile_settings(screening),
            features,
            terms_store(storage, checkpoint_id),
        )
    finally:
        features.close()
    rate = report.pairs / report.seconds if report.seconds and not report.kept else 0.0
    done = "kept (done before)" if report.kept else f"scored now ({rate:,.0f} pairs/s, {report.engine})"
    context.log.info(
        f"tile {report.tile}: {report.molecules} molecules × {report.targets} targets {done}; "
        f"terms read {report.terms_read}, computed {report.terms_computed}"
    )
    result = TileResult(task=tile, report=_report_record(report), checkpoint_id=checkpoint_id, root=uri_of(root))
    return Output(
        result,
        metadata={
            "tile": MetadataValue.text(report.tile),
            "pairs": MetadataValue.int(report.pairs),
            "pairs_per_second": MetadataValue.float(rate),
            "seconds": MetadataValue.float(report.seconds),
            "op_seconds": MetadataValue.float(time.perf_counter() - start),
            "engine": MetadataValue.text(report.engine),
            "terms_read": MetadataValue.int(report.terms_read),
            "terms_computed": MetadataValue.int(report.terms_computed),
            "kept": MetadataValue.bool(report.kept),
        },
    )


def _report_record(report: TileReport) -> dict[str, Any]:
    return {name: getattr(report, name) for name in TileReport.__dataclass_fields__}


def _tile_table(results: list[TileResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        report = TileReport(**r.report)
        rows.append(
            {
                "shard": r.task.position,
                "block": r.task.block,
                "tile": report.tile,
                "pairs": report.pairs,
                "seconds": report.seconds,
                "pairs_per_second": report.pairs / report.seconds if report.seconds and not report.kept else 0.0,
                "terms_read": report.terms_read,
                "terms_computed": report.terms_computed,
                "kept": report.kept,
            }
        )
    return pd.DataFrame(rows)


@op
def merge_tiles(
    context: OpExecutionContext,
    tiles: list[TileResult],
    screening_library: pd.DataFrame,
    screening_library_rejected: pd.DataFrame,
    screening_targets: pd.DataFrame,
    screening_targets_rejected: pd.DataFrame,
    validated_pairs: pd.DataFrame,
    drugban_checkpoint: CheckpointRecord,
    screening: ScreeningSettings,
    storage: StorageResource,
) -> Output[pd.DataFrame]:
    """The answers from the tiles' summaries (`driver.answer`): per target, per drug when asked, the
    repurposing table, each pair with its applicability domain and whether the dataset knows it;
    written with the pictures under the scores root (`driver.write_answers`)."""
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint
    from drugrepo_assets.screening.domain import reference_for_checkpoint

    ordered = sorted(tiles, key=lambda r: (r.task.position, r.task.block))
    first = ordered[0]
    root = storage.path_of(first.root)
    run = ScreenRun(
        shards=[r.shard for r in plan_refs(screening_library)],
        blocks=blocks_of(screening_targets, screening.target_block),
        tiles=[TileReport(**r.report) for r in ordered],
    )
    missing = {tile_name(s, b.name) for s in run.shards for b in run.blocks} - {t.tile for t in run.tiles}
    if missing:
        raise Failure(description=f"{len(missing)} tiles of the plan were not scored, e.g. {sorted(missing)[0]}")
    settings = tile_settings(screening)
    pairs = dataset_pairs(library_root(storage), run.shards, screening_targets, validated_pairs)
    write_bytes_atomic(root / DATASET_PAIRS, _parquet(pairs))
    domain = reference_for_checkpoint(storage.path_of(drugban_checkpoint.checkpoint))
    if domain is None:
        context.log.warning(
            f"{drugban_checkpoint.checkpoint}: no training reference beside it; the domain columns are empty"
        )
    known = pairs.loc[pairs["label"] == 1, ["target_id", "drug_id"]]
    temperature = load_checkpoint(str(storage.local_copy(drugban_checkpoint.checkpoint))).temperature
    if (note := temperature.note()) is not None:
        context.log.warning(f"{drugban_checkpoint.checkpoint}: {note}")
    answers = answer(root, run, settings, first.checkpoint_id, known, domain, temperature)
    written = write_answers(root, answers, per_drug=screening.top_per_drug is not None)
    refused_molecules = rejected_rows(root, run.shards)
    rejected = pd.concat(
        [
            rejected_table(screening_targets_rejected),
            rejected_table(screening_library_rejected),
            rejected_table(refused_molecules),
        ],
        ignore_index=True,
    )
    write_bytes_atomic(root / "rejected.csv", rejected.to_csv(index=False).encode())
    return Output(answers.per_target, metadata=_merge_metadata(run, ordered, answers, root, written, rejected))


def _parquet(table: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _merge_metadata(
    run: ScreenRun, results: list[TileResult], answers: Any, root: Any, written: list[str], rejected: pd.DataFrame
) -> dict[str, Any]:
    scored = [t for t in run.tiles if not t.kept]
    seconds = sum(t.seconds for t in scored)
    per_target = answers.per_target
    best = per_target[per_target["rank_in_target"] == 1].drop_duplicates("target_id")
    metadata: dict[str, Any] = {
        "dagster/row_count": MetadataValue.int(len(per_target)),
        "pairs": MetadataValue.int(run.pairs),
        "molecules": MetadataValue.int(run.molecules),
        "targets": MetadataValue.int(run.targets),
        "tiles": MetadataValue.int(len(run.tiles)),
        "tiles_scored_now": MetadataValue.int(len(scored)),
        "tiles_kept": MetadataValue.int(run.kept),
        "pairs_scored_now": MetadataValue.int(sum(t.pairs for t in scored)),
        "pairs_per_second": MetadataValue.float(sum(t.pairs for t in scored) / seconds if seconds else 0.0),
        "terms_read": MetadataValue.int(sum(t.terms_read for t in run.tiles)),
        "terms_computed": MetadataValue.int(sum(t.terms_computed for t in run.tiles)),
        "engine": MetadataValue.text(", ".join(sorted({t.engine for t in run.tiles}))),
        "checkpoint_id": MetadataValue.text(results[0].checkpoint_id),
        "rejected": MetadataValue.int(len(rejected)),
        "scores": MetadataValue.path(uri_of(root)),
        "files": MetadataValue.text(", ".join([*written, "rejected.csv", DATASET_PAIRS])),
        "per_tile": table_metadata(_tile_table(results[:SHOWN_TILES])),
        "best_per_target": table_metadata(
            best[["target_id", "drug_id", "score", "z_target", "rank_in_drug", "known"]].reset_index(drop=True)
        ),
        "repurposing": table_metadata(
            answers.repurposing.head(SHOWN_PAIRS)[
                ["repurposing_rank", "target_id", "drug_id", "repurposing_z", "score", "known"]
            ]
        ),
    }
    for name in PICTURES:
        if name in written:
            title = name.removesuffix(".png")
            metadata[f"picture_{title}"] = MetadataValue.md(image_markdown(title, (root / name).read_bytes()))
    return metadata
