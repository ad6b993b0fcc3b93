"""``drugrepo train``: read and validate pairs, split them when asked, and run `ml.training.pipeline.train_and_evaluate`
(with ``--da cdan``, CDAN on unlabelled target-domain pairs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from drugrepo_assets.cli.common import (
    EXIT_OK,
    CommandError,
    Subparsers,
    add_command,
    add_pair_inputs,
    add_s3_endpoint,
    add_torch_options,
    check_local_out,
    pair_inputs_problem,
    positive_float,
    positive_int,
    refused,
    resolve_input,
    torch_device,
    unreadable_input,
)
from drugrepo_assets.ml.training.train_config import CDAN_BATCH_SIZE, CDAN_LR, CDANConfig, TrainConfig

if TYPE_CHECKING:
    import pandas as pd

    from drugrepo_assets.data.validate import ValidationResult
    from drugrepo_assets.location import Location
    from drugrepo_assets.ml.model.model_config import DrugBANConfig
    from drugrepo_assets.ml.training.pipeline import Evaluation
    from drugrepo_assets.ml.training.train import EpochRecord, TrainResult

__all__ = ["add_parser", "run"]

_INPUTS = ("data", "train", "val", "test", "target_train")
_DA_METHODS = ("cdan",)
"""The domain adaptation methods of ``--da`` (the reference's ``DA.METHOD``: CDAN)."""


def _validated(location: Location | str, name: str) -> ValidationResult:
    """One input read (either column naming) and validated; its refused rows are counted, never dropped silently."""
    from drugrepo_assets.data.columns import read_pairs
    from drugrepo_assets.data.validate import validate_pairs
    from drugrepo_assets.location import as_location

    where = as_location(location)
    result = validate_pairs(read_pairs(where.at(resolve_input(where.text))))
    if result.counts["rejected"]:
        print(
            f"{name}: {result.counts['rejected']} of {result.counts['input_rows']} rows rejected "
            f"(see {name}_rejected.parquet)"
        )
    return result


def _unlabelled(location: Location | str, name: str) -> ValidationResult:
    """Target-domain pairs read for their SMILES and protein only (a label column, if any, is ignored) and
    validated as `_validated` does; its refused rows are written without a label."""
    import pandas as pd

    from drugrepo_assets.data.columns import coalesce_pair_columns
    from drugrepo_assets.data.sources import read_source
    from drugrepo_assets.data.validate import validate_pairs
    from drugrepo_assets.location import as_location

    given = as_location(location)
    where = given.at(resolve_input(given.text))
    read = read_source(where, required=())
    table, names = coalesce_pair_columns(read, where.text, ("SMILES", "Protein"))
    raw = pd.DataFrame({"SMILES": table[names["SMILES"]], "Protein": table[names["Protein"]], "Y": "0"})
    for column in ("source_file", "source_row"):
        if column in table.columns:
            raw[column] = table[column].to_numpy()
    result = validate_pairs(raw)  # Y = 0 stands in for the label it does not read
    result.rejected["Y"] = None
    if result.counts["rejected"]:
        print(
            f"{name}: {result.counts['rejected']} of {result.counts['input_rows']} rows rejected "
            f"(see {name}_rejected.parquet)"
        )
    return result


def _split_dir_files(folder: str) -> dict[str, str]:
    """The files `drugrepo split` writes into ``folder``, by part (`data.splits.REFERENCE_FILES`)."""
    from drugrepo_assets.data.splits import REFERENCE_FILES

    return {part: f"{folder.rstrip('/')}/{name}" for part, name in REFERENCE_FILES.items()}


def _read_parts(args: argparse.Namespace) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """The valid pairs of each part (train, val, maybe test and, with ``--da``, target_train) and the
    refused rows of each input."""
    from drugrepo_assets.data.splits import TARGET_TRAIN, split_pairs, split_parts
    from drugrepo_assets.location import Location

    if args.data:
        result = _validated(Location.of(args.data, args.s3_endpoint_url), "data")
        table = split_pairs(result.valid, args.split, seed=args.seed)
        parts = split_parts(table)
        if args.da and not args.target_train:
            parts[TARGET_TRAIN] = table[table["split"] == TARGET_TRAIN].reset_index(drop=True)
        rejected = {"data": result.rejected}
    else:
        given = {"train": args.train, "val": args.val, "test": args.test}
        if args.cluster_split:
            files = _split_dir_files(args.cluster_split)
            given = {name: files[name] for name in given}
            if args.da and not args.target_train:
                args.target_train = files[TARGET_TRAIN]
        results = {
            name: _validated(Location.of(where, args.s3_endpoint_url), name) for name, where in given.items() if where
        }
        parts = {name: r.valid for name, r in results.items()}
        rejected = {name: r.rejected for name, r in results.items()}
    if args.da and args.target_train:
        target = _unlabelled(Location.of(args.target_train, args.s3_endpoint_url), TARGET_TRAIN)
        parts[TARGET_TRAIN], rejected[TARGET_TRAIN] = target.valid, target.rejected
    return parts, rejected


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
    result: TrainResult,
    evaluation: Evaluation | None,
    config: TrainConfig,
    pairs: dict[str, int],
    da: CDANConfig | None = None,
    cross_domain: bool = False,
) -> dict[str, object]:
    """metrics.json: the run, its checkpoint id and, with test pairs, the probability threshold chosen on
    validation; a cross-domain run (``--da``, or a cluster split) names its val AUROC the source domain's
    and its test AUROC the target domain's."""
    from drugrepo_assets.ml.model.checkpoint import checkpoint_id

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
    if da is not None:
        metrics["da"] = {"method": "cdan", **da.to_dict()}
    if evaluation is not None:
        metrics.update({name: m.as_dict() for name, m in evaluation.metrics.items()})
        metrics["calibration"] = {name: c.as_dict() for name, c in evaluation.calibration().items()}
        if cross_domain:
            metrics["source_val_auroc"] = evaluation.metrics.val.auroc
            metrics["target_test_auroc"] = evaluation.metrics.test.auroc
    return metrics


