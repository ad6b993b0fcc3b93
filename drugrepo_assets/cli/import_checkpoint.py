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
    EXIT_BAD_INPUT,
    EXIT_OK,
    Subparsers,
    check_out,
    checkpoint_failure,
    checkpoint_problem,
    error,
    out_target,
)

__all__ = ["add_parser", "run"]

COMMAND = "import-checkpoint"


def run(args: argparse.Namespace) -> int:
    """Check the reference file and ``--out``, then write the checkpoint and print its id."""
    problem = checkpoint_problem(args.reference)
    if problem is not None:
        error(COMMAND, f"checkpoint {args.reference}: {problem}")
        return EXIT_BAD_INPUT
    if not check_out(COMMAND, args.out, folder=False, inputs=(args.reference,), suffixes=CHECKPOINT_SUFFIXES):
        return EXIT_BAD_INPUT
    from drugrepo_assets.ml.model.checkpoint import import_reference_checkpoint

    try:
        ident = import_reference_checkpoint(args.reference, out_target(args.out))
    except Exception as exc:  # one line naming the file, never a traceback
        error(COMMAND, f"checkpoint {args.reference}: {checkpoint_failure(args.reference, exc)}")
        return EXIT_BAD_INPUT
    print(f"{args.out}: checkpoint {ident}, imported from {args.reference}")
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``import-checkpoint``."""
    parser = subparsers.add_parser(
        COMMAND,
        help="write a reference DrugBAN state_dict as a checkpoint that records its id",
        description=(
            "Read a bare reference DrugBAN state_dict (checked against the format's bounds) and write it as a "
            "drugrepo checkpoint recording its checkpoint id and the source's SHA-256: every later load "
            "(predict, screen, serve, train) refuses it if a bit changes. A raw state_dict loads too, unverified."
        ),
    )
    parser.add_argument("reference", metavar="REF", help="the reference state_dict (.pth or .pt)")
    parser.add_argument("--out", required=True, metavar="CKPT", help="the checkpoint file to write")
    parser.set_defaults(func=run)
