"""``cli/common.py``'s one place for refusals: `add_command` prints a `CommandError` as the command's one error
line and returns its status, and `refused` (with `unreadable_input`, `writing_output`) maps exceptions to it;
building the parser loads none of the heavy libraries."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable

import pytest

from drugrepo_assets.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    CommandError,
    Run,
    add_command,
    refused,
    unreadable_input,
    writing_output,
)
from drugrepo_assets.data.limits import InputFileError

Usage = Callable[[argparse.Namespace], str | None]


def _main(run: Run, usage: Usage | None = None) -> int:
    """``drugrepo demo`` of a top-level parser whose one command ``demo`` runs ``run``."""
    parser = argparse.ArgumentParser(prog="drugrepo")
    add_command(parser.add_subparsers(dest="command"), "demo", run, usage=usage)
    args = parser.parse_args(["demo"])
    return int(args.func(args))


def _raises(exc: Exception) -> Run:
    def run(args: argparse.Namespace) -> int:
        raise exc

    return run


def test_a_command_error_is_its_one_line_and_its_status(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main(_raises(CommandError("--out o: is a FIFO, not a folder"))) == EXIT_BAD_INPUT
    assert capsys.readouterr().err == "drugrepo demo: error: --out o: is a FIFO, not a folder\n"
    assert _main(_raises(CommandError("model m: gone", EXIT_FAILURE))) == EXIT_FAILURE
    assert capsys.readouterr().err == "drugrepo demo: error: model m: gone\n"
    assert _main(lambda args: EXIT_OK) == EXIT_OK
    assert capsys.readouterr().err == ""


def test_other_exceptions_are_not_caught() -> None:
    with pytest.raises(KeyError):
        _main(_raises(KeyError("a bug stays a traceback")))


def test_a_usage_problem_is_argparse_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _main(lambda args: EXIT_OK, usage=lambda args: "--train needs --val")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: drugrepo demo") and err.endswith("drugrepo demo: error: --train needs --val\n")


def test_refused_maps_only_its_kinds() -> None:
    with pytest.raises(CommandError) as info, refused(KeyError, LookupError, status=7, say=lambda exc: f"no {exc}"):
        raise KeyError("x")
    assert (str(info.value), info.value.status) == ("no 'x'", 7)
    with pytest.raises(TypeError), refused(KeyError):
        raise TypeError("not one of its kinds")


def test_unreadable_input_names_the_input_for_a_value_error() -> None:
    with pytest.raises(CommandError) as info, unreadable_input("bundled:nope"):
        raise ValueError("no bundled dataset 'nope'")
    assert (str(info.value), info.value.status) == ("bundled:nope: no bundled dataset 'nope'", EXIT_BAD_INPUT)
    with pytest.raises(CommandError) as info, unreadable_input("given"):
        raise InputFileError("a.csv", "empty file")
    assert str(info.value) == "a.csv: empty file"  # it names its file itself
    with pytest.raises(CommandError) as info, unreadable_input():
        raise ValueError("the library changed")
    assert str(info.value) == "the library changed"


def test_writing_output_is_exit_1_with_the_reason() -> None:
    with pytest.raises(CommandError) as info, writing_output("s3://b/out"):
        raise PermissionError(13, "Permission denied")
    assert (str(info.value), info.value.status) == ("s3://b/out: cannot write output (Permission denied)", EXIT_FAILURE)


def test_building_the_parser_loads_no_heavy_library() -> None:
    code = (
        "import sys; from drugrepo_assets.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'pandas', 'numpy', 'pydantic', 'mlflow', 'rdkit') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"
