"""Screening stage: a library of any size scored against a target set by each dataset's checkpoint.

`screening_library` keeps the library as shards over the content-addressed feature store
(`ml.library_store`): each library file is streamed, featurised on every core and recorded once
per version, so a file that lands later costs only itself. Its value is the shard plan (one small
row per shard), not the molecules. `screening_scores` fans out one `score_shard` op per shard (its
own GPU pod under the k8s executor, retried on failure): each reads its shard by reference, scores
only the targets it has no score file for, and writes its own files under
``<storage>/screening_scores/<dataset>/<checkpoint_id>/``. `merge_scores` reads only the shards' top-K
files: its value is the best ``top_k`` per target, ranked over the whole library.
`repurposing_candidates` flags the pairs the dataset already knows.
"""

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import torch
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

from drugrepo_assets.assets.features import feature_store
from drugrepo_assets.assets.metadata import image_markdown, table_metadata
from drugrepo_assets.data.library import library_files
from drugrepo_assets.data.rules import clean_protein
from drugrepo_assets.data.sources import InputFileError
from drugrepo_assets.data.validate import canonicalize, drug_id, target_id
from drugrepo_assets.files import uri_of
from drugrepo_assets.k8s import GPU_OP_TAGS, GPU_POOL
from drugrepo_assets.ml.enrichment import enrichment_plot, retrospective_report
from drugrepo_assets.ml.library_screen import FeaturePool, default_workers
from drugrepo_assets.ml.library_store import (
    REJECTED_COLUMNS,
    IdCheck,
    LibraryPart,
    ShardScore,
    cap_parts,
    known_active_pairs,
    merge_stored_top,
    plan_parts,
    plan_table,
    score_stored_shard,
    store_known_molecules,
    store_library_file,
    stored_files,
)
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.native import kernel_info
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.ml.screen import ScreeningEngine
from drugrepo_assets.ml.train import resolve_device
from drugrepo_assets.partitions import dataset_partitions
from drugrepo_assets.records import CheckpointRecord
from drugrepo_assets.resources import ScreeningSettings
from drugrepo_assets.screening.targets import read_checked_targets
from drugrepo_assets.storage import StorageResource

ALL_DATASETS = AssetIn(partition_mapping=AllPartitionMapping())
SHARD_RETRIES = RetryPolicy(max_retries=2, delay=2, backoff=Backoff.EXPONENTIAL)
"""A shard op that fails (a lost pod, a transient store error) is retried alone; its files make it idempotent."""


def _rejected(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=REJECTED_COLUMNS).astype({"source_row": "int64"})


def _input_failure(exc: InputFileError) -> Failure:
    return Failure(description=str(exc), metadata={"file": MetadataValue.path(exc.path)})


def library_root(storage: StorageResource) -> Any:
    """Where the library's shard tables and per-file records live: ``<storage>/screening_library``."""
    return storage.base() / "screening_library"


