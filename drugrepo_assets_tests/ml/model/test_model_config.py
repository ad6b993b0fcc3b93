"""DrugBANConfig: its plain-dict round trip and its refusal of unknown keys (its bounds: test_checkpoint.py)."""

from __future__ import annotations

import pytest

from drugrepo_assets.ml.model.model_config import DrugBANConfig


def test_config_round_trip_and_unknown_keys() -> None:
    config = DrugBANConfig(ban_heads=4, hidden_feats=(64, 64))
    assert DrugBANConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown DrugBAN config keys"):
        DrugBANConfig.from_dict({"ban_head": 2})
