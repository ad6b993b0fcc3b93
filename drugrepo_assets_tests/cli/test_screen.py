"""``drugrepo screen``: ranking, top K, enrichment, refused molecules and targets, S3, reruns on one folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets_tests.cli.helpers import golden_inputs, one_error_line, screen_args
from drugrepo_assets_tests.data.servers import S3Bucket


def test_screen_ranks_library_against_fasta_targets(tmp_path: Path, golden_dir: Path) -> None:
    import numpy as np

    from drugrepo_assets.ml.features.dataset import PairData
    from drugrepo_assets.ml.model.checkpoint import load_checkpoint
    from drugrepo_assets.ml.predict import predict_logits

    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:6].tolist()
    proteins = golden["Protein"].unique()[:2].tolist()
    (tmp_path / "lib.smi").write_text("".join(f"{s} mol{i}\n" for i, s in enumerate(smiles)) + "C1CC broken\n")
    (tmp_path / "t.fasta").write_text("".join(f">T{i} a target\n{p[:50]}\n{p[50:]}\n" for i, p in enumerate(proteins)))
    (tmp_path / "known.csv").write_text("target_id,drug_id\nT0,mol1\nT0,mol4\nT1,mol2\n")
    out = tmp_path / "run"
    ckpt = str(golden_dir / "model_state.pt")
    args = [
        "screen",
        "--checkpoint",
        ckpt,
        "--library",
        str(tmp_path / "lib.smi"),
        "--targets",
        str(tmp_path / "t.fasta"),
    ]
    assert (
        main(
            [
                *args,
                "--out",
                str(out),
                "--batch-size",
                "4",
                "--shard-size",
                "4",
                "--rank-all",
                "--known",
                str(tmp_path / "known.csv"),
            ]
        )
        == 0
    )
    table = pd.concat([pd.read_parquet(p) for p in sorted((out / "ranked").rglob("*.parquet"))])
    assert len(table) == 12 and set(table["target_id"]) == {"T0", "T1"}
    model = load_checkpoint(ckpt).model
    for (target, drug), row in table.set_index(["target_id", "drug_id"]).iterrows():
        pair = PairData.from_lists([smiles[int(drug[3:])]], [proteins[int(target[1:])]])
        assert abs(row["logit"] - predict_logits(model, pair)[0]) < 1e-5
    for _, group in table.groupby("target_id"):
        group = group.sort_values("rank")
        assert group["rank"].tolist() == list(range(1, 7))
        assert np.all(np.diff(group["logit"].to_numpy()) <= 0)
    pairs = pd.read_parquet(out / "scores")
    assert len(pairs) == 12 and list(pairs.columns) == ["target_id", "drug_id", "logit"]
    rejected = pd.read_csv(out / "rejected.csv")
    assert rejected[["kind", "line", "id"]].values.tolist() == [["molecule", 7, "broken"]]
    assert rejected["reason"].iat[0].startswith("SMILES: ") and "parse 'C1CC'" in rejected["reason"].iat[0]
    report = pd.read_csv(out / "enrichment.csv")
    assert report["target_id"].tolist() == ["T0", "T1"] and report["actives"].tolist() == [2, 1]
    assert (out / "enrichment.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main([*args, "--out", str(tmp_path / "top"), "--top", "2"]) == 0
    top = pd.read_csv(tmp_path / "top" / "top.csv")
    assert top.groupby("target_id").size().tolist() == [2, 2]
    best = table[table["rank"] <= 2].sort_values(["target_id", "rank"])
    assert top["drug_id"].tolist() == best["drug_id"].tolist()


def test_another_top_in_the_same_folder_is_answered_from_the_stored_tiles(
    tmp_path: Path, golden_dir: Path, capsys
) -> None:
    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    (tmp_path / "lib.smi").write_text("".join(f"{s} m{i}\n" for i, s in enumerate(golden["SMILES"].unique()[:3])))
    (tmp_path / "t.fasta").write_text(f">T0\n{golden['Protein'].iloc[0]}\n")
    args = [
        "screen",
        "--checkpoint",
        str(golden_dir / "model_state.pt"),
        "--library",
        str(tmp_path / "lib.smi"),
        "--targets",
        str(tmp_path / "t.fasta"),
        "--out",
        str(tmp_path / "run"),
    ]
    assert main([*args, "--top", "2"]) == 0
    assert pd.read_csv(tmp_path / "run" / "top.csv")["rank_in_target"].tolist() == [1, 2]
    capsys.readouterr()
    assert main([*args, "--top", "3"]) == 0  # the tile is summarised again from its logits, not scored again
    assert "(1 tiles kept from an earlier run)" in capsys.readouterr().out
    assert pd.read_csv(tmp_path / "run" / "top.csv")["rank_in_target"].tolist() == [1, 2, 3]


def test_screen_reads_and_writes_s3_as_it_does_local_folders(
    tmp_path: Path, golden_dir: Path, s3_bucket: S3Bucket, capsys
) -> None:
    import gzip
    import io

    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:9].tolist()
    local = tmp_path / "lib"
    local.mkdir()
    (local / "a.smi.gz").write_bytes(gzip.compress("".join(f"{s}\tA{i}\n" for i, s in enumerate(smiles[:5])).encode()))
    (local / "b.csv").write_text(
        "SMILES,ID\n" + "".join(f"{s},B{i}\n" for i, s in enumerate(smiles[5:])) + "C1CC,broken\n"
    )
    for name in ("a.smi.gz", "b.csv"):
        s3_bucket.client.upload_file(str(local / name), s3_bucket.name, f"libs/v1/{name}")
    (tmp_path / "t.fasta").write_text(f">T0\n{golden['Protein'].iloc[0]}\n>T1\n{golden['Protein'].iloc[3]}\n")
    common = [
        "screen",
        "--checkpoint",
        str(golden_dir / "model_state.pt"),
        "--targets",
        str(tmp_path / "t.fasta"),
        "--top",
        "3",
        "--shard-size",
        "4",
        "--quiet",
    ]
    remote = [
        *common,
        "--library",
        f"s3://{s3_bucket.name}/libs/v1",
        "--out",
        f"s3://{s3_bucket.name}/runs/one",
        "--s3-endpoint-url",
        s3_bucket.endpoint_url,
    ]
    assert main(remote) == 0
    assert main([*common, "--library", str(local), "--out", str(tmp_path / "run")]) == 0

    def read(key: str) -> bytes:
        return s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=f"runs/one/{key}")["Body"].read()

    pd.testing.assert_frame_equal(
        pd.read_parquet(io.BytesIO(read("top.parquet"))), pd.read_parquet(tmp_path / "run" / "top.parquet")
    )
    rejected = pd.read_csv(io.BytesIO(read("rejected.csv")))
    assert rejected[["file", "line", "id"]].values.tolist() == [["b.csv", 6, "broken"]]
    assert rejected["reason"].iat[0].startswith("SMILES: ") and "parse 'C1CC'" in rejected["reason"].iat[0]
    capsys.readouterr()
    assert main(remote) == 0  # the same screen again: every shard kept
    assert "(3 tiles kept from an earlier run)" in capsys.readouterr().out


def test_screen_refuses_ragged_target_rows_into_rejected_csv(tmp_path: Path, golden_dir: Path) -> None:
    _, proteins = golden_inputs(tmp_path, golden_dir)
    targets = tmp_path / "t.csv"
    targets.write_text(f"id,sequence\nT0,{proteins[0]}\nT1,{proteins[1]},extra\nT2\nT3,{proteins[1]}\n")
    assert main(screen_args(tmp_path, golden_dir, targets=str(targets))) == 0
    rejected = pd.read_csv(tmp_path / "run" / "rejected.csv", keep_default_na=False)
    assert rejected[["kind", "file", "line", "id", "reason"]].values.tolist() == [
        ["target", str(targets), 3, "T1", "fields: 3, the header has 2"],
        ["target", str(targets), 4, "T2", "fields: 1, the header has 2"],
    ]
    top = pd.read_parquet(tmp_path / "run" / "top.parquet")
    assert sorted(set(top["target_id"])) == ["T0", "T3"]


def test_screen_refuses_a_duplicate_target_id_and_keeps_the_first(tmp_path: Path, golden_dir: Path) -> None:
    _, proteins = golden_inputs(tmp_path, golden_dir)
    (tmp_path / "dup.fasta").write_text(f">T0 first\n{proteins[0]}\n>T0 again\n{proteins[1]}\n")
    (tmp_path / "first.fasta").write_text(f">T0 first\n{proteins[0]}\n")
    assert main(screen_args(tmp_path, golden_dir, targets=str(tmp_path / "dup.fasta"))) == 0
    assert (
        main(screen_args(tmp_path, golden_dir, targets=str(tmp_path / "first.fasta"), out=str(tmp_path / "one"))) == 0
    )
    rejected = pd.read_csv(tmp_path / "run" / "rejected.csv", keep_default_na=False)
    assert rejected[["kind", "line", "id", "reason"]].values.tolist() == [
        ["target", 3, "T0", "id: 'T0' already used on line 1 with another sequence"]
    ]
    dup = pd.read_parquet(tmp_path / "run" / "top.parquet").sort_values("drug_id", ignore_index=True)
    one = pd.read_parquet(tmp_path / "one" / "top.parquet").sort_values("drug_id", ignore_index=True)
    assert len(dup) == 4  # one ranking of 4 molecules, not two merged
    columns = ["target_id", "drug_id", "logit", "rank_in_target"]
    pd.testing.assert_frame_equal(dup[columns], one[columns])


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n# only a comment\n\n"])
def test_screen_an_empty_library_even_with_a_bom_is_no_molecules(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    golden_inputs(tmp_path, golden_dir)
    (tmp_path / "empty.smi").write_bytes(content)
    assert main(screen_args(tmp_path, golden_dir, library=str(tmp_path / "empty.smi"))) == 2
    assert one_error_line(capsys, "screen") == f"{tmp_path / 'empty.smi'}: no molecules"


def test_screen_outputs_belong_to_one_run(tmp_path: Path, golden_dir: Path) -> None:
    golden_inputs(tmp_path, golden_dir)
    (tmp_path / "bad.smi").write_text((tmp_path / "lib.smi").read_text() + "C1CC broken\n")
    (tmp_path / "known.csv").write_text("target_id,drug_id\nT0,m1\nT1,m2\n")
    run = tmp_path / "run"
    assert (
        main(screen_args(tmp_path, golden_dir, library=str(tmp_path / "bad.smi"), known=str(tmp_path / "known.csv")))
        == 0
    )
    assert len(pd.read_csv(run / "rejected.csv")) == 1 and (run / "enrichment.csv").is_file()
    # the same screen again without --known: the earlier report is not this run's
    assert main(screen_args(tmp_path, golden_dir, library=str(tmp_path / "bad.smi"))) == 0
    assert not (run / "enrichment.csv").exists() and not (run / "enrichment.png").exists()
    # another library in a fresh folder with no refused row: rejected.csv is there, and empty
    assert main(screen_args(tmp_path, golden_dir, out=str(tmp_path / "clean"))) == 0
    assert len(pd.read_csv(tmp_path / "clean" / "rejected.csv")) == 0
