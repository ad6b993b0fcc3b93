"""``drugrepo screen``: stream a library against targets into a score data set; keep the top K or rank every pair."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from drugrepo_assets.cli.common import (
    EXIT_OK,
    CommandError,
    Subparsers,
    add_command,
    add_s3_endpoint,
    add_torch_options,
    check_out,
    load_model,
    positive_int,
    refused,
    torch_device,
    unreadable_input,
)
from drugrepo_assets.screening.plan import BLOCK_SIZE, SHARD_SIZE

TOP_PER_TARGET = 100
"""The best molecules kept per target when --top is not given."""

if TYPE_CHECKING:
    import pandas as pd
    from upath import UPath

    from drugrepo_assets.location import Location
    from drugrepo_assets.ml.model.calibration import Temperature
    from drugrepo_assets.screening.driver import ScreenRun
    from drugrepo_assets.screening.engine import ScreeningEngine
    from drugrepo_assets.screening.plan import TargetBlock
    from drugrepo_assets.screening.targets import TargetSet
    from drugrepo_assets.screening.terms import TargetTermStore
    from drugrepo_assets.screening.tiles import TileReport, TileSettings

__all__ = ["add_parser", "run"]

OUTPUTS = (
    "top.parquet",
    "top.csv",
    "top_per_drug.parquet",
    "top_per_drug.csv",
    "repurposing.parquet",
    "repurposing.csv",
    "targets.png",
    "drugs.png",
    "matrix.png",
    "rejected.csv",
    "enrichment.csv",
    "enrichment.png",
)
"""The files a screen writes at the top of --out, beside the tiles `screening.tiles` writes."""


def run(args: argparse.Namespace) -> int:
    """Screen --library against --targets with --checkpoint into --out: answers per target, per drug and
    for the whole matrix; enrichment with --known."""
    from drugrepo_assets.files import storage_path, write_bytes_atomic
    from drugrepo_assets.location import Location
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.screening.driver import MANIFEST, RANKED
    from drugrepo_assets.screening.engine import DRUG_CHUNK, ScreeningEngine
    from drugrepo_assets.screening.plan import target_blocks
    from drugrepo_assets.screening.terms import TARGET_TERMS_ENV, TargetTermStore
    from drugrepo_assets.screening.tiles import TILE_FOLDERS, TileSettings

    inputs = (args.library, args.targets, args.known, args.checkpoint)
    writes = (MANIFEST, *TILE_FOLDERS, RANKED, *OUTPUTS)
    check_out(args.out, folder=True, inputs=inputs, writes=writes)
    device = torch_device(args.device)
    root = storage_path(Location.of(args.out, args.s3_endpoint_url))
    targets, known = _read_targets(args)
    model, ckpt, temperature = load_model(args.checkpoint)
    configure_cpu(args.threads)
    engine = ScreeningEngine(model, device=device, drug_chunk=args.batch_size or DRUG_CHUNK)
    blocks = target_blocks(targets.kept, args.target_block)
    settings = TileSettings(top=args.top, top_per_drug=args.top_per_drug)
    terms_root = args.target_terms or os.environ.get(TARGET_TERMS_ENV)
    terms_folder = storage_path(Location.of(terms_root, args.s3_endpoint_url)) if terms_root else root / "terms"
    terms = TargetTermStore(terms_folder, ckpt)
    made = _missing_folders(root)
    own_terms = None if terms_root or (root / "terms").exists() else root / "terms"
    with unreadable_input():
        screened = _screen_library(args, engine, blocks, root, settings, terms, ckpt)
    rejected, molecules_refused = _refused(root, targets.rejected, screened)
    if not screened.molecules:
        _discard_run(root, made, own_terms)
        raise CommandError(f"{args.library}: {_no_molecules(rejected[rejected['kind'] == 'molecule'])}")
    write_bytes_atomic(root / "rejected.csv", rejected.to_csv(index=False).encode())
    if len(rejected):
        print(
            f"{len(molecules_refused)} molecules and {len(targets.rejected)} targets refused and skipped; "
            f"see {args.out}/rejected.csv",
            file=sys.stderr,
        )
    wrote = _write_results(args, root, screened, settings, ckpt, known, temperature)
    read_terms, computed = sum(t.terms_read for t in screened.tiles), sum(t.terms_computed for t in screened.tiles)
    print(f"target terms: {read_terms} read from {terms.folder}, {computed} computed and stored there", file=sys.stderr)
    kept = f" ({screened.kept} tiles kept from an earlier run)" if screened.kept else ""
    print(
        f"scored {screened.pairs} pairs ({screened.molecules} molecules × {screened.targets} targets, "
        f"{len(screened.tiles)} tiles){kept}; pairs in {args.out}/scores/; wrote {wrote}"
    )
    return EXIT_OK


def _read_targets(args: argparse.Namespace) -> tuple[TargetSet, pd.DataFrame | None]:
    """The targets and the --known actives (None without it); refused (exit 2) when they cannot be read or no
    target is valid."""
    from drugrepo_assets.data.limits import InputFileError
    from drugrepo_assets.location import Location
    from drugrepo_assets.screening.targets import read_target_set

    with refused(InputFileError):
        targets = read_target_set(Location.of(args.targets, args.s3_endpoint_url))
        known = _read_known(Location.of(args.known, args.s3_endpoint_url)) if args.known else None
    if not len(targets.kept):
        why = ""
        if len(targets.rejected):
            first = targets.rejected.iloc[0]
            why = f" ({len(targets.rejected)} refused, first: {first['file']} line {first['line']}: {first['reason']})"
        raise CommandError(f"{args.targets}: no valid target{why}")
    return targets, known


def _screen_library(
    args: argparse.Namespace,
    engine: ScreeningEngine,
    blocks: list[TargetBlock],
    root: UPath,
    settings: TileSettings,
    terms: TargetTermStore,
    ckpt: str,
) -> ScreenRun:
    """Stream the library through the tiles (`driver.screen_stream`) with a progress bar, on a fresh or the same
    run's folder; an `InputFileError` or ValueError when the library cannot be read or changed meanwhile."""
    from tqdm import tqdm

    from drugrepo_assets.data.library import count_rows, iter_library, library_files
    from drugrepo_assets.location import Location
    from drugrepo_assets.screening.driver import MANIFEST, check_manifest, discard_screen, screen_stream
    from drugrepo_assets.screening.library import default_workers, library_change
    from drugrepo_assets.screening.native import kernel_info

    library = Location.of(args.library, args.s3_endpoint_url)
    files = library_files(library)
    if args.restart and (root / MANIFEST).exists():
        discard_screen(root, OUTPUTS)
    check_manifest(root, {"checkpoint_id": ckpt})
    total = count_rows(library)
    n_targets = sum(len(block) for block in blocks)
    print(
        f"engine: {'C kernel' if engine.native else 'torch'} on {engine.device} ({kernel_info().kernel}); "
        f"{n_targets} targets in {len(blocks)} blocks; library {args.library}"
        + (f" (~{total:,} rows)" if total else ""),
        file=sys.stderr,
    )
    bar = tqdm(
        total=total * n_targets if total else None,
        unit="pair",
        unit_scale=True,
        file=sys.stderr,
        disable=args.quiet,
        mininterval=1.0,
        smoothing=0.1,
    )

    def progress(tile: TileReport) -> None:
        bar.update(tile.pairs)

    with bar:
        screened = screen_stream(
            engine,
            iter_library(library),
            blocks,
            root,
            settings,
            shard_size=args.shard_size,
            workers=args.workers or default_workers(),
            terms=terms,
            progress=progress,
        )
        bar.total = bar.n  # the row count was an estimate (headers, comments, refused rows)
    changed = library_change(args.library, files, library_files(library))
    if changed:
        raise ValueError(f"{changed} while it was being screened into {args.out}; run the screen again")
    return screened


