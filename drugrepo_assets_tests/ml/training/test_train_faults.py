"""A training process killed (SIGKILL) halfway through writing a checkpoint loses nothing: the file
on disk is the previous complete one, and ``--resume`` ends with the weights and history of a run
that was never interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from drugrepo_assets_tests.ml.training.small import SMALL

# Trains the small DrugBAN (`small.SMALL`, given as JSON: what is proved is the checkpoint files,
# not learning) on the first 80 pairs of the bundled human split (48 train, 32 validation), as
# test_train.py does. With a file name, the N-th torch.save of a checkpoint whose (temporary) file
# name contains it writes half of its bytes, flushes them to disk and SIGKILLs the process.
TRAIN = r"""
import io, json, os, signal, sys
from dataclasses import asdict
from pathlib import Path
import pandas as pd
import torch
from drugrepo_assets.data.sources import bundled_root
from drugrepo_assets.ml.features.dataset import PairData
from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets.ml.training.train import TrainConfig, train

out, epochs, resume, kill_name, kill_at = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume", sys.argv[4], int(sys.argv[5])
model_config = DrugBANConfig.from_dict(json.loads(sys.argv[6]))
real_save, seen = torch.save, []

def save(obj, f, *args, **kwargs):
    name = os.path.basename(os.fspath(f) if isinstance(f, (str, os.PathLike)) else getattr(f, "name", ""))
    if kill_name and kill_name in name:
        seen.append(name)
        if len(seen) == kill_at:
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            handle = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)

torch.save = save
rows = pd.read_csv(bundled_root() / "human" / "random" / "train.csv").head(80)
make = lambda t: PairData.from_lists(t.SMILES.tolist(), t.Protein.tolist(), t.Y.tolist())
config = TrainConfig(epochs=epochs, batch_size=16, patience=None, seed=2, lr=1e-4)
result = train(make(rows.head(48)), make(rows.tail(32)), Path(out), config, model_config, resume=resume)
print(json.dumps({"best_epoch": result.best_epoch, "history": [asdict(h) for h in result.history]}))
"""

EPOCHS = 2


def _train(
    out: Path, epochs: int, resume: bool = False, kill_name: str = "", kill_at: int = 0
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *(sys.executable, "-c", TRAIN, str(out), str(epochs), "resume" if resume else "fresh"),
            *(kill_name, str(kill_at), json.dumps(SMALL.to_dict())),
        ],
        capture_output=True,
        text=True,
    )


def _result(run: subprocess.CompletedProcess) -> dict:
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def _checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _same_weights(a: dict, b: dict) -> bool:
    return a["state_dict"].keys() == b["state_dict"].keys() and all(
        torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]
    )


def _learning(history: list[dict]) -> list[tuple]:
    """What a run learnt each epoch (timings differ from run to run)."""
    return [(h["epoch"], h["train_loss"], h["val_auroc"], h["val_auprc"]) for h in history]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An uninterrupted run of EPOCHS epochs, whose epoch 2 improves on epoch 1 (so it writes best.pt)."""
    out = tmp_path_factory.mktemp("straight")
    result = _result(_train(out, EPOCHS))
    aurocs = [h["val_auroc"] for h in result["history"]]
    assert aurocs[1] > aurocs[0], f"the kill points below need best.pt written by epoch 2: {aurocs}"
    return out, result


@pytest.mark.parametrize("name", ["last.pt", "best.pt"])
def test_a_kill_while_writing_a_checkpoint_loses_nothing(
    straight: tuple[Path, dict], tmp_path: Path, name: str
) -> None:
    reference, expected = straight
    killed = _train(tmp_path, EPOCHS, kill_name=name, kill_at=2)  # halfway through epoch 2's file
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert [p.name for p in tmp_path.glob(f".{name}.*.tmp")]  # the half-written file the kill left
    # whole files, the killed one as it was: registration and --resume read complete checkpoints
    # (each epoch writes best.pt, then last.pt)
    assert _checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert _checkpoint(tmp_path / "best.pt")["epoch"] == (1 if name == "best.pt" else 2)
    resumed = _result(_train(tmp_path, EPOCHS, resume=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]  # and nothing else left
    assert _learning(resumed["history"]) == _learning(expected["history"])
    assert resumed["best_epoch"] == expected["best_epoch"]
    for file in ("last.pt", "best.pt"):
        assert _same_weights(_checkpoint(tmp_path / file), _checkpoint(reference / file)), file
    assert (
        _checkpoint(tmp_path / "last.pt")["optimizer"]["state"].keys()
        == _checkpoint(reference / "last.pt")["optimizer"]["state"].keys()
    )
