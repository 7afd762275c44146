"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse

from mnistcodec.data import DATASETS


def add_data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="mnist", choices=sorted(DATASETS), help="dataset (default mnist)")
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="directory holding the IDX files (default: $MNISTCODEC_DATA_DIR, cache, download)",
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value
