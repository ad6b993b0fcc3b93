"""The applicability domain: nearest training drug (ECFP4 Tanimoto, as RDKit computes it) and target
(3-mer Jaccard, as Python's sets compute it), the reference file, and its recording by ``drugrepo train``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.rules import PROTEIN_ALPHABET, clean_protein
from drugrepo_assets.data.sandbox import Budget, Sandbox, molecule_sandbox
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.data.validate import validate_pairs
from drugrepo_assets.files import storage_path
from drugrepo_assets.location import Location
from drugrepo_assets.screening import domain
from drugrepo_assets.screening.domain import (
    DomainReference,
    build_reference,
    nearest_drugs,
    nearest_targets,
    read_reference,
    reference_for_checkpoint,
    reference_path,
    write_reference,
)
from drugrepo_assets_tests.cli.helpers import HUMAN_TRAIN, console_script
from drugrepo_assets_tests.data.servers import S3Bucket, moto_endpoint, s3_bucket
from drugrepo_assets_tests.molecules import NEAR_BUDGET_CAGE

__all__ = ["moto_endpoint", "s3_bucket"]  # the S3 server's fixtures, used here

BINDINGDB = pd.read_csv(bundled_root() / "bindingdb" / "sample" / "train.csv")
DRUGS = BINDINGDB["SMILES"].drop_duplicates().tolist()
PROTEINS = BINDINGDB["Protein"].drop_duplicates().tolist()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with molecule_sandbox(1) as box:
        yield box


def _drugs(smiles: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"D{i:03d}" for i in range(len(smiles))], "smiles": list(smiles)})


def _targets(sequences: Sequence[str]) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"T{i:03d}" for i in range(len(sequences))], "sequence": list(sequences)})


def _reference(sandbox: Sandbox, drugs: Sequence[str] = (), targets: Sequence[str] = ()) -> DomainReference:
    return build_reference(_drugs(drugs), _targets(targets), sandbox)


def _rdkit_nearest(query: str, training: list[str], ids: list[str]) -> tuple[str, float]:
    """The training drug of highest Tanimoto by RDKit's own fingerprints and Tanimoto, the first of equals."""
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    query_fp = generator.GetFingerprint(Chem.MolFromSmiles(query))
    sims = [DataStructs.TanimotoSimilarity(query_fp, generator.GetFingerprint(Chem.MolFromSmiles(s))) for s in training]
    best = max(range(len(sims)), key=lambda i: (sims[i], -i))
    return ids[best], sims[best]


def test_nearest_drugs_are_rdkits_tanimoto_ties_to_the_first_id(sandbox: Sandbox) -> None:
    training = [*DRUGS[:12], DRUGS[3]]  # D012 repeats D003: the tie goes to D003, first by id
    ref = _reference(sandbox, training)
    queries = [*DRUGS[20:26], DRUGS[3], "C1CC", DRUGS[20]]
    got = nearest_drugs(ref, queries, sandbox)
    assert list(got.columns) == ["nearest_training_drug", "drug_similarity"] and len(got) == len(queries)
    ids = [f"D{i:03d}" for i in range(len(training))]
    for row, query in enumerate(queries):
        if query == "C1CC":  # RDKit cannot parse it: no answer, no crash
            assert got["nearest_training_drug"][row] is None and math.isnan(got["drug_similarity"][row])
            continue
        assert tuple(got.iloc[row]) == _rdkit_nearest(query, training, ids), query
    assert tuple(got.iloc[6]) == ("D003", 1.0)
    assert tuple(got.iloc[8]) == tuple(got.iloc[0])


def _words(sequence: str) -> set[str]:
    """A protein's 3-mers as the model reads it (cleaned, its first 1,200 residues), words of the alphabet only."""
    residues = clean_protein(sequence)[:1200]
    words = {residues[i : i + 3] for i in range(len(residues) - 2)}
    return {w for w in words if set(w) <= set(PROTEIN_ALPHABET)}


