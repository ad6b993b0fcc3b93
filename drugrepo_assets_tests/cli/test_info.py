"""``drugrepo info`` / ``doctor``: the versions, the device and the screening kernel, as lines and as JSON."""

from __future__ import annotations

import json
import platform
from collections.abc import Iterator
from importlib.metadata import version

import pytest
import torch

from drugrepo_assets.cli import main
from drugrepo_assets.screening import native


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["info", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def no_kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process resolves the screening kernel for a CPU without AVX-512 (then for the real CPU again)."""
    monkeypatch.setattr(native, "cpu_flags", lambda: frozenset({"sse2"}))
    native.fusion_kernel.cache_clear()
    yield
    monkeypatch.undo()
    native.fusion_kernel.cache_clear()


def test_info_json_reports_the_installed_versions_and_the_device(capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(capsys)
    assert report["versions"] == {
        "python": platform.python_version(),
        "drugrepo": version("drugrepo-assets"),
        "torch": version("torch"),
        "RDKit": version("rdkit"),
        "pandas": version("pandas"),
        "pyarrow": version("pyarrow"),
        "dagster": version("dagster"),
    }
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert report["device"] == {
        "auto": "cuda" if count else "cpu",
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(count)],
        "cpu_threads": torch.get_num_threads(),
    }
    kernel = native.kernel_info()
    assert report["screening_kernel"] == {
        "active": kernel.kernel != "none",
        "kernel": kernel.kernel,
        "path": kernel.path,
        "reason": kernel.reason,
        "used_by_auto": kernel.kernel != "none" and not count,
    }


def test_info_lines_say_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    report = _report(capsys)
    assert main(["doctor"]) == 0
    lines = capsys.readouterr().out.splitlines()
    versions = report["versions"]
    assert lines[:7] == [
        f"drugrepo {versions['drugrepo']}",
        f"Python {versions['python']}",
        *(f"{name} {versions[name]}" for name in ("torch", "RDKit", "pandas", "pyarrow", "dagster")),
    ]
    device = report["device"]
    assert lines[7].startswith(f"device: {device['auto']} (--device auto); {len(device['cuda_devices'])} CUDA device")
    assert lines[7].endswith(f"; CPU: {device['cpu_threads']} torch threads")
    kernel = report["screening_kernel"]
    if kernel["active"]:
        assert lines[8].startswith(
            f"screening kernel: active, {kernel['kernel']} ({kernel['path']}): {kernel['reason']}"
        )
    else:
        assert lines[8] == f"screening kernel: inactive, the torch path screens: {kernel['reason']}"
    assert len(lines) == 9


def test_info_says_why_the_kernel_is_inactive(capsys: pytest.CaptureFixture[str], no_kernel: None) -> None:
    report = _report(capsys)
    assert report["screening_kernel"]["active"] is False
    assert report["screening_kernel"]["kernel"] == "none"
    assert "without AVX-512 the torch path is faster" in report["screening_kernel"]["reason"]
    assert main(["info"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"screening kernel: inactive, the torch path screens: {report['screening_kernel']['reason']}"
