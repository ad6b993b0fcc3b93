"""``drugrepo import-checkpoint``: a reference DrugBAN state_dict written as our checkpoint, which records its id.

A bare reference ``state_dict`` (as the reference DrugBAN's trainer saves it) records no checksum: it
still loads everywhere, with a warning that its weights are unverified. Imported, the file records the
`checkpoint_id` of its weights (the same id the raw file gets) and the source's SHA-256, so every later
load refuses a changed bit.
"""

from __future__ import annotations

import argparse

from drugrepo_assets.cli.common import (
    CHECKPOINT_SUFFIXES,
    EXIT_OK,
    Subparsers,
    add_command,
    check_checkpoint_file,
    check_out,
    checkpoint_errors,
    out_target,
)

__all__ = ["add_parser", "run"]

COMMAND = "import-checkpoint"


def run(args: argparse.Namespace) -> int:
    """Check the reference file and ``--out``, then write the checkpoint and print its id."""
    check_checkpoint_file(args.reference)
    check_out(args.out, folder=False, inputs=(args.reference,), suffixes=CHECKPOINT_SUFFIXES)
    from drugrepo_assets.ml.model.checkpoint import import_reference_checkpoint

    with checkpoint_errors(args.reference):
        ident = import_reference_checkpoint(args.reference, out_target(args.out))
    print(f"{args.out}: checkpoint {ident}, imported from {args.reference}")
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``import-checkpoint``."""
    parser = add_command(
        subparsers,
        COMMAND,
        run,
        help="write a reference DrugBAN state_dict as a checkpoint that records its id",
        description=(
            "Read a bare reference DrugBAN state_dict (checked against the format's bounds) and write it as a "
            "drugrepo checkpoint recording its checkpoint id and the source's SHA-256: every later load "
            "(predict, screen, serve, train) refuses it if a bit changes. A raw state_dict loads too, unverified."
        ),
    )
    parser.add_argument("reference", metavar="REF", help="the reference state_dict (.pth or .pt)")
    parser.add_argument("--out", required=True, metavar="CKPT", help="the checkpoint file to write")
