"""Screening stage: a library scored against a target set by each dataset's checkpoint, and the candidates.

`screening_library` / `screening_targets` come from a user's files (`ScreeningSettings`) or, by
default, from the datasets (every validated drug; the targets with the most known positives); their
features go through the content-addressed feature store, so molecules already featurised are
reused. `screening_scores` splits the library into shards, scores each in its own op (its own GPU
pod under the k8s executor) with `ml.screen.ScreeningEngine`, and ranks the merged table, so the
shard count never changes the result. `repurposing_candidates` keeps the best k per target and
flags the pairs already known in the dataset.
"""

import hashlib
import time
from typing import Any, Iterator

import numpy as np
import pandas as pd
from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    DynamicOut,
    DynamicOutput,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    graph_asset,
    multi_asset,
    op,
    asset,
)

from drugrepo_assets.assets.features import feature_store
from drugrepo_assets.data.library import read_library, read_targets
from drugrepo_assets.data.sources import InputFileError
from drugrepo_assets.data.validate import MAX_HEAVY_ATOMS, PROTEIN_ALPHABET, drug_id, parse_smiles, target_id
from drugrepo_assets.k8s import GPU_OP_TAGS, GPU_POOL
from drugrepo_assets.ml.model import load_checkpoint
from drugrepo_assets.ml.runtime import configure_cpu
from drugrepo_assets.ml.screen import ScreeningEngine, rank_scores
from drugrepo_assets.ml.train import resolve_device
from drugrepo_assets.partitions import dataset_partitions
from drugrepo_assets.resources import ScreeningSettings
from drugrepo_assets.storage import StorageResource

REJECTED_COLUMNS = ["source_file", "source_row", "id", "value", "reason"]
ALL_DATASETS = AssetIn(partition_mapping=AllPartitionMapping())


def _rejected(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=REJECTED_COLUMNS).astype({"source_row": "int64"})


def _input_failure(exc: InputFileError) -> Failure:
    return Failure(description=str(exc), metadata={"file": MetadataValue.path(exc.path)})


