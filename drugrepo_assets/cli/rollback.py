"""``drugrepo rollback``: move a model registry alias back to the version it named before."""

from __future__ import annotations

import argparse

from drugrepo_assets.cli.common import EXIT_FAILURE, EXIT_OK, Subparsers, add_command, message_line, refused
from drugrepo_assets.serving.registry import CHAMPION_ALIAS

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    """Move a registry alias back to the version it named before (or to --to-version)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from drugrepo_assets.serving.registry import RegistryError, rollback

    client = MlflowClient(tracking_uri=args.tracking_uri, registry_uri=args.tracking_uri)
    with refused(RegistryError, MlflowException, status=EXIT_FAILURE, say=message_line):
        moved = rollback(client, args.model, args.alias, args.to_version)
    print(f"{args.model}@{args.alias}: version {moved.from_version} -> {moved.to_version}")
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``rollback``."""
    parser = add_command(
        subparsers,
        "rollback",
        run,
        help="move a model registry alias (champion) back to the previous version",
        description="Point MODEL@ALIAS at the version it named before its last promotion, or at --to-version.",
    )
    parser.add_argument("--model", required=True, help="registered model name, e.g. drugban-human")
    parser.add_argument("--alias", default=CHAMPION_ALIAS)
    parser.add_argument("--to-version", default=None, metavar="V", help="version to move the alias to")
    parser.add_argument("--tracking-uri", default=None, help="default $MLFLOW_TRACKING_URI")
