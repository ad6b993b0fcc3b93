"""The API's RDKit workers: the requests' molecules are parsed and featurised in other processes, never in the server's.

RDKit's parse and sanitisation run in C++ without giving the GIL back, and a molecule inside every
text limit can cost seconds and gigabytes (issue 21). So the app starts a `data.sandbox.molecule_sandbox`
with it (closed with it) and every SMILES that passes the text rules is featurised there
(`ml.features.featurize.compact_answers`): each molecule within ``DRUGREPO_MOLECULE_CPU_SECONDS`` and
``DRUGREPO_MOLECULE_MEMORY_MB``, one past them refused ``over_budget`` (422), and the pool's thread
only waits on the workers' pipes, so the event loop and /healthz never wait on RDKit. The request
log computes its descriptors in a sandbox of its own with the same budget, so logging never delays a
request's molecules.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.data.rules import Refusal
from drugrepo_assets.data.sandbox import Budget, Sandbox, molecule_sandbox
from drugrepo_assets.ml.features.descriptors import molecule_descriptors
from drugrepo_assets.ml.features.featurize import CompactMolecule, compact_answers, compact_molecule

__all__ = ["DESCRIPTOR_WORKERS", "Featuriser", "budget", "descriptor_sandbox", "request_sandbox"]

DESCRIPTOR_WORKERS = 1
"""Worker processes of the request log's descriptors (its one writer thread feeds them)."""
_WARM = "CCO"


def budget(settings: ServingSettings) -> Budget:
    """The budget of one molecule: ``DRUGREPO_MOLECULE_CPU_SECONDS`` and ``DRUGREPO_MOLECULE_MEMORY_MB``."""
    return Budget(settings.molecule_cpu_seconds, int(settings.molecule_memory_mb * 2**20))


def request_sandbox(settings: ServingSettings) -> Sandbox[Any]:
    """The requests' featurisation workers (``DRUGREPO_MOLECULE_WORKERS``), the featuriser imported before their cap."""
    return molecule_sandbox(settings.molecule_workers, budget(settings), warm=[(compact_molecule, _WARM)])


def _outcome(answer: CompactMolecule | Refusal) -> str:
    """A molecule's label in ``drugrepo_molecules_total``."""
    if not isinstance(answer, Refusal):
        return "featurised"
    return "over_budget" if answer.code == "over_budget" else "refused"


class Featuriser:
    """The requests' molecules featurised in ``sandbox`` (`request_sandbox`), each outcome counted in
    ``counter`` (``drugrepo_molecules_total``: featurised, refused, over_budget); shared by the app's scorers."""

    def __init__(self, sandbox: Sandbox[Any], counter: Counter | None = None) -> None:
        self.sandbox = sandbox
        self.counter = counter

    def __call__(self, smiles: Sequence[str], max_atoms: int, library: bool) -> list[CompactMolecule | Refusal]:
        """`ml.features.featurize.compact_molecule` of each SMILES, in order, each within the molecule budget."""
        answers = compact_answers(smiles, max_atoms, library=library, sandbox=self.sandbox)
        if self.counter is not None:
            for outcome, count in collections.Counter(map(_outcome, answers)).items():
                self.counter.labels(outcome).inc(count)
        return answers

    def close(self) -> None:
        """Stop the workers (at the app's shutdown)."""
        self.sandbox.close()


def descriptor_sandbox(settings: ServingSettings) -> Sandbox[Any]:
    """The request log's descriptor worker (`ml.features.descriptors.molecule_descriptors`), with the molecules' budget."""
    return molecule_sandbox(DESCRIPTOR_WORKERS, budget(settings), warm=[(molecule_descriptors, _WARM)])
