"""``inspect``: the header and sizes of a ``.mnc`` file, without a model and without PyTorch."""

from __future__ import annotations

import argparse
import json

from mnistcodec.cli.common import MAX_LISTED
from mnistcodec.coding.inspection import inspect_file


def format_inspection(info: dict, show_all: bool = False) -> str:
    """Human-readable lines for :func:`mnistcodec.coding.inspection.inspect_bytes`."""
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
    if "levels_used" in info:
        used = ", ".join(map(str, info["levels_used"]))
        lines.append(f"levels          {used}")
    if info["mode"] == "per-digit":
        bits = info["string_bits"]
        kind = "bit strings" if "string_bytes" not in info else "byte strings"
        if bits:
            lines.append(
                f"strings         mean {sum(bits) / len(bits):.2f} bits, "
                f"min {min(bits)}, max {max(bits)} ({kind})"
            )
        listed = bits if show_all else bits[:MAX_LISTED]
        levels = info.get("levels")
        if levels is None:
            lines.append(f"{'#':>6}  {'bits':>5}")
            lines.extend(f"{i:>6}  {size:>5}" for i, size in enumerate(listed))
        else:
            lines.append(f"{'#':>6}  {'level':>5}  {'bits':>5}")
            lines.extend(f"{i:>6}  {levels[i]:>5}  {size:>5}" for i, size in enumerate(listed))
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
    shown = info["string_bits"] if info["mode"] == "per-digit" else info["stream_bytes"]
    if len(listed) < len(shown):
        lines.append(f"   ... {len(shown) - len(listed)} more (--all lists every one)")
    return "\n".join(lines)


def inspect_handler(args: argparse.Namespace) -> int:
    info = inspect_file(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(format_inspection(info, show_all=args.all))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    register_inspect(subparsers)


def register_inspect(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect")
    p.add_argument("file", metavar="FILE.mnc", help="compressed file (-: standard input)")
    p.add_argument(
        "--all", action="store_true", help=f"list every digit (default: the first {MAX_LISTED})"
    )
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(handler=inspect_handler)
