"""The serving location against a real training stage: a tiny DrugBAN materialised (with its gating
checks) on a temp instance, tracked by a real `mlflow server`; `registered_model` registers every
checkpoint and gives it an alias only when every gate passed (champion, or challenger while a champion
exists); the API serves the alias; `drugrepo rollback` moves it back; `champion_challenger` promotes a
challenger not worse than the champion and holds a worse one; `drift_report` compares training, landed
data and API requests."""

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch
from dagster import AssetCheckSeverity, AssetSelection, DagsterInstance, ExecuteInProcessResult, materialize
from mlflow import MlflowClient

from drugrepo_assets.api.model_service import load_served_model
from drugrepo_assets.api.request_log import LoggedBatch, RequestLog
from drugrepo_assets.api.settings import ServingSettings
from drugrepo_assets.cli import main as cli_main
from drugrepo_assets.data.splits import split_subset
from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.defs.training.training import CHECKPOINT_ID_TAG as RUN_CHECKPOINT_ID_TAG
from drugrepo_assets.lib.environments import serving_resources
from drugrepo_assets.lib.resources import MlflowTracking, TrainingProfile
from drugrepo_assets.lib.serving_resources import ChallengerSettings, DriftSettings, RegistrySettings
from drugrepo_assets.ml.evaluate import sigmoid
from drugrepo_assets.ml.model.checkpoint import load_checkpoint, save_checkpoint
from drugrepo_assets.ml.predict import score_table
from drugrepo_assets.request_records import scan_request_log
from drugrepo_assets.serving.defs.assets import champion_challenger, drift_report, external_assets, registered_model
from drugrepo_assets.serving.registry import CHECKPOINT_ID_TAG as VERSION_CHECKPOINT_ID_TAG
from drugrepo_assets.serving.registry import (
    PREVIOUS_TAG,
    alias_version,
    checkpoint_source,
    promote,
    register_checkpoint,
    rollback,
    set_challenger,
)
from drugrepo_assets_tests.api.servers import BIN, metric_value, poll_until, running_api, running_mlflow
from drugrepo_assets_tests.defs.training.training_setup import resources, small_dataset

pytestmark = pytest.mark.slow(85)

NAME = "drugban-human"
KEY = "serving-test-key"
TRAINING = AssetSelection.all() - AssetSelection.assets("hpo_study") - AssetSelection.groups("screening")
RETRAIN = AssetSelection.assets("drugban_checkpoint", "model_evaluation")


def _profile(floor: float) -> TrainingProfile:
    return TrainingProfile(
        name="tiny",
        epochs=1,
        patience=None,
        batch_size=32,
        max_train_pairs=96,
        max_eval_pairs=48,
        test_auroc_floor=floor,
        attention_examples=1,
        model_width=16,
    )


