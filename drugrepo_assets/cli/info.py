"""``drugrepo info`` (alias ``doctor``): the versions, the torch device and whether the C screening kernel is active.

What a bug report needs, and the first thing to check when screening is slower than expected.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from drugrepo_assets.cli.common import EXIT_OK, Subparsers, add_command

__all__ = ["PACKAGES", "add_parser", "collect", "run"]

PACKAGES: tuple[tuple[str, str], ...] = (
    ("drugrepo", "drugrepo-assets"),
    ("torch", "torch"),
    ("RDKit", "rdkit"),
    ("pandas", "pandas"),
    ("pyarrow", "pyarrow"),
    ("dagster", "dagster"),
)
"""(shown name, distribution) of each version reported, after Python's."""


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _device() -> dict[str, Any]:
    """The device ``--device auto`` picks, the CUDA devices, and torch's CPU threads."""
    import torch

    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    return {
        "auto": "cuda" if cuda else "cpu",
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(count)],
        "cpu_threads": torch.get_num_threads(),
    }


def _kernel(device: dict[str, Any]) -> dict[str, Any]:
    """`screening.native.kernel_info` with ``active``: whether screening on CPU runs the C kernel here."""
    from drugrepo_assets.screening.native import kernel_info

    info = kernel_info()
    return {"active": info.active, **asdict(info), "used_by_auto": info.active and device["auto"] == "cpu"}


def collect() -> dict[str, Any]:
    """Everything ``drugrepo info`` reports, as plain values (its ``--json`` output)."""
    import platform

    versions = {"python": platform.python_version(), **{name: _version(dist) for name, dist in PACKAGES}}
    device = _device()
    return {"versions": versions, "device": device, "screening_kernel": _kernel(device)}


def _lines(report: dict[str, Any]) -> list[str]:
    versions, device, kernel = report["versions"], report["device"], report["screening_kernel"]
    lines = [f"drugrepo {versions['drugrepo']}", f"Python {versions['python']}"]
    lines += [f"{name} {versions[name]}" for name, _ in PACKAGES[1:]]
    names = device["cuda_devices"]
    cuda = f"{len(names)} CUDA device{'s' if len(names) != 1 else ''}" + (f" ({', '.join(names)})" if names else "")
    lines.append(f"device: {device['auto']} (--device auto); {cuda}; CPU: {device['cpu_threads']} torch threads")
    if kernel["active"]:
        where = "" if kernel["used_by_auto"] else "; screens on CUDA (--device auto) do not use it"
        lines.append(f"screening kernel: active, {kernel['kernel']} ({kernel['path']}): {kernel['reason']}{where}")
    else:
        lines.append(f"screening kernel: inactive, the torch path screens: {kernel['reason']}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the report, as lines or (``--json``) as one JSON object."""
    report = collect()
    print(json.dumps(report, indent=2) if args.json else "\n".join(_lines(report)))
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``info`` and its alias ``doctor``."""
    parser = add_command(
        subparsers,
        "info",
        run,
        aliases=["doctor"],
        help="print versions, the torch device and whether the C screening kernel is active",
        description=(
            "Print the versions of drugrepo, Python, torch, RDKit, pandas, pyarrow and dagster, the device "
            "--device auto picks (CUDA devices, CPU threads), and whether the C screening kernel is active "
            "on this machine and why (or why not)."
        ),
    )
    parser.add_argument("--json", action="store_true", help="one JSON object, for machines")
