"""What the ``drugrepo`` commands share: registration (`add_command`) and the one place where a refusal
(`CommandError`, and the exceptions `refused` maps to it) becomes the one-line error and the exit code;
argparse types and the options several commands take; the ``--out`` and ``--device`` checks, checkpoint
loading and the input locations (``bundled:`` names).

Only the standard library (and the plain-Python `TrainConfig`) is imported here at module level, so that
``drugrepo --help`` stays fast; pandas, RDKit and torch are imported by the functions that need them.
"""

from __future__ import annotations

import argparse
import functools
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from drugrepo_assets.ml.training.train_config import TrainConfig

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from drugrepo_assets.location import Location
    from drugrepo_assets.ml.model.calibration import Temperature
    from drugrepo_assets.ml.model.drugban import DrugBAN

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "CommandError",
    "Run",
    "Subparsers",
    "add_command",
    "add_pair_inputs",
    "add_s3_endpoint",
    "add_torch_options",
    "check_checkpoint_file",
    "check_local_out",
    "check_out",
    "checkpoint_errors",
    "checkpoint_failure",
    "checkpoint_problem",
    "error",
    "first_line",
    "is_remote",
    "load_model",
    "message_line",
    "out_problem",
    "out_suffix",
    "out_target",
    "pair_inputs_problem",
    "positive_float",
    "positive_int",
    "read_input_pairs",
    "refused",
    "resolve_input",
    "split_strategy",
    "torch_device",
    "unreadable_input",
    "write_table",
    "writing_output",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth")
"""What a checkpoint written by a command (`import-checkpoint --out`) may be named: torch's own suffixes."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

Subparsers = argparse._SubParsersAction
"""The object ``add_subparsers`` returns; each command module's ``add_parser`` registers on it."""

Run = Callable[[argparse.Namespace], int]
"""A command's ``run(args)``, which returns the exit status."""

_E = TypeVar("_E", bound=Exception)


