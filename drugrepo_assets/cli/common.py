"""What the ``drugrepo`` commands share: exit codes, the one-line error, argparse types, the ``--out``
and ``--device`` checks, checkpoint loading and the input locations (``bundled:`` names).

Only the standard library is imported here at module level, so that ``drugrepo --help`` stays fast;
pandas, RDKit and torch are imported by the functions that need them.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from drugrepo_assets.ml.model.calibration import Temperature
    from drugrepo_assets.ml.model.drugban import DrugBAN

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "Subparsers",
    "add_s3_endpoint",
    "check_local_out",
    "check_out",
    "checkpoint_failure",
    "checkpoint_problem",
    "error",
    "first_line",
    "is_remote",
    "load_model",
    "out_problem",
    "out_suffix",
    "out_target",
    "positive_float",
    "positive_int",
    "read_input_pairs",
    "resolve_input",
    "torch_device",
    "write_table",
]

CHECKPOINT_SUFFIXES = (".pt", ".pth")
"""What a checkpoint written by a command (`import-checkpoint --out`) may be named: torch's own suffixes."""

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

Subparsers = argparse._SubParsersAction
"""The object ``add_subparsers`` returns; each command module's ``add_parser`` registers on it."""


def error(command: str, message: str) -> None:
    """Print the one error line of a command: ``drugrepo COMMAND: error: MESSAGE``."""
    print(f"drugrepo {command}: error: {message}", file=sys.stderr)


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
    command: str,
    out: str,
    folder: bool,
    inputs: Iterable[str | None] = (),
    writes: Sequence[str] = (),
    suffixes: Sequence[str] | None = None,
) -> bool:
    """True when ``out`` may be written (`out_problem`); else one error line (the caller exits 2 before any work)."""
    problem = out_problem(out, folder, inputs, writes, suffixes)
    if problem is not None:
        error(command, f"--out {out}: {problem}")
    return problem is None


def check_local_out(command: str, out: str, inputs: Iterable[str | None] = (), writes: Sequence[str] = ()) -> bool:
    """`check_out` for a folder that must be on this machine (checkpoints are written locally)."""
    if is_remote(out):
        error(command, f"--out {out}: give a local folder (checkpoints are written on this machine)")
        return False
    return check_out(command, out, folder=True, inputs=inputs, writes=writes)


def write_table(out: str, table: pd.DataFrame, s3_endpoint_url: str | None = None) -> None:
    """Publish ``table`` at the file ``out`` (checked by `check_out`) in the format its suffix names,
    atomically: a temporary sibling renamed over the final path (a link inside its folder: over its
    target), or one S3 PUT."""
    import gzip
    import io

    from drugrepo_assets.files import storage_path, write_bytes_atomic

    suffix = out_suffix(out)
    if suffix in (".parquet", ".pq"):
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        data = buffer.getvalue()
    else:
        data = table.to_csv(index=False).encode()
        if suffix == ".csv.gz":
            data = gzip.compress(data, mtime=0)
    target = out_target(out)
    write_bytes_atomic(storage_path(target, s3_endpoint_url) if is_remote(target) else Path(target), data)


def torch_device(command: str, name: str) -> torch.device | None:
    """The torch device ``--device`` names, or None after one error line (unknown name, no such GPU)."""
    import torch

    from drugrepo_assets.ml.training.train import resolve_device

    try:
        device = resolve_device(name)
    except RuntimeError:
        error(command, f"--device {name}: not a device name (use auto, cpu, cuda or cuda:N)")
        return None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if (device.index is not None and device.index >= count) or not count:
            error(command, f"--device {name}: no such CUDA device ({count} available)")
            return None
    elif device.type != "cpu":
        error(command, f"--device {name}: not supported (use auto, cpu, cuda or cuda:N)")
        return None
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


def read_input_pairs(command: str, text: str, s3_endpoint_url: str | None) -> tuple[str, pd.DataFrame] | None:
    """The location INPUT names and its pair table, or None after a one-line error (unreadable input)."""
    from drugrepo_assets.data.columns import read_pairs
    from drugrepo_assets.data.limits import InputFileError

    try:
        location = resolve_input(text)
        return location, read_pairs(location, s3_endpoint_url=s3_endpoint_url)
    except InputFileError as exc:
        error(command, str(exc))
    except ValueError as exc:
        error(command, f"{text}: {exc}")
    return None


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


def load_model(command: str, path: str) -> tuple[DrugBAN, str, Temperature] | None:
    """The checkpoint's model, `checkpoint_id` and temperature (`ml.model.calibration`), or None after one error line ``checkpoint PATH: why``
    (missing, empty, truncated, out of the format's bounds, altered, or not a DrugBAN checkpoint)."""
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint

    problem = checkpoint_problem(path)
    if problem is None:
        try:
            loaded = load_checkpoint(path)
            return loaded.model, loaded.checkpoint_id, loaded.temperature
        except Exception as exc:  # every failure is one line naming the file, never a traceback
            problem = checkpoint_failure(path, exc)
    error(command, f"checkpoint {path}: {problem}")
    return None
