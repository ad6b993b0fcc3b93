"""The prebuilt variants of the screening kernel (screen_fusion.c): how the package build compiles them
and which one a CPU may run.

The build machine is not the machine that runs the kernel, so the package build (setup.py) compiles
portable ISA levels of the x86-64 psABI instead of ``-march=native``, plus a generic ``-O3`` build
(all that other architectures get). native.py loads the best one the CPU supports. Standard library
only: setup.py loads this file by its path, without torch or the package.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sysconfig
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

SOURCE_NAME = "screen_fusion.c"
# -Wno-psabi: GCC notes that 64-byte vectors change the ABI of the (static, never exported) vector helpers.
COMMON_FLAGS = ("-O3", "-fopenmp", "-shared", "-fPIC", "-std=gnu11", "-Wno-psabi")
X86 = frozenset({"x86_64", "amd64", "x64"})

# The psABI levels' features as /proc/cpuinfo spells them (pni: SSE3, abm: LZCNT, lahf_lm: LAHF/SAHF).
X86_64_V2 = frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"})
X86_64_V3 = X86_64_V2 | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
X86_64_V4 = X86_64_V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


class Variant(NamedTuple):
    name: str
    flags: tuple[str, ...]  # on top of COMMON_FLAGS
    cpu_flags: frozenset[str]  # what the CPU must have
    machines: frozenset[str]  # the architectures it is built for; empty: every one


VARIANTS = (
    # AVX-512 only. Measured on the 2-core AVX-512 dev machine (golden model, 3,000 molecules × 8
    # targets, 2 threads): 24,213 pairs/s as x86-64-v4, 1,252 as x86-64-v3 and 1,612 as a generic
    # -O3 build, against 3,132 for screening's torch path. The kernel's 8 × 32
    # register tiles need AVX-512's 32 vector registers; with AVX2's 16 they spill, so a CPU without
    # AVX-512 is better served by torch.
    Variant("x86-64-v4", ("-march=x86-64-v4",), X86_64_V4, X86),
)


def for_machine(machine: str) -> list[Variant]:
    """The variants the package build compiles on (and for) a machine (``platform.machine()``)."""
    return [v for v in VARIANTS if not v.machines or machine.lower() in v.machines]


def filename(variant: Variant) -> str:
    return f"screen_fusion.{variant.name}.so"


def supported(cpu_flags: Iterable[str], machine: str) -> list[Variant]:
    """The variants a CPU with these flags can run, best first."""
    flags = set(cpu_flags)
    return [v for v in for_machine(machine) if v.cpu_flags <= flags]


def build_id(source: Path, variant: Variant) -> str:
    """What a prebuilt library was compiled from (the source and the flags): native.py skips a stale one."""
    digest = hashlib.sha256(source.read_bytes())
    digest.update(" ".join((*COMMON_FLAGS, *variant.flags)).encode())
    return digest.hexdigest()[:32]


def compiler() -> str | None:
    """The C compiler: $CC, Python's own (sysconfig), else cc or gcc on PATH."""
    for name in (os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc"):
        found = name and shutil.which(name.split()[0])
        if found:
            return found
    return None


def compile_command(cc: str, source: Path, variant: Variant, out: Path) -> list[str]:
    """The command that compiles one variant; the library carries its `build_id` as ``drugban_build_id``."""
    return [
        cc,
        *COMMON_FLAGS,
        *variant.flags,
        f'-DDRUGBAN_BUILD_ID="{build_id(source, variant)}"',
        "-o",
        str(out),
        str(source),
    ]