def targets_from_file(path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A user's targets checked one by one, as ``drugrepo screen`` checks them (`read_checked_targets`):
    (kept ``target_id, sequence, feature_id``, rejected with file, line and reason)."""
    kept, refused = read_checked_targets(path)
    sequences = [clean_protein(s) for s in kept["sequence"]]
    table = pd.DataFrame(
        {"target_id": kept["id"], "sequence": sequences, "feature_id": [target_id(s) for s in sequences]},
        columns=["target_id", "sequence", "feature_id"],
    )
    rejected = [
        {"source_file": path, "source_row": line, "id": name, "value": str(sequence)[:60], "reason": reason}
        for name, sequence, line, reason in refused[["id", "sequence", "line", "reason"]].itertuples(index=False)
    ]
    return table, _rejected(rejected)


@multi_asset(
    outs={
        "screening_library": AssetOut(
            description="The library's shards: shard, uri (its molecules: drug_id, smiles, feature_id, feature_shard), molecules, source.",
            kinds={"rdkit"},
        ),
        "screening_library_rejected": AssetOut(description="Library rows refused, with file, row and reason."),
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
    """The library as shards: a user's location (files read once per version, featurised on every
    core) or every validated drug of the datasets (features reused). Refused rows (unparseable
    SMILES, too many atoms, empty or repeated ids, malformed lines) go to `screening_library_rejected`."""
    root = library_root(storage)
    start = time.perf_counter()
    if screening.library is None:
        source = f"validated drugs of {', '.join(sorted(drug_graphs))}"
        parts = _dataset_library(drug_graphs, root, screening.shard_size, source)
        rejected, new, read = _rejected([]), 0, list[str]()
    else:
        source = screening.library
        try:
            parts, rejected, new, read = _file_library(source, root, screening, storage)
        except InputFileError as exc:
            raise _input_failure(exc) from None
    if screening.max_library is not None:
        parts = cap_parts(parts, root, screening.max_library)
    plan = plan_table(parts)
    molecules = int(plan["molecules"].sum())
    if not molecules:
        raise Failure(description=f"the screening library from {source} has no valid molecule")
    seconds = time.perf_counter() - start
    context.log.info(
        f"library: {molecules} molecules in {len(plan)} shards from {source}; {len(rejected)} refused; "
        f"{new} featurised now ({new / seconds:,.0f} molecules/s over {seconds:.1f} s)"
    )
    yield Output(
        plan,
        output_name="screening_library",
        metadata={
            "dagster/row_count": MetadataValue.int(len(plan)),
            "molecules": MetadataValue.int(molecules),
            "source": MetadataValue.text(source),
            "featurised_now": MetadataValue.int(new),
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


def _dataset_library(
    drug_graphs: dict[str, pd.DataFrame], root: Any, shard_size: int, source: str
) -> list[LibraryPart]:
    """Every validated drug of the datasets as shards (already featurised: content id = feature id)."""
    drugs = pd.concat(drug_graphs.values()).drop_duplicates("drug_id").sort_values("drug_id")
    items = pd.DataFrame(
        {
            "drug_id": drugs["drug_id"],
            "smiles": drugs["smiles"],
            "feature_id": drugs["drug_id"],
            "feature_shard": drugs["shard"],
        }
    )
    return store_known_molecules(items, root, shard_size, source)


def _file_library(
    source: str, root: Any, screening: ScreeningSettings, storage: StorageResource
) -> tuple[list[LibraryPart], pd.DataFrame, int, list[str]]:
    """A user's library location as shards: (parts, refused rows, molecules featurised now, files read now)."""
    parts, refused, new, read = [], [], 0, []
    ids, store = IdCheck(), feature_store(storage)
    with FeaturePool(screening.workers or default_workers(), canonical=True) as pool:
        for label, version in library_files(source, storage.s3_endpoint_url):
            stored = store_library_file(
                source,
                label,
                version,
                store,
                root,
                shard_size=screening.shard_size,
                pool=pool,
                ids=ids,
                s3_endpoint_url=storage.s3_endpoint_url,
            )
            parts += stored.parts
            refused.append(stored.rejected)
            new += stored.featurised
            if not stored.reused:
                read.append(label)
    return parts, pd.concat(refused, ignore_index=True) if refused else _rejected([]), new, read


def most_studied_targets(
    validated: dict[str, pd.DataFrame], encodings: dict[str, pd.DataFrame], n: int
) -> pd.DataFrame:
    """The ``n`` targets with the most known positive pairs across datasets (ties: by target_id)."""
    pairs = pd.concat(validated.values())
    positives = pairs[pairs["label"] == 1].groupby("target_id").size().rename("known_positives")
    chosen = positives.reset_index().sort_values(["known_positives", "target_id"], ascending=[False, True]).head(n)
    shards = pd.concat(encodings.values()).drop_duplicates("target_id")
    return chosen.merge(shards[["target_id", "length", "shard"]], on="target_id", how="left").assign(
        feature_id=lambda t: t["target_id"]
    )[["target_id", "feature_id", "length", "shard", "known_positives"]]