class CommandError(Exception):
    """A command's refusal, raised anywhere in its run: printed as its one error line (`error`), exit ``status``."""

    def __init__(self, message: str, status: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.status = status


def error(command: str, message: str) -> None:
    """Print the one error line of a command: ``drugrepo COMMAND: error: MESSAGE``."""
    print(f"drugrepo {command}: error: {message}", file=sys.stderr)


def add_command(
    subparsers: Subparsers,
    name: str,
    run: Run,
    usage: Callable[[argparse.Namespace], str | None] | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """Register command ``name`` (``kwargs`` as ``add_parser`` takes them) to run ``run``; ``usage`` says why
    the options given are a usage error argparse cannot see itself (None when they are not)."""
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(func=functools.partial(_run_command, parser, name, run, usage))
    return parser


def _run_command(
    parser: argparse.ArgumentParser,
    name: str,
    run: Run,
    usage: Callable[[argparse.Namespace], str | None] | None,
    args: argparse.Namespace,
) -> int:
    """Run a command: a ``usage`` problem is argparse's usage error (exit 2), a `CommandError` its one line and
    status. The one place where a command's refusal becomes what the user sees."""
    if usage is not None and (problem := usage(args)) is not None:
        parser.error(problem)
    try:
        return run(args)
    except CommandError as exc:
        error(name, str(exc))
        return exc.status


@contextmanager
def refused(*kinds: type[_E], status: int = EXIT_BAD_INPUT, say: Callable[[_E], str] = str) -> Iterator[None]:
    """Inside it, an exception of ``kinds`` is the command's refusal: a `CommandError` saying ``say(exc)``
    (one line, never a traceback), exit ``status``."""
    try:
        yield
    except kinds as exc:
        raise CommandError(say(exc), status) from exc


def message_line(exc: BaseException) -> str:
    """The first line of an exception's message as it is (pydantic's and MLflow's run on for many lines)."""
    return str(exc).splitlines()[0]


@contextmanager
def unreadable_input(given: str | None = None) -> Iterator[None]:
    """Inside it, an input that cannot be used is refused (exit 2): an `InputFileError` names its file itself,
    a ValueError (an unknown ``bundled:`` name, a library changed meanwhile) follows ``given: `` when given."""
    from drugrepo_assets.data.limits import InputFileError

    def say(exc: ValueError) -> str:
        return str(exc) if given is None else f"{given}: {exc}"

    with refused(InputFileError), refused(ValueError, say=say):
        yield


def writing_output(out: str) -> AbstractContextManager[None]:
    """Inside it, an OSError is a failed write of ``out``: ``OUT: cannot write output (why)``, exit 1."""

    def say(exc: OSError) -> str:
        return f"{out}: cannot write output ({exc.strerror or exc})"

    return refused(OSError, status=EXIT_FAILURE, say=say)


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (a bad value is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number above 0")
    return value


def add_s3_endpoint(parser: argparse.ArgumentParser) -> None:
    """The ``--s3-endpoint-url`` option of the commands that read or write ``s3://`` locations."""
    parser.add_argument(
        "--s3-endpoint-url",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint (MinIO, moto); default: AWS or $AWS_ENDPOINT_URL",
    )


def add_torch_options(parser: argparse.ArgumentParser) -> None:
    """``--device`` (checked by `torch_device`) and ``--threads`` of the commands that run the model."""
    parser.add_argument(
        "--device",
        default=TrainConfig.device,
        help="%(default)s (CUDA when present), cpu, cuda, cuda:1, ...",
    )
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")


def split_strategy(text: str) -> str:
    """An argparse type: one of `data.splits.SPLIT_STRATEGIES` (imported only when ``--split`` is given,
    so that ``drugrepo --help`` does not load pandas)."""
    from drugrepo_assets.data.splits import SPLIT_STRATEGIES

    if text not in SPLIT_STRATEGIES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(SPLIT_STRATEGIES)}")
    return text


def add_pair_inputs(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """The pair inputs of `train` and `export-features`: --train/--val [--test], or --data with --split
    (`pair_inputs_problem` is their usage rule); returns the group of the required source, for a command
    to add its own."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train", metavar="FILE", help="training pairs")
    source.add_argument("--data", metavar="FILE", help="one table to split with --split")
    parser.add_argument("--val", metavar="FILE", help="validation pairs (with --train)")
    parser.add_argument("--test", metavar="FILE", help="test pairs (with --train; optional)")
    parser.add_argument(
        "--split",
        type=split_strategy,
        default="random",
        metavar="STRATEGY",
        help="how --data is split: random (default), cold_drug, cold_target or cluster",
    )
    return source


def pair_inputs_problem(args: argparse.Namespace) -> str | None:
    """The usage rule of `add_pair_inputs` that argparse cannot state: --train needs --val."""
    return "--train needs --val" if args.train and not args.val else None


def is_remote(location: str) -> bool:
    """True for a URL with a scheme other than ``file`` (``s3://``, ``https://``, ...); a Windows drive is local."""
    from drugrepo_assets.location import is_remote as remote

    return remote(location)


def _local_path(location: str) -> Path | None:
    """The local path a location names (``file:`` URLs too), or None for a remote one."""
    from drugrepo_assets.location import local_path

    return local_path(location)


def _remote_key(location: str) -> str:
    """A remote location compared as text: ``s3a://`` read as ``s3://``, no trailing slash."""
    from drugrepo_assets.location import Location

    return Location.of(location).uri.rstrip("/")


def _within(path: Path, folder: Path) -> bool:
    """True when the resolved ``path`` is ``folder`` or below it."""
    return path == folder or folder in path.parents


def _special_kind(path: Path) -> str | None:
    """What special node ``path`` is (a device, a FIFO, a socket: a write would replace it or never end), or None."""
    mode = path.stat().st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def _inputs(inputs: Iterable[str | None]) -> list[tuple[str, str]]:
    """(as given, as resolved) of each input given; a ``bundled:`` name its reader will refuse is left to it."""
    found = []
    for given in inputs:
        if not given:
            continue
        try:
            found.append((given, resolve_input(given)))
        except ValueError:
            continue
    return found


def _input_problem(out: Path, folder: bool, inputs: list[tuple[str, str]], writes: Sequence[str]) -> str | None:
    """Why the local ``out`` (resolved) would overwrite an input or be read back as one, or None."""
    for given, location in inputs:
        source = _local_path(location)
        if source is None or not source.exists():
            continue
        real = Path(os.path.realpath(source))
        if out.exists() and os.path.samefile(out, source):
            return f"is the input {given}"
        if real.is_dir() and _within(out, real):
            return f"is inside the input folder {given} (a rerun would read the outputs as input)"
        for name in writes if folder else ():
            target = out / name
            if _within(real, Path(os.path.realpath(target))) or (target.exists() and os.path.samefile(target, source)):
                return f"would overwrite the input {given} ({name})"
    return None


def _remote_problem(out: str, folder: bool, inputs: list[tuple[str, str]], writes: Sequence[str]) -> str | None:
    """`_input_problem` for an ``s3://`` ``out``, the locations compared as text."""
    key = _remote_key(out)
    for given, location in inputs:
        if not is_remote(location):
            continue
        source = _remote_key(location)
        if key == source:
            return f"is the input {given}"
        if key.startswith(source + "/"):
            return f"is inside the input prefix {given} (a rerun would read the outputs as input)"
        for name in writes if folder else ():
            if source == f"{key}/{name}" or source.startswith(f"{key}/{name}/"):
                return f"would overwrite the input {given} ({name})"
    return None


def out_suffix(out: str, suffixes: Sequence[str] | None = None) -> str | None:
    """The suffix of ``suffixes`` (default: the tables', `data.sources.DATA_SUFFIXES`) that ``out`` ends
    with, naming its format; None when it ends with none."""
    from drugrepo_assets.data.sources import DATA_SUFFIXES

    name = (urlparse(out).path if is_remote(out) else out).lower()
    return next((s for s in sorted(suffixes or DATA_SUFFIXES, key=len, reverse=True) if name.endswith(s)), None)


def out_target(out: str) -> str:
    """Where a checked ``--out`` is written: a local symlink inside its folder is followed to its target
    (renaming a temporary file over the link would replace the link), any other location as given."""
    local = _local_path(out)
    return out if local is None else os.path.realpath(local)


def out_problem(
    out: str,
    folder: bool,
    inputs: Iterable[str | None] = (),
    writes: Sequence[str] = (),
    suffixes: Sequence[str] | None = None,
) -> str | None:
    """Why the output location ``out`` (a folder, else a file) must not be written, or None.

    Checked before any work, creating nothing: ``out`` is not a device, FIFO or socket, not a
    symlink out of its folder, not an input (the same file, through links too) nor inside an input
    folder, and the folder's ``writes`` (its files and subfolders) overwrite no input; the nearest
    existing folder on the way must take a new file; a file's suffix names its format (one of
    ``suffixes``, by default CSV or Parquet: `out_suffix`). Remote locations (``s3://`` ...) are compared as text.
    """
    given = _inputs(inputs)
    local = _local_path(out)
    problem = (
        _remote_problem(out, folder, given, writes) if local is None else _local_problem(local, folder, given, writes)
    )
    if problem is None and not folder and out_suffix(out, suffixes) is None:
        from drugrepo_assets.data.sources import DATA_SUFFIXES

        problem = f"unknown suffix: the output's format follows it ({', '.join(suffixes or DATA_SUFFIXES)})"
    return problem


def _local_problem(path: Path, folder: bool, inputs: list[tuple[str, str]], writes: Sequence[str]) -> str | None:
    """`out_problem` for a location on this machine, the suffix aside."""
    real = Path(os.path.realpath(path))
    if path.is_symlink() and not _within(real, Path(os.path.realpath(path.parent))):
        return f"is a symlink to {real}, outside its folder; name the target itself"
    try:
        kind = _special_kind(real) if real.exists() else None
    except OSError as exc:
        return f"cannot be used ({exc.strerror or exc})"
    if kind is not None:
        return f"is {kind}, not a {'folder' if folder else 'file'}"
    if folder and real.exists() and not real.is_dir():
        return "exists and is not a folder"
    if not folder and real.is_dir():
        return "is a folder; give a file name"
    probe = real if folder else real.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return f"cannot write in {probe} ({exc.strerror or exc})"
    return _input_problem(real, folder, inputs, writes)


def check_out(
    out: str,
    folder: bool,
    inputs: Iterable[str | None] = (),
    writes: Sequence[str] = (),
    suffixes: Sequence[str] | None = None,
) -> None:
    """Refuse (exit 2, before any work) an ``out`` that must not be written (`out_problem`)."""
    problem = out_problem(out, folder, inputs, writes, suffixes)
    if problem is not None:
        raise CommandError(f"--out {out}: {problem}")


def check_local_out(out: str, inputs: Iterable[str | None] = (), writes: Sequence[str] = ()) -> None:
    """`check_out` for a folder that must be on this machine (checkpoints are written locally)."""
    if is_remote(out):
        raise CommandError(f"--out {out}: give a local folder (checkpoints are written on this machine)")
    check_out(out, folder=True, inputs=inputs, writes=writes)


def write_table(out: Location | str, table: pd.DataFrame) -> None:
    """Publish ``table`` at the file ``out`` (checked by `check_out`) in the format its suffix names,
    atomically: a temporary sibling renamed over the final path (a link inside its folder: over its
    target), or one S3 PUT."""
    import gzip
    import io

    from drugrepo_assets.files import storage_path, write_bytes_atomic
    from drugrepo_assets.location import as_location

    where = as_location(out)
    suffix = out_suffix(where.text)
    if suffix in (".parquet", ".pq"):
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    else:
        data = table.to_csv(index=False).encode()
        if suffix == ".csv.gz":
            data = gzip.compress(data, mtime=0)
    target = out_target(where.text)
    write_bytes_atomic(storage_path(where.at(target)) if is_remote(target) else Path(target), data)


def torch_device(name: str) -> torch.device:
    """The torch device ``--device`` names; refused (exit 2) when unknown or absent (no such GPU)."""
    import torch

    from drugrepo_assets.ml.training.train import resolve_device

    with refused(RuntimeError, say=lambda _: f"--device {name}: not a device name (use auto, cpu, cuda or cuda:N)"):
        device = resolve_device(name)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index is not None and device.index >= count) or not count:
            raise CommandError(f"--device {name}: no such CUDA device ({count} available)")
    elif device.type != "cpu":
        raise CommandError(f"--device {name}: not supported (use auto, cpu, cuda or cuda:N)")
    return device


def first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (its first non-blank line), else its type's name."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].split(". ", 1)[0].rstrip(".") if lines else type(exc).__name__


def resolve_input(text: str) -> str:
    """The location an input names: ``bundled:<dataset>[/<file>]`` is a packaged DrugBAN file or folder."""
    from drugrepo_assets.location import bundled_name

    name = bundled_name(text)
    if name is None:
        return text
    from drugrepo_assets.data.sources import dataset_location

    dataset, rest = name
    location = dataset_location("bundled", dataset)
    return f"{location}/{rest}" if rest else location


def read_input_pairs(given: Location | str) -> tuple[str, pd.DataFrame]:
    """The location INPUT names and its pair table; refused (exit 2) when unreadable."""
    from drugrepo_assets.data.columns import read_pairs
    from drugrepo_assets.location import as_location

    where = as_location(given)
    with unreadable_input(where.text):
        location = resolve_input(where.text)
        pairs = read_pairs(where.at(location))
    return location, pairs


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` cannot be a checkpoint from the file alone (missing, a folder, empty), or None."""
    checkpoint = Path(path)
    if checkpoint.is_dir():
        return "is a folder, not a file"
    if not checkpoint.exists():
        return "file not found"
    if checkpoint.stat().st_size == 0:
        return "empty file (0 bytes), not a checkpoint"
    return None


def checkpoint_failure(path: str, exc: Exception) -> str:
    """Why loading checkpoint ``path`` raised ``exc``, in one line: a `CheckpointError`'s own reason (a bound, a
    shape, a checkpoint id), else truncated, not a checkpoint, unreadable."""
    import pickle
    import zipfile

    from drugrepo_assets.ml.model.checkpoint import CheckpointError

    detail = first_line(exc).removeprefix(f"{path}: ")
    if isinstance(exc, CheckpointError):
        return detail
    if isinstance(exc, EOFError | zipfile.BadZipFile):
        return f"truncated or not a checkpoint ({detail})"
    if isinstance(exc, pickle.UnpicklingError):
        return f"not a checkpoint ({detail})"
    if isinstance(exc, OSError):
        return f"cannot read file ({exc.strerror or detail})"
    # torch raises many types for a foreign file: one line, never a traceback
    return ("truncated or not a checkpoint" if "zip archive" in detail else "not a DrugBAN checkpoint") + f" ({detail})"


def check_checkpoint_file(path: str) -> None:
    """Refuse (exit 2) a checkpoint file that is missing, a folder or empty: ``checkpoint PATH: why``."""
    problem = checkpoint_problem(path)
    if problem is not None:
        raise CommandError(f"checkpoint {path}: {problem}")


def checkpoint_errors(path: str) -> AbstractContextManager[None]:
    """Inside it, every failure is the checkpoint's refusal in one line naming the file, never a traceback:
    ``checkpoint PATH: why`` (`checkpoint_failure`), exit 2."""
    return refused(Exception, say=lambda exc: f"checkpoint {path}: {checkpoint_failure(path, exc)}")


def load_model(path: str) -> tuple[DrugBAN, str, Temperature]:
    """The checkpoint's model, `checkpoint_id` and temperature (`ml.model.calibration`); refused (exit 2,
    ``checkpoint PATH: why``) when missing, empty, truncated, out of the format's bounds, altered, or not a
    DrugBAN checkpoint."""
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint

    check_checkpoint_file(path)
    with checkpoint_errors(path):
        loaded = load_checkpoint(path)
    return loaded.model, loaded.checkpoint_id, loaded.temperature
