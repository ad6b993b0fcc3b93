"""``drugrepo predict``: score the pairs of a table with a checkpoint; the output keeps every input row and column."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from drugrepo_assets.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    Subparsers,
    add_command,
    add_s3_endpoint,
    add_torch_options,
    check_out,
    load_model,
    positive_int,
    resolve_input,
    torch_device,
    unreadable_input,
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
    from drugrepo_assets.location import Location

    given = {"SMILES": args.smiles_col, "Protein": args.protein_col}
    named = tuple(name for name in given.values() if name)
    table = read_source(Location.of(location, args.s3_endpoint_url), required=named, keep_order=True)
    table, found = coalesce_pair_columns(table, location, [field for field, name in given.items() if not name])
    columns = {**found, **{field: name for field, name in given.items() if name}}
    return table, columns["SMILES"], columns["Protein"]


def run(args: argparse.Namespace) -> int:
    """Score every row of --pairs with --checkpoint into --out (CSV or Parquet); bad rows keep their place with a reason."""
    from drugrepo_assets.location import Location
    from drugrepo_assets.ml.predict import BATCH_SIZE, score_table
    from drugrepo_assets.ml.runtime import configure_cpu

    check_out(args.out, folder=False, inputs=(args.pairs, args.checkpoint))
    device = torch_device(args.device)
    with unreadable_input(args.pairs):
        location = resolve_input(args.pairs)
        table, smiles_col, protein_col = _read(args, location)
    one_file = bool((table["source_file"] == location).all())
    sources = table[["source_file", "source_row"]]
    if one_file:  # the output is the input's own columns; a folder's rows keep their file and row
        table = table.drop(columns=["source_file", "source_row"])
    model, _, temperature = load_model(args.checkpoint)
    configure_cpu(args.threads)
    scored = score_table(
        model.to(device), table, smiles_col, protein_col, args.batch_size or BATCH_SIZE, device, temperature=temperature
    )
    write_table(Location.of(args.out, args.s3_endpoint_url), scored.table)
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
    parser = add_command(
        subparsers,
        "predict",
        run,
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
    # default None: the core's (`ml.predict.BATCH_SIZE`), read in run, as the module loads torch
    parser.add_argument("--batch-size", type=positive_int, default=None, help="pairs scored per model call")
    add_torch_options(parser)
    parser.add_argument("--strict", action="store_true", help="exit 1 when any row could not be scored")
    add_s3_endpoint(parser)