def library_from_file(path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A user's library checked row by row: (kept rows ``drug_id, smiles, feature_id``, rejected rows with a reason)."""
    table = read_library(path)
    kept, rejected, seen = [], [], set()
    for name, smiles, line in table[["id", "smiles", "line"]].itertuples(index=False):
        name, smiles = str(name).strip(), str(smiles).strip()
        canonical, atoms, problem = parse_smiles(smiles) if smiles else (None, 0, "empty")
        reason = (
            "id: empty" if not name
            else f"id: {name!r} already used on an earlier row" if name in seen
            else f"SMILES: {problem}" if canonical is None
            else f"SMILES: {atoms} heavy atoms, more than the limit of {MAX_HEAVY_ATOMS}" if atoms > MAX_HEAVY_ATOMS
            else ""
        )
        if reason:
            rejected.append({"source_file": path, "source_row": line, "id": name, "value": smiles, "reason": reason})
            continue
        seen.add(name)
        kept.append({"drug_id": name, "smiles": smiles, "feature_id": drug_id(canonical), "canonical": canonical})
    return pd.DataFrame(kept, columns=["drug_id", "smiles", "feature_id", "canonical"]), _rejected(rejected)


def targets_from_file(path: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A user's targets checked one by one: (kept ``target_id, sequence, feature_id``, rejected with a reason)."""
    table = read_targets(path)
    allowed = set(PROTEIN_ALPHABET)
    kept, rejected, seen = [], [], set()
    for name, sequence, line in table[["id", "sequence", "line"]].itertuples(index=False):
        name, sequence = str(name).strip(), str(sequence).strip().upper()
        bad = "".join(sorted(set(sequence) - allowed))
        reason = (
            "id: empty" if not name
            else f"id: {name!r} already used on an earlier record" if name in seen
            else "sequence: empty" if not sequence
            else f"sequence: letters {bad!r} outside DrugBAN's 25-letter alphabet" if bad
            else ""
        )
        if reason:
            rejected.append({"source_file": path, "source_row": line, "id": name, "value": sequence[:60], "reason": reason})
            continue
        seen.add(name)
        kept.append({"target_id": name, "sequence": sequence, "feature_id": target_id(sequence)})
    return pd.DataFrame(kept, columns=["target_id", "sequence", "feature_id"]), _rejected(rejected)


@multi_asset(
    outs={
        "screening_library": AssetOut(
            description="Molecules to screen: drug_id, smiles, feature_id, shard.", kinds={"rdkit"}
        ),
        "screening_library_rejected": AssetOut(description="Library rows refused, with file, row and reason."),
    },
    ins={"drug_graphs": ALL_DATASETS},
    group_name="screening",
)
def screening_library(
    context: AssetExecutionContext, drug_graphs: dict[str, pd.DataFrame], screening: ScreeningSettings, storage: StorageResource
) -> Iterator[Output[pd.DataFrame]]:
    """The library: a user's file (CSV id,SMILES or .smi) or every validated drug of the datasets.

    A file's molecules are featurised into the feature store unless already there; refused rows
    (unparseable SMILES, too many atoms, empty or repeated ids) go to `screening_library_rejected`.
    """
    store = feature_store(storage).drugs
    if screening.library is None:
        library = pd.concat(drug_graphs.values()).drop_duplicates("drug_id").sort_values("drug_id")
        library = library.assign(feature_id=library["drug_id"])[["drug_id", "smiles", "feature_id", "shard"]]
        rejected, new, source = _rejected([]), 0, f"validated drugs of {', '.join(sorted(drug_graphs))}"
    else:
        try:
            kept, rejected = library_from_file(screening.library)
        except InputFileError as exc:
            raise _input_failure(exc) from None
        firsts = kept.drop_duplicates("feature_id")
        result = store.ensure(firsts["feature_id"].tolist(), firsts["canonical"].tolist())
        library = kept.assign(shard=kept["feature_id"].map(result.shard_of)).drop(columns="canonical")
        new, source = result.new, screening.library
    if screening.max_library is not None:
        library = library.head(screening.max_library)
    library = library.reset_index(drop=True)
    if library.empty:
        raise Failure(description=f"the screening library from {source} has no valid molecule")
    context.log.info(f"library: {len(library)} molecules from {source}; {len(rejected)} refused")
    yield Output(library, output_name="screening_library", metadata={
        "dagster/row_count": MetadataValue.int(len(library)), "source": MetadataValue.text(source),
        "featurised_now": MetadataValue.int(new), "rejected": MetadataValue.int(len(rejected))})
    yield Output(rejected, output_name="screening_library_rejected",
                 metadata={"dagster/row_count": MetadataValue.int(len(rejected))})


def most_studied_targets(validated: dict[str, pd.DataFrame], encodings: dict[str, pd.DataFrame], n: int) -> pd.DataFrame:
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
    yield Output(targets.reset_index(drop=True), output_name="screening_targets", metadata={
        "dagster/row_count": MetadataValue.int(len(targets)), "source": MetadataValue.text(source),
        "rejected": MetadataValue.int(len(rejected))})
    yield Output(rejected, output_name="screening_targets_rejected",
                 metadata={"dagster/row_count": MetadataValue.int(len(rejected))})


@op(out=DynamicOut(pd.DataFrame))
def library_shards(screening_library: pd.DataFrame, screening: ScreeningSettings) -> Iterator[DynamicOutput[pd.DataFrame]]:
    """Split the library into ``screening.shards`` contiguous parts, one mapped op each."""
    parts = np.array_split(np.arange(len(screening_library)), min(screening.shards, len(screening_library)))
    for i, rows in enumerate(parts):
        yield DynamicOutput(screening_library.iloc[rows].reset_index(drop=True), mapping_key=f"shard_{i}")


def markdown_table(table: pd.DataFrame) -> str:
    """A small table as Markdown, for asset metadata."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + " --- |" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
    return "\n".join(lines)


def checkpoint_id(path: str) -> str:
    """First 12 hex digits of the checkpoint file's SHA-256 (as ``drugrepo screen`` writes it)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:12]


@op(tags=GPU_OP_TAGS, pool=GPU_POOL)
def score_shard(
    context: OpExecutionContext,
    shard: pd.DataFrame,
    drugban_checkpoint: dict,
    screening_targets: pd.DataFrame,
    screening: ScreeningSettings,
    storage: StorageResource,
) -> pd.DataFrame:
    """Logits of one library shard against every target (CUDA when present): drug-major, unranked."""
    configure_cpu(screening.threads)
    device = resolve_device(screening.device)
    path = str(storage.local_copy(drugban_checkpoint["checkpoint"]))
    model, _ = load_checkpoint(path, map_location=device)
    store = feature_store(storage)
    molecules = store.drugs.load(shard["feature_id"].tolist(), shard["shard"].tolist())
    codes = store.proteins.load(screening_targets["feature_id"].tolist(), screening_targets["shard"].tolist())
    engine = ScreeningEngine(model, device=device)
    start = time.perf_counter()
    logits = engine.score_matrix(molecules, codes)
    seconds = time.perf_counter() - start
    context.log.info(f"{logits.size} pairs on {device} in {seconds:.2f} s ({logits.size / seconds:,.0f} pairs/s, "
                     f"{'C kernel' if engine.native else 'torch'})")
    n_drugs, n_targets = logits.shape
    return pd.DataFrame({
        "target_id": np.tile(screening_targets["target_id"].to_numpy(dtype=object), n_drugs),
        "drug_id": np.repeat(shard["drug_id"].to_numpy(dtype=object), n_targets),
        "smiles": np.repeat(shard["smiles"].to_numpy(dtype=object), n_targets),
        "logit": logits.reshape(-1),
        "checkpoint_id": checkpoint_id(path),
    })


@op
def merge_scores(
    shards: list[pd.DataFrame], screening_library: pd.DataFrame, screening_targets: pd.DataFrame
) -> Output[pd.DataFrame]:
    """One table of every pair, ranked within each target over the whole library (ties in library order)."""
    table = rank_scores(
        pd.concat(shards, ignore_index=True),
        target_order={t: i for i, t in enumerate(screening_targets["target_id"])},
        drug_order={d: i for i, d in enumerate(screening_library["drug_id"])},
    )
    best = table[table["rank"] == 1].drop_duplicates("target_id")
    return Output(table, metadata={
        "dagster/row_count": MetadataValue.int(len(table)),
        "targets": MetadataValue.int(table["target_id"].nunique()),
        "molecules": MetadataValue.int(table["drug_id"].nunique()),
        "checkpoint_id": MetadataValue.text(str(table["checkpoint_id"].iloc[0])),
        "best_per_target": MetadataValue.md(markdown_table(best[["target_id", "drug_id", "score"]])),
    })


@graph_asset(partitions_def=dataset_partitions, group_name="screening", kinds={"pytorch"},
             ins={"screening_library": AssetIn(), "screening_targets": AssetIn(), "drugban_checkpoint": AssetIn()})
def screening_scores(screening_library: pd.DataFrame, screening_targets: pd.DataFrame, drugban_checkpoint: dict) -> pd.DataFrame:
    """Every library molecule × every target scored by this dataset's checkpoint, in shard ops.

    Columns: target_id, drug_id, smiles, logit, score, rank (1 = best of the target), percentile
    (share of the library at or below), checkpoint_id.
    """
    shards = library_shards(screening_library)
    scored = shards.map(lambda shard: score_shard(shard, drugban_checkpoint, screening_targets))
    return merge_scores(scored.collect(), screening_library, screening_targets)


def known_labels(validated_pairs: pd.DataFrame) -> dict[tuple[str, str], int]:
    """(drug content id, target content id) → label of every pair in the dataset (1 if any row says 1)."""
    labels = validated_pairs.groupby(["drug_id", "target_id"])["label"].max()
    return {key: int(value) for key, value in labels.items()}


@asset(partitions_def=dataset_partitions, group_name="screening")
def repurposing_candidates(
    screening_scores: pd.DataFrame,
    screening_library: pd.DataFrame,
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
    drug_feature = dict(zip(screening_library["drug_id"], screening_library["feature_id"]))
    target_feature = dict(zip(screening_targets["target_id"], screening_targets["feature_id"]))
    labels = known_labels(validated_pairs)
    known = [labels.get((drug_feature[d], target_feature[t])) for d, t in zip(top["drug_id"], top["target_id"])]
    table = top.assign(known_label=pd.array(known, dtype="Int64")).reset_index(drop=True)
    table["known_interaction"] = (table["known_label"] == 1).fillna(False).astype(bool)
    shown = table.groupby("target_id").head(3)[["target_id", "rank", "drug_id", "score", "known_interaction"]]
    return Output(table, metadata={
        "dagster/row_count": MetadataValue.int(len(table)),
        "known_interactions": MetadataValue.int(int(table["known_interaction"].sum())),
        "new_candidates": MetadataValue.int(int((~table["known_interaction"]).sum())),
        "top_candidates": MetadataValue.md(markdown_table(shown)),
    })
