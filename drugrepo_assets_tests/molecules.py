"""Bridged ring systems for the tests of RDKit's budget (issue 21): circulant cages written as SMILES,
and a Hypothesis strategy of them shared by every surface's test (the CLI's and the API's).

`circulant(n, k)` is a ring of ``n`` atoms, each also bonded to the atom ``k`` places on (ring
closures in the SMILES). It has n + 1 independent rings (n / 2 + 1 when k = n / 2), so the ring rule
(`rules.MAX_RINGS`) refuses every one of more than 39 atoms before RDKit's sanitisation. Under it,
RDKit's symmetrised ring perception is exponential on one family: k = n / 2 − 1 with n even, whose
time doubles every two atoms (measured on the 2-core test machine: n = 30 0.06 s, 34 0.25 s,
36 0.5-0.7 s, 38 1.0-1.7 s of CPU for C, S or aromatic s alike). Those `near_budget` cages are the
only ones generated whose verdict may depend on the machine: accepted (or RDKit's own refusal) where
RDKit is fast enough, ``over_budget`` where it is not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hypothesis import strategies as st

from drugrepo_assets.data.rules import MAX_RINGS, MIN_CANDIDATE_HEAVY_ATOMS

__all__ = [
    "FINDING_CAGE",
    "NEAR_BUDGET_CAGE",
    "RING_CAGE",
    "BridgedRings",
    "bridged_ring_systems",
    "circulant",
    "screening_candidates",
]

ELEMENTS = ("C", "N", "O", "S")
"""The generated cages' elements; only C and S take four bonds, so N and O cages fail RDKit's valence check."""


def circulant(n: int, k: int, element: str = "C", aromatic: bool = False, query_at: int | None = None) -> str:
    """The SMILES of a ring of ``n`` atoms each also bonded to the atom ``k`` on (``2 <= k <= n / 2``), all of
    ``element`` (lower case when ``aromatic``), with a query atom ``*`` in place of atom ``query_at``."""
    edges = {(min(i, (i + d) % n), max(i, (i + d) % n)) for i in range(n) for d in (1, k)}
    closures: dict[int, list[int]] = {}
    for a, b in sorted(edges):
        if b != a + 1:  # the chain's own bonds are implicit; every other bond is a ring closure
            closures.setdefault(a, []).append(b)
            closures.setdefault(b, []).append(a)
    free, open_, out = list(range(999, 0, -1)), {}, []
    symbol = element.lower() if aromatic else element
    for i in range(n):
        token = "*" if i == query_at else symbol
        for j in sorted(closures.get(i, [])):
            key = (min(i, j), max(i, j))
            if key in open_:
                digit = open_.pop(key)
                free.append(digit)
            else:
                digit = open_[key] = free.pop()
            token += str(digit) if digit < 10 else f"%{digit}" if digit < 100 else f"%({digit})"
        out.append(token)
    return "".join(out)


FINDING_CAGE = circulant(290, 55)
"""Issue 21's molecule: 2,116 characters, 290 carbons, 291 rings; RDKit alone runs for minutes and gigabytes."""
RING_CAGE = circulant(120, 25)
"""121 rings: RDKit's ring perception hangs on it too."""
NEAR_BUDGET_CAGE = circulant(38, 18)
"""39 rings, within `rules.MAX_RINGS`: ~1-1.7 s of RDKit's CPU, the costliest accepted cage found (see the module doc)."""


@dataclass(frozen=True)
class BridgedRings:
    """One generated cage: its parameters (for a failing example's message) and its SMILES."""

    n: int
    k: int
    element: str
    aromatic: bool
    query_at: int | None

    @property
    def smiles(self) -> str:
        return circulant(self.n, self.k, self.element, self.aromatic, self.query_at)

    @property
    def rings(self) -> int:
        """Independent rings (bonds − atoms + 1)."""
        return self.n // 2 + 1 if 2 * self.k == self.n else self.n + 1

    @property
    def near_budget(self) -> bool:
        """Whether RDKit's work on it may pass `rules.MOLECULE_CPU_SECONDS` on a slow machine (module doc)."""
        return (
            self.query_at is None
            and self.element in ("C", "S")
            and self.n % 2 == 0
            and self.n >= 30
            and self.k == self.n // 2 - 1
            and self.rings <= MAX_RINGS
        )


@st.composite
def bridged_ring_systems(draw: st.DrawFn, max_atoms: int = 300) -> BridgedRings:
    """Cages of 4 to ``max_atoms`` atoms (small ones, around the ring limit and past the atom limit
    alike), any offset, element C/N/O/S, aromatic or not, sometimes with a query atom."""
    n = draw(st.one_of(st.integers(4, 44), st.integers(4, max_atoms)))
    k = draw(st.integers(2, n // 2))
    query_at = draw(st.integers(0, n - 1)) if draw(st.integers(0, 3)) == 0 else None
    return BridgedRings(n, k, draw(st.sampled_from(ELEMENTS)), draw(st.booleans()), query_at)


def screening_candidates(smiles: Iterable[str]) -> list[str]:
    """The (trusted, parseable) SMILES a screening library keeps: those of at least
    `rules.MIN_CANDIDATE_HEAVY_ATOMS` heavy atoms (the bundled drugs hold lone ions such as ``[Zn]``)."""
    from rdkit import Chem

    return [s for s in smiles if Chem.MolFromSmiles(s).GetNumHeavyAtoms() >= MIN_CANDIDATE_HEAVY_ATOMS]
