"""``mnistcodec data``: inspect and fetch the datasets."""

from __future__ import annotations

import argparse

from mnistcodec import data
from mnistcodec.data.registry import DATASETS, DEFAULT_DATASET
from mnistcodec.data.sources import DATA_DIR_ENV, cache_dir


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        choices=sorted(DATASETS),
        default=DEFAULT_DATASET,
        help=f"dataset to use (default: {DEFAULT_DATASET})",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        default=None,
        help=f"directory holding the IDX files, raw or .gz (default: ${DATA_DIR_ENV}, "
        "then the user cache, then download)",
    )


def register(subparsers) -> None:
    """Add the ``data`` command group."""
    parser = subparsers.add_parser("data", description=__doc__)
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION")
    actions.required = True

    info = actions.add_parser("info", help="show counts, shapes and label counts per split")
    _add_common(info)
    info.set_defaults(handler=info_handler)

    fetch = actions.add_parser("fetch", help="download/verify the files into the user cache")
    _add_common(fetch)
    fetch.set_defaults(handler=fetch_handler)


def info_handler(args: argparse.Namespace) -> int:
    """Print a summary of each split."""
    info = data.dataset_info(args.dataset, args.data_dir)
    print(f"dataset: {args.dataset}")
    for split, entry in info.items():
        shape = "x".join(str(d) for d in entry["shape"])
        counts = " ".join(f"{k}:{v}" for k, v in entry["label_counts"].items())
        print(f"{split}: {entry['count']} images, shape {shape}, dtype {entry['dtype']}")
        print(f"  pixel mean: {entry['pixel_mean']:.2f}")
        print(f"  labels: {counts}")
        print(f"  source: {entry['source']}")
    return 0


def fetch_handler(args: argparse.Namespace) -> int:
    """Fill the user cache and report where each file came from."""
    found = data.fetch(args.dataset, args.data_dir)
    for name, source in found.items():
        print(f"{name}: {source}")
    print(f"cache: {cache_dir(args.dataset)}")
    return 0
