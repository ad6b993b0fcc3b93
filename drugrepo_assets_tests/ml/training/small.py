"""The small DrugBAN of the training tests that prove the loop (files, determinism, resume, patience), not learning."""

from __future__ import annotations

from drugrepo_assets.ml.model.model_config import DrugBANConfig
from drugrepo_assets_tests.ml.training.reference_training import TINY

SMALL = DrugBANConfig.from_dict({**TINY, "ban_dropout": 0.2})
"""The fidelity tests' small DrugBAN with dropout on: a resumed run must replay its random draws too."""
