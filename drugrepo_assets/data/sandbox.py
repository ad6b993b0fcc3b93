"""RDKit's work on untrusted molecules, under a hard budget per molecule: CPU time and memory.

RDKit's parse, sanitisation and canonical ranking run in C++ and never give the interpreter back: a
pathological molecule inside every text limit (a bridged cage) can hold a thread, and the GIL, for
minutes and take gigabytes. So that work runs in `Sandbox` worker processes, one molecule at a time:

- **time**: a CPU-time timer (``ITIMER_PROF``) armed for each molecule; its signal, left at the
  kernel's default action, ends the worker even inside C++. CPU time, not wall time, so a loaded
  machine refuses nothing more than an idle one.
- **memory**: ``RLIMIT_AS`` set to the worker's own size after its imports plus the budget; an
  allocation past it fails (``MemoryError``) or ends the worker.

When a worker ends mid-batch, the molecule it was on (a shared counter says which) is refused with
``over_budget``, a fresh worker takes the rest, and the caller's thread only waits on pipes: the
API's event loop and the CLI's next row go on. A worker also ends when its parent does (end of its
pipe), within one molecule's budget at most.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

from drugrepo_assets.data.rules import (
    MOLECULE_CPU_SECONDS,
    MOLECULE_MEMORY_BYTES,
    Refusal,
    over_budget_refusal,
)

__all__ = ["BATCH", "Budget", "Sandbox"]

R = TypeVar("R")

BATCH = 256
"""Molecules sent to a worker at once: amortises the pipe, bounds the work redone after a worker ends."""
_CONTEXT = multiprocessing.get_context("spawn")  # a worker imports RDKit and numpy only, never the caller's threads


@dataclass(frozen=True)
class Budget:
    """What RDKit may spend on one molecule: CPU seconds and bytes of memory above its worker's own size."""

    cpu_seconds: float = MOLECULE_CPU_SECONDS
    memory_bytes: int = MOLECULE_MEMORY_BYTES

    def __post_init__(self) -> None:
        if not self.cpu_seconds > 0 or self.memory_bytes < 2**20:
            raise ValueError(f"a molecule budget needs CPU seconds > 0 and at least 1 MiB of memory, not {self}")


def _limit_memory(extra: int) -> None:
    """Cap this process's address space at its size now plus ``extra`` bytes."""
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, resource.RLIM_INFINITY))


def _serve(conn: Connection, fn: Callable[[Any], Any], budget: Budget, done: Any, warm: Sequence[Any]) -> None:
    """A worker: answer each batch with ``fn`` of every item, one timer per item, until the pipe closes."""
    signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the default action ends the process, even inside C++
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    for item in warm:  # import and initialise what fn uses before the memory cap is measured
        fn(item)
    _limit_memory(budget.memory_bytes)
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):  # the parent has gone
            return
        out = []
        for i, item in enumerate(batch):
            done.value = i
            signal.setitimer(signal.ITIMER_PROF, budget.cpu_seconds)
            try:
                out.append(fn(item))
            except MemoryError:
                out.append(over_budget_refusal(f"its memory budget of {budget.memory_bytes // 2**20} MiB"))
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        try:
            conn.send(out)
        except (BrokenPipeError, OSError):
            return


class _Worker:
    """One worker process, its pipe and its progress counter (the item of the batch it is on)."""

    def __init__(self, fn: Callable[[Any], Any], budget: Budget, warm: Sequence[Any]) -> None:
        self.conn, child = _CONTEXT.Pipe()
        self.done = _CONTEXT.Value("i", 0, lock=False)
        self.process = _CONTEXT.Process(
            target=_serve, args=(child, fn, budget, self.done, tuple(warm)), daemon=True, name="drugrepo-molecule"
        )
        self.process.start()
        child.close()

    def stop(self) -> None:
        """End the process now (it may be inside RDKit) and reap it."""
        with contextlib.suppress(OSError):
            self.conn.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join()


class Sandbox(Generic[R]):
    """``fn`` applied to molecules in ``workers`` processes, each molecule within ``budget``.

    ``fn`` must be importable (a module-level function or a `functools.partial` of one); it gets one
    item and returns a picklable answer. `map` is thread-safe: concurrent callers share the workers.
    """

    def __init__(
        self, fn: Callable[[Any], R], workers: int = 1, budget: Budget | None = None, warm: Sequence[Any] = ()
    ) -> None:
        self.fn = fn
        self.budget = budget or Budget()
        self.warm = tuple(warm)
        self._idle: deque[_Worker] = deque(_Worker(fn, self.budget, self.warm) for _ in range(max(1, workers)))
        self._size = len(self._idle)
        self._available = threading.Condition()
        self._closed = False

    def map(self, items: Sequence[Any]) -> list[R | Refusal]:
        """``fn(item)`` for each item, in order; an item over budget gets the ``over_budget`` refusal."""
        results: list[Any] = [None] * len(items)
        pending = deque((start, min(start + BATCH, len(items))) for start in range(0, len(items), BATCH))
        busy: dict[_Worker, tuple[int, int]] = {}
        try:
            while pending or busy:
                while pending and (worker := self._acquire(block=not busy)) is not None:
                    start, end = pending.popleft()
                    worker.conn.send(list(items[start:end]))
                    busy[worker] = (start, end)
                ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
                for worker, (start, end) in list(busy.items()):
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    del busy[worker]
                    answer = self._answer(worker)
                    if answer is not None:
                        results[start:end] = answer
                        self._release(worker)
                        continue
                    failed = start + worker.done.value  # the worker ended on this item: it is the one over budget
                    results[failed] = over_budget_refusal(self._cause(worker))
                    worker.stop()
                    self._release(_Worker(self.fn, self.budget, self.warm))
                    pending.extendleft(r for r in ((failed + 1, end), (start, failed)) if r[0] < r[1])
        except BaseException:
            for worker in busy:  # a half-answered worker cannot be reused
                worker.stop()
                self._release(_Worker(self.fn, self.budget, self.warm))
            raise
        return results

    @staticmethod
    def _answer(worker: _Worker) -> list[Any] | None:
        """The batch's answers, or None when the worker ended before sending them."""
        try:
            if worker.conn.poll():
                answer: list[Any] = worker.conn.recv()
                return answer
        except (EOFError, OSError):
            pass
        return None

    def _cause(self, worker: _Worker) -> str:
        """Which budget a worker that ended passed: its time (the timer's signal) or its memory (anything else)."""
        worker.process.join()
        if worker.process.exitcode == -signal.SIGPROF:
            return f"its CPU-time budget of {self.budget.cpu_seconds:g} s"
        return f"its memory budget of {self.budget.memory_bytes // 2**20} MiB (worker ended, exit {worker.process.exitcode})"

    def _acquire(self, block: bool) -> _Worker | None:
        with self._available:
            if block:
                self._available.wait_for(lambda: bool(self._idle) or self._closed)
            if self._closed:
                raise RuntimeError("the molecule sandbox is closed")
            return self._idle.popleft() if self._idle else None

    def _release(self, worker: _Worker) -> None:
        with self._available:
            if self._closed:
                worker.stop()
                return
            self._idle.append(worker)
            self._available.notify()

    def close(self) -> None:
        """Stop every idle worker; a busy one is stopped when its batch returns."""
        with self._available:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            self._available.notify_all()
        for worker in idle:
            worker.stop()

    def __enter__(self) -> Sandbox[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
