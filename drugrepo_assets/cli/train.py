"""``drugrepo train``: read and validate pairs, split them when asked, and run `ml.pipeline.train_and_evaluate`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from drugrepo_assets.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_OK,
    Subparsers,
    add_s3_endpoint,
    check_local_out,
    error,
    positive_float,
    positive_int,
    resolve_input,
    torch_device,
)

if TYPE_CHECKING:
    import pandas as pd

    from drugrepo_assets.data.validate import ValidationResult
    from drugrepo_assets.ml.pipeline import Evaluation
    from drugrepo_assets.ml.train import EpochRecord, TrainConfig, TrainResult

__all__ = ["add_parser", "run", "split_strategy"]

_INPUTS = ("data", "train", "val", "test")


def _validated(location: str, name: str, s3_endpoint_url: str | None) -> ValidationResult:
    """One input read (either column naming) and validated; its refused rows are counted, never dropped silently."""
    from drugrepo_assets.data.columns import read_pairs
    from drugrepo_assets.data.validate import validate_pairs

    result = validate_pairs(read_pairs(resolve_input(location), s3_endpoint_url=s3_endpoint_url))
    if result.counts["rejected"]:
        print(
            f"{name}: {result.counts['rejected']} of {result.counts['input_rows']} rows rejected "
            f"(see {name}_rejected.parquet)"
        )
    return result


def _read_parts(args: argparse.Namespace) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The valid pairs of each part (train, val and maybe test) and the refused rows of each input."""
    from drugrepo_assets.data.splits import split_pairs, split_parts

    if args.data:
        result = _validated(args.data, "data", args.s3_endpoint_url)
        parts = split_parts(split_pairs(result.valid, args.split, seed=args.seed))
        return parts, {"data": result.rejected}
    given = {"train": args.train, "val": args.val, "test": args.test}
    results = {name: _validated(where, name, args.s3_endpoint_url) for name, where in given.items() if where}
    return {name: r.valid for name, r in results.items()}, {name: r.rejected for name, r in results.items()}


def _write_parquet(path: Path, table: pd.DataFrame) -> None:
    from drugrepo_assets.files import write_local_atomic

    write_local_atomic(path, lambda handle: table.to_parquet(handle, index=False))


def _write_rejected(out: Path, rejected: dict[str, pd.DataFrame]) -> None:
    """This run's refused rows per input; a file of an earlier run with nothing refused now is removed."""
    for name in _INPUTS:
        table = rejected.get(name)
        path = out / f"{name}_rejected.parquet"
        if table is not None and len(table):
            _write_parquet(path, table)
        else:
            path.unlink(missing_ok=True)


def _report(record: EpochRecord) -> None:
    print(
        f"epoch {record.epoch:3d}  loss {record.train_loss:.4f}  val AUROC {record.val_auroc:.4f}  "
        f"{record.pairs_per_s:.1f} pairs/s  {record.seconds:.0f} s",
        flush=True,
    )


def _metrics(
    result: TrainResult, evaluation: Evaluation | None, config: TrainConfig, pairs: dict[str, int]
) -> dict[str, object]:
    """metrics.json: the run, its checkpoint id and, with test pairs, the probability threshold chosen on validation."""
    from drugrepo_assets.ml.model import checkpoint_id

    metrics: dict[str, object] = {
        "checkpoint_id": checkpoint_id(result.model),
        "best_epoch": result.best_epoch,
        "best_val_auroc": result.best_val_auroc,
        "device": result.device,
        "wall_seconds": result.wall_seconds,
        "stopped_early": result.stopped_early,
        "pairs": pairs,
        "train_config": config.to_dict(),
        "threshold": None if evaluation is None else evaluation.threshold,
    }
    if evaluation is not None:
        metrics.update({name: m.as_dict() for name, m in evaluation.metrics.items()})
        metrics["calibration"] = {name: c.as_dict() for name, c in evaluation.calibration().items()}
    return metrics


