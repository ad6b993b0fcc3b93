"""The CPU screening kernel (kernels/screen_fusion.c): prebuilt by the package or built at first use; ctypes loads it.

`fusion_kernel` takes, in this order:

1. on a CPU with AVX-512 (x86-64-v4), the prebuilt library: the package build (setup.py) compiles it
   as ``kernels/screen_fusion.x86-64-v4.so`` (kernels/variants.py); one stamped from another source
   or other flags (a checkout whose kernel changed since ``pip install -e .``) is skipped;
2. on such a CPU without it, a build at first use (``-march=native``) with the system C compiler,
   into ``~/.cache/drugrepo/kernels/<hash>/``; the hash covers the source, the flags and the CPU, so a
   changed kernel or another machine gets its own build. The cache is owner-only and each library's
   SHA-256 is recorded at build time and checked before it is loaded (`build`);
3. none: screening uses the torch path, the same numbers. Without AVX-512 the kernel is slower than
   torch (kernels/variants.py has the measurement), so such CPUs always take this path.

Which one runs is logged once, and `kernel_info` says it (for asset metadata and the CLI).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import logging
import os
import platform
import shutil
import stat
import subprocess
import sysconfig
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from drugrepo_assets.ml.features.dataset import MoleculeStore
from drugrepo_assets.ml.model.drugban import MolecularGCN, batch_norm_affine, segment_ranges
from drugrepo_assets.screening.kernels import variants

log = logging.getLogger(__name__)

KERNELS = Path(__file__).with_name("kernels")
SOURCE = KERNELS / variants.SOURCE_NAME
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


def cpu_flags() -> frozenset[str]:
    """The feature flags every CPU of /proc/cpuinfo has (none where it cannot be read, or on non-x86)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    sets = [set(line.partition(":")[2].split()) for line in info.splitlines() if line.startswith("flags")]
    return frozenset(set.intersection(*sets)) if sets else frozenset()


def _compiler() -> str | None:
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) or shutil.which("cc") or shutil.which("gcc")


def build(cache_dir: Path | None = None) -> Path:
    """Compile the kernel (if this source/CPU has no verified build yet) and return the shared library's path.

    The cache (``~/.cache/drugrepo/kernels/<key>/``) is owner-only: a folder of another user, or one that
    group or others may write, is refused (RuntimeError: screening falls back to torch). Each library's
    SHA-256 is recorded beside it at build time; one that no longer matches it is rebuilt.
    """
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (cc/gcc)")
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode() + _cpu_signature().encode()).hexdigest()[:16]
    root = _private_dir(cache_dir or Path.home() / ".cache" / "drugrepo" / "kernels")
    target = _private_dir(root / key) / "screen_fusion.so"
    record = target.with_name(target.name + ".sha256")
    why = _unverified(target, record)
    if why is None:
        return target
    if why != "not built yet":
        log.warning("screening kernel cache %s: %s; rebuilding it", target, why)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out, digest = Path(tmp) / target.name, Path(tmp) / record.name
        result = subprocess.run([cc, *FLAGS, "-o", str(out), str(SOURCE)], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{cc} failed on {SOURCE.name}: {result.stderr.strip()[:2000]}")
        out.chmod(0o700)
        digest.write_text(_sha256(out) + "\n")
        out.replace(target)  # atomic: concurrent builders both end with a complete file
        digest.replace(record)
    return target


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _private_dir(path: Path) -> Path:
    """``path`` as a folder only this user can write: created 0700, or an existing one checked (owned by
    this user, writable by nobody else) and made 0700; else RuntimeError, as its files cannot be trusted."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise RuntimeError(f"kernel cache {path} is not a folder: refusing to load kernels from it")
    if info.st_uid != os.geteuid():
        raise RuntimeError(
            f"kernel cache {path} is owned by uid {info.st_uid}, not this user ({os.geteuid()}): "
            "refusing to load kernels from it"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise RuntimeError(
            f"kernel cache {path} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}): "
            "refusing to load kernels from it; delete it to rebuild"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)
    return path


def _unverified(target: Path, record: Path) -> str | None:
    """Why the cached library ``target`` may not be loaded as it is, or None: a regular file of this
    user's that nobody else can write, whose SHA-256 is the one ``record`` kept at build time."""
    try:
        info = target.lstat()
    except FileNotFoundError:
        return "not built yet"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_uid != os.geteuid():
        return f"owned by uid {info.st_uid}, not this user"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable by group or others"
    try:
        expected = record.read_text().strip()
    except OSError:
        return "no SHA-256 recorded for it"
    if _sha256(target) != expected:
        return "its SHA-256 differs from the one recorded when it was built"
    return None


def load(path: Path) -> ctypes.CDLL:
    """A kernel library loaded, its entry point typed."""
    lib = ctypes.CDLL(str(path))
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.drugban_screen.argtypes = [
        p,
        i64,
        p,
        i64,
        p,
        p,
        p,
        p,
        i64,
        i64,
        p,
        i64,
        p,
        i64,
        p,
        i64,
        i64,
        p,
        i64,
        p,
        i64,
        p,
        p,
        ctypes.c_int,
        p,
    ]
    lib.drugban_screen.restype = ctypes.c_int
    return lib


def load_prebuilt(variant: variants.Variant, directory: Path) -> tuple[ctypes.CDLL | None, str]:
    """A prebuilt variant loaded, or None and why not."""
    path = directory / variants.filename(variant)
    if not path.exists():
        return None, f"no prebuilt {variant.name} ({path} is missing)"
    try:
        lib = load(path)
        stamp = ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(lib, "drugban_build_id"))).decode()
    except (OSError, ValueError, AttributeError) as exc:
        return None, f"prebuilt {variant.name} does not load: {exc}"
    if stamp != variants.build_id(directory / variants.SOURCE_NAME, variant):
        return None, f"prebuilt {variant.name} is stale: built from another {variants.SOURCE_NAME} or other flags"
    return lib, ""


