"""Honest resumption through the installed ``drugrepo`` script (issue 21, finding 6): a screen stopped midway,
its library edited, the same command rerun is refused naming the file and what changed; ``--restart`` screens
the edited library from the start, every molecule scored exactly once. An S3 library (on moto, in process) is
known by its ETag, and --restart clears the run's prefix."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from drugrepo_assets.cli import main
from drugrepo_assets_tests.cli.helpers import console_script, golden_inputs, one_error_line, screen_args
from drugrepo_assets_tests.data.servers import S3Bucket


def drugrepo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=300)


def test_a_rerun_on_an_edited_library_is_refused_and_restart_rescreens_it(tmp_path: Path, golden_dir: Path) -> None:
    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:8].tolist()
    golden_inputs(tmp_path, golden_dir)
    library = tmp_path / "lib.smi"
    library.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles[:6])))
    run = tmp_path / "run"
    args = screen_args(tmp_path, golden_dir, top="3", **{"shard-size": "2"})
    first = drugrepo(*args)
    assert first.returncode == 0, first.stderr
    for name in ("shards/00002.json", "top.csv", "top.parquet"):  # as if killed before the last shard was done
        (run / name).unlink()

    size = library.stat().st_size
    library.write_text("".join(f"{s} m{i}\n" for i, s in enumerate(smiles[2:8], start=2)))  # 2 gone, 2 new
    refused = drugrepo(*args)
    assert refused.returncode == 2, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("drugrepo screen: error: ")]
    assert errors == [
        f"drugrepo screen: error: {library}: size {size:,} → {library.stat().st_size:,} bytes since the screen in "
        f"{run} began; use a new --out, or --restart to screen it again from the start"
    ]
    assert not (run / "top.csv").exists() and not (run / "shards" / "00002.json").exists()

    restarted = drugrepo(*args, "--restart")
    assert restarted.returncode == 0, restarted.stderr
    assert "kept from an earlier run" not in restarted.stdout
    pairs = pd.read_parquet(run / "scores")
    scored = sorted(pairs[["target_id", "drug_id"]].astype(str).itertuples(index=False, name=None))
    assert scored == [(t, f"m{i}") for t in ("T0", "T1") for i in range(2, 8)]  # each pair once, none stale
    top = pd.read_csv(run / "top.csv")
    assert not top.duplicated(["target_id", "drug_id"]).any() and len(top) == 6
    assert set(top["drug_id"]) <= {f"m{i}" for i in range(2, 8)}


def test_an_s3_library_is_known_by_its_etag_and_restart_clears_the_prefix(
    tmp_path: Path, golden_dir: Path, s3_bucket: S3Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    golden = pd.read_csv(golden_dir / "model_pairs.csv")
    smiles = golden["SMILES"].unique()[:5].tolist()
    golden_inputs(tmp_path, golden_dir)

    def upload(first: int) -> None:
        text = "".join(f"{s} m{i}\n" for i, s in enumerate(smiles[first:], start=first))
        s3_bucket.client.put_object(Bucket=s3_bucket.name, Key="libs/lib.smi", Body=text.encode())

    library, out = f"s3://{s3_bucket.name}/libs/lib.smi", f"s3://{s3_bucket.name}/runs/one"
    args = [
        *screen_args(tmp_path, golden_dir, library=library, out=out, top="2", **{"shard-size": "2"}),
        "--s3-endpoint-url",
        s3_bucket.endpoint_url,
    ]
    upload(0)
    assert main(args) == 0
    upload(1)
    capsys.readouterr()
    assert main(args) == 2
    assert re.fullmatch(
        rf"{library}: version \S+ → \S+ since the screen in {out} began; use a new --out, or --restart .*",
        one_error_line(capsys, "screen"),
    )
    assert main([*args, "--restart"]) == 0
    keys = [
        o["Key"] for o in s3_bucket.client.list_objects_v2(Bucket=s3_bucket.name, Prefix="runs/one/scores/")["Contents"]
    ]
    pairs = pd.concat(
        pd.read_parquet(io.BytesIO(s3_bucket.client.get_object(Bucket=s3_bucket.name, Key=k)["Body"].read()))
        for k in keys
    )
    scored = sorted(pairs[["target_id", "drug_id"]].astype(str).itertuples(index=False, name=None))
    assert scored == [(t, f"m{i}") for t in ("T0", "T1") for i in range(1, 5)]  # m0's stale shard is gone
