"""Screening stage: the repurposing matrix (library shards × target blocks) scored by each dataset's
checkpoint, on the core `drugrepo screen` runs on (`drugrepo_assets.screening`).

- `screening_library`: the library as raw shard tables (`screening.stored_library`): each file read once
  per version, cut as the CLI cuts it, nothing featurised; value: the shard plan, one row per shard.
- `screening_targets`: a target data set (`screening.targets.read_target_set`) or the datasets'
  most-studied targets, with their sequences.
- `screening_scores`, a 2-D fan-out: `plan_tiles` yields one `DynamicOutput` per tile (library shard ×
  target block, `screening.plan`); each `score_tile` op (a GPU pod under k8s, in the `gpu` pool,
  retried alone) featurises its shard in a sandbox and scores it against its one block with
  `tiles.score_tiles`, the targets' terms read from (or added to) the store under
  ``<storage>/target_terms``; `merge_tiles` reads only the tiles' summaries through `driver.answer`
  and writes the tables and pictures (`driver.write_answers`) under
  ``<storage>/screening_scores/<dataset>/<checkpoint_id>/``. A run has tiles + 2 steps: at the default
  50,000 molecules × 256 targets a tile holds 12.8 M pairs, so 10⁹ pairs is ~80 steps.
- `repurposing_candidates`: the matrix's reported pairs ranked by ``repurposing_z``, with the dataset's label.
- `screening_enrichment`: EF, BEDROC and AUROC per target with known actives (`driver.known_logits`).

Tiles are named by their content, so a rerun, a retry or a grown library or target list scores only
the tiles that are new; the dataset's known pairs are found in any library by content id.
"""

import io
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    Backoff,
    DynamicOut,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    RetryPolicy,
    asset,
    graph_asset,
    multi_asset,
    op,
)
from pydantic import BaseModel, ConfigDict

from drugrepo_assets.assets.metadata import image_markdown, table_metadata
from drugrepo_assets.data.library import library_files
from drugrepo_assets.data.limits import InputFileError
from drugrepo_assets.data.rules import clean_protein
from drugrepo_assets.data.validate import target_id
from drugrepo_assets.files import uri_of, write_bytes_atomic
from drugrepo_assets.k8s import GPU_OP_TAGS, GPU_POOL
from drugrepo_assets.ml.checkpoint import load_checkpoint
from drugrepo_assets.ml.enrichment import enrichment_plot, retrospective_report
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.ml.screen import ScreeningEngine
from drugrepo_assets.ml.train import resolve_device
from drugrepo_assets.partitions import dataset_partitions
from drugrepo_assets.records import CheckpointRecord
from drugrepo_assets.resources import ScreeningSettings
from drugrepo_assets.screening.domain import reference_for_checkpoint
from drugrepo_assets.screening.driver import (
    PICTURES,
    ScreenRun,
    answer,
    known_logits,
    rejected_rows,
    write_answers,
)
from drugrepo_assets.screening.library import (
    REJECTED_COLUMNS,
    FeaturePool,
    Featurised,
    default_workers,
    library_change,
)
from drugrepo_assets.screening.plan import TargetBlock, target_blocks, tile_name
from drugrepo_assets.screening.stored_library import (
    ShardRef,
    StoredFile,
    cap,
    content_path,
    dataset_pairs,
    plan_refs,
    plan_table,
    read_shard,
    store_file,
    store_rows,
    write_content,
)
from drugrepo_assets.screening.targets import read_target_set
from drugrepo_assets.screening.terms import TargetTermStore
from drugrepo_assets.screening.tiles import TileReport, TileSettings, score_tiles
from drugrepo_assets.storage import StorageResource

ALL_DATASETS = AssetIn(partition_mapping=AllPartitionMapping())
TILE_RETRIES = RetryPolicy(max_retries=2, delay=2, backoff=Backoff.EXPONENTIAL)
"""A tile op that fails (a lost pod, a transient store error) is retried alone; its files make it idempotent."""
TARGET_TERMS = "target_terms"
"""The target-terms store under the storage root, shared by every tile op (and the CLI or API pointed there)."""
DATASET_PAIRS = "dataset_pairs.parquet"
"""The dataset's pairs as the screen names them, written by the merge beside the answers."""
SHOWN_TILES = 200
"""Tiles listed in `screening_scores`' metadata table (the totals count every tile)."""
SHOWN_PAIRS = 10


