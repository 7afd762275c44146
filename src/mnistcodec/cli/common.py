"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

from mnistcodec.cli import printable
from mnistcodec.coding.names import DEFAULT_CANDIDATES, MAX_CANDIDATES
from mnistcodec.errors import InputError
from mnistcodec.model.names import PRECISIONS

if TYPE_CHECKING:
    from mnistcodec.coding.model_files import LoadedModel


def note(message: str) -> None:
    """One line of notice on standard error (``mnistcodec: note: ...``), not an error."""
    print(f"mnistcodec: note: {printable(message)}", file=sys.stderr)


#: Digits listed one per line (compress, inspect) before the listing is cut short.
MAX_LISTED = 64


def add_data_args(parser: argparse.ArgumentParser) -> None:
    from mnistcodec.data.registry import DATASETS  # lazy: the data package loads NumPy

    parser.add_argument(
        "--dataset", default="mnist", choices=sorted(DATASETS), help="dataset (default mnist)"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="directory holding the IDX files (default: $MNISTCODEC_DATA_DIR, cache, download)",
    )


#: Largest integer any option takes (a signed 64-bit integer: seeds, counts, sizes).
MAX_OPTION_INT = (1 << 63) - 1


def _integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None


def bounded_int(low: int, high: int = MAX_OPTION_INT):
    """An argparse type: an integer from ``low`` to ``high``, else one clear error."""

    def integer(text: str) -> int:
        value = _integer(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {text[:40]}")
        return value

    return integer


def bounded_float(low: float, high: float, low_open: bool = False):
    """An argparse type: a finite number from ``low`` (excluded if ``low_open``) to ``high``."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
        above = value > low if low_open else value >= low
        if not (math.isfinite(value) and above and value <= high):
            side = f"above {low:g}" if low_open else f"from {low:g}"
            raise argparse.ArgumentTypeError(f"must be {side} to {high:g}, got {text[:40]}")
        return value

    return number


def positive_int(text: str) -> int:
    value = _integer(text)
    if not 1 <= value <= MAX_OPTION_INT:
        raise argparse.ArgumentTypeError(
            f"must be a positive integer (at most 2^63 - 1), got {text[:40]}"
        )
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if not 0 <= value <= MAX_OPTION_INT:
        raise argparse.ArgumentTypeError(
            f"must be a non-negative integer (at most 2^63 - 1), got {text[:40]}"
        )
    return value


#: ``--seed``: what PyTorch and NumPy both take.
seed_int = bounded_int(0)


def add_level_args(parser: argparse.ArgumentParser) -> None:
    """``--level`` and ``--lmbda``: the operating point of a variable-rate model."""
    parser.add_argument(
        "--level",
        type=non_negative_int,
        default=None,
        metavar="K",
        help="level K of a variable-rate model (default: its reference level)",
    )
    parser.add_argument(
        "--lmbda",
        type=positive_float,
        default=None,
        metavar="L",
        help="the level whose lambda is nearest to L (log scale)",
    )


def choose_level(loaded: LoadedModel, args: argparse.Namespace) -> int | None:
    """The level ``--level`` or ``--lmbda`` names (``None``: the model's default), checked."""
    from mnistcodec.model.variable_rate import nearest_level  # lazy: PyTorch

    if args.level is not None and args.lmbda is not None:
        raise InputError("give --level or --lmbda, not both")
    lambdas = loaded.model.lambdas if loaded.variable_rate else (float(loaded.config.lmbda),)
    if args.lmbda is not None:
        return nearest_level(args.lmbda, lambdas)
    if args.level is not None and args.level >= len(lambdas):
        if len(lambdas) == 1:
            raise InputError(
                f"level {args.level} does not exist: this is a fixed-rate model, whose only "
                "level is 0 (a variable-rate model, such as the default, has several)"
            )
        raise InputError(
            f"level {args.level} does not exist; this model has levels 0 to {len(lambdas) - 1}"
        )
    return args.level


def add_training_args(parser: argparse.ArgumentParser) -> None:
    """The optimisation options shared by ``train`` and ``sweep``: epochs, batch, Adam, subsets."""
    parser.add_argument("--epochs", type=positive_int, default=5, help="epochs (default 5)")
    parser.add_argument(
        "--batch-size", type=bounded_int(1, 1 << 24), default=128, help="batch size (default 128)"
    )
    parser.add_argument(
        "--lr", type=positive_float, default=1e-3, help="Adam learning rate (default 1e-3)"
    )
    parser.add_argument(
        "--prior-lr",
        type=positive_float,
        default=None,
        metavar="LR",
        help="learning rate of the prior's parameters (default: --lr)",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="train on the first N digits only",
    )
    parser.add_argument(
        "--val-limit",
        type=positive_int,
        default=None,
        metavar="N",
        help="validate on the first N test digits only",
    )
    parser.add_argument(
        "--level-weight",
        type=bounded_float(-100, 100),
        default=None,
        metavar="A",
        help="variable-rate models: weight each level's Lagrangian by (2000 / lambda)^A "
        "(default: the preset's, else 0)",
    )
    parser.add_argument(
        "--lr-decay-epochs",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="train the last K of --epochs at --lr-decay-factor times the learning rates "
        "(a resumed run too; default 0: no decay)",
    )
    parser.add_argument(
        "--lr-decay-factor",
        type=positive_float,
        default=0.1,
        metavar="F",
        help="the learning rates' factor in the last --lr-decay-epochs epochs (default 0.1)",
    )
    add_device_args(parser)


def add_device_args(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--precision``: where the transforms run, and in what precision."""
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    add_precision_arg(parser)


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="the transforms' products: fp32 (exact reference), bf16, or auto: bf16 where the "
        "device has bf16 matrix units, with a decoder kept within 1 grey level (default auto)",
    )


def add_encoder_choices(p: argparse.ArgumentParser) -> None:
    """How the encoder picks each digit's level and latents: a level, a rate target, refinement."""
    add_level_args(p)
    p.add_argument(
        "--target-bits",
        type=positive_float,
        default=None,
        metavar="B",
        help="per digit, the best level whose string fits in B bits (variable-rate models)",
    )
    p.add_argument(
        "--target-psnr",
        type=positive_float,
        default=None,
        metavar="P",
        help="per digit, the fewest bits that reach P dB (variable-rate models)",
    )
    p.add_argument(
        "--refine",
        type=non_negative_int,
        default=0,
        metavar="STEPS",
        help="search each digit's latents for a lower rate + lambda x distortion for STEPS "
        "steps (about 30 ms per digit for 100 steps, which save about 9 %% of the bits at equal "
        "PSNR; the decoder is unchanged; default 0)",
    )
    p.add_argument(
        "--search",
        type=bounded_int(0, MAX_CANDIDATES),
        nargs="?",
        const=DEFAULT_CANDIDATES,
        default=0,
        metavar="N",
        help="also try, for each digit, the N most frequent integer latents of the training "
        f"digits at its level (default N {DEFAULT_CANDIDATES}), keeping any with a lower rate + "
        "lambda x distortion (about 8 %% fewer bits at equal PSNR at low rates; reads the "
        "training split; the decoder is unchanged; default: off)",
    )
