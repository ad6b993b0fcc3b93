"""Checkpoints: checked before allocation (the config against the format's bounds, the state_dict's shapes
against the config), an imported reference state_dict records its checkpoint id, so a bit flip is refused,
and the reference state_dict round-trips losslessly."""

from __future__ import annotations

import logging
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from drugrepo_assets.ml.model.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_ID_CHARS,
    MAX_PICKLE_BYTES,
    CheckpointError,
    TrainingProvenance,
    checkpoint_id,
    export_reference_state_dict,
    file_sha256,
    import_reference_checkpoint,
    load_checkpoint,
    load_reference_state_dict,
    save_checkpoint,
)
from drugrepo_assets.ml.model.model_config import MAX_PARAMETERS, MAX_WIDTH, DrugBANConfig

BIN = Path(sys.executable).parent
PEAK_RSS_BOUND = 2 * 2**30  # torch + RDKit + pandas imported; the 60,000-wide model alone would be > 14 GB


def _ours(path: Path, config: dict[str, object], state_dict: dict[str, torch.Tensor] | None = None) -> Path:
    """A file in our format with ``config`` and ``state_dict`` (empty by default: a 2 KB file), its id made up."""
    payload = {"format": CHECKPOINT_FORMAT, "config": config, "state_dict": state_dict or {}, "checkpoint_id": "0" * 16}
    torch.save(payload, path)
    return path


