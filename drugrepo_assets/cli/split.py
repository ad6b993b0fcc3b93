"""``drugrepo split``: DrugBAN's cluster (cross-domain) split of a pair table, as the files the reference reads."""

from __future__ import annotations

import argparse

from drugrepo_assets.cli.common import (
    EXIT_OK,
    Subparsers,
    add_command,
    add_s3_endpoint,
    check_out,
    read_input_pairs,
    writing_output,
)

__all__ = ["REJECTED_FILE", "add_parser", "run"]

REJECTED_FILE = "rejected.csv"
"""The input rows refused by validation, with file, row and reason (`data.validate.REJECTED_COLUMNS`)."""


def run(args: argparse.Namespace) -> int:
    """Validate INPUT, split its valid pairs by clusters and write OUT/<split>.csv; print the counts."""
    from drugrepo_assets.data.clusters import pair_clusters
    from drugrepo_assets.data.splits import REFERENCE_FILES, cluster_split, reference_tables
    from drugrepo_assets.data.validate import validate_pairs
    from drugrepo_assets.files import storage_path, uri_of, write_bytes_atomic
    from drugrepo_assets.location import Location

    writes = (*REFERENCE_FILES.values(), REJECTED_FILE)
    check_out(args.out, folder=True, inputs=(args.input,), writes=writes)
    location, raw = read_input_pairs(Location.of(args.input, args.s3_endpoint_url))
    result = validate_pairs(raw)
    clusters = pair_clusters(result.valid)
    table = cluster_split(result.valid, seed=args.seed, clusters=clusters)
    root = storage_path(Location.of(args.out, args.s3_endpoint_url))
    written = []
    tables = {**reference_tables(table, clusters), REJECTED_FILE: result.rejected}
    with writing_output(args.out):
        for name, frame in tables.items():
            path = root / name
            write_bytes_atomic(path, frame.to_csv(index=False).encode())
            written.append(path)
    s = table.attrs["cluster_summary"]
    print(f"input: {location}")
    print(
        f"rows read: {result.counts['input_rows']}, valid: {result.counts['valid']} (only valid pairs are split), "
        f"rejected: {result.counts['rejected']} (with file, row and reason in {REJECTED_FILE})"
    )
    print(
        f"clusters: {s['drug_clusters']} drug, {s['target_clusters']} protein; "
        f"source domain: {s['source_drug_clusters']} drug and {s['source_target_clusters']} protein clusters"
    )
    print(
        f"pairs: source {s['train'] + s['val']} (train {s['train']}, val {s['val']}), "
        f"target {s['target_train'] + s['test']} (target_train {s['target_train']}, test {s['test']}), "
        f"in neither domain (dropped) {s['dropped']}"
    )
    for path in written:
        print(f"wrote {uri_of(path)}")
    return EXIT_OK


def add_parser(subparsers: Subparsers) -> None:
    """Register ``split``."""
    parser = add_command(
        subparsers,
        "split",
        run,
        help="DrugBAN's cluster split: source and target domains of unseen drug and protein clusters",
        description=(
            "Read INPUT (a CSV/Parquet file, a folder, an http(s) URL, an s3:// key or prefix, or "
            "bundled:<dataset>) with columns SMILES, Protein, Y (or smiles, protein, label), validate it, "
            "cluster its drugs (ECFP4) and proteins (pseudo amino-acid composition) by single linkage, draw "
            "a seeded share of each kind's clusters for the source domain, and write OUT/source_train.csv, "
            "OUT/source_val.csv (held-out source pairs for model selection), OUT/target_train.csv "
            "(target-domain pairs for unlabelled domain adaptation) and OUT/target_test.csv in the "
            "reference's columns SMILES, Protein, Y (plus drug_cluster, target_cluster), and OUT/rejected.csv "
            "(the rows refused by validation, with file, row and reason). Pairs in neither "
            "domain are counted and left out. Thresholds and shares: README, Cluster splits. Exit status 0 "
            "when written, 2 when the input was unreadable or OUT may not be written, 1 when writing failed."
        ),
    )
    parser.add_argument("input", metavar="INPUT", help="file, folder, URL, S3 URI or bundled:<dataset>")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder or s3:// prefix (created if needed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cluster draw and of the cuts (default 0)")
    add_s3_endpoint(parser)