@dataclass(frozen=True)
class KernelInfo:
    """Which screening kernel a process runs, and why (``drugrepo info``, ``drugrepo screen``, the benchmarks)."""

    kernel: str
    """``"prebuilt <variant>"``, ``"built at first use"`` or ``"none"`` (the torch path)."""
    path: str
    """The loaded library; "" for none."""
    reason: str
    """Why this one: the better ones skipped, and why."""

    @property
    def active(self) -> bool:
        """True when screening on CPU runs the C kernel (not the torch path)."""
        return self.kernel != "none"


def resolve(
    flags: Iterable[str],
    machine: str,
    directory: Path = KERNELS,
    first_use: Callable[[], Path] | None = None,
) -> tuple[ctypes.CDLL | None, KernelInfo]:
    """The kernel for a CPU with these flags (the module docstring's order), and its `KernelInfo`.

    ``directory`` holds the prebuilt libraries and their source; ``first_use`` builds one (`build`).
    """
    supported = variants.supported(flags, machine)
    if not supported:
        built_for = ", ".join(v.name for v in variants.for_machine(machine)) or f"no variant for {machine}"
        return None, KernelInfo(
            "none", "", f"the CPU runs none of {built_for}: without AVX-512 the torch path is faster"
        )
    notes = []
    for variant in supported:
        lib, why = load_prebuilt(variant, directory)
        if lib is not None:
            return lib, KernelInfo(
                f"prebuilt {variant.name}", str(directory / variants.filename(variant)), f"the CPU runs {variant.name}"
            )
        notes.append(why)
    try:
        path = (first_use or build)()
        lib = load(path)
    except (OSError, RuntimeError) as exc:
        notes.append(f"no build at first use: {exc}")
        return None, KernelInfo("none", "", "; ".join(notes))
    return lib, KernelInfo("built at first use", str(path), "; ".join(notes))


_info: KernelInfo | None = None
"""The `KernelInfo` of `fusion_kernel`'s last resolution."""


