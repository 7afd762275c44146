"""Compressed files (``.mnc``): digits to bytes and back, one block at a time.

::

    result = compress_file(codec, images, "digits.mnc")            # per-digit strings
    result = compress_file(codec, images, "digits.mnc", mode="stream")
    images = decompress_file(codec, "digits.mnc")                   # uint8 (N, 28, 28)

The format is specified in ``docs/mnc-format.md`` (see
:mod:`mnistcodec.coding.container`). Digits are coded in blocks of
``block_size`` digits (default :data:`DEFAULT_BLOCK_SIZE` = 4096). In stream
mode each block is one range-coder stream; its termination costs a few bytes
per block, under 0.05 % of a 4096-digit block at about 50 bits per digit, while
a block bounds the memory a coder needs.

Inputs and outputs of any size work in constant memory through the streaming
calls, which the command line uses::

    summary = compress_to_file(codec, pieces, count, "digits.mnc")  # pieces: uint8 arrays
    header, pieces = iter_decompress(codec, data)                   # verified, then lazy

``compress_to_file`` writes block after block into the temporary file of an
atomic write and fills in the header (payload length, CRCs) at the end;
``iter_decompress`` checks the whole file first (structure, CRC, model, and
that every stream is long enough for its digits) and then decodes one block,
in pieces of at most ``codec.chunk_size`` digits, at a time.

Every model writes version 3 files: per-digit strings are bit strings, and
every block carries its coding level. For a variable-rate model ``level``
codes every digit at one level (default: the model's reference level), and
``target`` (:class:`~mnistcodec.coding.rate_control.RateTarget`, per-digit
mode only) chooses a level per digit; a fixed-rate model's blocks are at its
only level, 0. Decoding reads the levels from the file, and reads the byte
strings of version 1 and 2 files as they were written.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from typing import BinaryIO

import numpy as np

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import (
    BITS_VERSION,
    MAX_BLOCK,
    MODE_CODES,
    Block,
    Header,
    block_counts,
    iter_blocks,
    string_bits,
    verify_file,
    write_file,
)
from mnistcodec.coding.inspection import read_compressed
from mnistcodec.coding.range_coder import DecodeError
from mnistcodec.coding.rate_control import LevelChoice, code_block
from mnistcodec.errors import FormatError, InputError
from mnistcodec.storage.atomic import atomic_open, atomic_write, check_writable
from mnistcodec.storage.digits import IMAGE_SHAPE, check_digits

DEFAULT_BLOCK_SIZE = 4096
MODES = tuple(MODE_CODES)


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
    choice: LevelChoice | None = None,
) -> CompressedFile:
    """Compress uint8 digits (N, 28, 28) into the bytes of a ``.mnc`` file.

    The streaming writer (:func:`compress_to_handle`) into memory, keeping
    every digit's string, information content and level.
    """
    images = check_digits(images)
    count = images.shape[0]
    data, summary = compress_to_bytes_io(
        codec, [images], count, mode, block_size, listed=count, choice=choice
    )
    return CompressedFile(**{f.name: getattr(summary, f.name) for f in fields(summary)}, data=data)


def compress_file(
    codec: Codec,
    images: np.ndarray,
    out_path: str | os.PathLike,
    mode: str = "per-digit",
    force: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    choice: LevelChoice | None = None,
) -> CompressedFile:
    """Compress to ``out_path`` atomically; an existing file is kept unless ``force``.

    The output path is checked before any work is done.
    """
    _check_mode(mode, block_size)
    (choice or LevelChoice()).check(codec, mode)
    check_writable(out_path, force=force)
    result = compress_to_bytes(codec, images, mode=mode, block_size=block_size, choice=choice)
    atomic_write(out_path, result.data, force=force)
    return result


@dataclass
class CompressionSummary:
    """What :func:`compress_to_file` wrote, in constant memory.

    Totals over all digits, and the strings and information content of the
    first ``listed`` digits only.
    """

    header: Header
    file_bytes: int
    info_bits_total: float
    #: Bits of all strings (per-digit mode) or streams (stream mode), without lengths.
    payload_bits: int
    listed_info_bits: np.ndarray
    listed_strings: list[bytes] = field(default_factory=list)
    stream_sizes: list[int] = field(default_factory=list)
    listed_levels: list[int] = field(default_factory=list)
    #: Digits whose PSNR target no level reached (rate control by PSNR).
    missed: int = 0

    @property
    def count(self) -> int:
        return self.header.count

    @property
    def mode(self) -> str:
        return self.header.mode

    @property
    def mean_info_bits(self) -> float:
        return self.info_bits_total / self.count

    @property
    def file_bits_per_digit(self) -> float:
        return 8 * self.file_bytes / self.count

    @property
    def payload_bits_per_digit(self) -> float:
        return self.payload_bits / self.count


@dataclass
class CompressedFile(CompressionSummary):
    """A compressed file held in memory: its bytes, and every digit's string and information.

    ``info_bits``: information content of each digit (bits); ``strings``: the
    per-digit strings (per-digit mode, else empty); ``stream_sizes``: bytes of
    each block's stream (stream mode, else empty).
    """

    data: bytes = b""

    @property
    def info_bits(self) -> np.ndarray:
        return self.listed_info_bits

    @property
    def strings(self) -> list[bytes]:
        return self.listed_strings

    @property
    def levels(self) -> np.ndarray:
        """Each digit's level (0 for a fixed-rate model)."""
        return np.asarray(self.listed_levels, dtype=np.int64)


