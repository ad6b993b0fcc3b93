"""``drugrepo validate``: split pairs into ``valid.parquet`` and ``rejected.parquet``, print the counts."""

from __future__ import annotations

import argparse

from drugrepo_assets.cli.common import (
    EXIT_OK,
    Subparsers,
    add_command,
    add_s3_endpoint,
    check_out,
    read_input_pairs,
    writing_output,
)

__all__ = ["add_parser", "run"]

_WRITES = ("valid.parquet", "rejected.parquet")
"""What validate writes under --out (`data.validate.write_result`): never an input."""


def run(args: argparse.Namespace) -> int:
    """Validate INPUT into OUT/valid.parquet and OUT/rejected.parquet and print the counts."""
    from drugrepo_assets.data.validate import REASON_CODES, validate_pairs, write_result
    from drugrepo_assets.files import uri_of
    from drugrepo_assets.location import Location

    check_out(args.out, folder=True, inputs=(args.input,), writes=_WRITES)
    location, raw = read_input_pairs(Location.of(args.input, args.s3_endpoint_url))
    result = validate_pairs(raw)
    with writing_output(args.out):
        written = write_result(result, Location.of(args.out, args.s3_endpoint_url))
    counts = result.counts
    files = raw["source_file"].nunique()
    print(f"input: {location} ({files} file{'s' if files != 1 else ''})")
    print(f"rows read: {counts['input_rows']}")
    print(f"valid: {counts['valid']}")
    print(f"rejected: {counts['rejected']}")
    for code in REASON_CODES:
        if counts[code]:
            print(f"  {code}: {counts[code]}")
    for path in written:
        print(f"wrote {uri_of(path)}")
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``validate``."""
    parser = add_command(
        subparsers,
        "validate",
        run,
        help="check drug–target pairs and split them into valid and rejected tables",
        description=(
            "Read INPUT (a CSV/Parquet file, a folder, an http(s) URL, an s3:// key or prefix, or "
            "bundled:<dataset>) with columns SMILES, Protein, Y (or smiles, protein, label, as this "
            "command writes them), validate every row and write OUT/valid.parquet and "
            "OUT/rejected.parquet (OUT: a folder or an s3:// prefix). Exit status 0 when the input "
            "was readable (even with rejected rows), 2 when it was not."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="file, folder, URL, S3 URI or bundled:<dataset>")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder or s3:// prefix (created if needed)")
    add_s3_endpoint(parser)