def run(args: argparse.Namespace) -> int:
    """Train DrugBAN from pairs; write best.pt, last.pt, metrics.json, history.csv and the refused rows."""
    import json
    from dataclasses import asdict

    import pandas as pd

    from drugrepo_assets.data.sources import InputFileError
    from drugrepo_assets.files import write_local_atomic
    from drugrepo_assets.ml.pipeline import pair_data, train_and_evaluate
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.ml.train import TrainConfig
    from drugrepo_assets.screening.domain import REFERENCE_SUFFIX, record_reference

    out = Path(args.out)
    inputs = (args.data, args.train, args.val, args.test)
    writes = (
        "best.pt",
        f"best.pt{REFERENCE_SUFFIX}",
        "last.pt",
        "metrics.json",
        "history.csv",
        *(f"{name}_rejected.parquet" for name in _INPUTS),
    )
    if not check_local_out("train", args.out, inputs, writes) or torch_device("train", args.device) is None:
        return EXIT_BAD_INPUT
    try:
        parts, rejected = _read_parts(args)
    except (InputFileError, ValueError) as exc:
        error("train", str(exc))
        return EXIT_BAD_INPUT
    out.mkdir(parents=True, exist_ok=True)
    _write_rejected(out, rejected)
    if args.max_train_pairs:
        parts["train"] = parts["train"].sample(n=min(args.max_train_pairs, len(parts["train"])), random_state=args.seed)
    for name in ("train", "val"):
        if parts[name]["label"].nunique() < 2:
            error("train", f"the {name} part needs both labels (has {len(parts[name])} rows)")
            return EXIT_BAD_INPUT
    configure_cpu(args.threads)
    data = {name: pair_data(table) for name, table in parts.items()}
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
    record_reference(out / "best.pt", parts["train"])  # before best.pt, so a checkpoint never lacks its reference
    result, evaluation = train_and_evaluate(data, out, config, resume=args.resume, on_epoch=_report)
    metrics = _metrics(result, evaluation, config, {name: len(d) for name, d in data.items()})
    if evaluation is not None:
        test = evaluation.metrics["test"]
        print(
            f"test AUROC {test.auroc:.4f}  AUPRC {test.auprc:.4f}  "
            f"(probability threshold {evaluation.threshold:.3f} chosen on val)"
        )
    write_local_atomic(out / "metrics.json", lambda handle: handle.write(json.dumps(metrics, indent=2).encode()))
    history = pd.DataFrame([asdict(h) for h in result.history])
    write_local_atomic(out / "history.csv", lambda handle: handle.write(history.to_csv(index=False).encode()))
    print(
        f"best epoch {result.best_epoch} (val AUROC {result.best_val_auroc:.4f}); checkpoint {metrics['checkpoint_id']}; "
        f"wrote {result.best_path}, {out / 'metrics.json'}"
    )
    return EXIT_OK


def split_strategy(text: str) -> str:
    """An argparse type: one of `data.splits.SPLIT_STRATEGIES` (imported only when ``--split`` is given,
    so that ``drugrepo --help`` does not load pandas)."""
    from drugrepo_assets.data.splits import SPLIT_STRATEGIES

    if text not in SPLIT_STRATEGIES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(SPLIT_STRATEGIES)}")
    return text


def add_parser(subparsers: Subparsers) -> None:
    """Register ``train``."""
    parser = subparsers.add_parser(
        "train",
        help="train DrugBAN on CSV/Parquet pairs (SMILES, Protein, Y or smiles, protein, label)",
        description=(
            "Train DrugBAN (Adam, early stopping on validation AUROC, resumable). Give --train/--val "
            "[--test] (DrugBAN's split files, or 'drugrepo validate' outputs), or --data with --split to "
            "split one table. Inputs are read and validated as by 'drugrepo validate' (files, folders, "
            "URLs, s3://); rejected rows are written beside the outputs. OUT gets best.pt (for predict, "
            "screen and serve), best.pt.domain.parquet (its training drugs and targets, the applicability "
            "domain of screens), last.pt, history.csv and metrics.json (checkpoint_id, and with --test "
            "the probability threshold chosen on validation and the val/test metrics at it)."
        ),
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train", metavar="FILE", help="training pairs")
    source.add_argument("--data", metavar="FILE", help="one table to split with --split")
    parser.add_argument("--val", metavar="FILE", help="validation pairs (with --train)")
    parser.add_argument("--test", metavar="FILE", help="test pairs (with --train; optional)")
    parser.add_argument(
        "--split",
        type=split_strategy,
        default="random",
        metavar="STRATEGY",
        help="how --data is split: random (default), cold_drug or cold_target",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="a local folder (created if needed)")
    parser.add_argument("--epochs", type=positive_int, default=100)
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--lr", type=positive_float, default=5e-5)
    parser.add_argument(
        "--patience", type=positive_int, default=20, help="epochs without validation gain before stopping"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--max-train-pairs", type=positive_int, default=None, help="train on a random subset of this size"
    )
    parser.add_argument(
        "--max-minutes", type=positive_float, default=None, help="stop at the first epoch end past this time"
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    add_s3_endpoint(parser)

    def run_checked(args: argparse.Namespace) -> int:
        if args.train and not args.val:
            parser.error("--train needs --val")
        return run(args)

    parser.set_defaults(func=run_checked)