def regroup(pieces: Iterable[np.ndarray], count: int, block_size: int) -> Iterator[np.ndarray]:
    """uint8 digit arrays of any sizes -> blocks of exactly ``block_size`` (the last shorter).

    Raises :class:`InputError` if the pieces do not hold exactly ``count`` digits.
    """
    sizes = block_counts(count, block_size)
    want = next(sizes, 0)
    parts: list[np.ndarray] = []
    held = seen = 0
    for piece in pieces:
        piece = check_digits(piece)
        seen += piece.shape[0]
        if seen > count:
            raise InputError(f"the inputs hold more than the {count} digits announced")
        while piece.shape[0]:
            take = min(want - held, piece.shape[0])
            parts.append(piece[:take])
            held += take
            piece = piece[take:]
            if held == want:
                yield parts[0] if len(parts) == 1 else np.concatenate(parts)
                parts, held, want = [], 0, next(sizes, 0)
    if seen != count:
        raise InputError(f"the inputs hold {seen} digits, not the {count} announced")


def compress_to_handle(
    codec: Codec,
    pieces: Iterable[np.ndarray],
    count: int,
    handle: BinaryIO,
    mode: str = "per-digit",
    block_size: int = DEFAULT_BLOCK_SIZE,
    listed: int = 0,
    choice: LevelChoice | None = None,
) -> CompressionSummary:
    """Compress ``count`` digits, given as uint8 pieces, into a seekable ``handle``.

    Blocks are coded and written one at a time (memory stays that of one
    block); the header is written last, with the payload length and both CRCs.
    """
    _check_mode(mode, block_size)
    choice = choice or LevelChoice()
    choice.check(codec, mode)
    if count < 1:
        raise InputError("no digits to compress (empty input)")
    if count >= 1 << 32:
        raise InputError(f"{count} digits do not fit one compressed file (at most {(1 << 32) - 1})")
    header = Header(mode, count, block_size, bytes.fromhex(codec.fingerprint))
    summary = CompressionSummary(header, 0, 0.0, 0, np.empty(0))
    blocks = _coded_blocks(codec, pieces, summary, listed, choice)
    summary.file_bytes = write_file(handle, header, blocks)
    return summary