def test_nearest_targets_are_the_jaccard_of_python_sets(sandbox: Sandbox) -> None:
    training = PROTEINS[:8]
    ref = _reference(sandbox, targets=training)
    long_protein = max(PROTEINS, key=len)
    assert len(long_protein) > 1200  # only its first 1,200 residues count
    queries = [*PROTEINS[8:13], training[2].lower(), training[5][:40] + "é" + training[5][41:], long_protein, "MK"]
    got = nearest_targets(ref, queries)
    assert list(got.columns) == ["nearest_training_target", "target_similarity"] and len(got) == len(queries)
    sets = [_words(t) for t in training]
    for row, query in enumerate(queries[:-1]):
        words = _words(query)
        sims = [len(words & s) / len(words | s) for s in sets]
        best = max(range(len(sims)), key=lambda i: (sims[i], -i))
        assert tuple(got.iloc[row]) == (f"T{best:03d}", sims[best]), row
    assert tuple(got.iloc[5]) == ("T002", 1.0)
    assert got["nearest_training_target"].iat[-1] is None and math.isnan(got["target_similarity"].iat[-1])


def test_answers_do_not_depend_on_the_block_size(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = _reference(sandbox, DRUGS[:30], PROTEINS[:10])
    whole = nearest_drugs(ref, DRUGS[30:60], sandbox), nearest_targets(ref, PROTEINS[10:20])
    monkeypatch.setattr(domain, "_CELLS", 64)  # a few queries × rows at a time
    small = DomainReference(ref.drug_ids, ref.drug_bits, ref.target_ids, ref.target_bits)  # no cached matrices
    pd.testing.assert_frame_equal(nearest_drugs(small, DRUGS[30:60], sandbox), whole[0])
    pd.testing.assert_frame_equal(nearest_targets(small, PROTEINS[10:20]), whole[1])


def test_an_empty_reference_answers_nothing(sandbox: Sandbox) -> None:
    ref = _reference(sandbox)
    assert nearest_drugs(ref, DRUGS[:2], sandbox)["nearest_training_drug"].tolist() == [None, None]
    assert nearest_targets(ref, PROTEINS[:2])["target_similarity"].isna().all()


def test_bad_and_hostile_training_molecules_are_left_out_and_counted(sandbox: Sandbox) -> None:
    drugs = _drugs([DRUGS[0], "C1CC", NEAR_BUDGET_CAGE, DRUGS[1], "*C"])
    with molecule_sandbox(1, Budget(cpu_seconds=0.1)) as strict:  # the cage needs ~1 s of RDKit's CPU
        ref = build_reference(drugs, _targets(PROTEINS[:2]), strict)
    assert ref.drug_ids == ("D000", "D003") and ref.refused_drugs == 3
    assert ref.target_ids == ("T000", "T001")
    assert nearest_drugs(ref, [DRUGS[1]], sandbox).iloc[0].tolist() == ["D003", 1.0]


def test_reference_rows_are_distinct_and_sorted_by_id(sandbox: Sandbox) -> None:
    drugs = pd.DataFrame({"id": ["Db", "Da", "Db"], "smiles": [DRUGS[0], DRUGS[1], DRUGS[0]]})
    targets = pd.DataFrame({"id": ["Tz", "Ta", "Tz"], "sequence": [PROTEINS[0], PROTEINS[1], PROTEINS[0]]})
    ref = build_reference(drugs, targets, sandbox)
    assert ref.drug_ids == ("Da", "Db") and ref.target_ids == ("Ta", "Tz")
    with pytest.raises(ValueError, match=r"the training drugs need columns id and smiles \(missing: smiles\)"):
        build_reference(drugs.rename(columns={"smiles": "SMILES"}), targets, sandbox)


def _same(a: DomainReference, b: DomainReference) -> None:
    assert a.drug_ids == b.drug_ids and a.target_ids == b.target_ids and a.refused_drugs == b.refused_drugs
    assert np.array_equal(a.drug_bits, b.drug_bits) and np.array_equal(a.target_bits, b.target_bits)


def test_a_reference_round_trips_through_its_file(sandbox: Sandbox, tmp_path: Path) -> None:
    ref = build_reference(_drugs([*DRUGS[:20], "C1CC"]), _targets(PROTEINS[:6]), sandbox)
    checkpoint = tmp_path / "best.pt"
    assert reference_for_checkpoint(checkpoint) is None  # none recorded
    path = reference_path(checkpoint)
    assert str(path) == str(tmp_path / "best.pt.domain.parquet")
    write_reference(path, ref)
    back = reference_for_checkpoint(str(checkpoint))
    assert back is not None
    _same(back, ref)
    assert back.refused_drugs == 1
    pd.testing.assert_frame_equal(nearest_drugs(back, DRUGS[20:30], sandbox), nearest_drugs(ref, DRUGS[20:30], sandbox))
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt.domain.parquet"]  # no temporary left


def test_a_reference_round_trips_on_s3(sandbox: Sandbox, s3_bucket: S3Bucket) -> None:
    ref = build_reference(_drugs(DRUGS[:5]), _targets(PROTEINS[:3]), sandbox)
    checkpoint = storage_path(Location.of(f"s3://{s3_bucket.name}/run/best.pt", s3_bucket.endpoint_url))
    write_reference(reference_path(checkpoint), ref)
    listed = s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name)["Contents"]  # type: ignore[attr-defined]
    assert [o["Key"] for o in listed] == ["run/best.pt.domain.parquet"]
    back = reference_for_checkpoint(checkpoint)
    assert back is not None
    _same(back, ref)