def _problem(args: argparse.Namespace) -> str | None:
    """Why the options given do not make a run (checked before anything is read), or None."""
    if args.target_train and not args.da:
        return "--target-train needs --da cdan (the target pairs are for domain adaptation)"
    if args.da and not (args.target_train or args.cluster_split or (args.data and args.split == "cluster")):
        return "--da cdan needs unlabelled target-domain pairs: --target-train FILE, --cluster-split DIR or --split cluster"
    return None


def _configs(args: argparse.Namespace) -> tuple[TrainConfig, CDANConfig | None]:
    """The training settings; with ``--da cdan`` the reference's DA defaults (configs/DrugBAN_DA.yaml) where
    ``--lr``/``--batch-size`` are not given."""
    da = None
    lr, batch_size = TrainConfig.lr, TrainConfig.batch_size
    if args.da:
        da = CDANConfig(init_epoch=args.da_init_epoch or CDANConfig.init_epoch)
        lr, batch_size = CDAN_LR, CDAN_BATCH_SIZE
    config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size or batch_size,
        lr=args.lr or lr,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
    )
    return config, da


def _model_config(width: int | None) -> DrugBANConfig | None:
    """The model of ``--model-width`` (`DrugBANConfig.of_width`), None for the reference's; refused when the checkpoint
    format would not hold it."""
    from drugrepo_assets.ml.model.model_config import DrugBANConfig

    if width is None:
        return None
    try:
        return DrugBANConfig.of_width(width)
    except ValueError as exc:
        raise CommandError(f"--model-width {width}: {exc}") from None


def _parts_to_train(args: argparse.Namespace, out: Path) -> dict[str, pd.DataFrame]:
    """The parts read, validated (their refused rows written to ``out``) and capped; refused (exit 2) when they
    do not make a training."""
    from drugrepo_assets.data.splits import TARGET_TRAIN

    with unreadable_input():
        parts, rejected = _read_parts(args)
    out.mkdir(parents=True, exist_ok=True)
    _write_rejected(out, rejected)
    if args.max_train_pairs:
        for name in ("train", TARGET_TRAIN):
            if name in parts:
                table = parts[name]
                parts[name] = table.sample(n=min(args.max_train_pairs, len(table)), random_state=args.seed)
    for name in ("train", "val"):
        if parts[name]["label"].nunique() < 2:
            raise CommandError(f"the {name} part needs both labels (has {len(parts[name])} rows)")
    if args.da and not len(parts[TARGET_TRAIN]):
        raise CommandError(f"{args.target_train or 'the cluster split'}: no valid target-domain pairs to adapt to")
    return parts


def _write_outputs(
    out: Path, result: TrainResult, evaluation: Evaluation | None, metrics: dict[str, object], cross_domain: bool
) -> None:
    """Report the test metrics, write metrics.json and history.csv, and name the checkpoint."""
    import json
    from dataclasses import asdict

    import pandas as pd

    from drugrepo_assets.files import write_local_atomic

    if evaluation is not None:
        test = evaluation.metrics.test
        domain = "target-domain " if cross_domain else ""
        print(
            f"{domain}test AUROC {test.auroc:.4f}  AUPRC {test.auprc:.4f}  "
            f"(probability threshold {evaluation.threshold:.3f} chosen on val)"
        )
    write_local_atomic(out / "metrics.json", lambda handle: handle.write(json.dumps(metrics, indent=2).encode()))
    history = pd.DataFrame([asdict(h) for h in result.history])
    write_local_atomic(out / "history.csv", lambda handle: handle.write(history.to_csv(index=False).encode()))
    print(
        f"best epoch {result.best_epoch} (val AUROC {result.best_val_auroc:.4f}); checkpoint {metrics['checkpoint_id']}; "
        f"wrote {result.best_path}, {out / 'metrics.json'}"
    )


def run(args: argparse.Namespace) -> int:
    """Train DrugBAN from pairs; write best.pt, last.pt, metrics.json, history.csv and the refused rows."""
    from drugrepo_assets.data.splits import TARGET_TRAIN
    from drugrepo_assets.ml.model.checkpoint import CheckpointError
    from drugrepo_assets.ml.runtime import configure_cpu
    from drugrepo_assets.ml.training.pipeline import pair_data, train_and_evaluate
    from drugrepo_assets.screening.domain import REFERENCE_SUFFIX, record_reference

    out = Path(args.out)
    inputs = (args.data, args.train, args.val, args.test, args.target_train, args.cluster_split)
    writes = (
        "best.pt",
        f"best.pt{REFERENCE_SUFFIX}",
        "last.pt",
        "metrics.json",
        "history.csv",
        *(f"{name}_rejected.parquet" for name in _INPUTS),
    )
    check_local_out(args.out, inputs, writes)
    torch_device(args.device)
    if (problem := _problem(args)) is not None:
        raise CommandError(problem)
    parts = _parts_to_train(args, out)
    configure_cpu(args.threads)
    target = pair_data(parts.pop(TARGET_TRAIN), labelled=False) if args.da else None
    data = {name: pair_data(table) for name, table in parts.items() if name != TARGET_TRAIN}
    config, da = _configs(args)
    model_config = _model_config(args.model_width)
    sizes = ", ".join(f"{name} {len(d)}" for name, d in data.items())
    adapt = (
        "" if target is None else f"; CDAN on {len(target)} unlabelled target pairs from epoch {da and da.init_epoch}"
    )
    print(f"training on {sizes} pairs; device {config.device}; up to {config.epochs} epochs{adapt}")
    record_reference(out / "best.pt", parts["train"])  # before best.pt, so a checkpoint never lacks its reference
    with refused(CheckpointError):  # a last.pt that is not this kind of run's
        result, evaluation = train_and_evaluate(
            data, out, config, model_config, resume=args.resume, on_epoch=_report, da=da, target_data=target
        )
    cross_domain = da is not None or bool(args.cluster_split) or (bool(args.data) and args.split == "cluster")
    metrics = _metrics(result, evaluation, config, {name: len(d) for name, d in data.items()}, da, cross_domain)
    _write_outputs(out, result, evaluation, metrics, cross_domain)
    return EXIT_OK