def _coded_blocks(
    codec: Codec,
    pieces: Iterable[np.ndarray],
    summary: CompressionSummary,
    listed: int,
    choice: LevelChoice,
) -> Iterator[Block]:
    """Code each block of ``summary.header``'s digits, adding its figures to ``summary``."""
    header = summary.header
    listed_info: list[float] = []
    first = 0
    for images in regroup(pieces, header.count, header.block_size):
        block, info, levels, missed = code_block(codec, images, header.mode, choice, first)
        first += images.shape[0]
        summary.missed += missed
        if header.mode == "per-digit":
            summary.payload_bits += sum(string_bits(s) for s in block.strings)
            room = listed - len(summary.listed_strings)
            summary.listed_strings.extend(block.strings[: max(room, 0)])
        else:
            summary.stream_sizes.append(len(block.stream))
            summary.payload_bits += 8 * len(block.stream)
        room = listed - len(listed_info)
        summary.listed_levels.extend(levels[: max(room, 0)].tolist())
        listed_info.extend(info[: max(room, 0)].tolist())
        summary.listed_info_bits = np.asarray(listed_info)
        summary.info_bits_total += float(info.sum())
        yield block


def compress_to_file(
    codec: Codec,
    pieces: Iterable[np.ndarray],
    count: int,
    out_path: str | os.PathLike,
    mode: str = "per-digit",
    force: bool = False,
    block_size: int = DEFAULT_BLOCK_SIZE,
    listed: int = 0,
    choice: LevelChoice | None = None,
) -> CompressionSummary:
    """:func:`compress_to_handle` into ``out_path``, atomically (nothing is left on failure)."""
    _check_mode(mode, block_size)
    (choice or LevelChoice()).check(codec, mode)
    check_writable(out_path, force=force)
    with atomic_open(out_path, force=force) as handle:
        return compress_to_handle(codec, pieces, count, handle, mode, block_size, listed, choice)


def compress_to_bytes_io(
    codec: Codec,
    pieces: Iterable[np.ndarray],
    count: int,
    mode: str = "per-digit",
    block_size: int = DEFAULT_BLOCK_SIZE,
    listed: int = 0,
    choice: LevelChoice | None = None,
) -> tuple[bytes, CompressionSummary]:
    """:func:`compress_to_handle` into memory (for standard output, which cannot seek)."""
    buffer = io.BytesIO()
    summary = compress_to_handle(codec, pieces, count, buffer, mode, block_size, listed, choice)
    return buffer.getvalue(), summary


def _stream_fits(codec: Codec, count: int, stream: bytes, level: int = 0) -> bool:
    """Whether ``stream`` is long enough to hold ``count`` digits (a sanity bound).

    Each digit costs at least ``min_bits`` (its most probable symbols); a real
    stream is never much shorter than its information. The bound is loose
    (half, plus 64 bits) and only stops a corrupt header from making the
    decoder allocate for millions of digits held in a few bytes. ``level``: the
    block's level, whose tables coded it.
    """
    min_bits = codec.coders[level].min_digit_bits()
    return 0.5 * count * min_bits <= 8 * len(stream) + 64


def _check_streams(codec: Codec, header: Header, data: bytes) -> None:
    """Refuse, before decoding anything, a stream far too short for its digit count."""
    if header.mode != "stream":
        return
    start = 0
    for index, block in enumerate(iter_blocks(header, data)):
        levels = np.asarray(block.digit_levels(), dtype=np.int64)
        codec.check_file_levels(levels)
        if not _stream_fits(codec, block.count, block.stream, int(levels[0])):
            raise DecodeError(
                f"block {index} (digits {start} to {start + block.count - 1}) does not decode: "
                f"a {len(block.stream)}-byte stream cannot hold {block.count} digits"
            )
        start += block.count


def _verify(codec: Codec, data: bytes) -> Header:
    header = verify_file(data, expected_fingerprint=codec.fingerprint)
    if header.count == 0:
        raise FormatError("the compressed file holds no digits")
    _check_streams(codec, header, data)
    return header


