"""``drugrepo predict``: score the pairs of a table with a checkpoint; the output keeps every input row and column."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from drugrepo_assets.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    add_s3_endpoint,
    check_out,
    error,
    load_model,
    positive_int,
    resolve_input,
    torch_device,
    write_table,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["add_parser", "run"]

_SHOWN_FAILURES = 10


def _read(args: argparse.Namespace, location: str) -> tuple[pd.DataFrame, str, str]:
    """The pairs in their file's column order, and the SMILES and protein columns: the flags' when
    given (the reader checks them), else found under any of their names (`data.columns`)."""
    from drugrepo_assets.data.columns import coalesce_pair_columns
    from drugrepo_assets.data.sources import read_source

    given = {"SMILES": args.smiles_col, "Protein": args.protein_col}
    named = tuple(name for name in given.values() if name)
    table = read_source(location, s3_endpoint_url=args.s3_endpoint_url, required=named, keep_order=True)
    table, found = coalesce_pair_columns(table, location, [field for field, name in given.items() if not name])
    columns = {**found, **{field: name for field, name in given.items() if name}}
    return table, columns["SMILES"], columns["Protein"]


def run(args: argparse.Namespace) -> int:
    """Score every row of --pairs with --checkpoint into --out (CSV or Parquet); bad rows keep their place with a reason."""
    from drugrepo_assets.data.limits import InputFileError
    from drugrepo_assets.ml.predict import score_table
    from drugrepo_assets.ml.runtime import configure_cpu

    if not check_out("predict", args.out, folder=False, inputs=(args.pairs, args.checkpoint)):
        return EXIT_BAD_INPUT
    device = torch_device("predict", args.device)
    if device is None:
        return EXIT_BAD_INPUT
    try:
        location = resolve_input(args.pairs)
        table, smiles_col, protein_col = _read(args, location)
    except InputFileError as exc:
        error("predict", str(exc))
        return EXIT_BAD_INPUT
    except ValueError as exc:
        error("predict", f"{args.pairs}: {exc}")
        return EXIT_BAD_INPUT
    one_file = bool((table["source_file"] == location).all())
    sources = table[["source_file", "source_row"]]
    if one_file:  # the output is the input's own columns; a folder's rows keep their file and row
        table = table.drop(columns=["source_file", "source_row"])
    loaded = load_model("predict", args.checkpoint)
    if loaded is None:
        return EXIT_BAD_INPUT
    model, _, temperature = loaded
    configure_cpu(args.threads)
    scored = score_table(
        model.to(device), table, smiles_col, protein_col, args.batch_size, device, temperature=temperature
    )
    write_table(args.out, scored.table, args.s3_endpoint_url)
    print(f"scored {len(table) - scored.n_failed} of {len(table)} pairs; wrote {args.out}")
    if (note := temperature.note()) is not None:
        print(f"predict: {note}", file=sys.stderr)
    if scored.n_failed:
        bad = scored.table["error"].to_numpy() != ""
        print(f"{scored.n_failed} rows could not be scored (logit empty, reason in column 'error'):", file=sys.stderr)
        where = sources[bad]
        shown = list(zip(where["source_file"], where["source_row"], scored.table["error"][bad]))[:_SHOWN_FAILURES]
        for file, row, reason in shown:
            label = file if one_file else location.rstrip("/") + "/" + file
            print(f"  {label}: row {row}: {reason}", file=sys.stderr)
        if scored.n_failed > _SHOWN_FAILURES:
            print(f"  ... and {scored.n_failed - _SHOWN_FAILURES} more", file=sys.stderr)
        if args.strict:
            return EXIT_FAILURE
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``predict``."""
    parser = subparsers.add_parser(
        "predict",
        help="score (SMILES, protein) pairs with a checkpoint",
        description=(
            "Score every row of --pairs (a CSV/Parquet file, a folder of them, an http(s) URL, an s3:// "
            "key or prefix, or bundled:<dataset>/<file>) with CKPT (a drugrepo checkpoint such as "
            "the best.pt of 'drugrepo train', or a reference DrugBAN state_dict). The SMILES and protein "
            "columns are SMILES/Protein or smiles/protein (the valid.parquet of 'drugrepo validate', an "
            "earlier predict's output) unless --smiles-col/--protein-col name them. The output (a file "
            "or an s3:// key; CSV, CSV.gz or Parquet as its suffix says: .csv, .csv.gz, .parquet, .pq) keeps the input's rows, order and columns (a folder's rows also get "
            "source_file and source_row) and adds logit, score = sigmoid(logit), calibrated_score = "
            "sigmoid(logit / T) (T: the temperature fitted on validation by 'drugrepo train'; 1 for a "
            "checkpoint without one, said once on stderr) and error (why a row "
            "could not be scored; empty otherwise). Exit 2 for an unusable input, checkpoint or --out."
        ),
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT")
    parser.add_argument("--pairs", required=True, metavar="LOCATION")
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="output .csv, .csv.gz or .parquet (its folder is created if needed; never an input)",
    )
    parser.add_argument("--smiles-col", default=None, help="the SMILES column (default: SMILES or smiles)")
    parser.add_argument("--protein-col", default=None, help="the protein column (default: Protein or protein)")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("--strict", action="store_true", help="exit 1 when any row could not be scored")
    add_s3_endpoint(parser)
    parser.set_defaults(func=run)
