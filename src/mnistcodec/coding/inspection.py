"""What a ``.mnc`` file holds, read without a model and without PyTorch (``mnistcodec inspect``).

::

    info = inspect_file("digits.mnc")     # header fields, per-digit or per-block sizes, levels

The file is verified (structure and both CRCs, :func:`~mnistcodec.coding.container.verify_file`)
but not decoded.
"""

from __future__ import annotations

import os

from mnistcodec.coding.container import (
    BITS_VERSION,
    HEADER_SIZE,
    VERSION_1,
    iter_blocks,
    string_bits,
    verify_file,
)
from mnistcodec.storage.atomic import read_input

MAX_FILE_BYTES = 1 << 30


def read_compressed(path: str | os.PathLike) -> bytes:
    """The bytes of a ``.mnc`` file (``-``: standard input), with clear errors for paths that are not one."""
    return read_input(path, "a compressed file", MAX_FILE_BYTES, allow_stdin=True)


def inspect_bytes(data: bytes) -> dict:
    """Header fields and per-digit (or per-block) sizes of a ``.mnc`` file; no model needed.

    The file is fully verified (structure and CRC), not decoded.
    """
    header = verify_file(data)
    count = header.count
    info: dict = {
        "format_version": header.version,
        "mode": header.mode,
        "count": count,
        "digit_shape": [header.height, header.width],
        "block_size": header.block_size,
        "blocks": header.block_count,
        "fingerprint": header.fingerprint_hex,
        "file_bytes": len(data),
        "header_bytes": HEADER_SIZE,
        "payload_bytes": header.payload_size,
        "file_bits_per_digit": 8 * len(data) / count if count else None,
    }
    levels: list[int] = []
    strings: list[bytes] = []
    sizes: list[int] = []
    for block in iter_blocks(header, data):  # one walk: version-3 strings are unpacked once
        if header.mode == "per-digit":
            levels.extend(block.digit_levels())
            strings.extend(block.strings)
        else:
            # One level per block: a stream block may claim 2^20 digits in a few bytes.
            levels.append(block.levels[0] if block.levels else 0)
            sizes.append(len(block.stream))
    if header.version != VERSION_1:
        info["levels" if header.mode == "per-digit" else "block_levels"] = levels
        info["levels_used"] = sorted(set(levels))
    if header.mode == "per-digit":
        if header.version == BITS_VERSION:
            bits = [string_bits(s) for s in strings]
        else:
            info["string_bytes"] = [len(s) for s in strings]
            bits = [8 * len(s) for s in strings]
        info["string_bits"] = bits
        info["mean_string_bits"] = sum(bits) / len(bits) if bits else None
    else:
        info["stream_bytes"] = sizes
        info["stream_bits_per_digit"] = 8 * sum(sizes) / count if count else None
    return info


def inspect_file(path: str | os.PathLike) -> dict:
    """:func:`inspect_bytes` of a file, with its path."""
    return {"path": str(path), **inspect_bytes(read_compressed(path))}
