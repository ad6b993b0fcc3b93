"""Peak memory of a whole process tree, read from /proc (Linux only, no psutil).

- `run_measured(cmd, ...)` starts a command and, while it runs, samples every `interval` seconds
  the summed resident set size of the process and all its descendants, keeping the peak of the sum
  and the largest number of live processes seen at once. stdout and stderr go to temporary files,
  never pipes that could fill up and stall the child.
- `PeakTreeRSS()` does the same for the current process's own tree from a background thread, for
  in-process work that spawns children (e.g. a multiprocessing pool)::

      with PeakTreeRSS() as m:
          work()
      m.peak_rss_bytes, m.peak_processes

How a sample is taken: every /proc/<pid>/stat is read for the parent links, the tree under the
root is collected, and each member's /proc/<pid>/statm resident pages × page size (= VmRSS) is
summed. Processes that vanish mid-read are skipped. A descendant once seen stays counted while it
lives (checked by its start time, so a reused pid is not mistaken for it) even after being
re-parented to init because its parent exited first; one that is born and orphaned between two
samples is missed.

Reading the numbers: RSS summed over processes counts every shared page (the interpreter and
library text, copy-on-write pages a forked worker still shares with its parent, shared memory)
once per process that maps it, so the sum is an upper bound on the memory the tree really
occupies, which is the conservative reading for a memory budget. It is a sampled peak: a spike
shorter than `interval` can be missed, so hold memory long enough (or sample faster) to be seen.

Self-check: ``python benchmarks/proctree.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

SampleCallback = Callable[[int, int], None]
"""Called after each sample with (summed RSS in bytes, number of live processes)."""


def _proc_table() -> dict[int, tuple[int, int, bytes]]:
    """pid -> (ppid, start time in clock ticks, state) for every process readable now."""
    table: dict[int, tuple[int, int, bytes]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:  # gone (or not ours to read) between listdir and open
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = data[data.rfind(b")") + 2 :].split()
        try:
            table[int(name)] = (int(fields[1]), int(fields[19]), fields[0])
        except (IndexError, ValueError):
            continue
    return table


def _rss_bytes(pid: int) -> int | None:
    """Resident bytes of one process (statm's resident pages × page size); None once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


class TreeSampler:
    """Summed RSS and process count of `root_pid` and all its descendants, one sample per call."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peak_rss_bytes = 0
        self.peak_processes = 0
        self.samples = 0
        self.last_rss_bytes = 0
        self.last_processes = 0
        self.last_pids: list[int] = []
        self._known: dict[int, int] = {}  # descendant pid -> start time, to follow re-parenting

    def sample(self) -> tuple[int, int]:
        """Take one sample, update the peaks and return (summed RSS bytes, live processes)."""
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        roots = [self.root_pid] if self.root_pid in table else []
        roots += [pid for pid, start in self._known.items() if pid in table and table[pid][1] == start]
        tree: set[int] = set()
        stack = roots
        while stack:
            pid = stack.pop()
            if pid not in tree:
                tree.add(pid)
                stack.extend(children.get(pid, ()))
        self._known = {pid: table[pid][1] for pid in tree if pid != self.root_pid}

        total = 0
        live: list[int] = []
        for pid in sorted(tree):
            if table[pid][2] in (b"Z", b"X"):  # exited, not yet reaped: holds no memory
                continue
            rss = _rss_bytes(pid)
            if rss is not None:
                total += rss
                live.append(pid)
        self.samples += 1
        self.last_rss_bytes, self.last_processes, self.last_pids = total, len(live), live
        self.peak_rss_bytes = max(self.peak_rss_bytes, total)
        self.peak_processes = max(self.peak_processes, len(live))
        return total, len(live)


@dataclass
class Measured:
    """Outcome of `run_measured`. RSS is summed over the tree: an upper bound (see module doc)."""

    returncode: int
    wall_s: float
    peak_rss_bytes: int
    peak_processes: int
    stdout: str
    stderr: str
    timed_out: bool = False
    samples: int = 0

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss_bytes / 2**20


def _kill_tree(proc: subprocess.Popen, sampler: TreeSampler) -> None:
    """SIGKILL the command's process group and every descendant the sampler can still find."""
    with contextlib.suppress(OSError):
        sampler.sample()
    for pid in [proc.pid, *sampler.last_pids]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_measured(
    cmd: Sequence[str],
    env: Mapping[str, str] | None = None,
    interval: float = 0.05,
    timeout: float | None = None,
    cwd: str | os.PathLike | None = None,
    on_sample: SampleCallback | None = None,
) -> Measured:
    """Run `cmd` to completion, sampling its process tree's summed RSS every `interval` seconds.

    `env` replaces the environment when given (like subprocess). stdin is /dev/null; stdout and
    stderr are captured through temporary files and decoded as UTF-8 (bad bytes replaced). The
    command runs in its own session (process group); past `timeout` seconds the whole tree is
    killed and the result has ``timed_out=True`` and a negative returncode. `on_sample(rss, n)`
    is called after every sample, e.g. to let a test release a child once its memory was seen.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        sampler = TreeSampler(proc.pid)
        timed_out = False
        try:
            while True:
                rss, count = sampler.sample()
                if on_sample is not None:
                    on_sample(rss, count)
                try:
                    returncode = proc.wait(timeout=interval)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if timeout is not None and time.perf_counter() - started > timeout:
                    timed_out = True
                    _kill_tree(proc, sampler)
                    returncode = proc.wait()
                    break
        except BaseException:
            _kill_tree(proc, sampler)
            proc.wait()
            raise
        wall_s = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=returncode,
            wall_s=wall_s,
            peak_rss_bytes=sampler.peak_rss_bytes,
            peak_processes=sampler.peak_processes,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
            timed_out=timed_out,
            samples=sampler.samples,
        )


class PeakTreeRSS:
    """Context manager: peak summed RSS of this process and its descendants while the block runs.

    Samples from a daemon thread every `interval` seconds (plus once on entry and once on exit).
    Attributes after the block: ``peak_rss_bytes``, ``peak_processes``, ``samples``, ``wall_s``,
    and ``start_rss_bytes`` (the tree's RSS on entry, to tell what the block added). Like
    `run_measured`, the sum counts shared pages once per process: an upper bound.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self._sampler = TreeSampler(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self.start_rss_bytes = 0
        self.wall_s = 0.0

    @property
    def peak_rss_bytes(self) -> int:
        return self._sampler.peak_rss_bytes

    @property
    def peak_processes(self) -> int:
        return self._sampler.peak_processes

    @property
    def samples(self) -> int:
        return self._sampler.samples

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sampler.sample()

    def __enter__(self) -> PeakTreeRSS:
        self._started = time.perf_counter()
        self.start_rss_bytes, _ = self._sampler.sample()
        self._thread = threading.Thread(target=self._run, name="PeakTreeRSS", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sampler.sample()
        self.wall_s = time.perf_counter() - self._started


# A child that starts `n` grandchildren, each holding `mib` MiB of touched memory until the file
# argv[3] exists; used by the self-check below and by the tests.
HOLDING_CHILDREN = r"""
import os, subprocess, sys, time
n, mib, release = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
hold = (
    "import os, sys, time\n"
    "block = b'x' * (int(sys.argv[1]) << 20)\n"  # bytes * n writes every page: resident
    "while not os.path.exists(sys.argv[2]):\n"
    "    time.sleep(0.01)\n"
)
kids = [subprocess.Popen([sys.executable, "-c", hold, str(mib), release]) for _ in range(n)]
sys.exit(max(k.wait() for k in kids))
"""


def _release_when(threshold: int, release: Path) -> SampleCallback:
    """on_sample callback that creates `release` once a sample reaches `threshold` bytes."""

    def on_sample(rss: int, _count: int) -> None:
        if rss >= threshold and not release.exists():
            release.touch()

    return on_sample


def _self_check() -> None:
    mib = 2**20
    numpy = run_measured([sys.executable, "-c", "import numpy as np; a = np.ones(50_000_000)"])
    print(
        f"numpy 400 MB array: peak {numpy.peak_rss_mib:.0f} MiB, {numpy.peak_processes} process, "
        f"rc {numpy.returncode}, {numpy.wall_s:.2f} s, {numpy.samples} samples"
    )
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp) / "release"
        forked = run_measured(
            [sys.executable, "-c", HOLDING_CHILDREN, "2", "200", str(release)],
            on_sample=_release_when(2 * 200 * mib, release),
            timeout=120,
        )
    print(
        f"2 children x 200 MiB: peak {forked.peak_rss_mib:.0f} MiB, "
        f"{forked.peak_processes} processes, rc {forked.returncode}, {forked.wall_s:.2f} s"
    )
    with tempfile.TemporaryDirectory() as tmp, PeakTreeRSS() as m:
        release = Path(tmp) / "release"
        child = subprocess.Popen([sys.executable, "-c", HOLDING_CHILDREN, "1", "300", str(release)])
        deadline = time.monotonic() + 60
        while m.peak_rss_bytes < m.start_rss_bytes + 300 * mib and time.monotonic() < deadline:
            time.sleep(0.01)
        release.touch()
        child.wait()
    print(
        f"in-process PeakTreeRSS around a 300 MiB child: peak {m.peak_rss_bytes / mib:.0f} MiB "
        f"(start {m.start_rss_bytes / mib:.0f} MiB), {m.peak_processes} processes"
    )


if __name__ == "__main__":
    _self_check()
