"""The ``drugrepo`` command line: one subcommand per task (``validate`` now; more register the same way).

Heavy libraries (pandas, RDKit, torch) are imported inside the command functions so that
``drugrepo --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

__all__ = ["build_parser", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

_BUNDLED_PREFIX = "bundled:"


def _error(command: str, message: str) -> None:
    print(f"drugrepo {command}: error: {message}", file=sys.stderr)


def _resolve_input(text: str) -> str:
    if text.startswith(_BUNDLED_PREFIX):
        from drugrepo_assets.data.sources import dataset_location

        return dataset_location("bundled", text[len(_BUNDLED_PREFIX):])
    return text


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate INPUT into DIR/valid.parquet and DIR/rejected.parquet and print the counts."""
    from drugrepo_assets.data.sources import InputFileError, read_source
    from drugrepo_assets.data.validate import REASON_CODES, validate_pairs, write_result

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


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_validate]


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
