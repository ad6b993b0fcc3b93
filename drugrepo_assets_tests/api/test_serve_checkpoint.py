"""``drugrepo serve`` with a bad checkpoint: one error line and exit 2, as predict and screen give (the real CLI,
once as the installed console script, once through its entry point in this process); an imported reference
checkpoint serves."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from drugrepo_assets.cli import main as cli_main
from drugrepo_assets.ml.model.calibration import TEMPERATURE_KEY
from drugrepo_assets.ml.model.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets_tests.api.servers import running_api

BIN = Path(sys.executable).parent
KEY = "serve-key"


def _serve(checkpoint: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRUGREPO_")} | {"DRUGREPO_API_KEYS": KEY}
    return subprocess.run(
        [str(BIN / "drugrepo"), "serve", "--checkpoint", str(checkpoint), "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _serve_in_process(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """`_serve` through the console script's entry point (`drugrepo_assets.cli.main`): no interpreter start."""
    capsys.readouterr()
    code = cli_main(["serve", "--checkpoint", str(checkpoint), "--port", "0"])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["drugrepo", "serve"], code, out, err)


def test_serve_refuses_a_bad_checkpoint_in_one_line_with_exit_2(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("DRUGREPO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DRUGREPO_API_KEYS", KEY)
    good = (golden_dir / "model_state.pt").read_bytes()
    hostile = {"format": CHECKPOINT_FORMAT, "config": {**DrugBANConfig().to_dict(), "hidden_feats": [60000] * 3}}
    torch.save({**hostile, "state_dict": {}, "checkpoint_id": "0" * 16}, tmp_path / "hostile.pt")
    (tmp_path / "cut.pt").write_bytes(good[: len(good) // 2])
    cases = {  # the hostile file in a process of its own: a regression would allocate its huge model there
        "cut.pt": ("truncated or not a checkpoint", _serve_in_process(tmp_path / "cut.pt", capsys)),
        "hostile.pt": ("config: hidden_feats[0] = 60000 is above the format's maximum of 2048", None),
    }
    for name, (why, in_process) in cases.items():
        done = in_process or _serve(tmp_path / name)
        assert done.returncode == 2, (name, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"drugrepo serve: error: checkpoint {tmp_path / name}: "), lines
        assert why in lines[0], lines[0]


def test_an_imported_reference_checkpoint_is_served_under_the_raw_files_id(
    tmp_path: Path, golden_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The console script imports; its entry point, in this process, refuses a second import of the result."""
    raw = golden_dir / "model_state.pt"
    imported = tmp_path / "imported.pt"
    done = subprocess.run(
        [str(BIN / "drugrepo"), "import-checkpoint", str(raw), "--out", str(imported)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    ident = done.stdout.split("checkpoint ")[1].split(",")[0]
    assert done.stdout == f"{imported}: checkpoint {ident}, imported from {raw}\n"
    capsys.readouterr()
    refused = cli_main(["import-checkpoint", str(imported), "--out", str(tmp_path / "twice.pt")])
    assert refused == 2 and capsys.readouterr().err.splitlines() == [
        f"drugrepo import-checkpoint: error: checkpoint {imported}: already a drugrepo checkpoint "
        "(it records its checkpoint id)"
    ]
    with running_api(tmp_path / "api", ["--checkpoint", str(imported)], {"DRUGREPO_API_KEYS": KEY}) as api:
        ready = requests.get(f"{api.url}/readyz", timeout=30).json()
    assert ready["checkpoint_id"] == ident


def test_a_checkpoints_temperature_calibrates_predict_and_screen(tmp_path: Path, golden_dir: Path) -> None:
    model = load_checkpoint(str(golden_dir / "model_state.pt")).model
    save_checkpoint(str(tmp_path / "scaled.pt"), model, **{TEMPERATURE_KEY: 2.5})
    pairs = [
        {"smiles": "CC(=O)Oc1ccccc1C(=O)O", "protein": "MKTAYIAKQRQISFVKSHFSRQ" * 3},
        {"smiles": "CCO", "protein": "MSTNPKPQRK" * 4},
    ]
    headers = {"X-API-Key": KEY}
    with running_api(
        tmp_path / "api", ["--checkpoint", str(tmp_path / "scaled.pt")], {"DRUGREPO_API_KEYS": KEY}
    ) as api:
        predicted = requests.post(f"{api.url}/v1/predict", json={"pairs": pairs}, headers=headers, timeout=60).json()
        screen = {"protein": pairs[0]["protein"], "smiles": [p["smiles"] for p in pairs]}
        screened = requests.post(f"{api.url}/v1/screen", json=screen, headers=headers, timeout=60).json()
    for body, rows in ((predicted, predicted["predictions"]), (screened, screened["results"])):
        assert body["temperature"] == 2.5 and body["calibrated"] is True
        logits = np.array([r["logit"] for r in rows])
        np.testing.assert_allclose([r["calibrated_score"] for r in rows], 1 / (1 + np.exp(-logits / 2.5)), rtol=1e-9)
        np.testing.assert_allclose([r["score"] for r in rows], 1 / (1 + np.exp(-logits)), rtol=1e-9)
