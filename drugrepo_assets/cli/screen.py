"""``drugrepo screen``: stream a library against targets into a score data set; keep the top K or rank every pair."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from drugrepo_assets.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    Subparsers,
    add_s3_endpoint,
    check_out,
    error,
    load_model,
    positive_int,
    torch_device,
)

if TYPE_CHECKING:
    import pandas as pd
    from upath import UPath

__all__ = ["add_parser", "run"]

OUTPUTS = ("top.parquet", "top.csv", "rejected.csv", "enrichment.csv", "enrichment.png")
"""The files a screen writes at the top of --out, beside the data set `ml.library_screen` writes."""


def run(args: argparse.Namespace) -> int:
    """Screen --library against --targets with --checkpoint into --out; report enrichment with --known."""
    import hashlib
    import json

    import pandas as pd
    from tqdm import tqdm

    from drugrepo_assets.data.library import count_rows, iter_library, library_files, read_checked_targets
    from drugrepo_assets.data.sources import InputFileError
    from drugrepo_assets.files import storage_path, write_bytes_atomic
    from drugrepo_assets.ml.library_screen import (
        LIBRARY_FILES,
        MANIFEST,
        REJECTED,
        REJECTED_COLUMNS,
        SHARDS,
        LibraryChanged,
        check_manifest,
        default_workers,
        discard_screen,
        known_actives,
        library_change,
        rejected_rows,
        screen_library,
    )
    from drugrepo_assets.ml.native import kernel_info
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.ml.scores import RANKED, SCORES, TOP, merge_top, part_name, rank_dataset
    from drugrepo_assets.ml.screen import ScreeningEngine, prepare_targets

    inputs = (args.library, args.targets, args.known, args.checkpoint)
    writes = (MANIFEST, SHARDS, REJECTED, SCORES, TOP, RANKED, *OUTPUTS)
    if not check_out("screen", args.out, folder=True, inputs=inputs, writes=writes):
        return EXIT_BAD_INPUT
    device = torch_device("screen", args.device)
    if device is None:
        return EXIT_BAD_INPUT
    root = storage_path(args.out, args.s3_endpoint_url)
    try:
        targets, refused_targets = read_checked_targets(args.targets)
        known = _read_known(args.known, args.s3_endpoint_url) if args.known else None
    except InputFileError as exc:
        error("screen", str(exc))
        return EXIT_BAD_INPUT
    loaded = load_model("screen", args.checkpoint)
    if loaded is None:
        return EXIT_BAD_INPUT
    model, ckpt = loaded
    codes, tgt = prepare_targets(targets)
    refused_targets = pd.concat(
        [refused_targets, tgt.rejected[refused_targets.columns]], ignore_index=True
    ).sort_values("line", kind="stable")
    if not len(codes):
        error(
            "screen",
            f"{args.targets}: no valid target ({len(refused_targets)} refused, first: line "
            f"{refused_targets['line'].iat[0]}: {refused_targets['reason'].iat[0]})",
        )
        return EXIT_BAD_INPUT
    configure_cpu(args.threads)
    engine = ScreeningEngine(model, device=device, drug_chunk=args.batch_size)
    target_ids = tgt.kept["id"].astype(str).tolist()
    settings = {
        "library": args.library,
        "checkpoint_id": ckpt,
        "shard_size": args.shard_size,
        "top": args.top,
        "targets": hashlib.sha256(json.dumps([target_ids, codes.tolist()]).encode()).hexdigest()[:16],
    }
    made = _missing_folders(root)
    try:
        settings[LIBRARY_FILES] = [list(f) for f in library_files(args.library, args.s3_endpoint_url)]
        if args.restart and (root / MANIFEST).exists():
            discard_screen(root, OUTPUTS)
        check_manifest(root, settings)
        total = count_rows(args.library, args.s3_endpoint_url)
        print(
            f"engine: {'C kernel' if engine.native else 'torch'} on {engine.device} ({kernel_info()['kernel']}); "
            f"{len(target_ids)} targets; library {args.library}" + (f" (~{total:,} rows)" if total else ""),
            file=sys.stderr,
        )
        bar = tqdm(
            total=total * len(target_ids) if total else None,
            unit="pair",
            unit_scale=True,
            file=sys.stderr,
            disable=args.quiet,
            mininterval=1.0,
            smoothing=0.1,
        )
        with bar:
            screened = screen_library(
                engine,
                iter_library(args.library, s3_endpoint_url=args.s3_endpoint_url),
                target_ids,
                codes,
                root,
                shard_size=args.shard_size,
                top=args.top,
                workers=args.workers or default_workers(),
                progress=bar.update,
            )
            bar.total = bar.n  # the row count was an estimate (headers, comments, refused rows)
        changed = library_change(
            args.library, settings[LIBRARY_FILES], library_files(args.library, args.s3_endpoint_url)
        )
        if changed:
            raise LibraryChanged(f"{changed} while it was being screened into {args.out}")
    except LibraryChanged as exc:
        error("screen", f"{exc}; use a new --out, or --restart to screen it again from the start")
        return EXIT_BAD_INPUT
    except (InputFileError, ValueError) as exc:
        error("screen", str(exc))
        return EXIT_BAD_INPUT
    shards = [part_name(s.index) for s in screened.shards]
    rejected = pd.concat(
        [
            refused_targets.assign(kind="target", file=args.targets, value=refused_targets["sequence"].str[:60])[
                REJECTED_COLUMNS
            ],
            *rejected_rows(root, shards),
        ],
        ignore_index=True,
    )
    if not screened.molecules:
        _discard_run(root, made)
        error("screen", f"{args.library}: {_no_molecules(rejected[rejected['kind'] == 'molecule'])}")
        return EXIT_BAD_INPUT
    write_bytes_atomic(root / "rejected.csv", rejected.to_csv(index=False).encode())
    if len(rejected):
        print(
            f"{screened.rejected} molecules and {len(refused_targets)} targets refused and skipped; "
            f"see {args.out}/rejected.csv",
            file=sys.stderr,
        )
    if args.top is not None:
        table = merge_top(root, shards, target_ids, screened.molecules, args.top, ckpt)
        write_bytes_atomic(root / "top.parquet", table.to_parquet(index=False))
        write_bytes_atomic(root / "top.csv", table.to_csv(index=False).encode())
        wrote = f"the best {args.top} per target to {args.out}/top.parquet (and top.csv)"
    else:
        rank_dataset(root, shards, target_ids, ckpt)
        wrote = f"every pair ranked to {args.out}/ranked/"
    if known is None or not _write_enrichment(root, known_actives(root, shards, target_ids, known), args.out):
        for name in ("enrichment.csv", "enrichment.png"):  # an earlier run's report is not this run's
            if (root / name).exists():
                (root / name).unlink()
    kept = f" ({screened.skipped} shards kept from an earlier run)" if screened.skipped else ""
    print(
        f"scored {screened.pairs} pairs ({screened.molecules} molecules × {len(target_ids)} targets){kept}; "
        f"pairs in {args.out}/scores/; wrote {wrote}"
    )
    return EXIT_OK


def _missing_folders(root: UPath) -> list[Path]:
    """The local folders on the way to ``root`` that do not exist yet (a run would create them), innermost first."""
    from drugrepo_assets.files import is_local

    missing: list[Path] = []
    folder = Path(str(root))
    while is_local(root) and not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _discard_run(root: UPath, made: list[Path]) -> None:
    """Remove what a run that scored nothing wrote, and the folders it created: no half-made run folder is left."""
    from drugrepo_assets.ml.library_screen import discard_screen

    discard_screen(root, OUTPUTS)
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


def _read_known(location: str, s3_endpoint_url: str | None) -> pd.DataFrame:
    """Known actives: a CSV/Parquet file or folder (or an earlier screen's top.parquet) with ``target_id``
    and ``drug_id`` columns (the targets' and library's ids), read as the pair tables are (an
    :class:`InputFileError` otherwise)."""
    from drugrepo_assets.data.sources import read_source

    return read_source(location, s3_endpoint_url=s3_endpoint_url, required=("target_id", "drug_id"))


def _write_enrichment(root: UPath, pairs: pd.DataFrame, out: str) -> bool:
    """The retrospective report (EF 1 % / 5 %, BEDROC, AUROC per target with known actives) and its
    plot; False when no target has both known actives and inactives (nothing written)."""
    from drugrepo_assets.files import write_bytes_atomic
    from drugrepo_assets.ml.enrichment import enrichment_plot, retrospective_report

    report = retrospective_report(pairs)
    if report.empty:
        print("--known: no screened target has both known actives and inactives in the library", file=sys.stderr)
        return False
    write_bytes_atomic(root / "enrichment.csv", report.to_csv(index=False).encode())
    write_bytes_atomic(root / "enrichment.png", enrichment_plot(pairs))
    print(report.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {out}/enrichment.csv and {out}/enrichment.png")
    return True


def add_parser(subparsers: Subparsers) -> None:
    """Register ``screen``."""
    parser = subparsers.add_parser(
        "screen",
        help="score a compound library against targets and rank it",
        description=(
            "Stream every molecule of LIBRARY (a file, folder, http(s) URL or s3:// prefix of .smi/.csv/.tsv "
            "(optionally .gz) or Parquet files) against every target of TARGETS (FASTA, or CSV id,sequence) "
            "with CKPT, exactly as 'drugrepo predict' would. OUT (a folder or s3:// prefix) gets the pairs as a "
            "Parquet data set (scores/part-*.parquet: drug_id, target_id, logit), then either top.parquet/top.csv "
            "(--top K: the best K per target, ranked) or ranked/ (every pair with rank and percentile), and "
            "rejected.csv (refused molecules and targets with file, line and reason). Memory does not grow "
            "with the library; rerunning on the same OUT keeps the shards already scored, unless the library "
            "changed since (refused: use a new OUT or --restart). OUT is never an input or inside one."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT")
    parser.add_argument("--library", required=True, metavar="LOCATION")
    parser.add_argument("--targets", required=True, metavar="FILE")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument(
        "--top", type=positive_int, default=None, metavar="K", help="keep the best K per target (else rank every pair)"
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
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=50_000,
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
    parser.add_argument(
        "--batch-size", type=positive_int, default=1024, metavar="B", help="molecules scored per engine call"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=positive_int, default=None)
    add_s3_endpoint(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="discard the screen already in OUT (its scores and outputs) and start over",
    )
    parser.set_defaults(func=run)
