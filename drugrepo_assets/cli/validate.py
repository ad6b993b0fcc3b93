"""``drugrepo validate``: split pairs into ``valid.parquet`` and ``rejected.parquet``, print the counts."""

from __future__ import annotations

import argparse

from drugrepo_assets.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    add_s3_endpoint,
    check_out,
    error,
    read_input_pairs,
)

__all__ = ["add_parser", "run"]

_WRITES = ("valid.parquet", "rejected.parquet")
"""What validate writes under --out (`data.validate.write_result`): never an input."""


def run(args: argparse.Namespace) -> int:
    """Validate INPUT into OUT/valid.parquet and OUT/rejected.parquet and print the counts."""
    from drugrepo_assets.data.validate import REASON_CODES, validate_pairs, write_result
    from drugrepo_assets.files import uri_of

    if not check_out("validate", args.out, folder=True, inputs=(args.input,), writes=_WRITES):
        return EXIT_BAD_INPUT
    read = read_input_pairs("validate", args.input, args.s3_endpoint_url)
    if read is None:
        return EXIT_BAD_INPUT
    location, raw = read
    result = validate_pairs(raw)
    try:
        written = write_result(result, args.out, s3_endpoint_url=args.s3_endpoint_url)
    except OSError as exc:
        error("validate", f"{args.out}: cannot write output ({exc.strerror or exc})")
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
    for path in written:
        print(f"wrote {uri_of(path)}")
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``validate``."""
    parser = subparsers.add_parser(
        "validate",
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
    parser.set_defaults(func=run)