def _block_latents(codec: Codec, header: Header, data: bytes, check: bool):
    """Yield ``(first digit, integer latents, levels)`` for pieces of at most ``codec.chunk_size`` digits."""
    start = 0
    for index, block in enumerate(iter_blocks(header, data)):
        levels = np.asarray(block.digit_levels(), dtype=np.int64)
        codec.check_file_levels(levels)
        granularity = "bit" if header.version == BITS_VERSION else "byte"
        try:
            if header.mode == "per-digit":
                for first in range(0, block.count, codec.chunk_size):
                    part = slice(first, first + codec.chunk_size)
                    strings = block.strings[part]
                    k = codec.decode_latents(strings, check, levels[part], granularity)
                    yield start + first, k, levels[part]
            else:
                k = codec.decode_stream_latents(block.stream, block.count, check, int(levels[0]))
                for first in range(0, block.count, codec.chunk_size):
                    part = slice(first, first + codec.chunk_size)
                    yield start + first, k[part], levels[part]
        except DecodeError as exc:
            where = f"block {index} (digits {start} to {start + block.count - 1})"
            raise DecodeError(f"{where} does not decode: {exc}") from None
        start += block.count


def iter_decompress(
    codec: Codec, data: bytes, check: bool = True
) -> tuple[Header, Iterator[np.ndarray]]:
    """Verify a ``.mnc`` file, then decode it lazily: uint8 digits in order, piece by piece.

    Every check that needs no decoding (structure, CRC, model, stream
    lengths) has passed when this returns; a string that does not decode
    raises :class:`DecodeError` while iterating. Memory: one block's strings
    and one piece of at most ``codec.chunk_size`` digits.
    """
    header = _verify(codec, data)
    return header, _synthesised(codec, _block_latents(codec, header, data, check))


def _synthesised(codec: Codec, latents) -> Iterator[np.ndarray]:
    """Digits from ``(start, k)`` pieces, synthesised ``codec.chunk_size`` at a time.

    Small blocks (a file may have blocks of one digit) are gathered first, so
    the synthesis transform always runs on full chunks.
    """
    held: list[np.ndarray] = []
    held_levels: list[np.ndarray] = []
    rows = 0
    for _, k, levels in latents:
        held.append(k)
        held_levels.append(levels)
        rows += k.shape[0]
        while rows >= codec.chunk_size:
            joined, joined_levels = np.concatenate(held), np.concatenate(held_levels)
            yield codec.synthesise(joined[: codec.chunk_size], joined_levels[: codec.chunk_size])
            rest, rest_levels = joined[codec.chunk_size :], joined_levels[codec.chunk_size :]
            held, held_levels = ([rest], [rest_levels]) if rest.shape[0] else ([], [])
            rows = rest.shape[0]
    if rows:
        yield codec.synthesise(np.concatenate(held), np.concatenate(held_levels))


def _allocate(shape: tuple[int, ...], dtype) -> np.ndarray:
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        size = np.prod(shape, dtype=np.float64) * np.dtype(dtype).itemsize
        raise InputError(
            f"{shape[0]} digits need {size / 2**30:.1f} GiB in memory; decode the file "
            "piece by piece (iter_decompress, or mnistcodec decompress, which streams)"
        ) from None


def decompress_bytes(codec: Codec, data: bytes, check: bool = True) -> np.ndarray:
    """Decode the bytes of a ``.mnc`` file into uint8 digits (N, 28, 28).

    Every check of :func:`~mnistcodec.coding.container.parse_file` runs first
    (wrong model included); ``check`` also requires every string or stream to
    be exactly what the encoder writes for what it decodes to.
    """
    header, pieces = iter_decompress(codec, data, check)
    out = _allocate((header.count, *IMAGE_SHAPE), np.uint8)
    start = 0
    for piece in pieces:
        out[start : start + piece.shape[0]] = piece
        start += piece.shape[0]
    return out


def decode_latents_bytes(codec: Codec, data: bytes, check: bool = True) -> np.ndarray:
    """The integer latents k (N, D) stored in a ``.mnc`` file (float64, exact)."""
    header = _verify(codec, data)
    k = _allocate((header.count, codec.latent_dims), np.float64)
    for start, piece, _ in _block_latents(codec, header, data, check):
        k[start : start + piece.shape[0]] = piece
    return k


def decompress_file(codec: Codec, path: str | os.PathLike, check: bool = True) -> np.ndarray:
    """Decode a ``.mnc`` file into uint8 digits (N, 28, 28)."""
    return decompress_bytes(codec, read_compressed(path), check=check)