def test_a_file_of_other_settings_is_refused_naming_it(sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "best.pt.domain.parquet"
    write_reference(path, build_reference(_drugs(DRUGS[:2]), _targets(PROTEINS[:1]), sandbox))
    table = pq.read_table(path)
    settings = json.loads(table.schema.metadata[b"drugrepo.domain"])
    pq.write_table(table.replace_schema_metadata({b"drugrepo.domain": json.dumps({**settings, "kmer": 4})}), path)
    with pytest.raises(ValueError, match=rf"^{path}: written with {{'kmer': 4}}, not this version's"):
        read_reference(path)
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(ValueError, match=rf"^{path}: not an applicability-domain reference"):
        read_reference(path)


def test_drugrepo_train_records_the_reference_of_its_training_pairs(tmp_path: Path) -> None:
    rows = pd.read_csv(HUMAN_TRAIN).head(48)
    rows.head(32).to_csv(tmp_path / "train.csv", index=False)
    rows.iloc[32:].to_csv(tmp_path / "val.csv", index=False)
    out = tmp_path / "run"
    args = ["--train", str(tmp_path / "train.csv"), "--val", str(tmp_path / "val.csv"), "--out", str(out)]
    run = subprocess.run(
        [console_script(), "train", *args, "--epochs", "1", "--batch-size", "16", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    assert (out / "best.pt").is_file()
    ref = reference_for_checkpoint(out / "best.pt")
    assert ref is not None and ref.refused_drugs == 0
    trained = validate_pairs(read_pairs(str(tmp_path / "train.csv"))).valid
    assert ref.drug_ids == tuple(sorted(set(trained["drug_id"])))
    assert ref.target_ids == tuple(sorted(set(trained["target_id"])))
    drugs, targets = nearest_drugs(ref, trained["smiles"].tolist()), nearest_targets(ref, trained["protein"].tolist())
    assert drugs["nearest_training_drug"].tolist() == trained["drug_id"].tolist()  # no two share a fingerprint
    assert targets["nearest_training_target"].tolist() == trained["target_id"].tolist()
    assert (drugs["drug_similarity"] == 1.0).all() and (targets["target_similarity"] == 1.0).all()


def test_the_sandboxed_fingerprint_imports_neither_torch_nor_pandas() -> None:
    """A sandbox worker imports what `ecfp4` needs after its memory cap is set: RDKit and numpy only."""
    code = "import sys, drugrepo_assets.screening.fingerprints; print(sorted({'torch', 'pandas'} & set(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr
