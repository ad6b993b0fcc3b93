"""``drugrepo export-features``: a split's featurised pairs as Parquet (`ml.features.exported`), for training without RDKit."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from drugrepo_assets.cli.common import (
    EXIT_OK,
    Subparsers,
    add_command,
    add_pair_inputs,
    add_s3_endpoint,
    check_local_out,
    pair_inputs_problem,
    read_input_pairs,
    refused,
    writing_output,
)

if TYPE_CHECKING:
    import pandas as pd

    from drugrepo_assets.location import Location

__all__ = ["add_parser", "run"]

COMMAND = "export-features"


def _valid(location: Location | str, name: str) -> pd.DataFrame:
    """One input's valid pairs (its refused rows counted on stdout); refused (exit 2) when unreadable."""
    from drugrepo_assets.data.validate import validate_pairs

    result = validate_pairs(read_input_pairs(location)[1])
    if result.counts["rejected"]:
        print(f"{name}: {result.counts['rejected']} of {result.counts['input_rows']} rows rejected (not exported)")
    return result.valid


def _parts(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    """The valid pairs of each part: the given files, or ``--data`` split by ``--split``."""
    from drugrepo_assets.data.splits import split_pairs, split_parts
    from drugrepo_assets.location import Location

    if args.data:
        data = _valid(Location.of(args.data, args.s3_endpoint_url), "data")
        return split_parts(split_pairs(data, args.split, seed=args.seed))
    parts = {}
    for name, location in (("train", args.train), ("val", args.val), ("test", args.test)):
        if location:
            parts[name] = _valid(Location.of(location, args.s3_endpoint_url), name)
    return parts


def run(args: argparse.Namespace) -> int:
    """Validate and split the inputs as ``drugrepo train`` does, featurise them once and write OUT (`ml.features.exported`)."""
    from pathlib import Path

    from drugrepo_assets.ml.features.exported import DRUGS, MANIFEST, PROTEINS, export_parts

    parts_named = ("train", "val", "test")
    writes = (MANIFEST, DRUGS, PROTEINS, *(f"{name}.parquet" for name in parts_named))
    check_local_out(args.out, (args.data, args.train, args.val, args.test), writes)
    parts = _parts(args)
    with refused(ValueError), writing_output(args.out):
        counts = export_parts(parts, Path(args.out))
    sizes = ", ".join(f"{name} {counts[name]}" for name in parts)
    print(f"pairs: {sizes}; {counts['drugs']} molecules, {counts['proteins']} proteins")
    print(f"wrote {Path(args.out) / MANIFEST} and its tables")
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``export-features``."""
    parser = add_command(
        subparsers,
        COMMAND,
        run,
        usage=pair_inputs_problem,
        help="featurise a split once and write it as Parquet, for training where RDKit is not installed",
        description=(
            "Read and validate pairs as 'drugrepo train' does (--train/--val [--test], or --data with --split), "
            "featurise each unique molecule (the compact drug encoding) and protein (DrugBAN's codes) once, and "
            "write OUT/manifest.json, OUT/drugs.parquet, OUT/proteins.parquet and OUT/<part>.parquet (drug_id, "
            "target_id, label). drugrepo_assets.ml.features.exported.read_parts reads the folder back as training pairs "
            "with torch, numpy and pyarrow alone. Refused rows are counted, not exported. Exit status 0 when "
            "written, 2 when an input was unreadable or OUT may not be written, 1 when writing failed."
        ),
    )
    add_pair_inputs(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the --data split (default 0)")
    parser.add_argument("--out", required=True, metavar="DIR", help="a local folder (created if needed)")
    add_s3_endpoint(parser)
