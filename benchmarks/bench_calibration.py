"""Calibration of a trained checkpoint: Brier score and ECE on validation and test, before and after temperature scaling.

The temperature is the checkpoint's (`drugrepo train` fits it on validation and stores it in best.pt); a checkpoint
that records none gets one fitted here on ``--val`` exactly as training fits it (`ml.model.calibration.fit_temperature`).
Writes JSON (``--json``).

    python benchmarks/bench_calibration.py runs/human/best.pt \
        --val bundled:human/random/val.csv --test bundled:human/random/test.csv \
        --json benchmarks/results/calibration.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from drugrepo_assets.cli.common import resolve_input
from drugrepo_assets.data.columns import read_pairs
from drugrepo_assets.data.validate import validate_pairs
from drugrepo_assets.ml.model.calibration import ECE_BINS, Temperature, fit_temperature
from drugrepo_assets.ml.model.checkpoint import load_checkpoint
from drugrepo_assets.ml.predict import predict_logits
from drugrepo_assets.ml.training.pipeline import evaluate_model, pair_data


def main() -> None:
    """Evaluate one checkpoint's calibration and print (and optionally write) it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--val", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    loaded = load_checkpoint(args.checkpoint)
    model = loaded.model
    val, test = (pair_data(validate_pairs(read_pairs(resolve_input(where))).valid) for where in (args.val, args.test))
    temperature = loaded.temperature
    source = "checkpoint"
    if not temperature.fitted:
        temperature = Temperature(fit_temperature(val.require_labels().numpy(), predict_logits(model, val)), True)
        source = "fitted here on --val (the checkpoint records none)"
    evaluation = evaluate_model(model, val, test, temperature=temperature)
    result = {
        "checkpoint": Path(args.checkpoint).name,
        "checkpoint_id": loaded.checkpoint_id,
        "epoch": loaded.provenance.epoch,
        "temperature_source": source,
        "ece_bins": ECE_BINS,
        "test_auroc": evaluation.metrics.test.auroc,
        "calibration": {name: c.as_dict() for name, c in evaluation.calibration().items()},
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
