"""``drugrepo serve``: run the prediction API with a checkpoint, an MLflow model URI or the registry's champion."""

from __future__ import annotations

import argparse

from drugrepo_assets.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    checkpoint_failure,
    checkpoint_problem,
    error,
    first_line,
)

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
    try:
        settings = ServingSettings(**overrides)
    except ValidationError as exc:
        error("serve", str(exc).splitlines()[0])
        return EXIT_BAD_INPUT
    problem = checkpoint_problem(settings.checkpoint) if settings.checkpoint else None
    if problem is not None:
        error("serve", f"checkpoint {settings.checkpoint}: {problem}")
        return EXIT_BAD_INPUT
    if not settings.keys():
        error("serve", "no API key: set DRUGREPO_API_KEYS (comma-separated)")
        return EXIT_BAD_INPUT
    from drugrepo_assets.api.model_service import load_served_model
    from drugrepo_assets.api.server import serve

    try:  # before uvicorn starts, whose start-up failure is a traceback and exit 3
        served = load_served_model(settings)
    except Exception as exc:  # one line naming the model, as predict and screen give
        if settings.checkpoint:
            error("serve", f"checkpoint {settings.checkpoint}: {checkpoint_failure(settings.checkpoint, exc)}")
            return EXIT_BAD_INPUT
        error("serve", f"model {settings.resolved_model_uri()}: {first_line(exc)}")
        return EXIT_FAILURE
    serve(settings, served)
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``serve``."""
    parser = subparsers.add_parser(
        "serve",
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
    parser.set_defaults(func=run)
