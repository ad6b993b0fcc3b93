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
pipe), within one batch at most, and with the last worker the spawn context's resource tracker.

The core's readers (validation, featurisation, predict, screen) run any module-level function of one
molecule through a `molecule_sandbox` (items are tasks ``(fn, smiles, *args)``, `molecule_map`): the
caller's, or this process's `shared_sandbox`, started on first use and closed at exit. The budget is
`rules.MOLECULE_CPU_SECONDS` and `rules.MOLECULE_MEMORY_BYTES`, or the `BUDGET_VARIABLES` a process
sets (`molecule_budget`).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import multiprocessing
import os
import pickle
import resource
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

from drugrepo_assets.data.rules import (
    MOLECULE_CPU_SECONDS,
    MOLECULE_MEMORY_BYTES,
    Refusal,
    canonical_smiles,
    over_budget_refusal,
)

__all__ = [
    "BATCH",
    "BUDGET_VARIABLES",
    "Budget",
    "Sandbox",
    "default_workers",
    "molecule_budget",
    "molecule_map",
    "molecule_sandbox",
    "run_task",
    "shared_sandbox",
]

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


BUDGET_VARIABLES: dict[str, str] = {
    "cpu_seconds": "DRUGREPO_MOLECULE_CPU_SECONDS",
    "memory_mb": "DRUGREPO_MOLECULE_MEMORY_MB",
}
"""The environment variables that set a `molecule_budget` (the API's settings read the same names)."""


def molecule_budget(environ: Mapping[str, str] | None = None) -> Budget:
    """The budget in force: `rules.MOLECULE_CPU_SECONDS` and `rules.MOLECULE_MEMORY_BYTES`, or the numbers
    of `BUDGET_VARIABLES` (seconds, MiB). Read at each call; a value that is not a positive finite
    number is a ValueError naming the variable."""
    environ = os.environ if environ is None else environ
    values: dict[str, float] = {}
    for field, variable in BUDGET_VARIABLES.items():
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{variable}={environ[variable]!r} is not a positive number")
        values[field] = value
    return Budget(
        values.get("cpu_seconds", MOLECULE_CPU_SECONDS),
        int(values["memory_mb"] * 2**20) if "memory_mb" in values else MOLECULE_MEMORY_BYTES,
    )


