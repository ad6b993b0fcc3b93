"""Screening stage: the repurposing matrix (library shards × target blocks) scored by each dataset's
checkpoint, on the core `drugrepo screen` runs on (`drugrepo_assets.screening`).

- `screening_library`: the library as raw shard tables (`screening.stored_library`): each file read once
  per version, cut as the CLI cuts it, nothing featurised; value: the shard plan, one row per shard.
- `screening_targets`: a target data set (`screening.targets.read_target_set`) or the datasets'
  most-studied targets, with their sequences.
- `screening_scores`, a 2-D fan-out of one op per tile (library shard × target block) and a merge, whose ops
  are in `defs.screening.screening_tiles`; answers under ``<storage>/screening_scores/<dataset>/<checkpoint_id>/``.
  A run has tiles + 2 steps: at the default 50,000 molecules × 256 targets a tile holds 12.8 M pairs, so
  10⁹ pairs is ~80 steps.
- `repurposing_candidates`: the matrix's reported pairs ranked by ``repurposing_z``, with the dataset's label.
- `screening_enrichment`: EF, BEDROC and AUROC per target with known actives (`driver.known_logits`).

Tiles are named by their content, so a rerun, a retry or a grown library or target list scores only
the tiles that are new; the dataset's known pairs are found in any library by content id.
"""

import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    Failure,
    MetadataValue,
    Output,
    asset,
    graph_asset,
    multi_asset,
)

from drugrepo_assets.data.library import library_files
from drugrepo_assets.data.limits import InputFileError
from drugrepo_assets.data.rules import clean_protein
from drugrepo_assets.data.validate import target_id
from drugrepo_assets.defs.screening.screening_tiles import (
    DATASET_PAIRS,
    SHOWN_PAIRS,
    blocks_of,
    library_root,
    merge_tiles,
    plan_tiles,
    rejected_table,
    score_tile,
    scores_root,
)
from drugrepo_assets.files import uri_of
from drugrepo_assets.lib.metadata import image_markdown, table_metadata
from drugrepo_assets.lib.partitions import dataset_partitions
from drugrepo_assets.lib.records import CheckpointRecord
from drugrepo_assets.lib.resources import ScreeningSettings
from drugrepo_assets.lib.storage import StorageResource
from drugrepo_assets.screening.driver import ScreenRun, known_logits
from drugrepo_assets.screening.enrichment import enrichment_plot, retrospective_report
from drugrepo_assets.screening.library import library_change
from drugrepo_assets.screening.stored_library import (
    ShardRef,
    StoredFile,
    cap,
    plan_refs,
    plan_table,
    store_file,
    store_rows,
)
from drugrepo_assets.screening.targets import read_target_set

ALL_DATASETS = AssetIn(partition_mapping=AllPartitionMapping())


def _input_failure(exc: InputFileError) -> Failure:
    return Failure(description=str(exc), metadata={"file": MetadataValue.path(exc.path)})


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
        refs, rejected = _dataset_library(drug_graphs, root, screening.shard_size, source), rejected_table()
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
    library = storage.location_of(source)
    files = library_files(library)
    stored: list[StoredFile] = []
    read = []
    for label, version in files:
        part = store_file(library, label, version, root, screening.shard_size)
        stored.append(part)
        if not part.reused:
            read.append(label)
    changed = library_change(source, files, library_files(library))
    if changed:
        raise Failure(description=f"{changed} while it was being read; materialise screening_library again")
    refs = [r for part in stored for r in part.refs]
    return refs, rejected_table(pd.concat([p.rejected for p in stored], ignore_index=True)), read


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
    targets = read_target_set(storage.location_of(location))
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
    return table, rejected_table(targets.rejected)


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
        rejected, source = rejected_table(), f"the {len(targets)} targets with the most known positives"
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
