"""``compress``, ``decompress`` and ``sample`` commands (``inspect``: :mod:`mnistcodec.cli.inspect_cmd`).

Each one checks its output path before doing any work, writes atomically and
overwrites nothing without ``--force``; see :mod:`mnistcodec.coding.files` and
:mod:`mnistcodec.storage.images` for the library calls behind them. Inputs and outputs
are streamed block by block, so memory does not grow with the number of
digits. ``-`` is standard input (compress INPUT, decompress and inspect FILE)
or standard output (compress ``-o -`` writes the .mnc file, decompress and
sample ``-o -`` write raw IDX); the report then goes to standard error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

import numpy as np

from mnistcodec.cli import note_written
from mnistcodec.cli.common import (
    MAX_LISTED,
    add_data_args,
    add_device_args,
    add_encoder_choices,
    add_level_args,
    choose_level,
    non_negative_int,
    note,
    positive_int,
    seed_int,
)
from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import MAX_BLOCK, parse_header, string_bits
from mnistcodec.coding.files import (
    DEFAULT_BLOCK_SIZE,
    CompressionSummary,
    compress_to_bytes_io,
    compress_to_file,
    iter_decompress,
    read_compressed,
)
from mnistcodec.coding.limits import MAX_SAMPLE_BYTES, MAX_SAMPLES
from mnistcodec.coding.rate_control import LevelChoice, RateTarget
from mnistcodec.coding.zoo import (
    DEFAULT_MODEL,
    is_model_reference,
    resolve_model,
    shipped_for_fingerprint,
)
from mnistcodec.data import load_split
from mnistcodec.errors import InputError
from mnistcodec.model.precision import resolve_device
from mnistcodec.storage.atomic import check_writable, is_stdio
from mnistcodec.storage.fitting import fit_image_files
from mnistcodec.storage.images import check_output, open_inputs, write_image_pieces


def parse_index(text: str, length: int) -> slice:
    """``"a:b"``, ``"a:"``, ``":b"`` or ``"a"`` -> a slice within ``range(length)``."""
    try:
        if ":" in text:
            first, _, last = text.partition(":")
            start = int(first) if first.strip() else 0
            stop = int(last) if last.strip() else length
        else:
            start = int(text)
            stop = start + 1
    except ValueError:
        raise InputError(
            f"bad --index {text!r}; expected A:B or a single index, e.g. 48:64"
        ) from None
    if start < 0 or stop < 0:
        raise InputError(f"bad --index {text!r}: indices must be non-negative")
    if start >= stop:
        raise InputError(f"--index {text} selects no digits")
    if stop > length:
        raise InputError(
            f"--index {text} is out of range: the split has {length} digits (0 to {length - 1})"
        )
    return slice(start, stop)


def _load_inputs(
    args: argparse.Namespace,
) -> tuple[Iterable[np.ndarray], int, list[str], str]:
    """Digits as pieces, their count, names of the first :data:`MAX_LISTED` and a description."""
    if args.split is not None or args.index is not None:
        if args.fit:
            raise InputError("--fit fits image files; a dataset slice is already in MNIST's form")
        if args.inputs:
            raise InputError(
                "give either INPUT files or a dataset slice (--split/--index), not both"
            )
        split = args.split or "test"
        images = load_split(split, args.dataset, args.data_dir).images
        part = (
            parse_index(args.index, images.shape[0])
            if args.index is not None
            else slice(0, images.shape[0])
        )
        names = [
            f"{split}[{i}]" for i in range(part.start, min(part.stop, part.start + MAX_LISTED))
        ]
        count = part.stop - part.start
        return [images[part]], count, names, f"{args.dataset} {split}[{part.start}:{part.stop}]"
    if not args.inputs:
        raise InputError(
            "no input: give PNG or IDX files, or a dataset slice such as --split test --index 48:64"
        )
    source = args.inputs[0] if len(args.inputs) == 1 else f"{len(args.inputs)} files"
    if args.fit:
        images, names = fit_image_files(args.inputs)
        return [images], images.shape[0], names[:MAX_LISTED], f"{source}, fitted to MNIST's form"
    inputs = open_inputs(args.inputs)
    return inputs.pieces(), inputs.count, inputs.names(MAX_LISTED), source


def _refuse_terminal(out: str) -> None:
    """Binary data is never written to a terminal (as gzip refuses to)."""
    if is_stdio(out) and sys.stdout.isatty():
        raise InputError(
            "refusing to write binary data to a terminal; redirect standard output or give a file"
        )


def _load_codec(name: str | None, args: argparse.Namespace) -> Codec:
    device = resolve_device(args.device)
    refine_steps = getattr(args, "refine", 0)
    codec = Codec(
        resolve_model(name, notify=note),
        device=device,
        precision=args.precision,
        refine_steps=refine_steps,
    )
    candidates = getattr(args, "search", 0)
    if candidates:
        train = load_split(
            "train", getattr(args, "dataset", "mnist"), getattr(args, "data_dir", None)
        )
        codec.enable_search(train.images, candidates)
    return codec


def _model_or_input(args: argparse.Namespace) -> None:
    """``compress INPUT...`` without a model: the first word is an input, the model the default.

    With a dataset slice (``--split``/``--index``) the word is always the model.
    """
    slice_given = args.split is not None or args.index is not None
    if args.model is not None and not slice_given and not is_model_reference(args.model):
        args.inputs.insert(0, args.model)
        args.model = None


def _against(difference: float) -> str:
    """``1.25 over`` or ``0.60 under``: a string length against the information content."""
    return f"{abs(difference):.2f} {'over' if difference >= 0 else 'under'}"


def _print_compressed(result: CompressionSummary, names: list[str], quiet: bool, out) -> None:
    n = result.count
    info = result.listed_info_bits
    width = max(6, *(len(s) for s in names[:MAX_LISTED]))
    if not quiet:
        if result.mode == "per-digit":
            longest = max(len(s) for s in result.listed_strings)
            hex_width = max(8, 2 + 2 * longest)
            print(
                f"{'#':>6}  {'source':<{width}}  {'string':<{hex_width}}  {'bits':>5}  {'info bits':>9}",
                file=out,
            )
            for i in range(min(n, MAX_LISTED)):
                s = result.listed_strings[i]
                print(
                    f"{i:>6}  {names[i]:<{width}}  {'0x' + s.hex():<{hex_width}}  {string_bits(s):>5}  {info[i]:>9.2f}",
                    file=out,
                )
        else:
            print(f"{'#':>6}  {'source':<{width}}  {'info bits':>9}", file=out)
            for i in range(min(n, MAX_LISTED)):
                print(f"{i:>6}  {names[i]:<{width}}  {info[i]:>9.2f}", file=out)
        if n > MAX_LISTED:
            print(f"   ... {n - MAX_LISTED} more digits (--quiet prints the totals only)", file=out)
    mean_info = result.mean_info_bits
    print(f"digits                     {n}", file=out)
    print(f"mean information content   {mean_info:.2f} bits/digit", file=out)
    if result.mode == "per-digit":
        mean_bits = result.payload_bits_per_digit
        print(
            f"mean string length         {mean_bits:.2f} bits/digit ({_against(mean_bits - mean_info)} the information)",
            file=out,
        )
    else:
        stream_bytes = sum(result.stream_sizes)
        over = (
            100 * (result.payload_bits_per_digit / mean_info - 1) if mean_info > 0 else float("nan")
        )
        streams = len(result.stream_sizes)
        print(
            f"stream                     {stream_bytes} bytes in {streams} stream{'s' * (streams > 1)} = "
            f"{result.payload_bits_per_digit:.2f} bits/digit ({over:+.2f} % over the information)",
            file=out,
        )
    print(
        f"file                       {result.file_bytes} bytes = {result.file_bits_per_digit:.2f} bits/digit "
        "(header, lengths and checksums included)",
        file=out,
    )


def compress_handler(args: argparse.Namespace) -> int:
    to_stdout = is_stdio(args.out)
    if to_stdout:
        _refuse_terminal(args.out)
    else:
        check_writable(args.out, force=args.force)
    if not 1 <= args.block_size <= MAX_BLOCK:
        raise InputError(f"--block-size must be between 1 and {MAX_BLOCK}")
    _model_or_input(args)
    pieces, count, names, source = _load_inputs(args)
    codec = _load_codec(args.model, args)
    mode = "stream" if args.stream else "per-digit"
    choice = _level_choice(codec, args)
    choice.check(codec, mode)
    options = {"mode": mode, "block_size": args.block_size, "listed": MAX_LISTED, "choice": choice}
    if to_stdout:
        data, result = compress_to_bytes_io(codec, pieces, count, **options)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        result = compress_to_file(codec, pieces, count, args.out, force=args.force, **options)
        note_written(args.out)
    report = sys.stderr if to_stdout else sys.stdout
    where = "standard output" if to_stdout else args.out
    print(
        f"compressed {result.count} digits from {source} into {where} ({mode} mode, model {codec.fingerprint[:16]})",
        file=report,
    )
    _print_compressed(result, names, args.quiet, report)
    if codec.loaded.variable_rate:
        _print_levels(codec, result, choice, report)
    return 0


def _level_choice(codec: Codec, args: argparse.Namespace) -> LevelChoice:
    """``--level``/``--lmbda`` or ``--target-bits``/``--target-psnr`` as a :class:`LevelChoice`."""
    level = choose_level(codec.loaded, args)
    if args.target_bits is None and args.target_psnr is None:
        return LevelChoice(level=level)
    if level is not None:
        raise InputError(
            "give a level (--level/--lmbda) or a rate target (--target-bits/--target-psnr), not both"
        )
    return LevelChoice(target=RateTarget(bits=args.target_bits, psnr=args.target_psnr))


def _print_levels(codec: Codec, result: CompressionSummary, choice: LevelChoice, out) -> None:
    levels = result.listed_levels
    if choice.target is None:
        level = levels[0]
        print(
            f"level                      {level} of 0-{codec.levels - 1} (lambda {codec.lambdas[level]:.1f})",
            file=out,
        )
        return
    counts = np.bincount(np.asarray(levels), minlength=codec.levels)
    used = ", ".join(f"{level}: {n}" for level, n in enumerate(counts) if n)
    shown = "" if len(levels) == result.count else f" (first {len(levels)} digits)"
    print(f"levels (level: digits)     {used}{shown}", file=out)
    if choice.target.psnr is not None and result.missed:
        print(
            f"below the PSNR target      {result.missed} digits (coded at their best level)",
            file=out,
        )


def decompress_handler(args: argparse.Namespace) -> int:
    _refuse_terminal(args.out)
    kind = check_output(args.out, force=args.force)
    data = read_compressed(args.file)
    model = args.model
    if model is None:
        # No model named: the shipped model that wrote the file, else the default.
        model = shipped_for_fingerprint(parse_header(data).fingerprint_hex) or DEFAULT_MODEL
    codec = _load_codec(model, args)
    header, pieces = iter_decompress(codec, data)
    write_image_pieces(args.out, header.count, pieces, force=args.force)
    note_written(args.out)
    if args.quiet:
        return 0
    described = {
        "grid": "PNG grid",
        "idx": "IDX file",
        "dir": "PNG files in directory",
        "stdout": "IDX on standard output",
    }[kind]
    where = "" if kind == "stdout" else f" {args.out}"
    source = "standard input" if is_stdio(args.file) else args.file
    report = sys.stderr if kind == "stdout" else sys.stdout
    print(f"decoded {header.count} digits from {source} into {described}{where}", file=report)
    return 0


def sample_handler(args: argparse.Namespace) -> int:
    _refuse_terminal(args.out)
    kind = check_output(args.out, force=args.force)
    codec = _load_codec(args.model, args)
    level = choose_level(codec.loaded, args)
    level = codec.default_level if level is None else level
    # Streamed piece by piece, as decompress writes: memory stays one piece however many digits.
    pieces = codec.iter_sample(args.n, seed=args.seed, nbytes=args.bytes, level=level)
    write_image_pieces(args.out, args.n, pieces, force=args.force)
    note_written(args.out)
    if not args.quiet:
        at = f", level {level} (lambda {codec.lambdas[level]:g})" if codec.levels > 1 else ""
        print(
            f"decoded {args.n} random {args.bytes}-byte strings (seed {args.seed}{at}, decode "
            f"check off) into {args.out} ({kind})",
            file=sys.stderr if kind == "stdout" else sys.stdout,
        )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    for add in (register_compress, register_decompress, register_sample):
        add(subparsers)


def register_compress(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compress",
        description="Compress PNG files, IDX image files or a dataset slice into a .mnc file.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        default=None,
        help=f"model file (.safetensors) or shipped model name (default: {DEFAULT_MODEL})",
    )
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="28x28 8-bit greyscale PNG files or IDX images files (-: standard input); "
        "with --fit, images of any format, size and colour, one digit each",
    )
    p.add_argument(
        "--fit",
        action="store_true",
        help="bring each INPUT image to MNIST's form first: greyscale, light on dark, "
        "cropped, scaled into 20x20 and centred by mass in 28x28 (mnistcodec.storage.fitting)",
    )
    p.add_argument(
        "-o",
        "--out",
        required=True,
        metavar="OUT.mnc",
        help="compressed file to write (-: standard output)",
    )
    p.add_argument(
        "--stream", action="store_true", help="one stream per block instead of one string per digit"
    )
    p.add_argument(
        "--split",
        default=None,
        choices=["train", "test"],
        help="compress a dataset split instead of files",
    )
    p.add_argument(
        "--index",
        default=None,
        metavar="A:B",
        help="digits A to B-1 (or one index) of the split (default split: test)",
    )
    p.add_argument(
        "--block-size",
        type=positive_int,
        default=DEFAULT_BLOCK_SIZE,
        metavar="N",
        help=f"digits per block (default {DEFAULT_BLOCK_SIZE}; in stream mode, digits per stream)",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--quiet", "-q", action="store_true", help="print the totals only")
    add_encoder_choices(p)
    add_data_args(p)
    add_device_args(p)
    p.set_defaults(handler=compress_handler)


def register_decompress(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "decompress",
        description="Decode a .mnc file. OUT ending in .png: one grid image; .idx, .idx3-ubyte or "
        "-ubyte: an IDX file; anything else: a directory of digit-NNNNN.png files.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        default=None,
        help="the model file (or shipped name) that wrote the file (default: the shipped model "
        f"that did, else {DEFAULT_MODEL})",
    )
    p.add_argument("file", metavar="FILE.mnc", help="compressed file (-: standard input)")
    p.add_argument(
        "-o",
        "--out",
        required=True,
        metavar="OUT",
        help="PNG grid, IDX file, directory, or - for IDX on standard output",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    add_device_args(p)
    p.set_defaults(handler=decompress_handler)


def register_sample(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample",
        description="Decode random byte strings with the decode check off: digits sampled from the "
        "learned distribution. The same seed gives the same digits.",
    )
    p.add_argument(
        "model",
        metavar="MODEL",
        nargs="?",
        default=None,
        help=f"model file or shipped model name (default: {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--n",
        type=positive_int,
        default=16,
        help=f"number of digits, at most {MAX_SAMPLES} (default 16)",
    )
    p.add_argument(
        "--seed", type=seed_int, default=0, help="random seed, 0 to 2^63 - 1 (default 0)"
    )
    p.add_argument(
        "--bytes",
        type=non_negative_int,
        default=8,
        help=f"bytes per random string, at most {MAX_SAMPLE_BYTES} (default 8)",
    )
    p.add_argument(
        "-o",
        "--out",
        required=True,
        metavar="OUT",
        help="PNG grid (.png), IDX file, directory, or - for IDX on standard output",
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    add_level_args(p)
    add_device_args(p)
    p.set_defaults(handler=sample_handler)
