"""Honest resumption through the installed ``drugrepo`` script (issue 21, finding 6): a screen stopped midway,
its library edited, the same command rerun is refused naming the file and what changed; ``--restart`` screens
the edited library from the start, every molecule scored exactly once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd

from drugrepo_assets_tests.cli.helpers import console_script, golden_inputs, screen_args


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
