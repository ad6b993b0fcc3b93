"""Two assets run by `local_executor`, each writing the command line of the process that started its step and
whether this module was imported before the step began (by the fork server, which preloads it)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from drugrepo_assets.lib.k8s import local_executor

OUT_VAR = "FORKED_STEPS_OUT"
IMPORTED_IN = os.getpid()
"""The process that imported this module: the fork server when it preloads it, else each step's own."""


def _record(name: str) -> None:
    parent = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    (Path(os.environ[OUT_VAR]) / name).write_text(f"{parent}\npreloaded: {os.getppid() == IMPORTED_IN}")


@dg.asset
def first_step() -> None:
    _record("first_step")


@dg.asset(deps=[first_step])
def second_step() -> None:
    _record("second_step")


defs = dg.Definitions(assets=[first_step, second_step], executor=local_executor(__name__))
