"""Single-linkage clusters: against a brute force on RDKit's own Tanimoto, the threshold's edge, and PseAAC by hand."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from drugrepo_assets.data.clusters import (
    DRUG_BITS,
    DRUG_DISTANCE,
    PSEAAC_RESIDUES,
    cluster_rows,
    cosine_clusters,
    drug_clusters,
    fold,
    jaccard_clusters,
    protein_clusters,
    pseaac,
)
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.screening.fingerprints import ecfp4


def _human_smiles(limit: int) -> list[str]:
    """The first ``limit`` distinct SMILES of the bundled Human random train file, as written there."""
    seen: dict[str, None] = {}
    with open(bundled_root() / "human/random/train.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            seen.setdefault(row["SMILES"], None)
            if len(seen) == limit:
                break
    return list(seen)


def _components(near: np.ndarray) -> np.ndarray:
    """Connected components of a boolean adjacency matrix by depth-first search; label: the smallest member."""
    labels = np.full(len(near), -1, dtype=np.int64)
    for start in range(len(near)):
        if labels[start] >= 0:
            continue
        labels[start] = start
        stack = [start]
        while stack:
            node = stack.pop()
            for other in np.flatnonzero(near[node]):
                if labels[other] < 0:
                    labels[other] = start
                    stack.append(int(other))
    return labels


def _packed(*bit_sets: set[int], nbits: int = 64) -> np.ndarray:
    rows = np.zeros((len(bit_sets), nbits), dtype=bool)
    for row, bits in zip(rows, bit_sets):
        row[list(bits)] = True
    return np.packbits(rows, axis=1)


def test_fold_is_rdkits_own_shorter_fingerprint() -> None:
    smiles = _human_smiles(40)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=DRUG_BITS)
    expected = np.stack(
        [np.packbits(generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)).astype(bool)) for s in smiles]
    )
    folded = fold(np.stack([np.frombuffer(ecfp4(s), dtype=np.uint8) for s in smiles]))
    np.testing.assert_array_equal(folded, expected)
    with pytest.raises(ValueError, match="cannot fold"):
        fold(folded, 768)


def test_drug_clusters_equal_brute_force_single_linkage_on_rdkit_tanimoto() -> None:
    smiles = _human_smiles(300)
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=DRUG_BITS)
    fingerprints = [generator.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    similarity = np.array([DataStructs.BulkTanimotoSimilarity(f, fingerprints) for f in fingerprints])
    expected = _components(1.0 - similarity <= DRUG_DISTANCE)
    labels = drug_clusters(smiles)
    np.testing.assert_array_equal(labels, expected)
    sizes = np.bincount(labels)
    assert sizes.max() > 2 and (sizes == 1).sum() > 10  # a real test: some clusters joined, some drugs alone
    assert len(np.unique(drug_clusters(smiles, distance=0.0))) > len(np.unique(labels))


def test_jaccard_threshold_is_inclusive() -> None:
    half = _packed({0, 1, 2}, {0, 1, 2, 3, 4, 5})  # Jaccard 3/6: distance exactly 0.5
    less = _packed({0, 1, 2}, {0, 1, 2, 3, 4, 5, 6})  # 3/7: distance 0.571
    assert list(jaccard_clusters(half, 64, 0.5)) == [0, 0]
    assert list(jaccard_clusters(half, 64, 0.4999)) == [0, 1]
    assert list(jaccard_clusters(less, 64, 0.5)) == [0, 1]
    empty = _packed(set(), set(), {1})
    assert list(jaccard_clusters(empty, 64, 0.5)) == [0, 1, 2]  # no bits: alike nothing, as RDKit says (0)


def test_single_linkage_chains_and_labels_first_members() -> None:
    # 0–3 and 3–1 are near, 0–1 is not: single linkage still joins all three; 2 and 4 stay alone.
    near = iter([(np.array([0]), np.array([3])), (np.array([1, 3]), np.array([3, 1]))])
    assert list(cluster_rows(5, near)) == [0, 0, 2, 0, 4]
    vectors = np.array([[1.0, 0.0], [3.0, 4.0], [4.0, 3.0], [0.0, 0.0], [0.0, 1.0]])
    # cosine distances: (1,2) 0.04, (0,2) 0.2, (0,1) 0.4, (1,4) 0.2, (2,4) 0.4; row 3 is zero.
    assert list(cosine_clusters(vectors, 0.0399)) == [0, 1, 2, 3, 4]
    assert list(cosine_clusters(vectors, 0.0401)) == [0, 1, 1, 3, 4]
    assert list(cosine_clusters(vectors, 0.2001)) == [0, 0, 0, 3, 0]
    assert list(cosine_clusters(vectors, 2.0)) == [0, 0, 0, 3, 0]


def test_union_find_agrees_with_brute_force_on_a_random_graph() -> None:
    rng = np.random.default_rng(5)
    near = rng.random((200, 200)) < 0.006
    near = near | near.T
    i, j = np.nonzero(np.triu(near, 1))
    blocks = iter([(i[:40], j[:40]), (i[40:], j[40:])])
    np.testing.assert_array_equal(cluster_rows(200, blocks), _components(near))


def test_pseaac_by_hand() -> None:
    # Θ(A, C) from the standardised property values (population std over the 20 residues):
    # hydrophobicity (0.62 − 0.29) / 0.9744588, hydrophilicity (−0.5 − (−1.0)) / 1.8765061, mass (15 − 47) / 30.1205495.
    theta = ((0.33 / 0.9744588) ** 2 + (0.5 / 1.8765061) ** 2 + (32 / 30.1205495) ** 2) / 3
    assert theta == pytest.approx(0.438123, abs=1e-6)  # PyBioMed rounds it to 0.438
    vector = pseaac("AC", lam=1, weight=0.05)
    expected = np.zeros(21)
    expected[PSEAAC_RESIDUES.index("A")] = expected[PSEAAC_RESIDUES.index("C")] = 0.5 / (1 + 0.05 * theta)
    expected[20] = 0.05 * theta / (1 + 0.05 * theta)
    np.testing.assert_allclose(vector, expected, atol=1e-7)
    assert vector[0] == pytest.approx(0.489282, abs=1e-6)

    np.testing.assert_array_equal(pseaac("a x c", lam=1), vector)  # case, blanks and non-standard letters skipped
    longer = pseaac("AC", lam=3)
    assert longer[21:].tolist() == [0.0, 0.0] and longer[20] == pytest.approx(vector[20])
    only_alanine = pseaac("AAAA")
    assert only_alanine.shape == (30,) and only_alanine[0] == 1.0 and only_alanine[1:].sum() == 0.0
    assert not pseaac("XXXX").any()


def test_pseaac_sums_to_one_and_protein_clusters_join_near_copies() -> None:
    with open(bundled_root() / "human/random/train.csv", newline="", encoding="utf-8") as handle:
        proteins = list(dict.fromkeys(row["Protein"] for row in csv.DictReader(handle)))[:60]
    for sequence in proteins[:5]:
        assert pseaac(sequence).sum() == pytest.approx(1.0)
    mutant = proteins[0][:-1] + ("A" if proteins[0][-1] != "A" else "G")
    labels = protein_clusters([*proteins, mutant])
    assert labels[-1] == labels[0]  # one residue changed: the same cluster
    assert len(np.unique(labels)) > len(proteins) // 2  # distinct proteins mostly alone, as in DrugBAN's clusters
