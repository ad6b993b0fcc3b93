"""What the ``drugrepo`` commands share: exit codes, the one-line error, argparse types, the ``--out``
and ``--device`` checks, checkpoint loading and the input locations (``bundled:`` names).

Only the standard library is imported here at module level, so that ``drugrepo --help`` stays fast;
pandas, RDKit and torch are imported by the functions that need them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    import torch

    from drugrepo_assets.ml.model import DrugBAN

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "Subparsers",
    "add_s3_endpoint",
    "check_local_out",
    "check_out",
    "checkpoint_problem",
    "error",
    "first_line",
    "is_remote",
    "load_model",
    "out_problem",
    "positive_float",
    "positive_int",
    "resolve_input",
    "torch_device",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2

BUNDLED_PREFIX = "bundled:"

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
    scheme = urlparse(location).scheme.lower()
    return len(scheme) > 1 and scheme != "file"


def out_problem(out: str, folder: bool) -> str | None:
    """Why the output location ``out`` (a folder, else a file) cannot be written, or None.

    Checked before any work, creating nothing: the nearest existing folder on the way must take a
    new file. Remote locations (``s3://`` ...) are left to the writer.
    """
    if is_remote(out):
        return None
    scheme = urlparse(out).scheme.lower()
    path = Path(urlparse(out).path if scheme == "file" else out).expanduser()
    if folder and path.exists() and not path.is_dir():
        return "exists and is not a folder"
    if not folder and path.is_dir():
        return "is a folder; give a file name"
    probe = path if folder else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        return f"cannot write in {probe} ({exc.strerror or exc})"
    return None


def check_out(command: str, out: str, folder: bool) -> bool:
    """True when ``out`` can be written; else one error line (the caller exits 2 before any work)."""
    problem = out_problem(out, folder)
    if problem is not None:
        error(command, f"--out {out}: {problem}")
    return problem is None


def check_local_out(command: str, out: str) -> bool:
    """`check_out` for a folder that must be on this machine (checkpoints are written locally)."""
    if is_remote(out):
        error(command, f"--out {out}: give a local folder (checkpoints are written on this machine)")
        return False
    return check_out(command, out, folder=True)


def torch_device(command: str, name: str) -> torch.device | None:
    """The torch device ``--device`` names, or None after one error line (unknown name, no such GPU)."""
    import torch

    from drugrepo_assets.ml.train import resolve_device

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
    if text.startswith(BUNDLED_PREFIX):
        from drugrepo_assets.data.sources import dataset_location

        dataset, _, rest = text[len(BUNDLED_PREFIX) :].partition("/")
        location = dataset_location("bundled", dataset)
        return f"{location}/{rest}" if rest else location
    return text


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


def load_model(command: str, path: str) -> tuple[DrugBAN, str] | None:
    """The checkpoint's model and `checkpoint_id`, or None after one error line ``checkpoint PATH: why``
    (missing, empty, truncated, or not a DrugBAN checkpoint)."""
    import pickle
    import zipfile

    from drugrepo_assets.ml.model import load_checkpoint

    problem = checkpoint_problem(path)
    if problem is None:
        try:
            model, extra = load_checkpoint(path)
            return model, str(extra["checkpoint_id"])
        except (EOFError, zipfile.BadZipFile) as exc:
            problem = f"truncated or not a checkpoint ({first_line(exc)})"
        except pickle.UnpicklingError as exc:
            problem = f"not a checkpoint ({first_line(exc)})"
        except OSError as exc:
            problem = f"cannot read file ({exc.strerror or first_line(exc)})"
        except Exception as exc:  # torch and the model raise many types for a foreign file: one line, never a traceback
            detail = first_line(exc).removeprefix(f"{path}: ")
            problem = (
                "truncated or not a checkpoint" if "zip archive" in detail else "not a DrugBAN checkpoint"
            ) + f" ({detail})"
    error(command, f"checkpoint {path}: {problem}")
    return None
