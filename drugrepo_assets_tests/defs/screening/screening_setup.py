"""Shared set-up of the screening-stage tests: the upstream assets stored as values (real validated pairs,
no training), a copy of the golden checkpoint with its applicability-domain reference, and a small
library, target list and known pairs drawn from those validated pairs."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from drugrepo_assets.data.sources import DATASETS
from drugrepo_assets.data.validate import validate_pairs
from drugrepo_assets.lib.records import CheckpointRecord
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.screening.domain import record_reference
from drugrepo_assets_tests.data.rows import real_rows

PAIR_ROWS = 300
"""Bundled human training rows the fake upstream holds: 256 drugs, 246 targets, a few targets with 5-10 positives."""
BAD_ROWS = (("unparseable", "C1CC"), ("ion", "[Zn]"))
"""Library rows the input rules refuse in the tile ops (not the reader): an open ring, a lone ion."""


def validated_human(rows: int = PAIR_ROWS) -> pd.DataFrame:
    """The first ``rows`` bundled human training pairs, validated as `validated_pairs` stores them."""
    raw = pd.DataFrame(real_rows("human/random/train.csv", range(1, rows + 1)), columns=["SMILES", "Protein", "Y"])
    return validate_pairs(raw).valid


def checkpoint_record(path: Path) -> CheckpointRecord:
    """A `drugban_checkpoint` value naming the checkpoint at ``path`` (not trained here: the stage reads its file)."""
    checkpoint_id = str(load_checkpoint(str(path)).checkpoint_id)
    return CheckpointRecord.imported(str(path), checkpoint_id, dataset="human", profile="golden")


def stage_storage(storage: Path, golden_dir: Path, validated: pd.DataFrame) -> Path:
    """Store what the screening stage reads upstream: human's validated pairs and drugs (the other
    datasets empty), and a checkpoint record naming a copy of the golden checkpoint with the domain
    reference of ``validated`` beside it; returns the copy's path."""
    drugs = validated.drop_duplicates("drug_id")[["drug_id", "smiles"]].assign(shard="")
    for asset, table in {"validated_pairs": validated, "drug_graphs": drugs}.items():
        (storage / asset).mkdir(parents=True, exist_ok=True)
        for dataset in DATASETS:
            (table if dataset == "human" else table.iloc[:0]).to_parquet(storage / asset / f"{dataset}.parquet")
    checkpoint = storage / "checkpoints" / "model_state.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(golden_dir / "model_state.pt", checkpoint)
    record_reference(checkpoint, validated)
    (storage / "drugban_checkpoint").mkdir(exist_ok=True)
    (storage / "drugban_checkpoint" / "human.json").write_text(checkpoint_record(checkpoint).model_dump_json())
    return checkpoint


@dataclass
class Inputs:
    """A library file, a FASTA of targets and the known pairs among them (CSV ``target_id,drug_id``, the files' ids)."""

    library: Path
    targets: Path
    known: Path


def screened_targets(validated: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` targets with the most positives: ``target_id, protein``."""
    counts = validated[validated["label"] == 1].groupby("target_id").size().sort_values(ascending=False, kind="stable")
    table = validated.drop_duplicates("target_id").set_index("target_id")
    return table.loc[counts.index[:n], ["protein"]].reset_index()


def library_smiles(validated: pd.DataFrame, targets: pd.DataFrame, molecules: int) -> list[str]:
    """``molecules`` validated SMILES: the targets' positives first, then other drugs, in table order."""
    positives = validated[(validated["label"] == 1) & validated["target_id"].isin(targets["target_id"])]
    ordered = pd.concat([positives["smiles"], validated["smiles"]]).drop_duplicates()
    return ordered.head(molecules).tolist()


def write_inputs(
    folder: Path, validated: pd.DataFrame, molecules: int, targets: int, bad: bool = True, first: int = 0
) -> Inputs:
    """``library.csv`` (ids M<i> from ``first``, the `BAD_ROWS` last when ``bad``), ``targets.fasta``
    (ids P<i>) and ``known.csv``: the validated positives among them, matched by their SMILES and sequence text."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = screened_targets(validated, targets)
    smiles = library_smiles(validated, chosen, molecules)
    rows = [(f"M{first + i:02d}", s) for i, s in enumerate(smiles)] + (list(BAD_ROWS) if bad else [])
    library = folder / "library.csv"
    pd.DataFrame(rows, columns=["id", "smiles"]).to_csv(library, index=False)
    fasta = folder / "targets.fasta"
    names = {p: f"P{i}" for i, p in enumerate(chosen["protein"])}
    fasta.write_text("".join(f">{name}\n{protein}\n" for protein, name in names.items()))
    ids = {s: m for m, s in rows}
    positives = validated[(validated["label"] == 1) & validated["smiles"].isin(ids) & validated["protein"].isin(names)]
    known = pd.DataFrame({"target_id": positives["protein"].map(names), "drug_id": positives["smiles"].map(ids)})
    known.to_csv(folder / "known.csv", index=False)
    return Inputs(library, fasta, folder / "known.csv")