@functools.lru_cache(maxsize=1)
def fusion_kernel() -> ctypes.CDLL | None:
    """The loaded kernel library, or None when there is none here (screening's torch path); logged once."""
    global _info
    lib, info = resolve(cpu_flags(), platform.machine())
    _info = info
    if lib is None:
        log.warning("screening kernel: none, torch fallback: %s", info.reason)
    else:
        log.info("screening kernel: %s (%s): %s", info.kernel, info.path, info.reason)
    return lib


def kernel_info() -> KernelInfo:
    """Which screening kernel this process runs (`KernelInfo`); resolves it (`fusion_kernel`) if nothing has yet."""
    fusion_kernel()
    assert _info is not None, "fusion_kernel resolves the kernel info"
    return _info


def pack_linear(weight: Tensor, bias: Tensor) -> Tensor:
    """A Linear (weight [N, C], bias [N]) in the kernel's panel order: [N/NR, C + 1, NR], the bias as row C."""
    n, c = weight.shape
    both = torch.cat([weight.T, bias.unsqueeze(0)]).float()  # [C + 1, N]
    return both.reshape(c + 1, n // NR, NR).permute(1, 0, 2).contiguous()


@torch.no_grad()
def pack_gcn(gcn: MolecularGCN) -> tuple[Tensor, Tensor]:
    """The drug GCN in eval mode as the kernel reads it: its weights in one buffer, and its widths.

    Order: the initial transform (real atoms: without the virtual-flag column, no bias), then per
    layer the graph convolution, the residual Linear (both `pack_linear`) and BatchNorm's running
    statistics as a scale and a shift.
    """
    init = gcn.init_transform.weight[:, :-1]
    parts = [pack_linear(init, init.new_zeros(len(init)))]
    for layer in gcn.gnn.layers():
        parts += [
            pack_linear(layer.graph_conv.weight.T, layer.graph_conv.bias),
            pack_linear(layer.res_connection.weight, layer.res_connection.bias),
            *batch_norm_affine(layer.bn_layer),
        ]
    return torch.cat([t.float().reshape(-1) for t in parts]), torch.tensor(_gcn_widths(gcn), dtype=torch.int64)


def _gcn_widths(gcn: MolecularGCN) -> list[int]:
    """The GCN's feature widths: after the initial transform, then after each layer."""
    return [gcn.init_transform.weight.shape[0], *(layer.graph_conv.weight.shape[1] for layer in gcn.gnn.layers())]


def pack_targets(gq: Tensor) -> Tensor:
    """Targets' Gram matrices [T, K, K] in the kernel's tile order: [K/MR, K/NR, T, MR, NR]."""
    t, k, _ = gq.shape
    return gq.float().reshape(t, k // MR, MR, k // NR, NR).permute(1, 3, 0, 2, 4).contiguous()


def kernel_supports(gcn: MolecularGCN, vnet_width: int) -> bool:
    """Whether the kernel takes this model: every width of the GCN and v_net a multiple of NR."""
    return all(d % NR == 0 for d in [*_gcn_widths(gcn), vnet_width])


def screen(
    lib: ctypes.CDLL,
    molecules: MoleculeStore,
    idx: Tensor,
    gcn: tuple[Tensor, Tensor],
    vnet: Tensor,
    targets: Tensor,
    heads: Tensor,
    threads: int,
) -> tuple[Tensor, Tensor]:
    """Molecules ``idx`` of a store against packed targets, GCN and v_net inside the kernel.

    With X = v_net(GCN(molecule d)) over its real atoms (``gcn`` from `pack_gcn`, ``vnet`` from
    `pack_linear`) and each target's symmetric Gq (``targets`` from `pack_targets`):
    Σ_j (XᵀX)[k, j] · Gq[t, k, j] · H[j] [D, T, K] (``heads`` = H [K]), and Σ X [D, K].
    """
    k = _packed_width(gcn[1], vnet)
    idx = idx.to(torch.int64)
    check_molecules(molecules, idx)
    inputs = _KernelInputs.of(molecules, idx, gcn, vnet, targets, heads, k)
    n, t = len(idx), inputs.targets.shape[2]
    out, sums = torch.empty(n, t, k), torch.empty(n, k)
    bad = (ctypes.c_int64 * 2)(-1, -1)
    rc = inputs.run(lib, out, sums, threads, bad)
    _check_return(rc, bad, idx, inputs, n, t)
    return out, sums


def _packed_width(dims: Tensor, vnet: Tensor) -> int:
    """v_net's packed width K; ValueError unless it and every GCN width are multiples of NR."""
    k = vnet.shape[0] * vnet.shape[2]
    if k % NR or any(int(d) % NR for d in dims):
        raise ValueError(f"the kernel needs widths divisible by {NR}: GCN {dims.tolist()}, v_net {k}")
    return k


def _check_packing(
    weights: Tensor, d: list[int], features: int, vnet: Tensor, targets: Tensor, heads: Tensor, k: int
) -> None:
    """ValueError unless the packed GCN takes ``features`` atom features and v_net, targets and heads fit its widths ``d``."""
    expected = (features + 1) * d[0] + sum(2 * (a + 1) * b + 2 * b for a, b in itertools.pairwise(d))
    if weights.numel() != expected:
        raise ValueError(f"the packed GCN does not take {features} atom features (widths {d})")
    if (
        vnet.shape[1] != d[-1] + 1
        or targets.shape[:2] != (k // MR, k // NR)
        or targets.shape[3:] != (MR, NR)
        or heads.numel() != k
    ):
        raise ValueError(
            f"v_net {tuple(vnet.shape)}, targets {tuple(targets.shape)} and heads {heads.numel()} do not fit GCN widths {d}"
        )


@dataclass(frozen=True)
class _KernelInputs:
    """The kernel's inputs, each contiguous in the dtype it reads: the store's atoms and edges, the chunk's
    molecules (first atom, atoms, first edge, edges), the packed GCN and its widths, v_net, targets, heads."""

    feats: Tensor
    edges: Tensor
    node_start: Tensor
    atoms: Tensor
    edge_start: Tensor
    edge_count: Tensor
    weights: Tensor
    dims: Tensor
    vnet: Tensor
    targets: Tensor
    heads: Tensor
    k: int

    @classmethod
    def of(
        cls,
        molecules: MoleculeStore,
        idx: Tensor,
        gcn: tuple[Tensor, Tensor],
        vnet: Tensor,
        targets: Tensor,
        heads: Tensor,
        k: int,
    ) -> _KernelInputs:
        """The inputs for molecules ``idx`` (checked) of a store; ValueError where the packed parts do not fit."""
        weights, dims = gcn
        feats, edges = molecules.node_feats.float().contiguous(), molecules.edge_index.contiguous()
        _check_packing(weights, dims.tolist(), feats.shape[1], vnet, targets, heads, k)
        node_start, atoms = molecules.node_offsets[idx].contiguous(), molecules.num_nodes[idx].contiguous()
        edge_start = molecules.edge_offsets[idx].contiguous()
        edge_count = (molecules.edge_offsets[idx + 1] - molecules.edge_offsets[idx]).contiguous()
        return cls(
            feats,
            edges,
            node_start,
            atoms,
            edge_start,
            edge_count,
            weights.float().contiguous(),
            dims.to(torch.int64).contiguous(),
            vnet.float().contiguous(),
            targets.float().contiguous(),
            heads.float().contiguous(),
            k,
        )

    def run(self, lib: ctypes.CDLL, out: Tensor, sums: Tensor, threads: int, bad: ctypes.Array[ctypes.c_int64]) -> int:
        """The kernel's return code, having written ``out`` [D, T, K] and ``sums`` [D, K] (``bad``: where it refused)."""
        return int(
            lib.drugban_screen(
                self.feats.data_ptr(),
                self.feats.shape[0],
                self.edges.data_ptr(),
                self.edges.shape[1],
                self.node_start.data_ptr(),
                self.atoms.data_ptr(),
                self.edge_start.data_ptr(),
                self.edge_count.data_ptr(),
                len(self.node_start),
                self.feats.shape[1],
                self.weights.data_ptr(),
                self.weights.numel(),
                self.dims.data_ptr(),
                len(self.dims) - 1,
                self.vnet.data_ptr(),
                self.vnet.numel(),
                self.k,
                self.targets.data_ptr(),
                self.targets.numel(),
                self.heads.data_ptr(),
                self.targets.shape[2],
                out.data_ptr(),
                sums.data_ptr(),
                threads,
                bad,
            )
        )


def _check_return(
    rc: int, bad: ctypes.Array[ctypes.c_int64], idx: Tensor, inputs: _KernelInputs, n: int, t: int
) -> None:
    """Nothing for 0; else the kernel's refusal raised: MemoryError (2), ValueError naming the molecule
    (4, 5: bad[0], bad[1] the edge) or the sizes (other codes)."""
    if rc == 2:
        raise MemoryError(f"screening kernel failed (code {rc}): out of memory for {n} drugs × {t} targets")
    if rc in (4, 5):
        molecule, count = int(idx[bad[0]]), int(inputs.atoms[bad[0]])
        if rc == 5:  # the kernel checked that edge bad[1] is in the store
            src, dst = inputs.edges[:, bad[1]].tolist()
            where = f"edge {bad[1]} joins atoms {src} and {dst}, outside its {count} atoms"
        else:
            where = "its atoms or edges lie outside the store"
        raise ValueError(f"screening kernel refused molecule {molecule} of the store: {where}")
    if rc != 0:
        raise ValueError(f"screening kernel refused its inputs (code {rc}): sizes that do not fit together")


def check_molecules(molecules: MoleculeStore, idx: Tensor) -> None:
    """Refuse (ValueError naming the molecule) molecules ``idx`` of a store that the kernel would read out
    of bounds: offsets that do not span the store's atoms and edges, or an edge between atoms outside
    its molecule. Vectorised over the chunk's edges only, so it costs a fraction of the kernel's work."""
    feats, edges = molecules.node_feats, molecules.edge_index
    nodes, links = molecules.node_offsets, molecules.edge_offsets
    if (
        feats.dim() != 2
        or edges.dim() != 2
        or edges.shape[0] != 2
        or nodes.dim() != 1
        or links.shape != nodes.shape
        or not len(nodes)
    ):
        raise ValueError(
            f"a molecule store of atoms {tuple(feats.shape)}, edges {tuple(edges.shape)} and offsets "
            f"{tuple(nodes.shape)}, {tuple(links.shape)}: not [atoms, F], [2, edges] and [M + 1] each"
        )
    if int(nodes[0]) != 0 or int(links[0]) != 0 or int(nodes[-1]) != len(feats) or int(links[-1]) != edges.shape[1]:
        raise ValueError(f"the molecule store's offsets do not span its {len(feats)} atoms and {edges.shape[1]} edges")
    if not len(idx):
        return
    if int(idx.min()) < 0 or int(idx.max()) >= len(molecules):
        outside = int(idx[(idx < 0) | (idx >= len(molecules))][0])
        raise ValueError(f"molecule {outside} is not in the store of {len(molecules)} molecules")
    atoms, counts = nodes[idx + 1] - nodes[idx], links[idx + 1] - links[idx]
    if bool((atoms < 0).any()) or bool((counts < 0).any()):
        raise ValueError(f"molecule {int(idx[(atoms < 0) | (counts < 0)][0])} of the store: its offsets decrease")
    seg, rows = segment_ranges(links[idx], counts)
    ends = edges[:, rows]
    wrong = ((ends < 0) | (ends >= atoms[seg])).any(0)
    if bool(wrong.any()):
        first = int(torch.nonzero(wrong)[0])
        src, dst = ends[:, first].tolist()
        raise ValueError(
            f"molecule {int(idx[seg[first]])} of the store: edge {int(rows[first])} joins atoms {src} and "
            f"{dst}, outside its {int(atoms[seg[first]])} atoms"
        )