@multi_asset(
    outs={
        "screening_targets": AssetOut(description="Targets to screen: target_id, feature_id, length, shard."),
        "screening_targets_rejected": AssetOut(description="Target records refused, with file, record and reason."),
    },
    ins={"validated_pairs": ALL_DATASETS, "protein_encodings": ALL_DATASETS},
    group_name="screening",
)
def screening_targets(
    context: AssetExecutionContext,
    validated_pairs: dict[str, pd.DataFrame],
    protein_encodings: dict[str, pd.DataFrame],
    screening: ScreeningSettings,
    storage: StorageResource,
) -> Iterator[Output[pd.DataFrame]]:
    """The targets: a user's file (FASTA, or CSV id,sequence) or the datasets' most-studied targets."""
    if screening.targets is None:
        targets = most_studied_targets(validated_pairs, protein_encodings, screening.default_targets)
        rejected, source = _rejected([]), f"the {len(targets)} targets with the most known positives"
    else:
        try:
            kept, rejected = targets_from_file(screening.targets)
        except InputFileError as exc:
            raise _input_failure(exc) from None
        firsts = kept.drop_duplicates("feature_id")
        result = feature_store(storage).proteins.ensure(firsts["feature_id"].tolist(), firsts["sequence"].tolist())
        targets = kept.assign(length=kept["sequence"].str.len(), shard=kept["feature_id"].map(result.shard_of))
        targets, source = targets.drop(columns="sequence"), screening.targets
    if targets.empty:
        raise Failure(description=f"no valid screening target in {source}")
    context.log.info(f"targets: {len(targets)} from {source}; {len(rejected)} refused")
    yield Output(
        targets.reset_index(drop=True),
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


class ShardTask(BaseModel):
    """One library shard handed to a `score_shard` op: its place in library order and the part, by reference."""

    model_config = ConfigDict(frozen=True)

    position: int
    part: LibraryPart


class ShardResult(BaseModel):
    """What one `score_shard` op did: its place, its `ShardScore`, the engine that ran, and where its files are."""

    model_config = ConfigDict(frozen=True)

    position: int
    scores: ShardScore
    engine: str
    kernel: str
    checkpoint_id: str
    root: str


@op(out=DynamicOut(ShardTask, io_manager_key="json_io_manager"))
def library_shards(screening_library: pd.DataFrame) -> Iterator[DynamicOutput[ShardTask]]:
    """One mapped op per library shard, each given its shard by reference (name, URI, count)."""
    for position, part in enumerate(plan_parts(screening_library)):
        yield DynamicOutput(ShardTask(position=position, part=part), mapping_key=f"shard_{position}")


def scores_root(storage: StorageResource, dataset: str, checkpoint: str) -> Any:
    """Where one dataset checkpoint's score files live: ``<storage>/screening_scores/<dataset>/<checkpoint_id>``."""
    return storage.base() / "screening_scores" / dataset / checkpoint


def _target_codes(store: Any, targets: pd.DataFrame) -> torch.Tensor:
    return store.proteins.load(targets["feature_id"].tolist(), targets["shard"].tolist())


@op(tags=GPU_OP_TAGS, pool=GPU_POOL, retry_policy=SHARD_RETRIES, out=Out(ShardResult, io_manager_key="json_io_manager"))
def score_shard(
    context: OpExecutionContext,
    shard: ShardTask,
    drugban_checkpoint: CheckpointRecord,
    screening_targets: pd.DataFrame,
    screening: ScreeningSettings,
    storage: StorageResource,
) -> ShardResult:
    """One library shard against the targets it has no score file for (CUDA when present); writes its own files."""
    configure_cpu(screening.threads)
    device = resolve_device(screening.device)
    path = str(storage.local_copy(drugban_checkpoint.checkpoint))
    model, extra = load_checkpoint(path, map_location=device)
    store = feature_store(storage)
    engine = ScreeningEngine(model, device=device)
    root = scores_root(storage, drugban_checkpoint.dataset, extra["checkpoint_id"])
    result = score_stored_shard(
        engine,
        store,
        shard.part,
        library_root(storage),
        screening_targets["target_id"].tolist(),
        _target_codes(store, screening_targets),
        root,
        screening.top_k,
    )
    rate = result.scored_pairs / result.seconds if result.seconds else 0.0
    engine_name = "C kernel" if engine.native else f"torch on {device}"
    context.log.info(
        f"shard {result.shard}: {result.scored_pairs} pairs scored ({rate:,.0f} pairs/s, {engine_name}), "
        f"{result.reused_pairs} found scored"
    )
    return ShardResult(
        position=shard.position,
        scores=result,
        engine=engine_name,
        kernel=kernel_info()["kernel"],
        checkpoint_id=extra["checkpoint_id"],
        root=uri_of(root),
    )


@op
def merge_scores(
    shards: list[ShardResult], screening_targets: pd.DataFrame, screening: ScreeningSettings, storage: StorageResource
) -> Output[pd.DataFrame]:
    """The best ``top_k`` per target over every shard, ranked over the whole library, from the shards' top-K files."""
    ordered = sorted(shards, key=lambda s: s.position)
    first, scores = ordered[0], [s.scores for s in ordered]
    table = merge_stored_top(
        storage.path_of(first.root),
        scores,
        screening_targets["target_id"].tolist(),
        screening.top_k,
        first.checkpoint_id,
    )
    scored = sum(s.scored_pairs for s in scores)
    seconds = sum(s.seconds for s in scores)
    per_shard = pd.DataFrame(
        {
            "position": [s.position for s in ordered],
            "shard": [s.shard for s in scores],
            "molecules": [s.molecules for s in scores],
            "scored_pairs": [s.scored_pairs for s in scores],
            "reused_pairs": [s.reused_pairs for s in scores],
            "seconds": [s.seconds for s in scores],
        }
    )
    best = table[table["rank"] == 1].drop_duplicates("target_id")
    return Output(
        table,
        metadata={
            "dagster/row_count": MetadataValue.int(len(table)),
            "pairs": MetadataValue.int(sum(s.molecules for s in scores) * len(screening_targets)),
            "pairs_scored_now": MetadataValue.int(scored),
            "pairs_found_scored": MetadataValue.int(sum(s.reused_pairs for s in scores)),
            "pairs_per_second": MetadataValue.float(scored / seconds if seconds else 0.0),
            "shards": MetadataValue.int(len(ordered)),
            "engine": MetadataValue.text(f"{first.engine} ({first.kernel})"),
            "targets": MetadataValue.int(table["target_id"].nunique()),
            "checkpoint_id": MetadataValue.text(first.checkpoint_id),
            "scores": MetadataValue.path(first.root),
            "per_shard": table_metadata(per_shard),
            "best_per_target": table_metadata(best[["target_id", "drug_id", "score"]]),
        },
    )


@graph_asset(
    partitions_def=dataset_partitions,
    group_name="screening",
    kinds={"pytorch"},
    ins={"screening_library": AssetIn(), "screening_targets": AssetIn(), "drugban_checkpoint": AssetIn()},
)
def screening_scores(
    screening_library: pd.DataFrame, screening_targets: pd.DataFrame, drugban_checkpoint: CheckpointRecord
) -> pd.DataFrame:
    """The best ``top_k`` library molecules per target by this dataset's checkpoint, ranked over the whole library.

    Columns: target_id, drug_id, smiles, logit, score, rank (1 = best of the target), percentile
    (share of the library at or below), checkpoint_id. Every pair's logit is in the shards' score
    files (metadata ``scores``).
    """
    scored = library_shards(screening_library).map(
        lambda shard: score_shard(shard, drugban_checkpoint, screening_targets)
    )
    return merge_scores(scored.collect(), screening_targets)


def known_labels(validated_pairs: pd.DataFrame) -> dict[tuple[str, str], int]:
    """(drug content id, target content id) → label of every pair in the dataset (1 if any row says 1)."""
    labels = validated_pairs.groupby(["drug_id", "target_id"])["label"].max()
    return {key: int(value) for key, value in labels.items()}


def _content_id(smiles: str) -> str:
    """A library molecule's content id, as the feature store keys it: `drug_id` of its canonical SMILES."""
    canonical = canonicalize(smiles)
    if canonical is None:  # every scored molecule passed the input rules when the library was read
        raise ValueError(f"scored molecule {smiles!r} no longer passes the input rules")
    return drug_id(canonical)


@asset(partitions_def=dataset_partitions, group_name="screening")
def repurposing_candidates(
    screening_scores: pd.DataFrame,
    screening_targets: pd.DataFrame,
    validated_pairs: pd.DataFrame,
    screening: ScreeningSettings,
) -> Output[pd.DataFrame]:
    """The best ``top_k`` molecules per target, with whether the dataset already knows the pair.

    ``known_label`` is the dataset's label of the pair (1 interacts, 0 tested negative, empty if
    unknown); ``known_interaction`` is True where it is 1: such rows confirm the model, the others
    are the candidates to test.
    """
    top = screening_scores[screening_scores.groupby("target_id").cumcount() < screening.top_k]
    target_feature = dict(zip(screening_targets["target_id"], screening_targets["feature_id"]))
    labels = known_labels(validated_pairs)
    drug_feature = [_content_id(s) for s in top["smiles"]]
    known = [labels.get((d, target_feature[t])) for d, t in zip(drug_feature, top["target_id"])]
    table = top.assign(known_label=pd.array(known, dtype="Int64")).reset_index(drop=True)
    table["known_interaction"] = (table["known_label"] == 1).fillna(False).astype(bool)
    shown = table.groupby("target_id").head(3)[["target_id", "rank", "drug_id", "score", "known_interaction"]]
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
    validated_pairs: pd.DataFrame,
    screening: ScreeningSettings,
    storage: StorageResource,
) -> Output[pd.DataFrame]:
    """Retrospective validation of the screen: per screened target whose known actives (this dataset's
    positive pairs) are in the library, EF at 1 % and 5 %, BEDROC (alpha 20) and AUROC of the ranking
    over the whole library, with the enrichment curves. Actives the model was trained on flatter it:
    for an unbiased figure, screen held-out actives (`drugrepo screen --known`)."""
    root = scores_root(storage, context.partition_key, str(screening_scores["checkpoint_id"].iloc[0]))
    parts = plan_parts(screening_library)
    shards = [ShardScore(p.shard, stored_files(root, p.shard, screening.top_k), p.molecules, 0, 0, 0.0) for p in parts]
    positives = validated_pairs[validated_pairs["label"] == 1]
    actives = positives.groupby("target_id")["drug_id"].agg(set).to_dict()
    frames = [
        known_active_pairs(root, library_root(storage), shards, parts, target, actives[feature])
        for target, feature in zip(screening_targets["target_id"], screening_targets["feature_id"])
        if feature in actives
    ]
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["target_id", "logit", "active"])
    report = retrospective_report(pairs.astype({"active": bool}))
    metadata: dict[str, Any] = {"dagster/row_count": MetadataValue.int(len(report)), "report": table_metadata(report)}
    if len(report):
        kept = pairs[pairs["target_id"].isin(report["target_id"])]
        metadata["enrichment"] = MetadataValue.md(image_markdown("enrichment curves", enrichment_plot(kept)))
    else:
        context.log.warning("no screened target has both known actives and inactives in the library")
    return Output(report, metadata=metadata)