def _rejected(frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Refused rows in the shared columns (`screening.library.REJECTED_COLUMNS`)."""
    frame = pd.DataFrame(columns=REJECTED_COLUMNS) if frame is None or not len(frame) else frame
    types = {"kind": str, "file": str, "line": "int64", "id": str, "value": str, "reason": str}
    return frame[REJECTED_COLUMNS].astype(types).reset_index(drop=True)


def _input_failure(exc: InputFileError) -> Failure:
    return Failure(description=str(exc), metadata={"file": MetadataValue.path(exc.path)})


def library_root(storage: StorageResource) -> Any:
    """Where the library's shard tables, per-file records and content ids live: ``<storage>/screening_library``."""
    return storage.base() / "screening_library"


def scores_root(storage: StorageResource, dataset: str, checkpoint: str) -> Any:
    """Where one dataset checkpoint's tiles and answers live: ``<storage>/screening_scores/<dataset>/<checkpoint_id>``."""
    return storage.base() / "screening_scores" / dataset / checkpoint


def terms_store(storage: StorageResource, checkpoint_id: str) -> TargetTermStore:
    """The target terms of a checkpoint under ``<storage>/target_terms``."""
    return TargetTermStore(storage.base() / TARGET_TERMS, checkpoint_id)


@multi_asset(
    outs={
        "screening_library": AssetOut(
            description="The library's raw shards (id, smiles, file, line), one row per shard: shard, uri, molecules, source.",
        ),
        "screening_library_rejected": AssetOut(
            description="Library rows the reader refused: kind, file, line, id, value, reason."
        ),
    },
    ins={"drug_graphs": ALL_DATASETS},
    group_name="screening",
)
def screening_library(
    context: AssetExecutionContext,
    drug_graphs: dict[str, pd.DataFrame],
    screening: ScreeningSettings,
    storage: StorageResource,
) -> Iterator[Output[pd.DataFrame]]:
    """The library as raw shards, not featurised (the tile ops featurise): a user's location (each file
    read once per version) or every validated drug of the datasets. Rows the reader refuses (malformed
    lines, over-long SMILES, bad UTF-8) go to `screening_library_rejected`; the rules' verdicts on the
    molecules themselves come from the tile ops (`screening_scores`' ``rejected.csv``)."""
    root = library_root(storage)
    start = time.perf_counter()
    read: list[str] = []
    if screening.library is None:
        source = f"validated drugs of {', '.join(sorted(drug_graphs))}"
        refs, rejected = _dataset_library(drug_graphs, root, screening.shard_size, source), _rejected()
    else:
        source = screening.library
        try:
            refs, rejected, read = _file_library(source, root, screening, storage)
        except InputFileError as exc:
            raise _input_failure(exc) from None
    if screening.max_library is not None:
        refs = cap(refs, root, screening.max_library)
    plan = plan_table(refs)
    molecules = int(plan["molecules"].sum())
    if not molecules:
        raise Failure(description=f"the screening library from {source} has no molecule to screen")
    seconds = time.perf_counter() - start
    context.log.info(
        f"library: {molecules} rows in {len(plan)} shards from {source}; {len(rejected)} refused by the reader; "
        f"{len(read)} files read now ({seconds:.1f} s)"
    )
    yield Output(
        plan,
        output_name="screening_library",
        metadata={
            "dagster/row_count": MetadataValue.int(len(plan)),
            "molecules": MetadataValue.int(molecules),
            "source": MetadataValue.text(source),
            "files_read_now": MetadataValue.int(len(read)),
            "rejected": MetadataValue.int(len(rejected)),
            "shards": MetadataValue.path(uri_of(root / "shards")),
        },
    )
    yield Output(
        rejected,
        output_name="screening_library_rejected",
        metadata={"dagster/row_count": MetadataValue.int(len(rejected))},
    )


def _dataset_library(drug_graphs: dict[str, pd.DataFrame], root: Any, shard_size: int, source: str) -> list[ShardRef]:
    """Every validated drug of the datasets (``drug_id``, its content id, as the molecule's id) as raw shards."""
    drugs = pd.concat(drug_graphs.values()).drop_duplicates("drug_id").sort_values("drug_id")
    rows = pd.DataFrame(
        {
            "id": drugs["drug_id"].astype(str),
            "smiles": drugs["smiles"].astype(str),
            "file": "drug_graphs",
            "line": range(1, len(drugs) + 1),
        }
    )
    return store_rows(rows, root, shard_size, source)


def _file_library(
    source: str, root: Any, screening: ScreeningSettings, storage: StorageResource
) -> tuple[list[ShardRef], pd.DataFrame, list[str]]:
    """A user's library location as raw shards: (shards, refused rows, labels of the files read now)."""
    files = library_files(source, storage.s3_endpoint_url)
    stored: list[StoredFile] = []
    read = []
    for label, version in files:
        part = store_file(source, label, version, root, screening.shard_size, storage.s3_endpoint_url)
        stored.append(part)
        if not part.reused:
            read.append(label)
    changed = library_change(source, files, library_files(source, storage.s3_endpoint_url))
    if changed:
        raise Failure(description=f"{changed} while it was being read; materialise screening_library again")
    refs = [r for part in stored for r in part.refs]
    return refs, _rejected(pd.concat([p.rejected for p in stored], ignore_index=True)), read


def most_studied_targets(validated: dict[str, pd.DataFrame], n: int) -> pd.DataFrame:
    """The ``n`` targets with the most known positive pairs across datasets (ties: by target_id), with their sequences."""
    pairs = pd.concat(validated.values())
    positives = pairs[pairs["label"] == 1].groupby("target_id").size().rename("known_positives")
    chosen = positives.reset_index().sort_values(["known_positives", "target_id"], ascending=[False, True]).head(n)
    sequences = pairs.drop_duplicates("target_id").set_index("target_id")["protein"]
    return pd.DataFrame(
        {
            "target_id": chosen["target_id"].astype(str),
            "sequence": [clean_protein(str(sequences[t])) for t in chosen["target_id"]],
            "feature_id": chosen["target_id"].astype(str),
            "known_positives": chosen["known_positives"].astype("int64"),
        }
    ).reset_index(drop=True)


def _user_targets(
    location: str, validated: dict[str, pd.DataFrame], storage: StorageResource
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A target data set (file, folder, S3 prefix or URL) as ``target_id, sequence, feature_id, known_positives``
    (the datasets' positives of the same sequence), and its refused rows."""
    targets = read_target_set(location, storage.s3_endpoint_url)
    sequences = targets.kept["sequence"].astype(str)
    features = [target_id(s) for s in sequences]
    pairs = pd.concat(validated.values())
    positives = pairs[pairs["label"] == 1].groupby("target_id").size()
    table = pd.DataFrame(
        {
            "target_id": targets.kept["id"].astype(str),
            "sequence": sequences,
            "feature_id": features,
            "known_positives": [int(positives.get(f, 0)) for f in features],
        }
    ).astype({"known_positives": "int64"})
    return table, _rejected(targets.rejected)


@multi_asset(
    outs={
        "screening_targets": AssetOut(
            description="Targets to screen, in list order: target_id, sequence, feature_id (content id), known_positives."
        ),
        "screening_targets_rejected": AssetOut(
            description="Target records refused: kind, file, line, id, value, reason."
        ),
    },
    ins={"validated_pairs": ALL_DATASETS},
    group_name="screening",
)
def screening_targets(
    context: AssetExecutionContext,
    validated_pairs: dict[str, pd.DataFrame],
    screening: ScreeningSettings,
    storage: StorageResource,
) -> Iterator[Output[pd.DataFrame]]:
    """The targets: a user's target data set (FASTA, CSV, TSV or Parquet; a file, folder, ``s3://`` prefix
    or URL) or the datasets' most-studied targets. Bad records (a letter outside the alphabet, too long,
    an id repeated with another sequence) go to `screening_targets_rejected` with file, line and reason."""
    if screening.targets is None:
        targets = most_studied_targets(validated_pairs, screening.default_targets)
        rejected, source = _rejected(), f"the {len(targets)} targets with the most known positives"
    else:
        try:
            targets, rejected = _user_targets(screening.targets, validated_pairs, storage)
        except InputFileError as exc:
            raise _input_failure(exc) from None
        source = screening.targets
    if targets.empty:
        first = rejected.iloc[0] if len(rejected) else None
        why = f" (first refused: {first['file']} line {first['line']}: {first['reason']})" if first is not None else ""
        raise Failure(description=f"no valid screening target in {source}{why}")
    context.log.info(f"targets: {len(targets)} from {source}; {len(rejected)} refused")
    yield Output(
        targets,
        output_name="screening_targets",
        metadata={
            "dagster/row_count": MetadataValue.int(len(targets)),
            "source": MetadataValue.text(source),
            "rejected": MetadataValue.int(len(rejected)),
        },
    )
    yield Output(
        rejected,
        output_name="screening_targets_rejected",
        metadata={"dagster/row_count": MetadataValue.int(len(rejected))},
    )


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
        [_rejected(screening_targets_rejected), _rejected(screening_library_rejected), _rejected(refused_molecules)],
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


@graph_asset(
    partitions_def=dataset_partitions,
    group_name="screening",
    kinds={"pytorch"},
    ins={
        "screening_library": AssetIn(),
        "screening_library_rejected": AssetIn(),
        "screening_targets": AssetIn(),
        "screening_targets_rejected": AssetIn(),
        "validated_pairs": AssetIn(),
        "drugban_checkpoint": AssetIn(),
    },
)
def screening_scores(
    screening_library: pd.DataFrame,
    screening_library_rejected: pd.DataFrame,
    screening_targets: pd.DataFrame,
    screening_targets_rejected: pd.DataFrame,
    validated_pairs: pd.DataFrame,
    drugban_checkpoint: CheckpointRecord,
) -> pd.DataFrame:
    """The best ``top_k`` library molecules per target by this dataset's checkpoint, over the whole library.

    Columns (`screening.answers`): target_id, drug_id, smiles, logit, score, rank_in_target,
    percentile_in_target, rank_in_drug, percentile_in_drug, z_target, z_drug, repurposing_z, known
    (a positive pair of the dataset), the applicability domain (nearest_training_drug,
    drug_similarity, nearest_training_target, target_similarity) and checkpoint_id. The per-drug and
    repurposing tables, the pictures, ``rejected.csv`` and every pair's logit are files under the
    scores root (metadata ``scores``).
    """
    scored = plan_tiles(screening_library, screening_targets).map(
        lambda tile: score_tile(tile, drugban_checkpoint, screening_targets)
    )
    return merge_tiles(
        scored.collect(),
        screening_library,
        screening_library_rejected,
        screening_targets,
        screening_targets_rejected,
        validated_pairs,
        drugban_checkpoint,
    )


def _scores_root_of(storage: StorageResource, dataset: str, screening_scores: pd.DataFrame) -> Any:
    return scores_root(storage, dataset, str(screening_scores["checkpoint_id"].iloc[0]))


@asset(partitions_def=dataset_partitions, group_name="screening")
def repurposing_candidates(
    context: AssetExecutionContext,
    screening_scores: pd.DataFrame,
    storage: StorageResource,
) -> Output[pd.DataFrame]:
    """The matrix's reported pairs ranked by ``repurposing_z`` (`screening.answers`), each with the
    dataset's label of the pair (``known_label``: 1 interacts, 0 tested negative, empty if unknown;
    found by content, whatever the library's ids) and ``known_interaction`` (label 1). The rows not
    known are the candidates to test."""
    root = _scores_root_of(storage, context.partition_key, screening_scores)
    with (root / "repurposing.parquet").open("rb") as handle:
        table = pd.read_parquet(handle)
    with (root / DATASET_PAIRS).open("rb") as handle:
        labels = pd.read_parquet(handle)
    table = table.merge(labels.rename(columns={"label": "known_label"}), on=["target_id", "drug_id"], how="left")
    table["known_label"] = table["known_label"].astype("Int64")
    table["known_interaction"] = (table["known_label"] == 1).fillna(False).astype(bool)
    shown = table.head(SHOWN_PAIRS)[
        ["repurposing_rank", "target_id", "drug_id", "repurposing_z", "score", "known_interaction"]
    ]
    return Output(
        table,
        metadata={
            "dagster/row_count": MetadataValue.int(len(table)),
            "known_interactions": MetadataValue.int(int(table["known_interaction"].sum())),
            "new_candidates": MetadataValue.int(int((~table["known_interaction"]).sum())),
            "top_candidates": table_metadata(shown),
        },
    )


@asset(partitions_def=dataset_partitions, group_name="screening", kinds={"pandas"})
def screening_enrichment(
    context: AssetExecutionContext,
    screening_scores: pd.DataFrame,
    screening_library: pd.DataFrame,
    screening_targets: pd.DataFrame,
    screening: ScreeningSettings,
    storage: StorageResource,
) -> Output[pd.DataFrame]:
    """Retrospective validation of the screen: per screened target whose known actives (this dataset's
    positive pairs) are in the library, EF at 1 % and 5 %, BEDROC (alpha 20) and AUROC of the ranking
    over the whole library (`driver.known_logits`), with the enrichment curves. Actives the model was
    trained on flatter it: for an unbiased figure, screen held-out actives (`drugrepo screen --known`)."""
    root = _scores_root_of(storage, context.partition_key, screening_scores)
    run = ScreenRun(
        shards=[r.shard for r in plan_refs(screening_library)],
        blocks=blocks_of(screening_targets, screening.target_block),
    )
    with (root / DATASET_PAIRS).open("rb") as handle:
        pairs = pd.read_parquet(handle)
    known = pairs.loc[pairs["label"] == 1, ["target_id", "drug_id"]]
    logits = known_logits(root, run, known)
    report = retrospective_report(logits.astype({"active": bool}))
    metadata: dict[str, Any] = {"dagster/row_count": MetadataValue.int(len(report)), "report": table_metadata(report)}
    if len(report):
        kept = logits[logits["target_id"].isin(report["target_id"])]
        metadata["enrichment"] = MetadataValue.md(image_markdown("enrichment curves", enrichment_plot(kept)))
    else:
        context.log.warning("no screened target has both known actives and inactives in the library")
    return Output(report, metadata=metadata)