def _portable(exc: Exception) -> Exception:
    """``exc`` if it survives pickling as itself, else a RuntimeError naming it."""
    try:
        copy = pickle.loads(pickle.dumps(exc))
    except Exception:
        copy = None
    if type(copy) is type(exc) and str(copy) == str(exc):
        return exc
    return RuntimeError(f"{type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class _Raised:
    """An exception ``fn`` raised in a worker, sent back to be raised in the caller as in-process work would."""

    error: BaseException


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
        out: list[Any] = []
        for i, item in enumerate(batch):
            done.value = i
            signal.setitimer(signal.ITIMER_PROF, budget.cpu_seconds)
            try:
                out.append(fn(item))
            except MemoryError:
                out.append(over_budget_refusal(f"its memory budget of {budget.memory_bytes // 2**20} MiB"))
            except Exception as exc:  # the caller's bug or input, not a budget: raised there
                out.append(_Raised(_portable(exc)))
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
        try:
            conn.send(out)
        except (BrokenPipeError, OSError):
            return
        except Exception as exc:  # an answer that does not pickle: the caller gets the error instead
            conn.send([_Raised(RuntimeError(f"{type(exc).__name__}: {exc}"))] * len(out))


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
        self.budget = budget or molecule_budget()
        self.warm = tuple(warm)
        self._idle: deque[_Worker] = deque(_Worker(fn, self.budget, self.warm) for _ in range(max(1, workers)))
        self._size = len(self._idle)
        self._lent: set[_Worker] = set()  # the workers callers hold now, for `close` to end
        self._available = threading.Condition()
        self._closed = False

    def map(self, items: Sequence[Any]) -> list[R | Refusal]:
        """``fn(item)`` for each item, in order; an item over budget gets the ``over_budget`` refusal, and
        an exception ``fn`` raised is raised here (after every item was answered)."""
        results: list[Any] = [None] * len(items)
        pending = deque((start, min(start + BATCH, len(items))) for start in range(0, len(items), BATCH))
        busy: dict[_Worker, tuple[int, int]] = {}
        try:
            while pending or busy:
                while pending and (worker := self._acquire(block=not busy)) is not None:
                    start, end = pending.popleft()
                    worker.done.value = 0  # a worker that ends before its first item blames that item
                    try:
                        worker.conn.send(list(items[start:end]))
                    except OSError:  # it ended while idle (killed from outside): a fresh worker takes the batch
                        pending.appendleft((start, end))
                        self._renew(worker)
                        continue
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
                    cause = self._cause(worker)
                    self._renew(worker)
                    if self._closed:  # ended by close, not by its item
                        raise RuntimeError("the molecule sandbox is closed")
                    results[failed] = over_budget_refusal(cause)
                    pending.extendleft(r for r in ((failed + 1, end), (start, failed)) if r[0] < r[1])
        except BaseException:
            for worker in busy:  # a half-answered worker cannot be reused
                self._renew(worker)
            raise
        raised = next((r.error for r in results if isinstance(r, _Raised)), None)
        if raised is not None:
            raise raised
        return results

    def _renew(self, worker: _Worker) -> None:
        """Stop a worker that ended or cannot be reused, and put a fresh one in its place (none once closed)."""
        worker.stop()
        with self._available:
            self._lent.discard(worker)
            if self._closed:
                return
        self._release(_Worker(self.fn, self.budget, self.warm))

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
            if not self._idle:
                return None
            worker = self._idle.popleft()
            self._lent.add(worker)
            return worker

    def _release(self, worker: _Worker) -> None:
        with self._available:
            self._lent.discard(worker)
            if not self._closed:
                self._idle.append(worker)
                self._available.notify()
                return
        worker.stop()

    def close(self) -> None:
        """Stop every worker: idle ones now, busy ones killed mid-batch (their callers' `map` raises RuntimeError)."""
        with self._available:
            self._closed = True
            idle, self._idle = list(self._idle), deque()
            lent = list(self._lent)
            self._available.notify_all()
        for worker in lent:  # its caller reaps it
            worker.process.kill()
        for worker in idle:
            worker.stop()

    def __enter__(self) -> Sandbox[R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_task(task: tuple[Any, ...]) -> Any:
    """``task[0](*task[1:])``: a `molecule_sandbox` worker's work on one item, any module-level function
    of one molecule (RDKit's modules only: the worker never imports pandas or torch for it)."""
    fn, *args = task
    return fn(*args)


_WARM_TASKS: tuple[tuple[Any, ...], ...] = ((canonical_smiles, "c1ccccc1O"),)
"""What a molecule worker runs before its memory cap is measured: RDKit imported and initialised."""


def molecule_sandbox(
    workers: int = 1, budget: Budget | None = None, warm: Iterable[tuple[Any, ...]] = ()
) -> Sandbox[Any]:
    """A sandbox of ``workers`` processes whose items are tasks ``(fn, smiles, *args)`` (`run_task`), so
    one pool serves every kind of molecule work; ``warm`` adds tasks run before the memory cap."""
    return Sandbox(run_task, workers, budget, warm=(*_WARM_TASKS, *warm))


def default_workers() -> int:
    """Molecule worker processes by default: one per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_shared: dict[int, Sandbox[Any]] = {}
"""The shared sandbox by the pid that started it: a forked child never uses its parent's workers."""
_shared_lock = threading.Lock()


def shared_sandbox() -> Sandbox[Any]:
    """This process's molecule sandbox for callers that bring none: started on first use with
    `default_workers` workers, closed at exit (a forked child starts its own)."""
    with _shared_lock:
        sandbox = _shared.get(os.getpid())
        if sandbox is None:
            sandbox = _shared[os.getpid()] = molecule_sandbox(default_workers())
        return sandbox


@atexit.register
def _close_shared() -> None:
    """Stop this process's shared sandbox, if it started one."""
    sandbox = _shared.pop(os.getpid(), None)
    if sandbox is not None:
        sandbox.close()


def molecule_map(
    fn: Callable[..., R], smiles: Sequence[str], *args: Any, sandbox: Sandbox[Any] | None = None
) -> list[R | Refusal]:
    """``fn(s, *args)`` for each SMILES in ``sandbox`` (a `molecule_sandbox`; else `shared_sandbox`), in
    order; a molecule over budget gets the ``over_budget`` refusal."""
    return (sandbox or shared_sandbox()).map([(fn, s, *args) for s in smiles])
