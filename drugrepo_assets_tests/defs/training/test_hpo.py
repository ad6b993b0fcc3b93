"""hpo_study: trials as mapped ops sharing an Optuna SQLite storage; its best parameters feed training."""

from pathlib import Path

import optuna
from dagster import AssetSelection, DagsterInstance, materialize
from mlflow import MlflowClient

from drugrepo_assets.definitions import all_asset_checks, all_assets
from drugrepo_assets.lib.records import HpoSummary
from drugrepo_assets.lib.resources import HpoSettings, TrainingProfile
from drugrepo_assets_tests.defs.training.training_setup import resources, small_dataset

PROFILE = TrainingProfile(
    name="tiny", epochs=2, batch_size=32, max_train_pairs=64, max_eval_pairs=32, test_auroc_floor=0.0, model_width=16
)
STUDY = "drugban-human-random-tiny"


def test_two_trials_land_in_the_study_and_feed_the_checkpoint(tmp_path: Path) -> None:
    source = tmp_path / "source"
    small_dataset(source)
    res = resources(tmp_path, source, PROFILE)
    res["hpo_settings"] = HpoSettings(
        storage_url=f"sqlite:///{tmp_path / 'optuna.db'}", n_trials=2, pruner_startup_trials=1, sampler_seed=0
    )
    assets = [*all_assets, *all_asset_checks]
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            assets,
            selection=AssetSelection.assets("hpo_study", "rejected_pairs").upstream(),
            partition_key="human",
            resources=res,
            instance=instance,
        )
        assert result.success
        trial_steps = {
            e.step_key for e in result.get_step_success_events() if e.step_key.startswith("hpo_study.hpo_trial[")
        }
        assert len(trial_steps) == 2  # one mapped op per trial

        study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{tmp_path / 'optuna.db'}")
        states = [t.state for t in study.trials]
        assert len(states) == 2
        assert set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
        assert optuna.trial.TrialState.COMPLETE in states
        assert set(study.best_params) == {"lr", "batch_size", "ban_dropout"}

        (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "hpo_study"]
        assert event.materialization.metadata["best_params"].value == study.best_params
        assert event.materialization.metadata["trials"].value == 2
        rows = [r.data for r in event.materialization.metadata["this_run"].records]
        assert [r["number"] for r in rows] == [0, 1]
        assert {r["state"] for r in rows} == {t.state.name for t in study.trials}
        summary = HpoSummary.model_validate_json((tmp_path / "storage" / "hpo_study" / "human.json").read_text())
        assert summary.best_params == study.best_params and [t.number for t in summary.this_run] == [0, 1]

        client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
        runs = client.search_runs(client.get_experiment_by_name("drugrepo").experiment_id)
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
        trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
        assert len(parents) == 1 and len(trials) == 2
        assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
        assert all(r.data.tags["optuna.study"] == STUDY and "hpo.lr" in r.data.params for r in trials)

        tuned = materialize(
            assets,
            selection=AssetSelection.assets("drugban_checkpoint"),
            partition_key="human",
            resources=res,
            instance=instance,
            run_config={"ops": {"drugban_checkpoint": {"config": {"use_hpo_params": True}}}},
        )
        (event,) = tuned.get_asset_materialization_events()
        assert event.materialization.metadata["hpo_params"].value == study.best_params


def test_using_hpo_params_without_a_finished_trial_fails_clearly(tmp_path: Path) -> None:
    source = tmp_path / "source"
    small_dataset(source, rows=60)
    result = materialize(
        [*all_assets, *all_asset_checks],
        selection=AssetSelection.assets("drugban_checkpoint", "rejected_pairs").upstream(),
        partition_key="human",
        resources=resources(tmp_path, source, PROFILE),
        instance=DagsterInstance.ephemeral(),
        run_config={"ops": {"drugban_checkpoint": {"config": {"use_hpo_params": True}}}},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "has no completed trial" in failure.step_failure_data.user_failure_data.description