class World:
    """A temp instance, dataset, storage and MLflow server shared by the scenario."""

    def __init__(self, base: Path, instance: DagsterInstance, mlflow_url: str) -> None:
        self.base, self.instance, self.mlflow_url = base, instance, mlflow_url
        self.source = base / "source"
        small_dataset(self.source)

    def train(self, selection: AssetSelection, floor: float) -> ExecuteInProcessResult:
        return materialize(
            [*all_assets, *all_asset_checks],
            selection=selection,
            partition_key="human",
            resources=resources(self.base, self.source, _profile(floor), tracking_uri=self.mlflow_url),
            instance=self.instance,
            raise_on_error=False,
        )

    def serving_resources(self, request_log: Path) -> dict[str, Any]:
        return serving_resources(
            "local",
            self.base,
            mlflow_tracking=MlflowTracking(tracking_uri=self.mlflow_url),
            drift_settings=DriftSettings(request_log_dir=str(request_log)),
        )

    def serve(self, asset: Any, request_log: Path = Path("unused"), **resources: Any) -> ExecuteInProcessResult:
        """Materialise one serving asset for ``human``; ``resources`` replace the defaults by key."""
        return materialize(
            [*external_assets, asset],
            selection=[asset],
            partition_key="human",
            resources=self.serving_resources(request_log) | resources,
            instance=self.instance,
        )

    def value(self, asset: str) -> dict[str, Any]:
        return json.loads((self.base / "storage" / asset / "human.json").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    base = tmp_path_factory.mktemp("serving")
    with running_mlflow(base / "mlflow") as url, DagsterInstance.ephemeral() as instance:
        yield World(base, instance, url)


def _checks(result: ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_alias_moves_only_when_every_gate_passed_and_rolls_back(
    world: World, tmp_path: Path, golden_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Registration gated by the checks, the challenger stage, the API serving the alias (answering with the
    checkpoint id the training run and the registry version hold), `drugrepo rollback` and the API following it."""
    client = MlflowClient(tracking_uri=world.mlflow_url)
    # 1. A checkpoint whose evaluation misses the AUROC floor: registered, not promoted.
    failed = world.train(TRAINING, floor=1.01)
    assert not failed.success
    assert _checks(failed) == {**dict.fromkeys(_checks(failed), True), "model_evaluation_auroc_floor": False}
    first = world.serve(registered_model).output_for_node("registered_model")
    assert first.version == "1" and first.created and not first.promoted
    assert first.gates == {
        "drugban_checkpoint:drugban_checkpoint_losses_finite": "passed",
        "drugban_checkpoint:drugban_checkpoint_reproduces": "passed",
        "model_evaluation:model_evaluation_auroc_floor": "failed",
    }
    assert "model_evaluation_auroc_floor" in first.decision
    assert alias_version(client, NAME, "champion") is None
    version = client.get_model_version(NAME, "1")
    assert version.tags["gate.model_evaluation_auroc_floor"] == "failed"
    assert version.run_id == world.value("drugban_checkpoint")["mlflow_run_id"]
    assert version.tags[VERSION_CHECKPOINT_ID_TAG] == world.value("drugban_checkpoint")["checkpoint_id"]
    assert "checkpoint_sha256" not in version.tags
    assert version.source.endswith("/checkpoint")

    # 2. The same checkpoint evaluated again, now over the floor: same version, now the champion.
    passed = world.train(AssetSelection.assets("model_evaluation"), floor=0.0)
    assert passed.success and _checks(passed) == {"model_evaluation_auroc_floor": True}
    second = world.serve(registered_model).output_for_node("registered_model")
    assert second.version == "1" and not second.created and second.promoted
    assert alias_version(client, NAME, "champion") == "1"

    # 3. A new checkpoint passing every gate while a champion exists: version 2 becomes the challenger,
    #    the champion stays; promoted directly (no challenger stage), it replaces version 1, remembering it.
    retrained = world.train(RETRAIN, floor=0.0)
    assert retrained.success and all(_checks(retrained).values())
    third = world.serve(registered_model).output_for_node("registered_model")
    assert third.version == "2" and not third.promoted and third.champion_version == "1"
    assert third.challenger_version == "2" and third.decision == "challenger of champion version 1 (replacing none)"
    assert alias_version(client, NAME, "challenger") == "2" and alias_version(client, NAME, "champion") == "1"
    assert PREVIOUS_TAG not in client.get_model_version(NAME, "2").tags
    direct = world.serve(registered_model, registry_settings=RegistrySettings(promote_directly=True))
    third = direct.output_for_node("registered_model")
    assert third.version == "2" and third.promoted and third.champion_version == "2"
    assert third.challenger_version is None and alias_version(client, NAME, "challenger") is None
    assert client.get_model_version(NAME, "2").tags[PREVIOUS_TAG] == "1"
    trained_2 = world.value("drugban_checkpoint")
    checkpoint_2 = trained_2["checkpoint"]
    id_2 = load_checkpoint(checkpoint_2).checkpoint_id
    assert client.get_run(trained_2["mlflow_run_id"]).data.tags[RUN_CHECKPOINT_ID_TAG] == id_2
    assert client.get_model_version(NAME, "2").tags[VERSION_CHECKPOINT_ID_TAG] == id_2 == trained_2["checkpoint_id"]

    # 4. The API serves models:/drugban-human@champion from the server: version 2's weights.
    pairs = pd.read_csv(golden_dir / "model_pairs.csv", dtype=str).head(8)
    body = {"pairs": [{"smiles": s, "protein": p} for s, p in zip(pairs["SMILES"], pairs["Protein"])]}
    env = {
        "DRUGREPO_API_KEYS": KEY,
        "MLFLOW_TRACKING_URI": world.mlflow_url,
        "DRUGREPO_MODEL_NAME": NAME,
        "DRUGREPO_MODEL_REFRESH_SECONDS": "0.5",
    }
    with running_api(tmp_path / "api", [], env) as api:
        assert httpx.get(api.url + "/readyz").json()["model_version"] == f"{NAME}/2"
        response = httpx.post(api.url + "/v1/predict", json=body, headers={"X-API-Key": KEY}, timeout=60).json()
        expected = score_table(load_checkpoint(checkpoint_2).model, pairs).table["logit"].to_numpy()
        assert response["model_version"] == f"{NAME}/2" and response["checkpoint_id"] == id_2
        served = httpx.get(api.url + "/metrics").text
        assert metric_value(served, "drugrepo_model_info", {"version": f"{NAME}/2", "checkpoint_id": id_2}) == 1
        np.testing.assert_allclose([p["logit"] for p in response["predictions"]], expected, atol=1e-4, rtol=0)

        # 5. Rollback (the installed console script): the alias goes back to version 1; with no earlier version,
        #    a second rollback (the same CLI entry point, in this process: no second interpreter start) refuses.
        rollback = ["rollback", "--model", NAME, "--tracking-uri", world.mlflow_url]
        moved = subprocess.run([str(BIN / "drugrepo"), *rollback], capture_output=True, text=True)
        assert moved.returncode == 0, moved.stderr
        assert f"{NAME}@champion: version 2 -> 1" in moved.stdout
        assert alias_version(client, NAME, "champion") == "1"
        capsys.readouterr()
        assert cli_main(rollback) == 1 and "no previous version" in capsys.readouterr().err
        assert alias_version(client, NAME, "champion") == "1"

        # 6. The running API follows the alias: version 1 is served within a few refreshes, no restart.
        deadline = time.monotonic() + 60
        while httpx.get(api.url + "/readyz").json()["model_version"] != f"{NAME}/1" and time.monotonic() < deadline:
            time.sleep(0.25)
        after = httpx.post(api.url + "/v1/predict", json=body, headers={"X-API-Key": KEY}, timeout=60).json()
        text = httpx.get(api.url + "/metrics").text
    assert after["model_version"] == f"{NAME}/1"
    assert metric_value(text, "drugrepo_model_info", {"version": f"{NAME}/1"}) == 1
    assert metric_value(text, "drugrepo_model_info", {"version": f"{NAME}/2"}) == 0
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    version_1 = load_served_model(ServingSettings(model_uri=f"models:/{NAME}/1", mlflow_tracking_uri=world.mlflow_url))
    assert list(scratch.iterdir()) == []  # the downloaded checkpoint is gone once loaded: a model change leaks nothing
    expected_1 = score_table(version_1.model, pairs).table["logit"].to_numpy()
    np.testing.assert_allclose([p["logit"] for p in after["predictions"]], expected_1, atol=1e-4, rtol=0)


def _screen_checkpoint_ids(checkpoint: str, pairs: pd.DataFrame, out: Path) -> set[str]:
    """The checkpoint_id column of ``drugrepo screen``'s score table for ``checkpoint`` on a few molecules."""
    out.mkdir(parents=True)
    smiles = list(dict.fromkeys(pairs["SMILES"]))
    pd.DataFrame({"id": [f"m{i}" for i in range(len(smiles))], "SMILES": smiles}).to_csv(out / "lib.csv", index=False)
    (out / "targets.fasta").write_text(f">t0\n{pairs['Protein'].iloc[0]}\n")
    command = [str(BIN / "drugrepo"), "screen", "--checkpoint", checkpoint, "--library", str(out / "lib.csv")]
    command += ["--targets", str(out / "targets.fasta"), "--out", str(out / "run"), "--top", str(len(smiles))]
    command += ["--threads", "1", "--quiet"]
    screened = subprocess.run(command, capture_output=True, text=True)
    assert screened.returncode == 0, screened.stderr
    return set(pd.read_csv(out / "run" / "top.csv", dtype=str)["checkpoint_id"])


def test_one_checkpoint_id_in_score_table_mlflow_run_and_registry_version(
    world: World, tmp_path: Path, golden_dir: Path
) -> None:
    """For one checkpoint file, the score table, the training run and the registry version name it by the same
    string (the API serving a version answers with it too: test_alias_moves_only_when_every_gate_passed...)."""
    if not (world.base / "storage" / "drugban_checkpoint" / "human.json").exists():
        assert world.train(TRAINING, floor=0.0).success
    registered = world.serve(registered_model).output_for_node("registered_model")
    checkpoint = world.value("drugban_checkpoint")
    client = MlflowClient(tracking_uri=world.mlflow_url)
    run_id = client.get_run(checkpoint["mlflow_run_id"]).data.tags[RUN_CHECKPOINT_ID_TAG]
    version_id = client.get_model_version(NAME, registered.version).tags[VERSION_CHECKPOINT_ID_TAG]
    pairs = pd.read_csv(golden_dir / "model_pairs.csv", dtype=str).head(6)
    table_ids = _screen_checkpoint_ids(checkpoint["checkpoint"], pairs, tmp_path / "screen")
    file_id = load_checkpoint(checkpoint["checkpoint"]).checkpoint_id
    assert table_ids == {file_id}
    assert checkpoint["checkpoint_id"] == run_id == version_id == registered.checkpoint_id == file_id


def _log_requests(folder: Path, smiles: list[str], proteins: list[str]) -> None:
    log = RequestLog(folder)
    log.submit(
        LoggedBatch(
            "/v1/predict",
            "abc123",
            f"{NAME}/1",
            "0123456789abcdef",
            smiles,
            proteins,
            [0.0] * len(smiles),
            [0.5] * len(smiles),
        )
    )
    log.close()


def test_drift_report_compares_training_with_landed_data_and_requests(world: World, tmp_path: Path) -> None:
    if not (world.base / "storage" / "drugban_checkpoint" / "human.json").exists():
        world.train(TRAINING, floor=0.0)
    splits = pd.read_parquet(world.base / "storage" / "dataset_splits" / "human.parquet")
    train = splits[(splits["strategy"] == "random") & (splits["split"] == "train")]
    like_training = tmp_path / "like-training"
    _log_requests(like_training, train["smiles"].tolist()[:120], train["protein"].tolist()[:120])
    [log_file] = like_training.glob("requests-*.jsonl")
    with open(log_file, "ab") as handle:
        handle.write(b'{"ts": "2024-01-01T00:00:00+00:00", "mol_weight": 18\n\xff\xfe not utf-8\n')
    result = world.serve(drift_report, like_training)
    value = result.output_for_node("drift_report")
    assert set(value.comparisons) == {"landed", "requests"}
    assert value.comparisons["requests"].current_rows == 120
    assert value.comparisons["landed"].current_rows > 0
    assert value.drifted == []
    assert value.checkpoint_id == world.value("drugban_checkpoint")["checkpoint_id"]
    assert world.value("drift_report")["comparisons"]["requests"]["drifted_columns"] == []
    for uri in value.reports.values():
        html = Path(uri).read_text()
        assert "<html" in html.lower() and "mol_weight" in html
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.severity == AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in result.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert meta["requests_rows"] == 120 and meta["requests_drifted_columns"] == [] and "landed_report" in meta
    rows = [r.data for r in meta["columns"].records]
    assert {r["comparison"] for r in rows} == {"landed", "requests"} and not any(r["drifted"] for r in rows)
    assert (meta["request_log_files"], meta["request_log_malformed_lines"]) == (1, 2)

    shifted = tmp_path / "shifted"
    alkanes = ["C" * n for n in range(20, 80)] * 2
    _log_requests(shifted, alkanes, ["G" * (900 + i) for i in range(len(alkanes))])
    drifted = world.serve(drift_report, shifted)
    meta = {k: v.value for k, v in drifted.get_asset_materialization_events()[0].materialization.metadata.items()}
    assert meta["request_log_malformed_lines"] == 0
    value = drifted.output_for_node("drift_report")
    assert value.drifted == ["requests"]
    columns = value.comparisons["requests"].drifted_columns
    assert {"mol_weight", "rings", "protein_length", "frac_small"} <= set(columns)
    (check,) = drifted.get_asset_check_evaluations()
    assert not check.passed and check.severity == AssetCheckSeverity.WARN and "requests" in check.description


CC_NAME = "cc-human"
CC_REGISTRY = RegistrySettings(model_prefix="cc")
CC_GATE = ChallengerSettings(min_shadow_pairs=30, require_online=True)
"""The comparison's settings here: ~40 shadow pairs are enough, and the online agreement is required."""


def _register(client: MlflowClient, experiment_id: str, checkpoint: Path, strategy: str) -> str:
    """``checkpoint`` as a new version of `CC_NAME`, from a run of its own, tagged as `registered_model` tags it."""
    run_id = client.create_run(experiment_id).info.run_id
    source = checkpoint_source(client, run_id, checkpoint)
    tags = {"strategy": strategy, VERSION_CHECKPOINT_ID_TAG: load_checkpoint(str(checkpoint)).checkpoint_id}
    version, created = register_checkpoint(client, CC_NAME, source, run_id, tags)
    assert created
    return str(version.version)


def _checkpoints(golden: Path, out: Path) -> tuple[Path, Path]:
    """The reference checkpoint (AUROC ~0.75 on these pairs) in our format, and its mirror image: the last layer
    negated, so that every logit's sign flips and its AUROC is 1 - the original's."""
    model = load_checkpoint(str(golden)).model
    original, mirror = out / "original" / "best.pt", out / "mirror" / "best.pt"
    for path in (original, mirror):
        path.parent.mkdir(parents=True)
    save_checkpoint(str(original), model)
    with torch.no_grad():
        model.mlp_classifier.fc4.weight.neg_()
        model.mlp_classifier.fc4.bias.neg_()
    save_checkpoint(str(mirror), model)
    return original, mirror


def _shadow_api_traffic(world: World, folder: Path, pairs: pd.DataFrame) -> Path:
    """``drugrepo serve`` of `CC_NAME`'s champion with its challenger alias in shadow mode (every request copied):
    one /v1/predict per 8 pairs; returns its request-log folder once the shadow copies are all logged."""
    env = {
        "DRUGREPO_API_KEYS": KEY,
        "MLFLOW_TRACKING_URI": world.mlflow_url,
        "DRUGREPO_MODEL_NAME": CC_NAME,
        "DRUGREPO_MODEL_REFRESH_SECONDS": "0",
        "DRUGREPO_CHALLENGER_ALIAS": "challenger",
        "DRUGREPO_CHALLENGER_MODE": "shadow",
        "DRUGREPO_CHALLENGER_SHARE": "1",
        "DRUGREPO_RATE_LIMIT_PER_MINUTE": "1000000",
        "DRUGREPO_RATE_LIMIT_BURST": "1000000",
    }
    with running_api(folder, [], env) as api, httpx.Client(timeout=60) as http:
        for start in range(0, len(pairs), 8):
            rows = pairs.iloc[start : start + 8]
            body = {"pairs": [{"smiles": s, "protein": p} for s, p in zip(rows["smiles"], rows["protein"])]}
            answer = http.post(api.url + "/v1/predict", json=body, headers={"X-API-Key": KEY})
            assert answer.status_code == 200 and answer.json()["role"] == "champion", answer.text

        def shadow_logged() -> bool:
            return sum(r.role == "shadow" for r in scan_request_log(api.request_log).records) == len(pairs)

        poll_until(shadow_logged, "the shadow copies in the request log")
    return api.request_log


def _shadow_traffic(folder: Path, pairs: pd.DataFrame, champion: tuple[str, Path], shadow: tuple[str, Path]) -> None:
    """The request log of an API in shadow mode: each request of 8 pairs answered by the champion and copied to
    the challenger (role shadow, same request id and pair positions), scored by the versions' real models."""
    log = RequestLog(folder)
    scored = {}
    for role, (version, checkpoint) in (("champion", champion), ("shadow", shadow)):
        loaded = load_checkpoint(str(checkpoint))
        logits = score_table(loaded.model, pairs).table["logit"].to_numpy(dtype=float)
        scored[role] = (f"{CC_NAME}/{version}", loaded.checkpoint_id, logits)
    for start in range(0, len(pairs), 8):
        rows = pairs.iloc[start : start + 8]
        for role, (model_version, checkpoint_id, logits) in scored.items():
            chunk = logits[start : start + 8]
            batch = LoggedBatch(
                "/v1/predict", "abc123", model_version, checkpoint_id, rows["smiles"].tolist(),
                rows["protein"].tolist(), chunk.tolist(), sigmoid(chunk).tolist(), role, f"request-{start}",
            )  # fmt: skip
            assert log.submit(batch)
    log.close()


def test_champion_challenger_promotes_a_challenger_not_worse_and_holds_a_worse_one(
    world: World, tmp_path: Path, golden_dir: Path
) -> None:
    """On the real MLflow server: a challenger as good as the champion (the same weights, another run), shadowing
    it in a real API, is promoted (previous champion recorded, challenger alias removed, rollback goes back); the
    champion's mirror image (AUROC 1 - a, its shadow scores 1 - the champion's, logged through `RequestLog`) is
    held with the reason, aliases unchanged."""
    splits_file = world.base / "storage" / "dataset_splits" / "human.parquet"
    if not splits_file.exists():
        assert world.train(AssetSelection.assets("dataset_splits").upstream(), floor=0.0).success
    client = MlflowClient(tracking_uri=world.mlflow_url)
    experiment = client.get_experiment_by_name("drugrepo")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("drugrepo")
    original, mirror = _checkpoints(golden_dir / "model_state.pt", tmp_path)
    v_a, v_b, v_m = (_register(client, experiment_id, path, "random") for path in (original, original, mirror))
    pairs = split_subset(pd.read_parquet(splits_file), "random", "test").head(40)

    # 1. Not worse: version b (the same weights as a) challenges a on the shadow traffic of a real API, and wins.
    promote(client, CC_NAME, "champion", v_a)
    set_challenger(client, CC_NAME, v_b)
    log = _shadow_api_traffic(world, tmp_path / "api", pairs)
    same = world.serve(champion_challenger, log, registry_settings=CC_REGISTRY, challenger_settings=CC_GATE)
    record = same.output_for_node("champion_challenger")
    assert (record.decision, record.promoted, record.champion_version, record.challenger_version) == (
        "promoted", True, v_a, v_b
    )  # fmt: skip
    assert record.champion_after == v_b == alias_version(client, CC_NAME, "champion")
    assert alias_version(client, CC_NAME, "challenger") is None
    assert client.get_model_version(CC_NAME, v_b).tags[PREVIOUS_TAG] == v_a
    assert record.champion is not None and record.challenger is not None and record.online is not None
    a = record.champion.test.auroc
    assert record.challenger.test.auroc == pytest.approx(a) and record.challenger.test.n == record.champion.test.n > 0
    assert record.online.requests == {"champion": 5, "challenger": 0, "shadow": 5}
    assert record.online.shadow_pairs == 40 and record.online.decision_disagreement == 0.0
    assert record.online.mean_abs_score_diff == pytest.approx(0.0, abs=1e-12)
    assert any(reason.startswith("decisions agree on 100.0% of 40 shadow pairs") for reason in record.reasons)
    tags = client.get_model_version(CC_NAME, v_b).tags
    assert tags["challenger.decision"] == "promoted" and tags["challenger.compared_with"] == v_a
    assert (
        client.get_model_version(CC_NAME, v_a).tags["challenger.last_challenge"].startswith(f"promoted: version {v_b}")
    )
    meta = same.get_asset_materialization_events()[0].materialization.metadata
    assert [r.data["role"] for r in meta["offline"].value.records] == ["champion", "challenger"]
    assert {r.data["role"]: r.data["pairs"] for r in meta["traffic"].value.records} == {
        "champion": 40, "challenger": 0, "shadow": 40
    }  # fmt: skip
    assert rollback(client, CC_NAME).to_version == v_a == alias_version(client, CC_NAME, "champion")

    # 2. Nothing to compare once the challenger alias is gone.
    idle = world.serve(champion_challenger, log, registry_settings=CC_REGISTRY)
    assert idle.output_for_node("champion_challenger").decision == "no challenger"

    # 3. Worse: the mirror image of the champion (AUROC 1 - a) challenges it and is held.
    set_challenger(client, CC_NAME, v_m)
    _shadow_traffic(tmp_path / "log-worse", pairs, (v_a, original), (v_m, mirror))
    held = world.serve(
        champion_challenger, tmp_path / "log-worse", registry_settings=CC_REGISTRY, challenger_settings=CC_GATE
    ).output_for_node("champion_challenger")
    assert (held.decision, held.promoted, held.champion_version, held.champion_after) == ("held", False, v_a, v_a)
    assert held.champion is not None and held.challenger is not None and held.online is not None
    assert held.champion.test.auroc == pytest.approx(a) and a > 0.6
    assert held.challenger.test.auroc == pytest.approx(1 - a)
    assert held.reasons[0].startswith(f"test AUROC {held.challenger.test.auroc:.4f} vs champion {a:.4f} - 0.01")
    assert held.online.shadow_pairs == 40 and held.online.spearman == pytest.approx(-1.0)
    assert alias_version(client, CC_NAME, "champion") == v_a
    assert alias_version(client, CC_NAME, "challenger") == v_m
    tags = client.get_model_version(CC_NAME, v_m).tags
    assert tags["challenger.decision"] == "held" and tags["challenger.reasons"].startswith("test AUROC")
    assert client.get_model_version(CC_NAME, v_a).tags["challenger.last_challenge"].startswith(f"held: version {v_m}")
