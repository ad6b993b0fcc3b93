"""The C kernel of CPU screening (kernels/screen_fusion.c): built at first use, cached, loaded with ctypes.

It is compiled for the machine it runs on (``-march=native``) with the system C compiler, into
``~/.cache/drugrepo/kernels/<hash>/``; the hash covers the source, the flags and the CPU, so a
changed kernel or another machine gets its own build. Without a compiler, `fusion_kernel` returns
None once with a warning and screening uses the torch path: the same numbers, slower.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import platform
import shutil
import subprocess
import sysconfig
import tempfile
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels") / "screen_fusion.c"
FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=gnu11"]
MR, NR = 8, 32  # must match the #defines of the source


def _cpu_signature() -> str:
    """The CPU model and flags (a build for one CPU is not run on another)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    lines = [line for line in info.splitlines() if line.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(lines)))


def _compiler() -> Optional[str]:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("cc") or shutil.which("gcc")


def build(cache_dir: Optional[Path] = None) -> Path:
    """Compile the kernel (if this source/CPU has no build yet) and return the shared library's path."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (cc/gcc)")
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_signature().encode()).hexdigest()[:16]
    root = cache_dir or Path.home() / ".cache" / "drugrepo" / "kernels"
    target = root / key / "screen_fusion.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        result = subprocess.run([cc, *FLAGS, "-o", str(out), str(SOURCE)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{cc} failed on {SOURCE.name}: {result.stderr.strip()[:2000]}")
        out.replace(target)  # atomic: concurrent builders both end with a complete file
    return target


@functools.lru_cache(maxsize=1)
def fusion_kernel() -> Optional[ctypes.CDLL]:
    """The loaded kernel library, or None (logged once) when it cannot be built here."""
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, RuntimeError) as exc:
        log.warning("screening falls back to the torch path: %s", exc)
        return None
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.drugban_fusion.argtypes = [p, p, i64, i64, p, i64, p, p, i64, p, p, ctypes.c_int]
    lib.drugban_fusion.restype = ctypes.c_int
    return lib


def pack_vnet(weight: Tensor, bias: Tensor) -> Tensor:
    """v_net's Linear (weight [K, C], bias [K]) in the kernel's panel order: [K/NR, C + 1, NR], the bias as row C."""
    k, c = weight.shape
    both = torch.cat([weight.T, bias.unsqueeze(0)]).float()  # [C + 1, K]
    return both.reshape(c + 1, k // NR, NR).permute(1, 0, 2).contiguous()


def pack_targets(gq: Tensor) -> Tensor:
    """Targets' Gram matrices [T, K, K] in the kernel's tile order: [K/MR, K/NR, T, MR, NR]."""
    t, k, _ = gq.shape
    return gq.float().reshape(t, k // MR, MR, k // NR, NR).permute(1, 3, 0, 2, 4).contiguous()


def fusion(
    lib: ctypes.CDLL, atoms: Tensor, offsets: Tensor, vnet: Tensor, targets: Tensor, heads: Tensor, threads: int
) -> tuple[Tensor, Tensor]:
    """For each drug's v_net rows X = relu(atoms[offsets[d]:offsets[d+1]] Wᵀ + b) (``vnet`` from `pack_vnet`)
    and each target's symmetric Gq (``targets`` from `pack_targets`): Σ_j (XᵀX)[k, j] · Gq[t, k, j] · H[j]
    [D, T, K] (``heads`` = H [K]), and Σ X [D, K]."""
    atoms = atoms.float().contiguous()
    offsets = offsets.to(torch.int64).contiguous()
    heads = heads.float().contiguous()
    k, c = vnet.shape[0] * vnet.shape[2], atoms.shape[1]
    if k % NR:
        raise ValueError(f"the kernel needs a feature width divisible by {NR}, not {k}")
    if vnet.shape[1] != c + 1:
        raise ValueError(f"v_net takes {vnet.shape[1] - 1} features, the atoms have {c}")
    n, t = len(offsets) - 1, targets.shape[2]
    out, sums = torch.empty(n, t, k), torch.empty(n, k)
    rc = lib.drugban_fusion(
        atoms.data_ptr(), offsets.data_ptr(), n, c, vnet.data_ptr(), k, targets.data_ptr(), heads.data_ptr(), t,
        out.data_ptr(), sums.data_ptr(), threads,
    )
    if rc != 0:
        raise MemoryError(f"screening kernel failed (code {rc}): out of memory for {n} drugs × {t} targets")
    return out, sums