def _reference(golden_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(golden_dir / "model_state.pt", weights_only=True)


def _flip_one_bit(path: Path, record_suffix: str) -> None:
    """Flip the lowest bit of the first byte of the zip record whose name ends with ``record_suffix`` (stored)."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(record_suffix))
    data = bytearray(path.read_bytes())
    name_length = int.from_bytes(data[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(data[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    data[start] ^= 1
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hidden_feats", [60000] * 3, f"config: hidden_feats[0] = 60000 is above the format's maximum of {MAX_WIDTH}"),
        ("hidden_feats", [128] * 100, "config: hidden_feats has 100 entries; the format allows 1 to 16"),
        ("kernel_size", [3, 6], "config: kernel_size has 2 entries; the format allows 3 to 3"),
        ("mlp_hidden_dim", 10**9, f"config: mlp_hidden_dim = 1000000000 is above the format's maximum of {MAX_WIDTH}"),
        ("ban_k", 0, "config: ban_k = 0 is below the minimum of 1"),
        ("ban_heads", True, "config: ban_heads = True is not an integer"),
        ("max_drug_nodes", 291, "config: max_drug_nodes = 291 is above the format's maximum of 290"),
        ("node_in_feats", 80, "config: node_in_feats = 80 must be 75"),
        ("ban_dropout", float("nan"), "config: ban_dropout = nan is not a number in [0, 1)"),
        ("protein_emb_dim", "128", "config: protein_emb_dim = '128' is not an integer"),
    ],
)
def test_a_config_outside_the_formats_bounds_is_refused_naming_the_field_and_bound(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    path = _ours(tmp_path / "hostile.pt", {**DrugBANConfig().to_dict(), field: value})
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(str(path))
    assert str(refused.value) == f"{path}: {message}"


def test_a_config_implying_too_many_parameters_is_refused(tmp_path: Path) -> None:
    config = {**DrugBANConfig().to_dict(), "num_filters": [2048] * 3, "kernel_size": [64] * 3}
    path = _ours(tmp_path / "wide.pt", config)
    with pytest.raises(CheckpointError, match=f"parameters, above the format's maximum of {MAX_PARAMETERS:,}"):
        load_checkpoint(str(path))


def test_state_dict_shapes_are_checked_against_the_config_before_loading(tmp_path: Path, golden_dir: Path) -> None:
    reference = _reference(golden_dir)
    config = DrugBANConfig().to_dict()
    cases = {
        "empty": ({}, "keys are not the config's: 87 missing (drug_extractor.init_transform.weight"),
        "extra": ({**reference, "x.weight": torch.zeros(1)}, "keys are not the config's: 1 unexpected (x.weight)"),
        "wider": (
            {**reference, "bcn.h_mat_v": torch.zeros(1, 2, 1, 769)},
            "state_dict bcn.h_mat_v has shape [1, 2, 1, 769], the config implies [1, 2, 1, 768]",
        ),
        "dtype": (
            {**reference, "bcn.bn.num_batches_tracked": torch.zeros(())},
            "state_dict bcn.bn.num_batches_tracked is torch.float32, the model's is torch.int64",
        ),
        "not a tensor": ({**reference, "bcn.h_bias": [1.0]}, "state_dict bcn.h_bias is not a dense tensor"),
    }
    for name, (state_dict, message) in cases.items():
        path = _ours(tmp_path / f"{name}.pt", config, state_dict)
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(str(path))
        assert message in str(refused.value), (name, str(refused.value))
    reference["bcn.h_mat_v"] = torch.zeros(1, 2, 1, 769)
    torch.save(reference, tmp_path / "reference.pt")
    with pytest.raises(CheckpointError, match=r"bcn\.h_mat_v has shape"):
        load_checkpoint(str(tmp_path / "reference.pt"))


def test_a_compressed_record_or_an_oversized_pickle_is_refused_from_the_zip_directory(
    tmp_path: Path, golden_dir: Path
) -> None:
    good = golden_dir / "model_state.pt"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(tmp_path / "deflated.pt", "w", zipfile.ZIP_DEFLATED) as out:
        for info in source.infolist():
            out.writestr(info.filename, source.read(info.filename))
    with pytest.raises(CheckpointError, match="is compressed"):
        load_checkpoint(str(tmp_path / "deflated.pt"))
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(tmp_path / "big.pt", "w") as out:
        for info in source.infolist():
            data = source.read(info.filename)
            out.writestr(info.filename, data + b"\0" * MAX_PICKLE_BYTES if info.filename.endswith(".pkl") else data)
    with pytest.raises(CheckpointError, match=f"above the format's maximum of {MAX_PICKLE_BYTES:,}"):
        load_checkpoint(str(tmp_path / "big.pt"))


def test_an_imported_reference_records_its_id_and_a_bit_flip_is_refused(tmp_path: Path, golden_dir: Path) -> None:
    raw = golden_dir / "model_state.pt"
    ident = import_reference_checkpoint(str(raw), str(tmp_path / "imported.pt"))
    loaded = load_checkpoint(str(tmp_path / "imported.pt"))
    model = loaded.model
    assert ident == loaded.checkpoint_id == checkpoint_id(model) == load_checkpoint(str(raw)).checkpoint_id
    assert loaded.provenance.imported_from == {"file": "model_state.pt", "sha256": file_sha256(str(raw))}
    for key, value in _reference(golden_dir).items():
        assert torch.equal(model.state_dict()[key], value), key
    _flip_one_bit(tmp_path / "imported.pt", "data/20")
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(str(tmp_path / "imported.pt"))
    assert str(refused.value).startswith(f"{tmp_path / 'imported.pt'}: its weights do not match the checkpoint id")
    assert ident in str(refused.value)


def test_a_raw_reference_state_dict_loads_with_a_warning_that_it_is_unverified(
    tmp_path: Path, golden_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flipped = tmp_path / "flipped.pt"
    flipped.write_bytes((golden_dir / "model_state.pt").read_bytes())
    _flip_one_bit(flipped, "data/20")
    with caplog.at_level(logging.WARNING, logger="drugrepo_assets.ml.model.checkpoint"):
        loaded = load_checkpoint(str(flipped))
    assert loaded.checkpoint_id != load_checkpoint(str(golden_dir / "model_state.pt")).checkpoint_id
    assert f"{flipped}: records no checkpoint id, so its weights are unverified" in caplog.text
    assert "drugrepo import-checkpoint" in caplog.text


def test_importing_our_own_format_is_refused(tmp_path: Path, golden_dir: Path) -> None:
    model = load_checkpoint(str(golden_dir / "model_state.pt")).model
    save_checkpoint(str(tmp_path / "ours.pt"), model)
    with pytest.raises(CheckpointError, match="already a drugrepo checkpoint"):
        import_reference_checkpoint(str(tmp_path / "ours.pt"), str(tmp_path / "again.pt"))
    assert not (tmp_path / "again.pt").exists()


def test_predict_refuses_a_2kb_hostile_checkpoint_in_one_line_without_allocating_it(
    tmp_path: Path, golden_dir: Path
) -> None:
    """The real CLI; its peak RSS is read by a parent process (resource.RUSAGE_CHILDREN of a fresh wrapper)."""
    hostile = _ours(tmp_path / "hostile.pt", {**DrugBANConfig().to_dict(), "hidden_feats": [60000] * 3})
    assert hostile.stat().st_size < 4096
    command = [
        str(BIN / "drugrepo"),
        "predict",
        "--checkpoint",
        str(hostile),
        "--pairs",
        str(golden_dir / "model_pairs.csv"),
        "--out",
        str(tmp_path / "scored.csv"),
    ]
    wrapper = (
        "import resource, subprocess, sys\n"
        "run = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(run.stderr)\n"
        "print(run.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, timeout=600)
    returncode, peak = map(int, done.stdout.split())
    assert returncode == 2, done.stderr
    assert done.stderr == (
        f"drugrepo predict: error: checkpoint {hostile}: config: hidden_feats[0] = 60000 is above the format's "
        f"maximum of {MAX_WIDTH}\n"
    )
    assert peak < PEAK_RSS_BOUND, f"peak RSS {peak / 2**20:.0f} MiB"
    assert not (tmp_path / "scored.csv").exists()


def test_reference_round_trip_is_lossless(tmp_path: Path, golden_dir: Path) -> None:
    reference = torch.load(golden_dir / "model_state.pt", weights_only=True)
    model = load_reference_state_dict(reference)
    save_checkpoint(str(tmp_path / "ours.pt"), model, epoch=3)
    loaded = load_checkpoint(str(tmp_path / "ours.pt"))
    ours = loaded.model
    assert loaded.extra == {"epoch": 3, "checkpoint_id": checkpoint_id(model)}
    exported = export_reference_state_dict(ours)
    assert list(exported) == list(reference)
    for key, value in reference.items():
        assert exported[key].dtype == value.dtype and torch.equal(exported[key], value), key
    torch.save(exported, tmp_path / "ref.pt")
    again = load_checkpoint(str(tmp_path / "ref.pt")).model
    for key, value in ours.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key


def test_loading_a_checkpoint_builds_on_meta_without_torch_dynamo(golden_dir: Path) -> None:
    """The meta build skips the value computations whose meta kernels import ``torch._dynamo`` (about 1 s of
    CPU in every process that loads a model); the loaded weights are still exactly the file's."""
    script = (
        "import sys, torch\n"
        "from drugrepo_assets.ml.model.checkpoint import load_checkpoint\n"
        f"model = load_checkpoint({str(golden_dir / 'model_state.pt')!r}).model\n"
        f"reference = torch.load({str(golden_dir / 'model_state.pt')!r}, weights_only=True)\n"
        "assert torch.equal(model.state_dict()['protein_extractor.embedding.weight'],"
        " reference['protein_extractor.embedding.weight'])\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]


def test_non_checkpoint_file_is_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="neither a drugrepo DrugBAN checkpoint"):
        load_checkpoint(str(tmp_path / "x.pt"))


def test_the_checkpoint_id_names_the_weights_and_is_checked_on_load(tmp_path: Path, golden_dir: Path) -> None:
    reference = torch.load(golden_dir / "model_state.pt", weights_only=True)
    model = load_reference_state_dict(reference)
    ident = checkpoint_id(model)
    assert len(ident) == CHECKPOINT_ID_CHARS and int(ident, 16) >= 0
    save_checkpoint(str(tmp_path / "ours.pt"), model)
    torch.save(export_reference_state_dict(model), tmp_path / "exported.pt")
    assert {load_checkpoint(str(tmp_path / name)).checkpoint_id for name in ("ours.pt", "exported.pt")} == {ident}
    changed = {k: v.clone() for k, v in reference.items()}
    changed["mlp_classifier.fc4.bias"] += 1e-6
    assert checkpoint_id(load_reference_state_dict(changed)) != ident
    payload = torch.load(tmp_path / "ours.pt", weights_only=True)
    payload["state_dict"]["mlp_classifier.fc4.bias"] += 1e-6
    torch.save(payload, tmp_path / "altered.pt")
    with pytest.raises(ValueError, match="do not match the checkpoint id it records"):
        load_checkpoint(str(tmp_path / "altered.pt"))


def test_training_provenance_takes_each_entry_only_with_the_type_written() -> None:
    recorded = {"epoch": 4, "val_auroc": 0.75, "train_config": {"lr": 5e-5}, "imported_from": {"file": "x.pt"}}
    assert TrainingProvenance.of(recorded) == TrainingProvenance(
        epoch=4, val_auroc=0.75, train_config={"lr": 5e-5}, imported_from={"file": "x.pt"}
    )
    assert TrainingProvenance.of({"epoch": True, "val_auroc": "high", "history": {}}) == TrainingProvenance()
