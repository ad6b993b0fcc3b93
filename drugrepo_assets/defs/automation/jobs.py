"""The asset location's jobs: the pipeline by stage, and the two runs the sensors launch.

``materialize_all_job`` is what `make demo` and the UI's daily use run; the screening and HPO jobs run
on demand; `landing_sensor` launches ``ingest_job`` and `retrain_sensor` (and the retraining schedule)
``retrain_job``.
"""

from dagster import AssetSelection, define_asset_job

HPO = AssetSelection.assets("hpo_study")
SCREENING = AssetSelection.groups("screening")
SCREENING_INPUTS = AssetSelection.assets(
    "screening_library", "screening_library_rejected", "screening_targets", "screening_targets_rejected"
)

materialize_all_job = define_asset_job(
    "materialize_all_job",
    selection=AssetSelection.all() - HPO - SCREENING,
    description="Ingest to evaluation, with the checks, for one dataset partition (no HPO study, no screening).",
)
screening_inputs_job = define_asset_job(
    "screening_inputs_job",
    selection=SCREENING_INPUTS,
    description="The screening library and targets (from every dataset's features, or the configured files).",
)
screening_job = define_asset_job(
    "screening_job",
    selection=SCREENING - SCREENING_INPUTS,
    description="Screen the library against the targets with one dataset's checkpoint; the candidates.",
)
hpo_job = define_asset_job(
    "hpo_job",
    selection=HPO,
    description="Run the HPO study's trials (in parallel steps) for one dataset partition.",
)
ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets("raw_pairs"),
    description="Read one dataset partition into raw_pairs (launched by landing_sensor for new files).",
)
retrain_job = define_asset_job(
    "retrain_job",
    selection=AssetSelection.assets("drugban_checkpoint", "model_evaluation"),
    description="Retrain and re-evaluate DrugBAN for one dataset partition (launched by retrain_sensor).",
)
