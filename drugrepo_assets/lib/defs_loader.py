"""How a code location finds its definitions: every module under its ``defs`` package, loaded by Dagster."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from types import ModuleType

from dagster import ComponentTree, Definitions, PreviewWarning

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The folder of pyproject.toml, the project root Dagster's component tree is anchored at."""


@functools.cache
def load_defs_package(defs_module: ModuleType) -> Definitions:
    """The assets, checks, jobs, sensors and schedules at module level under ``defs_module``, each once.

    An object imported into several modules (a job that a sensor targets) is one definition. Loaded once
    per process and kept here, not at a definitions module's top level: Dagster refuses a code location
    module that holds more than one `Definitions` object.
    `ComponentTree.from_module`, not `load_from_defs_folder`: the latter takes its one defs module from
    pyproject's ``[tool.dg]``, and this project has two code locations, each with its own ``defs`` package.
    The tree calls Dagster's own `load_definitions_from_module`, a preview function, for each module;
    only that warning is silenced, as it is about Dagster's internals and not about this project.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Function `load_definitions_from_module", category=PreviewWarning)
        return ComponentTree.from_module(defs_module=defs_module, project_root=PROJECT_ROOT).build_defs()
