"""The app's exception handlers, registered in one place: a request of the wrong shape answers 422 listing the
problems, anything unexpected a JSON 500 without internals (logged)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from drugrepo_assets.api.dependencies import api_state
from drugrepo_assets.api.handlers import error_response, invalid_response
from drugrepo_assets.api.model_service import InputProblem

log = logging.getLogger(__name__)

__all__ = ["add_exception_handlers"]


async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
    """422 listing what FastAPI found out of shape (at most DRUGREPO_MAX_LISTED_PROBLEMS)."""
    problems = [InputProblem(0, ".".join(map(str, e.get("loc", ()))), "", str(e.get("msg", ""))) for e in exc.errors()]
    listed = (await api_state(request)).settings.max_listed_problems
    return invalid_response("the request does not have the documented shape (see /docs)", problems, listed)


async def internal_error(_: Request, exc: Exception) -> Response:
    """A JSON 500 that names nothing internal; the exception goes to the log."""
    log.error("unhandled exception", exc_info=exc)
    return error_response(500, "internal error (logged by the server)")


def add_exception_handlers(app: FastAPI) -> None:
    """Register every handler of ``app``."""
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(Exception)(internal_error)
