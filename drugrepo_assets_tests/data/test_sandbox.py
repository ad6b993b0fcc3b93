"""The molecule sandbox (`data.sandbox`): a CPU-time budget that ends a worker even inside RDKit's C++,
a memory budget, answers in order, callers on several threads, close, exceptions raised where they
belong, and workers that end with their parent. Budgets are set far from what each item costs, so no
verdict depends on the machine's speed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drugrepo_assets.data.rules import canonical_smiles
from drugrepo_assets.data.sandbox import (
    BATCH,
    BUDGET_VARIABLES,
    Budget,
    Sandbox,
    molecule_budget,
    molecule_map,
    molecule_sandbox,
    shared_sandbox,
)

SPIN = "spin"
"""An item on which `answer` loops until its timer ends the worker."""
HOG = "hog"
"""An item on which `answer` asks for 2 GiB."""


def answer(item: str) -> str:
    """The item upper-cased, or the misbehaviour it names (module level: a worker imports it)."""
    if item == SPIN:
        while True:
            pass
    if item == HOG:
        return str(len(bytearray(2 << 30)))
    if item == "raise":
        raise KeyError("the caller's bug")
    return item.upper()


def rdkit_atoms(smiles: str) -> int:
    """RDKit's atoms of a sanitised parse: C++ work the interpreter cannot interrupt."""
    from rdkit import Chem

    return Chem.MolFromSmiles(smiles).GetNumAtoms()


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_until(condition, what: str, timeout: float = 120) -> None:
    """Poll ``condition`` until it holds; a generous deadline guards against a hang, never a timing claim."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_cpu_budget_ends_a_worker_in_python_and_in_rdkit_and_the_rest_go_on() -> None:
    with Sandbox(answer, workers=1, budget=Budget(cpu_seconds=0.05)) as sandbox:
        assert sandbox.map(["a", SPIN, "b"])[::2] == ["A", "B"]
        [refusal] = [r for r in sandbox.map(["a", SPIN, "b"]) if not isinstance(r, str)]
        assert refusal.code == "over_budget" and "CPU-time budget of 0.05 s" in refusal.message
    from drugrepo_assets_tests.molecules import NEAR_BUDGET_CAGE  # not at the top: workers import this module

    with Sandbox(rdkit_atoms, workers=1, budget=Budget(cpu_seconds=0.05), warm=["CCO"]) as sandbox:
        # ~1 s of ring perception inside RDKit (20x the budget): the timer's signal ends it mid-C++
        out = sandbox.map(["CCO", NEAR_BUDGET_CAGE, "c1ccccc1"])
    assert out[0] == 3 and out[2] == 6 and out[1].code == "over_budget"


def test_the_memory_budget_refuses_an_allocation_past_it() -> None:
    with Sandbox(answer, workers=1, budget=Budget(memory_bytes=64 << 20)) as sandbox:
        out = sandbox.map(["a", HOG, "b"])
    assert out[0] == "A" and out[2] == "B"
    assert out[1].code == "over_budget" and "memory budget of 64 MiB" in out[1].message


def test_answers_keep_their_order_across_batches_workers_and_refusals() -> None:
    items = [f"m{i}" for i in range(3 * BATCH + 7)]
    for at in (0, BATCH, len(items) - 1):  # first and last of all, first of a batch
        items[at] = SPIN
    with Sandbox(answer, workers=2, budget=Budget(cpu_seconds=0.05)) as sandbox:
        out = sandbox.map(items)
    assert [o if isinstance(o, str) else o.code for o in out] == [
        "over_budget" if item == SPIN else item.upper() for item in items
    ]


def test_callers_on_several_threads_share_the_workers() -> None:
    results: dict[int, list] = {}
    with Sandbox(answer, workers=2, budget=Budget(cpu_seconds=0.05)) as sandbox:

        def call(t: int) -> None:
            results[t] = sandbox.map([f"t{t}-{i}" if i != 7 * t else SPIN for i in range(BATCH + 50)])

        threads = [threading.Thread(target=call, args=(t,)) for t in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    for t in range(3):
        assert [o if isinstance(o, str) else o.code for o in results[t]] == [
            f"T{t}-{i}" if i != 7 * t else "over_budget" for i in range(BATCH + 50)
        ]


def test_an_exception_of_the_function_is_raised_in_the_caller_and_the_sandbox_goes_on() -> None:
    with Sandbox(answer, workers=1) as sandbox:
        with pytest.raises(KeyError, match="the caller's bug"):
            sandbox.map(["a", "raise", "b"])
        assert sandbox.map(["c"]) == ["C"]


def test_a_worker_killed_while_idle_is_replaced_and_its_batch_answered() -> None:
    """An idle worker ended from outside (the OOM killer, an operator's kill) costs the next caller nothing: the
    batch sent to its closed pipe goes to a fresh worker instead of raising BrokenPipeError."""
    with Sandbox(answer, workers=1) as sandbox:
        assert sandbox.map(["a"]) == ["A"]
        [idle] = sandbox._idle
        os.kill(idle.process.pid, signal.SIGKILL)
        idle.process.join()
        assert sandbox.map(["b", "c"]) == ["B", "C"]
        [fresh] = sandbox._idle
        assert fresh is not idle and fresh.process.is_alive()


def test_close_ends_the_workers_and_a_caller_in_flight() -> None:
    sandbox = Sandbox(answer, workers=2, budget=Budget(cpu_seconds=600))
    pids = [w.process.pid for w in sandbox._idle]
    failed: list[BaseException] = []

    def busy() -> None:
        try:
            sandbox.map(["a", SPIN])  # one batch, which would spin for 10 minutes
        except BaseException as exc:
            failed.append(exc)

    caller = threading.Thread(target=busy)
    caller.start()
    _wait_until(lambda: bool(sandbox._lent), "the caller never took a worker")
    sandbox.close()
    caller.join(timeout=120)
    assert not caller.is_alive(), "a caller in flight outlived close"
    assert isinstance(failed[0], RuntimeError) and "closed" in str(failed[0])
    _wait_until(lambda: not any(_alive(pid) for pid in pids), "a worker outlived close")
    sandbox.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        sandbox.map(["a"])


def test_workers_end_with_their_parent(tmp_path: Path) -> None:
    """A parent killed with SIGKILL: its workers see their pipe close and end, and the resource tracker with them."""
    script = (
        "import os, sys, time\n"
        "from drugrepo_assets.data.sandbox import molecule_sandbox\n"
        "sandbox = molecule_sandbox(2)\n"
        "print(sandbox.map([(len, 'abc')]), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert parent.stdout.readline().strip() == "[3]"
        group = _group(parent.pid)
        assert len(group) >= 3, group  # the parent, two workers (and the spawn context's resource tracker)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        _wait_until(lambda: not _group(parent.pid), f"processes outlived their parent: {_group(parent.pid)}")
    finally:
        for pid in _group(parent.pid):
            os.kill(pid, signal.SIGKILL)


def _group(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _alive(int(entry)):
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            if int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def test_molecule_tasks_share_one_sandbox_and_the_budget_comes_from_the_environment() -> None:
    with molecule_sandbox(1) as sandbox:
        assert molecule_map(canonical_smiles, ["OCC", "C1CC"], sandbox=sandbox)[0] == ("CCO", None)
        assert sandbox.map([(len, "abcd")]) == [4]
    assert shared_sandbox() is shared_sandbox()
    assert molecule_budget({}) == Budget()
    cpu, memory = BUDGET_VARIABLES["cpu_seconds"], BUDGET_VARIABLES["memory_mb"]
    assert molecule_budget({cpu: "0.5", memory: "256"}) == Budget(0.5, 256 << 20)
    for bad in ("0", "-1", "nan", "inf", "two"):
        with pytest.raises(ValueError, match=cpu):
            molecule_budget({cpu: bad})
