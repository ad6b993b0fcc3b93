"""The package's build step beyond pyproject.toml (where all the metadata lives): the CPU screening kernel.

drugrepo_assets/screening/kernels/screen_fusion.c is compiled into plain shared libraries that native.py
loads with ctypes (not Python extension modules), one per portable ISA variant of
kernels/variants.py (x86-64-v4 only: without AVX-512 the kernel is slower than the torch path), as
``drugrepo_assets/screening/kernels/screen_fusion.<variant>.so``: in the wheel (``pip install .``,
``pip wheel .``, which makes it a platform wheel) and, for ``pip install -e .``, in the source tree.
They go through ``build_ext`` as optional extensions, so a variant that does not compile, or a
machine without a C compiler, only warns: the build succeeds without that prebuilt kernel and
native.py falls back to building at first use, or to the torch path.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
KERNELS = Path("drugrepo_assets", "screening", "kernels")


def _load_variants():
    """kernels/variants.py by its path: the package itself (torch) is not importable at build time."""
    spec = importlib.util.spec_from_file_location("_drugrepo_kernel_variants", HERE / KERNELS / "variants.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


variants = _load_variants()


class KernelLibrary(Extension):
    """One ISA variant of the screening kernel: a shared library for ctypes."""

    def __init__(self, variant) -> None:
        module = "screen_fusion_" + variant.name.replace("-", "_")
        source = (KERNELS / variants.SOURCE_NAME).as_posix()
        super().__init__(".".join([*KERNELS.parts, module]), sources=[source], optional=True)
        self.variant = variant


class build_kernels(build_ext):
    """build_ext that compiles the kernel variants with their own flags (not Python's) and never fails on them."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = True  # the variants compile side by side (one is ~20 s)

    def get_ext_filename(self, fullname: str) -> str:
        parts = fullname.split(".")
        for ext in self.extensions:
            if isinstance(ext, KernelLibrary) and ext.name.split(".")[-1] == parts[-1]:
                return os.path.join(*parts[:-1], variants.filename(ext.variant))
        return super().get_ext_filename(fullname)

    def build_extension(self, ext) -> None:
        if not isinstance(ext, KernelLibrary):
            super().build_extension(ext)
            return
        out = Path(self.get_ext_fullpath(ext.name))
        out.unlink(missing_ok=True)  # never ship a library of an earlier build
        out.parent.mkdir(parents=True, exist_ok=True)
        cc = variants.compiler()
        if cc is None:
            self._skip(ext, "no C compiler found ($CC, cc, gcc)")
            return
        partial = out.with_name(out.name + ".partial")
        command = variants.compile_command(cc, HERE / ext.sources[0], ext.variant, partial)
        self.announce(" ".join(command), level=2)
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.SubprocessError) as exc:
            self._skip(ext, f"{cc} did not run: {exc}")
            return
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            self._skip(ext, f"{cc} failed:\n{result.stderr.strip()[-2000:]}")
            return
        partial.replace(out)

    def _skip(self, ext, reason: str) -> None:
        self.warn(f"screening kernel {ext.variant.name} not prebuilt: {reason}")


setup(
    ext_modules=[KernelLibrary(v) for v in variants.for_machine(platform.machine())],
    cmdclass={"build_ext": build_kernels},
)
