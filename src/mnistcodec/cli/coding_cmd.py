"""``compress``, ``decompress``, ``inspect`` and ``sample`` commands.

Each one checks its output path before doing any work, writes atomically and
overwrites nothing without ``--force``; see :mod:`mnistcodec.coding.files` and
:mod:`mnistcodec.imageio` for the library calls behind them.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from mnistcodec.cli.common import add_data_args, positive_int
from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import MAX_BLOCK
from mnistcodec.coding.files import (
    DEFAULT_BLOCK_SIZE,
    CompressedFile,
    compress_file,
    decompress_file,
    inspect_file,
)
from mnistcodec.data import load_split
from mnistcodec.errors import InputError
from mnistcodec.fileio import check_writable
from mnistcodec.imageio import check_output, read_inputs, write_images
from mnistcodec.zoo import resolve_model

#: Digits listed one per line before the listing is cut short.
MAX_LISTED = 64


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


def _load_inputs(args: argparse.Namespace) -> tuple[np.ndarray, list[str], str]:
    """Images, a name per digit and a description of where they came from."""
    if args.split is not None or args.index is not None:
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
        names = [f"{split}[{i}]" for i in range(part.start, part.stop)]
        return images[part], names, f"{args.dataset} {split}[{part.start}:{part.stop}]"
    if not args.inputs:
        raise InputError(
            "no input: give PNG or IDX files, or a dataset slice such as --split test --index 48:64"
        )
    images, names = read_inputs(args.inputs)
    source = args.inputs[0] if len(args.inputs) == 1 else f"{len(args.inputs)} files"
    return images, names, source


def _load_codec(name: str) -> Codec:
    return Codec(resolve_model(name))


def _print_compressed(result: CompressedFile, names: list[str], quiet: bool) -> None:
    n = result.count
    info = result.info_bits
    width = max(6, *(len(s) for s in names[:MAX_LISTED]))
    if not quiet:
        if result.mode == "per-digit":
            longest = max(len(s) for s in result.strings[:MAX_LISTED])
            hex_width = max(8, 2 + 2 * longest)
            print(
                f"{'#':>6}  {'source':<{width}}  {'string':<{hex_width}}  {'bits':>5}  {'info bits':>9}"
            )
            for i in range(min(n, MAX_LISTED)):
                s = result.strings[i]
                print(
                    f"{i:>6}  {names[i]:<{width}}  {'0x' + s.hex():<{hex_width}}  {8 * len(s):>5}  {info[i]:>9.2f}"
                )
        else:
            print(f"{'#':>6}  {'source':<{width}}  {'info bits':>9}")
            for i in range(min(n, MAX_LISTED)):
                print(f"{i:>6}  {names[i]:<{width}}  {info[i]:>9.2f}")
        if n > MAX_LISTED:
            print(f"   ... {n - MAX_LISTED} more digits (--quiet prints the totals only)")
    mean_info = float(info.mean())
    print(f"digits                     {n}")
    print(f"mean information content   {mean_info:.2f} bits/digit")
    if result.mode == "per-digit":
        string_bits = result.payload_bits_per_digit
        print(
            f"mean string length         {string_bits:.2f} bits/digit ({string_bits - mean_info:+.2f} over the information)"
        )
    else:
        stream_bytes = sum(result.stream_sizes)
        over = (
            100 * (result.payload_bits_per_digit / mean_info - 1) if mean_info > 0 else float("nan")
        )
        streams = len(result.stream_sizes)
        print(
            f"stream                     {stream_bytes} bytes in {streams} stream{'s' * (streams > 1)} = "
            f"{result.payload_bits_per_digit:.2f} bits/digit ({over:+.2f} % over the information)"
        )
    print(
        f"file                       {len(result.data)} bytes = {result.file_bits_per_digit:.2f} bits/digit "
        "(header, lengths and checksums included)"
    )


def compress_handler(args: argparse.Namespace) -> int:
    check_writable(args.out, force=args.force)
    if not 1 <= args.block_size <= MAX_BLOCK:
        raise InputError(f"--block-size must be between 1 and {MAX_BLOCK}")
    images, names, source = _load_inputs(args)
    codec = _load_codec(args.model)
    mode = "stream" if args.stream else "per-digit"
    result = compress_file(
        codec, images, args.out, mode=mode, force=args.force, block_size=args.block_size
    )
    print(
        f"compressed {result.count} digits from {source} into {args.out} ({mode} mode, model {codec.fingerprint[:16]})"
    )
    _print_compressed(result, names, args.quiet)
    return 0


def decompress_handler(args: argparse.Namespace) -> int:
    kind = check_output(args.out, force=args.force)
    codec = _load_codec(args.model)
    images = decompress_file(codec, args.file)
    write_images(args.out, images, force=args.force)
    described = {"grid": "PNG grid", "idx": "IDX file", "dir": "PNG files in directory"}[kind]
    print(f"decoded {images.shape[0]} digits from {args.file} into {described} {args.out}")
    return 0


def format_inspection(info: dict, show_all: bool = False) -> str:
    """Human-readable lines for :func:`mnistcodec.coding.files.inspect_bytes`."""
    count = info["count"]
    blocks = info["blocks"]
    lines = [
        f"file            {info.get('path', '-')}",
        f"format version  {info['format_version']}",
        f"mode            {info['mode']}",
        f"digits          {count} ({info['digit_shape'][0]}x{info['digit_shape'][1]})",
        f"block size      {info['block_size']} ({blocks} block{'s' * (blocks != 1)})",
        f"model           {info['fingerprint']}",
        f"size            {info['file_bytes']} bytes: {info['header_bytes']} header + "
        f"{info['payload_bytes']} payload + 4 checksum",
    ]
    if count:
        lines.append(f"bits per digit  {info['file_bits_per_digit']:.2f} (whole file)")
    if info["mode"] == "per-digit":
        sizes = info["string_bytes"]
        if sizes:
            bits = 8 * np.asarray(sizes)
            lines.append(
                f"strings         mean {bits.mean():.2f} bits, min {bits.min()}, max {bits.max()}"
            )
        listed = sizes if show_all else sizes[:MAX_LISTED]
        lines.append(f"{'#':>6}  {'bytes':>5}  {'bits':>5}")
        lines.extend(f"{i:>6}  {size:>5}  {8 * size:>5}" for i, size in enumerate(listed))
    else:
        sizes = info["stream_bytes"]
        if count:
            per_digit = info["stream_bits_per_digit"]
            lines.append(f"streams         {sum(sizes)} bytes = {per_digit:.2f} bits/digit")
        listed = sizes if show_all else sizes[:MAX_LISTED]
        lines.append(f"{'block':>6}  {'digits':>6}  {'bytes':>7}")
        for i, size in enumerate(listed):
            digits = min(info["block_size"], count - i * info["block_size"])
            lines.append(f"{i:>6}  {digits:>6}  {size:>7}")
    if len(listed) < len(sizes):
        lines.append(f"   ... {len(sizes) - len(listed)} more (--all lists every one)")
    return "\n".join(lines)


def inspect_handler(args: argparse.Namespace) -> int:
    info = inspect_file(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_inspection(info, show_all=args.all))
    return 0


def sample_handler(args: argparse.Namespace) -> int:
    if args.bytes < 0:
        raise InputError(f"--bytes must be non-negative, got {args.bytes}")
    kind = check_output(args.out, force=args.force)
    codec = _load_codec(args.model)
    images = codec.sample(args.n, seed=args.seed, nbytes=args.bytes)
    write_images(args.out, images, force=args.force)
    print(
        f"decoded {args.n} random {args.bytes}-byte strings (seed {args.seed}, decode check off) "
        f"into {args.out} ({kind})"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compress",
        help="compress digits into a .mnc file",
        description="Compress PNG files, IDX image files or a dataset slice into a .mnc file.",
    )
    p.add_argument("model", metavar="MODEL", help="model file or shipped model name")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="28x28 8-bit greyscale PNG files or IDX images files",
    )
    p.add_argument("-o", "--out", required=True, metavar="OUT.mnc", help="compressed file to write")
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
    add_data_args(p)
    p.set_defaults(handler=compress_handler)

    p = subparsers.add_parser(
        "decompress",
        help="decode a .mnc file into PNGs or an IDX file",
        description="Decode a .mnc file. OUT ending in .png: one grid image; .idx, .idx3-ubyte or "
        "-ubyte: an IDX file; anything else: a directory of digit-NNNNN.png files.",
    )
    p.add_argument(
        "model", metavar="MODEL", help="the model file (or shipped name) that wrote the file"
    )
    p.add_argument("file", metavar="FILE.mnc", help="compressed file")
    p.add_argument(
        "-o", "--out", required=True, metavar="OUT", help="PNG grid, IDX file or directory"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(handler=decompress_handler)

    p = subparsers.add_parser("inspect", help="header and sizes of a .mnc file (no model needed)")
    p.add_argument("file", metavar="FILE.mnc", help="compressed file")
    p.add_argument(
        "--all", action="store_true", help=f"list every digit (default: the first {MAX_LISTED})"
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(handler=inspect_handler)

    p = subparsers.add_parser(
        "sample",
        help="decode random bytes into digits (generative use)",
        description="Decode random byte strings with the decode check off: digits sampled from the "
        "learned distribution. The same seed gives the same digits.",
    )
    p.add_argument("model", metavar="MODEL", help="model file or shipped model name")
    p.add_argument("--n", type=positive_int, default=16, help="number of digits (default 16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--bytes", type=int, default=8, help="bytes per random string (default 8)")
    p.add_argument(
        "-o", "--out", required=True, metavar="OUT", help="PNG grid (.png), IDX file or directory"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.set_defaults(handler=sample_handler)
