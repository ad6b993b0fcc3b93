"""The ``drugrepo`` command line: a thin layer over the core, one module per command.

Each command module (``validate``, ``split``, ``train``, ``export_features``, ``predict``, ``screen``, ``serve``,
``import_checkpoint``, ``rollback``, ``info``) has ``add_parser(subparsers)``, which registers the command and its
``run(args) -> int`` (`common.add_command`); a run refuses by raising `common.CommandError`, which ``add_command``
alone turns into the one error line and the exit code. What the commands share is in ``common``. Every command reads what the others write: pair tables as CSV or
Parquet under our column names or the reference's (`data.columns`), checkpoints from ``train``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from drugrepo_assets.cli import (
    export_features,
    import_checkpoint,
    info,
    predict,
    rollback,
    screen,
    serve,
    split,
    train,
    validate,
)
from drugrepo_assets.cli.common import EXIT_BAD_INPUT, Subparsers

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    validate.add_parser,
    split.add_parser,
    train.add_parser,
    export_features.add_parser,
    predict.add_parser,
    screen.add_parser,
    serve.add_parser,
    import_checkpoint.add_parser,
    rollback.add_parser,
    info.add_parser,
)
"""Each command's registration, in the order ``drugrepo --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every command of ``COMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="drugrepo", description="Drug repurposing with DrugBAN: data, training and screening."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
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