def _add_domain_adaptation(parser: argparse.ArgumentParser, source: argparse._MutuallyExclusiveGroup) -> None:
    """The CDAN options: --cluster-split (a source of its own, in ``source``), --da, --target-train, --da-init-epoch."""
    source.add_argument(
        "--cluster-split",
        metavar="DIR",
        help="a folder 'drugrepo split' wrote: source_train/source_val for training, target_test for test, "
        "target_train (unlabelled) for --da",
    )
    parser.add_argument(
        "--da",
        choices=_DA_METHODS,
        default=None,
        help="domain adaptation: cdan (DrugBAN's CDAN, on unlabelled target-domain pairs)",
    )
    parser.add_argument(
        "--target-train",
        metavar="FILE",
        help="target-domain pairs for --da (SMILES and protein; a label column is ignored)",
    )
    parser.add_argument(
        "--da-init-epoch",
        type=positive_int,
        default=None,
        help=(
            f"first epoch with the domain loss (default {CDANConfig.init_epoch}, the reference's; earlier epochs "
            "train the classifier only)"
        ),
    )


def _add_training_settings(parser: argparse.ArgumentParser) -> None:
    """How to train: epochs, batch size, lr, patience, seed and device (defaults `TrainConfig`'s), threads, caps, resume."""
    parser.add_argument(
        "--epochs", type=positive_int, default=TrainConfig.epochs, help="epochs at most (default %(default)s)"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help=f"default {TrainConfig.batch_size} ({CDAN_BATCH_SIZE} with --da cdan)",
    )
    parser.add_argument(
        "--lr", type=positive_float, default=None, help=f"default {TrainConfig.lr:g} ({CDAN_LR:g} with --da cdan)"
    )
    parser.add_argument(
        "--patience",
        type=positive_int,
        default=TrainConfig.patience,
        help="epochs without validation gain before stopping (default %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=TrainConfig.seed, help="default %(default)s")
    add_torch_options(parser)
    parser.add_argument(
        "--max-train-pairs",
        type=positive_int,
        default=None,
        help="train on a random subset of this size (of the target pairs too, with --da)",
    )
    parser.add_argument(
        "--max-minutes", type=positive_float, default=None, help="stop at the first epoch end past this time"
    )
    parser.add_argument(
        "--model-width",
        type=positive_int,
        default=None,
        metavar="N",
        help="width of every layer: the reference DrugBAN's shape scaled (default: the reference's 128; e.g. 32 "
        "trains a first look about 16x faster)",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")


def add_parser(subparsers: Subparsers) -> None:
    """Register ``train``."""
    parser = add_command(
        subparsers,
        "train",
        run,
        usage=pair_inputs_problem,
        help="train DrugBAN (or with --da cdan, DrugBAN with CDAN) on CSV/Parquet pairs",
        description=(
            "Train DrugBAN (Adam, early stopping on validation AUROC, resumable). Give --train/--val "
            "[--test] (DrugBAN's split files, or 'drugrepo validate' outputs), or --data with --split to "
            "split one table. Inputs are read and validated as by 'drugrepo validate' (files, folders, "
            "URLs, s3://); rejected rows are written beside the outputs. OUT gets best.pt (for predict, "
            "screen and serve), best.pt.domain.parquet (its training drugs and targets, the applicability "
            "domain of screens), last.pt, history.csv and metrics.json (checkpoint_id, and with --test "
            "the probability threshold chosen on validation and the val/test metrics at it). With --da cdan "
            "(and --target-train, --cluster-split or --split cluster) the training is CDAN's; metrics.json "
            "then also names source_val_auroc and target_test_auroc."
        ),
    )
    _add_domain_adaptation(parser, add_pair_inputs(parser))
    parser.add_argument("--out", required=True, metavar="DIR", help="a local folder (created if needed)")
    _add_training_settings(parser)
    add_s3_endpoint(parser)