def _refused(root: UPath, refused_targets: pd.DataFrame, screened: ScreenRun) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's refused rows, targets then molecules (rejected.csv), and the molecules' alone."""
    import pandas as pd

    from drugrepo_assets.screening.driver import rejected_rows
    from drugrepo_assets.screening.library import REJECTED_COLUMNS

    molecules_refused = rejected_rows(root, screened.shards)
    rejected = pd.concat(
        [refused_targets[REJECTED_COLUMNS], *([molecules_refused[REJECTED_COLUMNS]] if len(molecules_refused) else [])],
        ignore_index=True,
    )
    return rejected, molecules_refused


def _write_results(
    args: argparse.Namespace,
    root: UPath,
    screened: ScreenRun,
    settings: TileSettings,
    ckpt: str,
    known: pd.DataFrame | None,
    temperature: Temperature,
) -> str:
    """The answers (per target, per drug, the matrix; with --rank-all every pair ranked; with --known the
    enrichment report) written under ``root``; returns what was written, for the last line."""
    from drugrepo_assets.screening.domain import reference_for_checkpoint
    from drugrepo_assets.screening.driver import RANKED, answer, known_logits, prune_tiles, rank_tiles, write_answers

    prune_tiles(root, screened)
    domain = reference_for_checkpoint(args.checkpoint)
    if domain is None:
        print(
            f"{args.checkpoint}: no training reference beside it; the applicability-domain columns are empty",
            file=sys.stderr,
        )
    answers = answer(root, screened, settings, ckpt, known, domain, temperature)
    if (note := temperature.note()) is not None:
        print(f"screen: {note}", file=sys.stderr)
    write_answers(root, answers, per_drug=args.top_per_drug is not None)
    wrote = f"the best {args.top} per target to {args.out}/top.csv"
    if args.top_per_drug is not None:
        wrote += f", the best {args.top_per_drug} per drug to top_per_drug.csv"
    wrote += ", the matrix's best pairs to repurposing.csv (and .parquet, and pictures)"
    if args.rank_all:
        rank_tiles(root, screened, ckpt)
        wrote += f"; every pair ranked to {args.out}/{RANKED}/"
    if known is None or not _write_enrichment(root, known_logits(root, screened, known), args.out):
        for name in ("enrichment.csv", "enrichment.png"):  # an earlier run's report is not this run's
            if (root / name).exists():
                (root / name).unlink()
    return wrote


def _missing_folders(root: UPath) -> list[Path]:
    """The local folders on the way to ``root`` that do not exist yet (a run would create them), innermost first."""
    from drugrepo_assets.files import is_local

    missing: list[Path] = []
    folder = Path(str(root))
    while is_local(root) and not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _discard_run(root: UPath, made: list[Path], own_terms: UPath | None) -> None:
    """Remove what a run that scored nothing wrote, and the folders it created: no half-made run folder is left.
    ``own_terms`` is the target-terms store this run created inside its folder (None when it used another)."""
    from drugrepo_assets.screening.driver import discard_screen

    discard_screen(root, OUTPUTS if own_terms is None else (*OUTPUTS, own_terms.name))
    for folder in made:
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _no_molecules(refused: pd.DataFrame) -> str:
    """Why a library gave nothing to score: no molecules, or every one refused (the first named)."""
    if not len(refused):
        return "no molecules"
    first = refused.iloc[0]
    where = f"{first['file']} line {first['line']}"
    return f"no molecule could be scored ({len(refused)} refused, first: {where}: {first['reason']})"


def _read_known(location: Location | str) -> pd.DataFrame:
    """Known actives: a CSV/Parquet file or folder (or an earlier screen's top.parquet) with ``target_id``
    and ``drug_id`` columns (the targets' and library's ids), read as the pair tables are (an
    :class:`InputFileError` otherwise)."""
    from drugrepo_assets.data.sources import read_source

    return read_source(location, required=("target_id", "drug_id"))


def _write_enrichment(root: UPath, pairs: pd.DataFrame, out: str) -> bool:
    """The retrospective report (EF 1 % / 5 %, BEDROC, AUROC per target with known actives) and its
    plot; False when no target has both known actives and inactives (nothing written)."""
    from drugrepo_assets.files import write_bytes_atomic
    from drugrepo_assets.screening.enrichment import enrichment_plot, retrospective_report

    report = retrospective_report(pairs)
    if report.empty:
        print("--known: no screened target has both known actives and inactives in the library", file=sys.stderr)
        return False
    write_bytes_atomic(root / "enrichment.csv", report.to_csv(index=False).encode())
    write_bytes_atomic(root / "enrichment.png", enrichment_plot(pairs))
    print(report.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out}/enrichment.csv and {out}/enrichment.png")
    return True


def _add_answer_options(parser: argparse.ArgumentParser) -> None:
    """What the screen reports: the best K per target and per drug, every pair ranked, enrichment on known actives."""
    parser.add_argument(
        "--top", type=positive_int, default=TOP_PER_TARGET, metavar="K", help="the best K molecules per target"
    )
    parser.add_argument(
        "--top-per-drug", type=positive_int, default=None, metavar="K", help="the best K targets per molecule"
    )
    parser.add_argument(
        "--rank-all", action="store_true", help="also rank every pair within its target into OUT/ranked/"
    )
    parser.add_argument(
        "--known",
        default=None,
        metavar="LOCATION",
        help=(
            "known actives (CSV/Parquet with target_id,drug_id; an earlier screen's top.parquet too): "
            "report EF 1%%/5%%, BEDROC and AUROC per target"
        ),
    )


def _add_work_options(parser: argparse.ArgumentParser) -> None:
    """How the work is cut and run: the target-terms store, target blocks, library shards, workers, batch, device."""
    parser.add_argument(
        "--target-terms",
        default=None,
        metavar="LOCATION",
        help=(
            "where the targets' terms are kept per checkpoint (a folder or s3:// prefix, shared by screens and "
            "the API; default $DRUGREPO_TARGET_TERMS, else OUT/terms)"
        ),
    )
    parser.add_argument(
        "--target-block",
        type=positive_int,
        default=BLOCK_SIZE,
        metavar="N",
        help="targets per block (the unit of resumption along the target axis)",
    )
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=SHARD_SIZE,
        metavar="N",
        help="molecules per shard (the unit of resumption)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        metavar="W",
        help="featurisation processes (default: one per core)",
    )
    # default None: the engine's (`screening.engine.DRUG_CHUNK`), read in run, as the module loads torch
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, metavar="B", help="molecules scored per engine call"
    )
    add_torch_options(parser)


def add_parser(subparsers: Subparsers) -> None:
    """Register ``screen``."""
    parser = add_command(
        subparsers,
        "screen",
        run,
        help="score a compound library against targets: the repurposing matrix, answered per target and per drug",
        description=(
            "Score every molecule of LIBRARY (a file, folder, http(s) URL or s3:// prefix of .smi/.csv/.tsv "
            "(optionally .gz) or Parquet files) against every target of TARGETS (the same kinds of location, "
            "FASTA, CSV/TSV id,sequence or Parquet) with CKPT, exactly as 'drugrepo predict' would, tile by tile "
            "(library shards × target blocks). OUT (a folder or s3:// prefix) gets every pair "
            "(scores/<tile>.parquet: target_id, drug_id, logit), top.csv (the best K per target), "
            "top_per_drug.csv (with --top-per-drug: the best K per drug), repurposing.csv (every reported pair "
            "ranked by min(z_target, z_drug)), each pair with its rank, percentile and z-score within its target "
            "and its drug, its applicability domain and whether it is --known; pictures of the top of the matrix; "
            "rejected.csv (refused molecules and targets with file, line and reason). Memory does not grow with "
            "the library or the targets; a rerun on the same OUT, or with more molecules or targets, scores only "
            "the tiles that are new. OUT is never an input or inside one."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT")
    parser.add_argument("--library", required=True, metavar="LOCATION")
    parser.add_argument("--targets", required=True, metavar="LOCATION")
    parser.add_argument("--out", required=True, metavar="DIR")
    _add_answer_options(parser)
    _add_work_options(parser)
    add_s3_endpoint(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard the screen already in OUT (its scores and outputs) and start over",
    )
