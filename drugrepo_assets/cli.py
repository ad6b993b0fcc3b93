"""The ``drugrepo`` command line: one subcommand per task (``validate`` now; more register the same way).

Heavy libraries (pandas, RDKit, torch) are imported inside the command functions so that
``drugrepo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    import pandas as pd
    import torch
    from upath import UPath

    from drugrepo_assets.ml.model import DrugBAN

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

_BUNDLED_PREFIX = "bundled:"


def _error(command: str, message: str) -> None:
    print(f"drugrepo {command}: error: {message}", file=sys.stderr)


def _positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a bad value is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def _positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number above 0")
    return value


def _out_problem(out: str, folder: bool) -> str | None:
    """Why the output location ``out`` (a folder, else a file) cannot be written, or None.

    Checked before any work, creating nothing: the nearest existing folder on the way must take a
    new file. Remote locations (``s3://`` ...) are left to the writer.
    """
    scheme = urlparse(out).scheme.lower()
    if len(scheme) > 1 and scheme != "file":
        return None
    path = Path(urlparse(out).path if scheme == "file" else out).expanduser()
    if folder and path.exists() and not path.is_dir():
        return "exists and is not a folder"
    if not folder and path.is_dir():
        return "is a folder; give a file name"
    probe = path if folder else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return f"cannot write in {probe} ({exc.strerror or exc})"
    return None


def _check_out(command: str, out: str, folder: bool) -> bool:
    """True when ``out`` can be written; else one error line (the caller exits 2 before any work)."""
    problem = _out_problem(out, folder)
    if problem is not None:
        _error(command, f"--out {out}: {problem}")
    return problem is None


def _device(command: str, name: str) -> torch.device | None:
    """The torch device ``--device`` names, or None after one error line (unknown name, no such GPU)."""
    import torch

    from drugrepo_assets.ml.train import resolve_device

    try:
        device = resolve_device(name)
    except RuntimeError:
        _error(command, f"--device {name}: not a device name (use auto, cpu, cuda or cuda:N)")
        return None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index is not None and device.index >= count) or not count:
            _error(command, f"--device {name}: no such CUDA device ({count} available)")
            return None
    elif device.type != "cpu":
        _error(command, f"--device {name}: not supported (use auto, cpu, cuda or cuda:N)")
        return None
    return device


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (its first non-blank line), else its type's name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].split(". ", 1)[0].rstrip(".") if lines else type(exc).__name__


def _resolve_input(text: str) -> str:
    if text.startswith(_BUNDLED_PREFIX):
        from drugrepo_assets.data.sources import dataset_location

        dataset, _, rest = text[len(_BUNDLED_PREFIX) :].partition("/")
        location = dataset_location("bundled", dataset)
        return f"{location}/{rest}" if rest else location
    return text


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate INPUT into DIR/valid.parquet and DIR/rejected.parquet and print the counts."""
    from drugrepo_assets.data.sources import InputFileError, read_source
    from drugrepo_assets.data.validate import REASON_CODES, validate_pairs, write_result

    if not _check_out("validate", args.out, folder=True):
        return EXIT_BAD_INPUT
    try:
        location = _resolve_input(args.input)
        raw = read_source(location, s3_endpoint_url=args.s3_endpoint_url)
    except InputFileError as exc:
        _error("validate", str(exc))
        return EXIT_BAD_INPUT
    except ValueError as exc:
        _error("validate", f"{args.input}: {exc}")
        return EXIT_BAD_INPUT
    result = validate_pairs(raw)
    try:
        valid_path, rejected_path = write_result(result, Path(args.out))
    except OSError as exc:
        _error("validate", f"{args.out}: cannot write output ({exc.strerror or exc})")
        return EXIT_FAILURE
    counts = result.counts
    files = raw["source_file"].nunique()
    print(f"input: {location} ({files} file{'s' if files != 1 else ''})")
    print(f"rows read: {counts['input_rows']}")
    print(f"valid: {counts['valid']}")
    print(f"rejected: {counts['rejected']}")
    for code in REASON_CODES:
        if counts[code]:
            print(f"  {code}: {counts[code]}")
    print(f"wrote {valid_path}")
    print(f"wrote {rejected_path}")
    return EXIT_OK


def _add_validate(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check drug–target pairs and split them into valid and rejected tables",
        description=(
            "Read INPUT (a CSV/Parquet file, a folder, an http(s) URL, an s3:// key or prefix, or "
            "bundled:<dataset>), validate every row and write OUT/valid.parquet and "
            "OUT/rejected.parquet. Exit status 0 when the input was readable (even with rejected "
            "rows), 2 when it was not."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="file, folder, URL, S3 URI or bundled:<dataset>")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument(
        "--s3-endpoint-url",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint (MinIO, moto); default: AWS or $AWS_ENDPOINT_URL",
    )
    parser.set_defaults(func=cmd_validate)


def _read_pairs_for_training(location: str, label: str):
    """Read and validate one training input; rejected rows are counted and kept, never dropped silently."""
    from drugrepo_assets.data.sources import read_source
    from drugrepo_assets.data.validate import validate_pairs

    result = validate_pairs(read_source(_resolve_input(location)))
    if result.counts["rejected"]:
        print(
            f"{label}: {result.counts['rejected']} of {result.counts['input_rows']} rows rejected (see {label}_rejected.parquet)"
        )
    return result


def cmd_train(args: argparse.Namespace) -> int:
    """Train DrugBAN from CSV/Parquet pairs; write best.pt, last.pt, metrics.json and history.csv."""
    import json
    from dataclasses import asdict

    import pandas as pd

    from drugrepo_assets.data.sources import InputFileError
    from drugrepo_assets.data.splits import cold_split, random_split
    from drugrepo_assets.files import write_local_atomic
    from drugrepo_assets.ml.dataset import PairData
    from drugrepo_assets.ml.evaluate import evaluate, sigmoid
    from drugrepo_assets.ml.predict import predict_logits
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.ml.train import TrainConfig, train

    out = Path(args.out)
    if not _check_out("train", args.out, folder=True):
        return EXIT_BAD_INPUT
    if _device("train", args.device) is None:
        return EXIT_BAD_INPUT
    try:
        if args.data:
            result = _read_pairs_for_training(args.data, "data")
            valid = result.valid
            if args.split == "random":
                table = random_split(valid, seed=args.seed)
            else:
                table = cold_split(valid, by=args.split.removeprefix("cold_"), seed=args.seed)
            parts = {name: table[table["split"] == name] for name in ("train", "val", "test")}
            rejected = {"data": result.rejected}
        else:
            results = {
                name: _read_pairs_for_training(loc, name)
                for name, loc in (("train", args.train), ("val", args.val), ("test", args.test))
                if loc
            }
            parts = {name: r.valid for name, r in results.items()}
            rejected = {name: r.rejected for name, r in results.items()}
    except InputFileError as exc:
        _error("train", str(exc))
        return EXIT_BAD_INPUT
    except ValueError as exc:
        _error("train", str(exc))
        return EXIT_BAD_INPUT
    out.mkdir(parents=True, exist_ok=True)
    for name in ("data", "train", "val", "test"):  # this run's refused rows only: none left from an earlier run
        table = rejected.get(name)
        if table is not None and len(table):
            write_local_atomic(
                out / f"{name}_rejected.parquet", lambda handle, t=table: t.to_parquet(handle, index=False)
            )
        else:
            (out / f"{name}_rejected.parquet").unlink(missing_ok=True)
    if args.max_train_pairs:
        parts["train"] = parts["train"].sample(n=min(args.max_train_pairs, len(parts["train"])), random_state=args.seed)
    for name in ("train", "val"):
        if parts[name]["label"].nunique() < 2:
            _error("train", f"the {name} part needs both labels (has {len(parts[name])} rows)")
            return EXIT_BAD_INPUT
    configure_cpu(args.threads)
    data = {
        name: PairData.from_lists(t["smiles"].tolist(), t["protein"].tolist(), t["label"].tolist())
        for name, t in parts.items()
    }
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
    )
    sizes = ", ".join(f"{name} {len(d)}" for name, d in data.items())
    print(f"training on {sizes} pairs; device {config.device}; up to {config.epochs} epochs")

    def report(record) -> None:
        print(
            f"epoch {record.epoch:3d}  loss {record.train_loss:.4f}  val AUROC {record.val_auroc:.4f}  {record.pairs_per_s:.1f} pairs/s  {record.seconds:.0f} s",
            flush=True,
        )

    result = train(data["train"], data["val"], out, config=config, resume=args.resume, on_epoch=report)
    metrics: dict[str, object] = {
        "best_epoch": result.best_epoch,
        "best_val_auroc": result.best_val_auroc,
        "device": result.device,
        "wall_seconds": result.wall_seconds,
        "stopped_early": result.stopped_early,
        "pairs": {name: len(d) for name, d in data.items()},
        "train_config": config.to_dict(),
    }
    if "test" in data and data["test"].labels is not None and len(data["test"]):
        val_scores = sigmoid(predict_logits(result.model, data["val"], device=result.device))
        test_scores = sigmoid(predict_logits(result.model, data["test"], device=result.device))
        evaluation = evaluate(data["val"].labels.numpy(), val_scores, data["test"].labels.numpy(), test_scores)
        metrics.update({name: m.as_dict() for name, m in evaluation.items()})
        print(
            f"test AUROC {evaluation['test'].auroc:.4f}  AUPRC {evaluation['test'].auprc:.4f}  (threshold {evaluation['test'].threshold:.3f} chosen on val)"
        )
    write_local_atomic(out / "metrics.json", lambda handle: handle.write(json.dumps(metrics, indent=2).encode()))
    history = pd.DataFrame([asdict(h) for h in result.history])
    write_local_atomic(out / "history.csv", lambda handle: handle.write(history.to_csv(index=False).encode()))
    print(
        f"best epoch {result.best_epoch} (val AUROC {result.best_val_auroc:.4f}); wrote {result.best_path}, {out / 'metrics.json'}"
    )
    return EXIT_OK


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train DrugBAN on CSV/Parquet pairs (SMILES, Protein, Y)",
        description=(
            "Train DrugBAN (Adam, early stopping on validation AUROC, resumable). Give --train/--val "
            "[--test] files (DrugBAN's split files), or --data with --split to split one table. Every "
            "input is validated as by 'drugrepo validate'; rejected rows are written beside the outputs."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train", metavar="FILE", help="training pairs")
    source.add_argument("--data", metavar="FILE", help="one table to split with --split")
    parser.add_argument("--val", metavar="FILE", help="validation pairs (with --train)")
    parser.add_argument("--test", metavar="FILE", help="test pairs (with --train; optional)")
    parser.add_argument("--split", choices=("random", "cold_drug", "cold_target"), default="random")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument("--epochs", type=_positive_int, default=100)
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--lr", type=_positive_float, default=5e-5)
    parser.add_argument(
        "--patience", type=_positive_int, default=20, help="epochs without validation gain before stopping"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--max-train-pairs", type=_positive_int, default=None, help="train on a random subset of this size"
    )
    parser.add_argument(
        "--max-minutes", type=_positive_float, default=None, help="stop at the first epoch end past this time"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")

    def run(args: argparse.Namespace) -> int:
        if args.train and not args.val:
            parser.error("--train needs --val")
        return cmd_train(args)

    parser.set_defaults(func=run)


def _checkpoint_problem(path: str) -> str | None:
    """Why ``path`` cannot be a checkpoint from the file alone (missing, a folder, empty), or None."""
    checkpoint = Path(path)
    if checkpoint.is_dir():
        return "is a folder, not a file"
    if not checkpoint.exists():
        return "file not found"
    if checkpoint.stat().st_size == 0:
        return "empty file (0 bytes), not a checkpoint"
    return None


def _load_model(command: str, path: str) -> DrugBAN | None:
    """The checkpoint's model, or None after one error line ``checkpoint PATH: why`` (missing,
    empty, truncated, or not a DrugBAN checkpoint)."""
    import pickle
    import zipfile

    from drugrepo_assets.ml.model import load_checkpoint

    problem = _checkpoint_problem(path)
    if problem is None:
        try:
            return load_checkpoint(path)[0]
        except (EOFError, zipfile.BadZipFile) as exc:
            problem = f"truncated or not a checkpoint ({_first_line(exc)})"
        except pickle.UnpicklingError as exc:
            problem = f"not a checkpoint ({_first_line(exc)})"
        except OSError as exc:
            problem = f"cannot read file ({exc.strerror or _first_line(exc)})"
        except Exception as exc:  # torch and the model raise many types for a foreign file: one line, never a traceback
            detail = _first_line(exc).removeprefix(f"{path}: ")
            problem = (
                "truncated or not a checkpoint" if "zip archive" in detail else "not a DrugBAN checkpoint"
            ) + f" ({detail})"
    _error(command, f"checkpoint {path}: {problem}")
    return None


def cmd_predict(args: argparse.Namespace) -> int:
    """Score the pairs of a CSV/Parquet file or folder with a checkpoint; the output keeps every input row and column."""
    from drugrepo_assets.data.sources import InputFileError, read_source
    from drugrepo_assets.files import write_local_atomic
    from drugrepo_assets.ml.predict import score_table
    from drugrepo_assets.ml.runtime import configure_cpu

    if not _check_out("predict", args.out, folder=False):
        return EXIT_BAD_INPUT
    device = _device("predict", args.device)
    if device is None:
        return EXIT_BAD_INPUT
    try:
        location = _resolve_input(args.pairs)
        table = read_source(location, required=(args.smiles_col, args.protein_col), keep_order=True)
    except InputFileError as exc:
        _error("predict", str(exc))
        return EXIT_BAD_INPUT
    except ValueError as exc:
        _error("predict", f"{args.pairs}: {exc}")
        return EXIT_BAD_INPUT
    one_file = bool((table["source_file"] == location).all())
    sources = table[["source_file", "source_row"]]
    if one_file:  # the output is the input's own columns; a folder's rows keep their file and row
        table = table.drop(columns=["source_file", "source_row"])
    model = _load_model("predict", args.checkpoint)
    if model is None:
        return EXIT_BAD_INPUT
    configure_cpu(args.threads)
    scored = score_table(model.to(device), table, args.smiles_col, args.protein_col, args.batch_size, device)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_local_atomic(args.out, lambda handle: handle.write(scored.table.to_csv(index=False).encode()))
    print(f"scored {len(table) - scored.n_failed} of {len(table)} pairs; wrote {args.out}")
    if scored.n_failed:
        bad = scored.table["error"].to_numpy() != ""
        print(f"{scored.n_failed} rows could not be scored (logit empty, reason in column 'error'):", file=sys.stderr)
        where = sources[bad]
        for file, row, reason in list(zip(where["source_file"], where["source_row"], scored.table["error"][bad]))[:10]:
            label = file if one_file else location.rstrip("/") + "/" + file
            print(f"  {label}: row {row}: {reason}", file=sys.stderr)
        if scored.n_failed > 10:
            print(f"  ... and {scored.n_failed - 10} more", file=sys.stderr)
        if args.strict:
            return EXIT_FAILURE
    return EXIT_OK


def _add_predict(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="score (SMILES, protein) pairs with a checkpoint",
        description=(
            "Score every row of --pairs (a CSV/Parquet file, a folder of them, an http(s) URL, an s3:// "
            "key or prefix, or bundled:<dataset>/<file>) with CKPT (a drugrepo checkpoint or a reference "
            "DrugBAN state_dict). The output CSV keeps the input's rows, order and columns (a folder's "
            "rows also get source_file and source_row) and adds logit, score = sigmoid(logit) and error "
            "(why a row could not be scored; empty otherwise). Exit 2 for an unusable input, checkpoint or --out."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT")
    parser.add_argument("--pairs", required=True, metavar="LOCATION")
    parser.add_argument("--out", required=True, metavar="CSV", help="output CSV (its folder is created if needed)")
    parser.add_argument("--smiles-col", default="SMILES")
    parser.add_argument("--protein-col", default="Protein")
    parser.add_argument("--batch-size", type=_positive_int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=_positive_int, default=None)
    parser.add_argument("--strict", action="store_true", help="exit 1 when any row could not be scored")
    parser.set_defaults(func=cmd_predict)


def cmd_screen(args: argparse.Namespace) -> int:
    """Stream a library through the screening engine into a score data set; rank it or keep the top K."""
    import hashlib
    import json

    import pandas as pd
    from tqdm import tqdm

    from drugrepo_assets.data.library import count_rows, iter_library, read_checked_targets
    from drugrepo_assets.data.sources import InputFileError
    from drugrepo_assets.files import storage_path, write_bytes_atomic
    from drugrepo_assets.ml.library_screen import (
        REJECTED_COLUMNS,
        check_manifest,
        default_workers,
        known_actives,
        rejected_rows,
        screen_library,
    )
    from drugrepo_assets.ml.model import checkpoint_id
    from drugrepo_assets.ml.native import kernel_info
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.ml.scores import merge_top, part_name, rank_dataset
    from drugrepo_assets.ml.screen import ScreeningEngine, prepare_targets

    if not _check_out("screen", args.out, folder=True):
        return EXIT_BAD_INPUT
    device = _device("screen", args.device)
    if device is None:
        return EXIT_BAD_INPUT
    root = storage_path(args.out, args.s3_endpoint_url)
    try:
        targets, refused_targets = read_checked_targets(args.targets)
        known = _read_known(args.known) if args.known else None
    except InputFileError as exc:
        _error("screen", str(exc))
        return EXIT_BAD_INPUT
    model = _load_model("screen", args.checkpoint)
    if model is None:
        return EXIT_BAD_INPUT
    codes, tgt = prepare_targets(targets)
    refused_targets = pd.concat(
        [refused_targets, tgt.rejected[refused_targets.columns]], ignore_index=True
    ).sort_values("line", kind="stable")
    if not len(codes):
        _error(
            "screen",
            f"{args.targets}: no valid target ({len(refused_targets)} refused, first: line "
            f"{refused_targets['line'].iat[0]}: {refused_targets['reason'].iat[0]})",
        )
        return EXIT_BAD_INPUT
    configure_cpu(args.threads)
    engine = ScreeningEngine(model, device=device, drug_chunk=args.batch_size)
    ckpt = checkpoint_id(model)
    target_ids = tgt.kept["id"].astype(str).tolist()
    settings = {
        "library": args.library,
        "checkpoint_id": ckpt,
        "shard_size": args.shard_size,
        "top": args.top,
        "targets": hashlib.sha256(json.dumps([target_ids, codes.tolist()]).encode()).hexdigest()[:16],
    }
    try:
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
            run = screen_library(
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
    except (InputFileError, ValueError) as exc:
        _error("screen", str(exc))
        return EXIT_BAD_INPUT
    shards = [part_name(s.index) for s in run.shards]
    rejected = pd.concat(
        [
            refused_targets.assign(kind="target", file=args.targets, value=refused_targets["sequence"].str[:60])[
                REJECTED_COLUMNS
            ],
            *rejected_rows(root, shards),
        ],
        ignore_index=True,
    )
    write_bytes_atomic(root / "rejected.csv", rejected.to_csv(index=False).encode())
    if len(rejected):
        print(
            f"{run.rejected} molecules and {len(refused_targets)} targets refused and skipped; see {args.out}/rejected.csv",
            file=sys.stderr,
        )
    if not run.molecules:
        problem = (
            "no molecules"
            if not run.rejected
            else f"no molecule could be scored ({run.rejected} refused; see {args.out}/rejected.csv)"
        )
        _error("screen", f"{args.library}: {problem}")
        return EXIT_BAD_INPUT
    if args.top is not None:
        table = merge_top(root, shards, target_ids, run.molecules, args.top, ckpt)
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
    kept = f" ({run.skipped} shards kept from an earlier run)" if run.skipped else ""
    print(
        f"scored {run.pairs} pairs ({run.molecules} molecules × {len(target_ids)} targets){kept}; "
        f"pairs in {args.out}/scores/; wrote {wrote}"
    )
    return EXIT_OK


def _read_known(path: str) -> pd.DataFrame:
    """Known actives, a CSV/Parquet file or folder with ``target_id`` and ``drug_id`` columns (the
    targets' and library's ids), read as the pair tables are (an :class:`InputFileError` otherwise)."""
    from drugrepo_assets.data.sources import read_source

    return read_source(path, required=("target_id", "drug_id"))


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


def _add_screen(subparsers: argparse._SubParsersAction) -> None:
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
            "with the library; rerunning on the same OUT keeps the shards already scored."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT")
    parser.add_argument("--library", required=True, metavar="LOCATION")
    parser.add_argument("--targets", required=True, metavar="FILE")
    parser.add_argument("--out", required=True, metavar="DIR")
    parser.add_argument(
        "--top", type=_positive_int, default=None, metavar="K", help="keep the best K per target (else rank every pair)"
    )
    parser.add_argument(
        "--known",
        default=None,
        metavar="CSV",
        help="known actives (target_id,drug_id): report EF 1%%/5%%, BEDROC and AUROC per target",
    )
    parser.add_argument(
        "--shard-size",
        type=_positive_int,
        default=50_000,
        metavar="N",
        help="molecules per shard (the unit of resumption)",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="W",
        help="featurisation processes (default: one per core)",
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=1024, metavar="B", help="molecules scored per engine call"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=_positive_int, default=None)
    parser.add_argument("--s3-endpoint-url", default=None, metavar="URL", help="S3-compatible endpoint (MinIO, ...)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=cmd_screen)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the prediction API; settings from DRUGREPO_* variables, the flags override them."""
    from pydantic import ValidationError

    from drugrepo_assets.api.settings import ServingSettings

    overrides = {
        k: v
        for k, v in {
            "checkpoint": args.checkpoint,
            "model_uri": args.model_uri,
            "host": args.host,
            "port": args.port,
            "torch_threads": args.threads,
        }.items()
        if v is not None
    }
    try:
        settings = ServingSettings(**overrides)
    except ValidationError as exc:
        _error("serve", str(exc).splitlines()[0])
        return EXIT_BAD_INPUT
    if settings.checkpoint and not Path(settings.checkpoint).is_file():
        _error("serve", f"{settings.checkpoint}: file not found")
        return EXIT_BAD_INPUT
    if not settings.keys():
        _error("serve", "no API key: set DRUGREPO_API_KEYS (comma-separated)")
        return EXIT_BAD_INPUT
    from drugrepo_assets.api.server import serve

    serve(settings)
    return EXIT_OK


def _add_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the prediction API (FastAPI + uvicorn)",
        description=(
            "Serve POST /v1/predict and /v1/screen with a checkpoint file, an MLflow model URI, or by "
            "default the registry alias models:/$DRUGREPO_MODEL_NAME@champion of $MLFLOW_TRACKING_URI. "
            "Keys come from DRUGREPO_API_KEYS; the other settings from DRUGREPO_* (see README, Serving)."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default=None, metavar="CKPT", help="serve this checkpoint file")
    source.add_argument(
        "--model-uri", default=None, metavar="URI", help="an MLflow model URI (models:/name@alias, ...)"
    )
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default 8000)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    parser.set_defaults(func=cmd_serve)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Move a registry alias back to the version it named before (or to --to-version)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from drugrepo_assets.serving.registry import RegistryError, rollback

    client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    try:
        moved = rollback(client, args.model, args.alias, args.to_version)
    except (RegistryError, MlflowException) as exc:
        _error("rollback", str(exc).splitlines()[0])
        return EXIT_FAILURE
    print(f"{args.model}@{args.alias}: version {moved.from_version} -> {moved.to_version}")
    return EXIT_OK


def _add_rollback(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="move a model registry alias (champion) back to the previous version",
        description="Point MODEL@ALIAS at the version it named before its last promotion, or at --to-version.",
    )
    parser.add_argument("--model", required=True, help="registered model name, e.g. drugban-human")
    parser.add_argument("--alias", default="champion")
    parser.add_argument("--to-version", default=None, metavar="V", help="version to move the alias to")
    parser.add_argument("--tracking-uri", default=None, help="default $MLFLOW_TRACKING_URI")
    parser.set_defaults(func=cmd_rollback)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_validate,
    _add_train,
    _add_predict,
    _add_screen,
    _add_serve,
    _add_rollback,
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand (see ``SUBCOMMANDS``)."""
    parser = argparse.ArgumentParser(
        prog="drugrepo", description="Drug repurposing with DrugBAN: data, training and screening."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``drugrepo`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
