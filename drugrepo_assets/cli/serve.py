"""``drugrepo serve``: run the prediction API with a checkpoint, an MLflow model URI or the registry's champion."""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from drugrepo_assets.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    CommandError,
    Subparsers,
    add_command,
    check_checkpoint_file,
    checkpoint_errors,
    first_line,
    message_line,
    refused,
)

if TYPE_CHECKING:
    from drugrepo_assets.api.settings import ServingSettings

__all__ = ["add_parser", "run"]


def run(args: argparse.Namespace) -> int:
    """Run the prediction API; settings from DRUGREPO_* variables, the flags override them."""
    from pydantic import ValidationError

    from drugrepo_assets.api.settings import ServingSettings

    overrides = {
        k: v
        for k, v in {
            "checkpoint": args.checkpoint,
            "model_uri": args.model_uri,
            "host": args.host,
            "port": args.port,
            "torch_threads": args.threads,
        }.items()
        if v is not None
    }
    with refused(ValidationError, say=message_line):
        settings = ServingSettings(**overrides)
    if settings.checkpoint:
        check_checkpoint_file(settings.checkpoint)
    if not settings.keys():
        raise CommandError("no API key: set DRUGREPO_API_KEYS (comma-separated)")
    from drugrepo_assets.api.model_service import load_served_model
    from drugrepo_assets.api.server import serve

    with _load_errors(settings):  # before uvicorn starts, whose start-up failure is a traceback and exit 3
        served = load_served_model(settings)
    serve(settings, served)
    return EXIT_OK


def _load_errors(settings: ServingSettings) -> AbstractContextManager[None]:
    """How a model that does not load is refused, in one line naming it as predict and screen do: a checkpoint
    file as theirs (exit 2), a registry model by its URI (exit 1)."""
    if settings.checkpoint:
        return checkpoint_errors(settings.checkpoint)

    def say(exc: Exception) -> str:
        return f"model {settings.resolved_model_uri()}: {first_line(exc)}"

    return refused(Exception, status=EXIT_FAILURE, say=say)


def add_parser(subparsers: Subparsers) -> None:
    """Register ``serve``."""
    parser = add_command(
        subparsers,
        "serve",
        run,
        help="run the prediction API (FastAPI + uvicorn)",
        description=(
            "Serve POST /v1/predict and /v1/screen with a checkpoint file (the best.pt of 'drugrepo train', a "
            "reference state_dict), an MLflow model URI, or by default the registry alias "
            "models:/$DRUGREPO_MODEL_NAME@champion of $MLFLOW_TRACKING_URI. Keys come from "
            "DRUGREPO_API_KEYS; the other settings from DRUGREPO_* (see README, Serving)."
        ),
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default=None, metavar="CKPT", help="serve this checkpoint file")
    source.add_argument(
        "--model-uri", default=None, metavar="URI", help="an MLflow model URI (models:/name@alias, ...)"
    )
    parser.add_argument("--host", default=None, help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port to bind (default 8000)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
