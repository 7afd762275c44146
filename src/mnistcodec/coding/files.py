"""Compressed files (``.mnc``): digits to bytes and back, one block at a time.

::

    result = compress_file(codec, images, "digits.mnc")            # per-digit strings
    result = compress_file(codec, images, "digits.mnc", mode="stream")
    images = decompress_file(codec, "digits.mnc")                   # uint8 (N, 28, 28)
    info = inspect_file("digits.mnc")                               # no model needed

The format is specified in ``docs/mnc-format.md`` (see
:mod:`mnistcodec.coding.container`). Digits are coded in blocks of
``block_size`` digits (default :data:`DEFAULT_BLOCK_SIZE` = 4096). In stream
mode each block is one range-coder stream; its termination costs a few bytes
per block, under 0.05 % of a 4096-digit block at about 50 bits per digit, while
a block bounds the memory a coder needs. Decoding fills a preallocated uint8
array block by block, so only one block's latents are held at a time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnistcodec.coding.api import Codec, check_images
from mnistcodec.coding.codec import DecodeError
from mnistcodec.coding.container import (
    HEADER_SIZE,
    MAX_BLOCK,
    MODE_CODES,
    Block,
    Header,
    block_counts,
    encode_file,
    parse_file,
)
from mnistcodec.errors import FormatError, InputError
from mnistcodec.fileio import atomic_write, check_writable
from mnistcodec.transforms import IMAGE_SHAPE

DEFAULT_BLOCK_SIZE = 4096
MAX_FILE_BYTES = 1 << 30
MODES = tuple(MODE_CODES)


@dataclass
class CompressedFile:
    """A compressed file's bytes and what went into them.

    ``info_bits``: information content of each digit (bits); ``strings``: the
    per-digit strings (per-digit mode, else empty); ``stream_sizes``: bytes of
    each block's stream (stream mode, else empty).
    """

    data: bytes
    header: Header
    info_bits: np.ndarray
    strings: list[bytes] = field(default_factory=list)
    stream_sizes: list[int] = field(default_factory=list)

    @property
    def count(self) -> int:
        return self.header.count

    @property
    def mode(self) -> str:
        return self.header.mode

    @property
    def file_bits_per_digit(self) -> float:
        """Whole file (header, lengths and CRCs included), bits per digit."""
        return 8 * len(self.data) / self.count

    @property
    def payload_bits_per_digit(self) -> float:
        """Strings or streams alone (no header, no length fields), bits per digit."""
        if self.mode == "per-digit":
            return 8 * sum(len(s) for s in self.strings) / self.count
        return 8 * sum(self.stream_sizes) / self.count


def _check_mode(mode: str, block_size: int) -> None:
    if mode not in MODE_CODES:
        raise InputError(f"unknown coding mode {mode!r}; expected one of {', '.join(MODES)}")
    if not 1 <= block_size <= MAX_BLOCK:
        raise InputError(f"block size must be between 1 and {MAX_BLOCK}, got {block_size}")


def compress_to_bytes(
    codec: Codec,
    images: np.ndarray,
    mode: str = "per-digit",
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> CompressedFile:
    """Compress uint8 digits (N, 28, 28) into the bytes of a ``.mnc`` file."""
    _check_mode(mode, block_size)
    images = check_images(images)
    count = images.shape[0]
    if count == 0:
        raise InputError("no digits to compress (empty input)")
    header = Header(mode, count, block_size, bytes.fromhex(codec.fingerprint))
    info = np.empty(count)
    blocks: list[Block] = []
    strings: list[bytes] = []
    stream_sizes: list[int] = []
    start = 0
    for n in block_counts(count, block_size):
        part = slice(start, start + n)
        if mode == "per-digit":
            block_strings, info[part] = codec.compress(images[part])
            strings.extend(block_strings)
            blocks.append(Block(n, strings=block_strings))
        else:
            stream, info[part] = codec.compress_stream(images[part])
            stream_sizes.append(len(stream))
            blocks.append(Block(n, stream=stream))
        start += n
    return CompressedFile(encode_file(header, blocks), header, info, strings, stream_sizes)


def compress_file(
    codec: Codec,
    images: np.ndarray,
    out_path: str | os.PathLike,
    mode: str = "per-digit",
    force: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> CompressedFile:
    """Compress to ``out_path`` atomically; an existing file is kept unless ``force``.

    The output path is checked before any work is done.
    """
    _check_mode(mode, block_size)
    check_writable(out_path, force=force)
    result = compress_to_bytes(codec, images, mode=mode, block_size=block_size)
    atomic_write(out_path, result.data, force=force)
    return result


def read_compressed(path: str | os.PathLike) -> bytes:
    """The bytes of a ``.mnc`` file, with clear errors for paths that are not one."""
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(f"{path} is a directory, not a compressed file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise FormatError(f"{path} is {size} bytes, larger than any compressed file this reads")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"compressed file {path} not found") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _stream_fits(codec: Codec, count: int, stream: bytes) -> bool:
    """Whether ``stream`` is long enough to hold ``count`` digits (a sanity bound).

    Each digit costs at least ``min_bits`` (its most probable symbols); a real
    stream is never much shorter than its information. The bound is loose
    (half, plus 64 bits) and only stops a corrupt header from making the
    decoder allocate for millions of digits held in a few bytes.
    """
    min_bits = float(codec.coder.tables.symbol_bits().min(axis=1).sum())
    return 0.5 * count * min_bits <= 8 * len(stream) + 64


def _block_latents(codec: Codec, header: Header, blocks: list[Block], check: bool):
    """Yield ``(slice, integer latents)`` block by block."""
    start = 0
    for index, block in enumerate(blocks):
        part = slice(start, start + block.count)
        try:
            if header.mode == "per-digit":
                k = codec.decode_latents(block.strings, check=check)
            else:
                if not _stream_fits(codec, block.count, block.stream):
                    raise DecodeError(
                        f"a {len(block.stream)}-byte stream cannot hold {block.count} digits"
                    )
                k = codec.decode_stream_latents(block.stream, block.count, check=check)
        except DecodeError as exc:
            where = f"block {index} (digits {part.start} to {part.stop - 1})"
            raise DecodeError(f"{where} does not decode: {exc}") from None
        yield part, k
        start = part.stop


def _parse(codec: Codec, data: bytes) -> tuple[Header, list[Block]]:
    header, blocks = parse_file(data, expected_fingerprint=codec.fingerprint)
    if header.count == 0:
        raise FormatError("the compressed file holds no digits")
    return header, blocks


def decompress_bytes(codec: Codec, data: bytes, check: bool = True) -> np.ndarray:
    """Decode the bytes of a ``.mnc`` file into uint8 digits (N, 28, 28).

    Every check of :func:`~mnistcodec.coding.container.parse_file` runs first
    (wrong model included); ``check`` also requires every string or stream to
    be exactly what the encoder writes for what it decodes to.
    """
    header, blocks = _parse(codec, data)
    out = np.empty((header.count, *IMAGE_SHAPE), dtype=np.uint8)
    for part, k in _block_latents(codec, header, blocks, check):
        for start in range(0, k.shape[0], codec.chunk_size):
            rows = slice(start, min(k.shape[0], start + codec.chunk_size))
            out[part][rows] = codec.synthesise(k[rows])
    return out


def decode_latents_bytes(codec: Codec, data: bytes, check: bool = True) -> np.ndarray:
    """The integer latents k (N, D) stored in a ``.mnc`` file (float64, exact)."""
    header, blocks = _parse(codec, data)
    k = np.empty((header.count, codec.latent_dims))
    for part, block_k in _block_latents(codec, header, blocks, check):
        k[part] = block_k
    return k


def decompress_file(codec: Codec, path: str | os.PathLike, check: bool = True) -> np.ndarray:
    """Decode a ``.mnc`` file into uint8 digits (N, 28, 28)."""
    return decompress_bytes(codec, read_compressed(path), check=check)


def inspect_bytes(data: bytes) -> dict:
    """Header fields and per-digit (or per-block) sizes of a ``.mnc`` file; no model needed.

    The file is fully verified (structure and CRC), not decoded.
    """
    header, blocks = parse_file(data)
    count = header.count
    info: dict = {
        "format_version": header.version,
        "mode": header.mode,
        "count": count,
        "digit_shape": [header.height, header.width],
        "block_size": header.block_size,
        "blocks": len(blocks),
        "fingerprint": header.fingerprint_hex,
        "file_bytes": len(data),
        "header_bytes": HEADER_SIZE,
        "payload_bytes": header.payload_size,
        "file_bits_per_digit": 8 * len(data) / count if count else None,
    }
    if header.mode == "per-digit":
        sizes = [len(s) for block in blocks for s in block.strings]
        info["string_bytes"] = sizes
        info["mean_string_bits"] = 8 * float(np.mean(sizes)) if sizes else None
    else:
        sizes = [len(block.stream) for block in blocks]
        info["stream_bytes"] = sizes
        info["stream_bits_per_digit"] = 8 * sum(sizes) / count if count else None
    return info


def inspect_file(path: str | os.PathLike) -> dict:
    """:func:`inspect_bytes` of a file, with its path."""
    return {"path": str(path), **inspect_bytes(read_compressed(path))}
