"""The compressed file format (``.mnc``), versions 1 to 3. Full spec: ``docs/mnc-format.md``.

::

    offset  size  field                     (all integers unsigned, big-endian)
    0       8     magic b"\\x89MNC\\r\\n\\x1a\\n"
    8       1     format version (3; 1 and 2 are read)
    9       1     mode: 0 = per-digit strings, 1 = stream
    10      2     digit height (28)
    12      2     digit width (28)
    14      4     digit count N
    18      4     block size B (1 .. 2**20): digits per block, the last may be shorter
    22      32    model fingerprint (SHA-256 digest)
    54      8     payload length P: bytes between the header and the final CRC
    62      4     CRC-32 of bytes 0..61 (the header)
    66      P     payload: ceil(N / B) blocks
    66+P    4     CRC-32 of bytes 0..65+P (header and payload)

    per-digit block:  n LEB128 varint lengths, then the n strings
    stream block:     one LEB128 varint byte length, then the stream

Version 2 (written by earlier releases for variable-rate models) is version 1
with the coding level in front of every block: a byte ``0`` then one level
byte (every digit of the block at that level), or, in per-digit mode only, a
byte ``1`` then ``n`` level bytes (one per digit, as rate control chooses).
Version-1 files have no levels (a fixed-rate model's only level, 0).

Version 3 (written for every model) is version 2 with bit strings: a
per-digit block's lengths count bits, and its strings' bits follow one
another, the last padded with zero bits to a whole byte::

    per-digit block (v3):  levels, n LEB128 varint bit lengths, the n strings' bits, padding

Every string of a version-3 block ends with a 1 bit, so in memory each is
held as bytes (its bits, zero-padded to a byte) whose last 1 bit gives its
length back. Stream blocks are as in version 2. Readers accept all three
versions.

Parsing checks, in this order: magic, version, header CRC, header fields, file
length against ``P`` (truncation, trailing data), the file CRC, then walks the
blocks, which must fill the payload exactly; a model fingerprint given by the
caller is compared last. Nothing in the payload is read before its CRC has
matched, and every length is bounded by the bytes present before use.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from mnistcodec.errors import FormatError, WrongModelError

MAGIC = b"\x89MNC\r\n\x1a\n"
#: Version 1: no levels, byte strings (read only).
VERSION_1 = 1
#: Version 2: levels in front of every block, byte strings (read only).
LEVELS_VERSION = 2
#: Version 3, written for every model: levels, and bit strings in per-digit blocks.
BITS_VERSION = 3
VERSION = BITS_VERSION
VERSIONS = (VERSION_1, LEVELS_VERSION, BITS_VERSION)
_ONE_LEVEL, _DIGIT_LEVELS = 0, 1
MODES = {0: "per-digit", 1: "stream"}
MODE_CODES = {name: code for code, name in MODES.items()}
_FIELDS = struct.Struct(">8sBBHHII32sQ")
_CRC = struct.Struct(">I")
HEADER_SIZE = _FIELDS.size + _CRC.size
CRC_SIZE = _CRC.size
MAX_BLOCK = 1 << 20
DIGIT_SHAPE = (28, 28)


class ChecksumError(FormatError):
    """The file's CRC does not match its contents."""


class TruncatedError(FormatError):
    """The file ends before its contents do."""


class TrailingDataError(FormatError):
    """Bytes follow the end of an otherwise valid file."""


@dataclass
class Header:
    """Header fields of a ``.mnc`` file; ``payload_size`` is filled in by :func:`write_file`."""

    mode: str
    count: int
    block_size: int
    fingerprint: bytes
    height: int = DIGIT_SHAPE[0]
    width: int = DIGIT_SHAPE[1]
    version: int = VERSION
    payload_size: int = 0

    def pack(self) -> bytes:
        fields = _FIELDS.pack(
            MAGIC,
            self.version,
            MODE_CODES[self.mode],
            self.height,
            self.width,
            self.count,
            self.block_size,
            self.fingerprint,
            self.payload_size,
        )
        return fields + _CRC.pack(zlib.crc32(fields))

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()

    @property
    def block_count(self) -> int:
        return -(-self.count // self.block_size)


@dataclass
class Block:
    """One block: its digit count and either per-digit strings or one stream.

    ``levels`` (versions 2 and 3): one level for the whole block (a list of
    one) or, in per-digit mode, one per digit. ``strings``: byte strings
    (versions 1 and 2) or bit strings held as bytes (version 3, see
    :func:`string_bits`).
    """

    count: int
    strings: list[bytes] = field(default_factory=list)
    stream: bytes = b""
    levels: list[int] = field(default_factory=list)

    def digit_levels(self) -> list[int]:
        """Each digit's level (0 for every digit of a version-1 block)."""
        if len(self.levels) == self.count:
            return list(self.levels)
        return [self.levels[0] if self.levels else 0] * self.count


def string_bits(string: bytes) -> int:
    """Length in bits of a bit string held as bytes: the position of its last 1 bit.

    0 for the empty string. For a byte string (versions 1 and 2) the stored
    length is ``8 * len(string)`` instead; this counts only up to its last 1 bit.
    """
    if not string:
        return 0
    last = string[-1]
    trailing = (last & -last).bit_length() - 1 if last else 8
    return 8 * len(string) - trailing


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if pos >= end:
            raise FormatError("corrupt file: a length field runs past the end of its payload")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise FormatError("corrupt file: malformed length field (varint too long)")


def block_counts(count: int, block_size: int) -> Iterator[int]:
    """Digits in each block: ``block_size`` each, the last one shorter."""
    for start in range(0, count, block_size):
        yield min(block_size, count - start)


def _encode_levels(mode: str, block: Block) -> bytes:
    """The level prefix of a version-2 or version-3 block (no levels: level 0)."""
    levels = block.levels or [0]
    if any(not 0 <= level <= 255 for level in levels):
        raise ValueError("a version-2 or version-3 block needs levels from 0 to 255")
    if len(set(levels)) == 1:
        return bytes([_ONE_LEVEL, levels[0]])
    if mode != "per-digit" or len(levels) != block.count:
        raise ValueError("a level per digit needs per-digit mode and one level for each digit")
    return bytes([_DIGIT_LEVELS, *levels])


def encode_block(mode: str, block: Block, version: int = VERSION) -> bytes:
    """The payload bytes of one block."""
    if version not in VERSIONS:
        raise ValueError(f"unknown .mnc version {version}")
    levels = _encode_levels(mode, block) if version != VERSION_1 else b""
    if mode != "per-digit":
        return levels + _varint(len(block.stream)) + block.stream
    if len(block.strings) != block.count:
        raise ValueError("block count does not match its strings")
    if version != BITS_VERSION:
        return b"".join([levels, *(_varint(len(s)) for s in block.strings), *block.strings])
    if any(s.endswith(b"\0") for s in block.strings):
        raise ValueError("a bit string held as bytes cannot end with a zero byte")
    lengths = [string_bits(s) for s in block.strings]
    return b"".join([levels, *(_varint(n) for n in lengths), pack_bits(block.strings, lengths)])


def pack_bits(strings: list[bytes], lengths: list[int]) -> bytes:
    """The bits of ``strings`` (``lengths[i]`` bits of each) one after another, zero-padded.

    Each string is held as bytes: its bits, then zero bits up to a whole byte.
    """
    if not strings:
        return b""
    bits = np.unpackbits(np.frombuffer(b"".join(strings), dtype=np.uint8))
    sizes = np.array([8 * len(s) for s in strings], dtype=np.int64)
    within = np.arange(bits.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return np.packbits(
        bits[within < np.repeat(np.asarray(lengths, dtype=np.int64), sizes)]
    ).tobytes()


def unpack_bits(data: bytes | memoryview, lengths: list[int]) -> list[bytes]:
    """Inverse of :func:`pack_bits`: ``data`` holds exactly ``ceil(sum(lengths) / 8)`` bytes.

    Each string is cut from the bytes it spans (memory stays that of the
    data, whatever lengths a crafted file claims). Raises :class:`FormatError`
    if a non-empty string does not end with a 1 bit (its bytes would not say
    its length) or the padding is not zero.
    """
    data = bytes(data)
    total = sum(lengths)
    if total % 8 and data[-1] & ((1 << (8 - total % 8)) - 1):
        raise FormatError("corrupt file: a block's padding bits are not zero")
    strings, pos = [], 0
    for length in lengths:
        if not length:
            strings.append(b"")
            continue
        first, last = pos // 8, (pos + length - 1) // 8
        span = int.from_bytes(data[first : last + 1], "big")
        value = span >> (8 * (last + 1) - pos - length) & ((1 << length) - 1)
        if not value & 1:
            raise FormatError("corrupt file: a string does not end with a 1 bit")
        pad = -length % 8
        strings.append((value << pad).to_bytes((length + pad) // 8, "big"))
        pos += length
    return strings


def write_file(handle: BinaryIO, header: Header, blocks: Iterable[Block]) -> int:
    """Write a ``.mnc`` file into a seekable, readable ``handle``, block after block.

    A zeroed header is written first; once the blocks have been written,
    ``header.payload_size`` is set, the header is written in its place and the
    file CRC is computed by reading the written bytes back (memory stays one
    block). Returns the file's size in bytes.
    """
    if header.mode not in MODE_CODES:
        raise ValueError(f"unknown mode {header.mode!r}")
    sizes = block_counts(header.count, header.block_size)
    start = handle.tell()
    handle.write(bytes(HEADER_SIZE))
    for block in blocks:
        if block.count != next(sizes, None):
            raise ValueError("blocks do not match the header's digit count and block size")
        handle.write(encode_block(header.mode, block, header.version))
    if next(sizes, None) is not None:
        raise ValueError("blocks do not match the header's digit count and block size")
    header.payload_size = handle.tell() - start - HEADER_SIZE
    handle.seek(start)
    handle.write(header.pack())
    handle.seek(start)
    crc = 0
    remaining = HEADER_SIZE + header.payload_size
    while remaining:
        chunk = handle.read(min(remaining, 1 << 20))
        if not chunk:
            raise OSError("the output file ended while its checksum was computed")
        crc = zlib.crc32(chunk, crc)
        remaining -= len(chunk)
    handle.seek(start + HEADER_SIZE + header.payload_size)
    handle.write(_CRC.pack(crc))
    return HEADER_SIZE + header.payload_size + CRC_SIZE


def encode_file(header: Header, blocks: list[Block]) -> bytes:
    """:func:`write_file` into memory: the bytes of the file (sets ``header.payload_size``)."""
    buffer = io.BytesIO()
    write_file(buffer, header, blocks)
    return buffer.getvalue()


def parse_header(data: bytes) -> Header:
    """Validate magic, version, the header CRC and the header fields.

    Only the first :data:`HEADER_SIZE` bytes are read; the payload is not checked.
    """
    if not data:
        raise FormatError("empty file, not an mnistcodec compressed file")
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise FormatError("not an mnistcodec compressed file (bad magic)")
    if len(data) < len(MAGIC) + 1:
        raise TruncatedError(f"file is truncated ({len(data)} bytes, inside the header)")
    version = data[len(MAGIC)]
    if version not in VERSIONS:
        raise FormatError(
            f"unsupported .mnc format version {version}; this mnistcodec reads versions "
            f"{', '.join(map(str, VERSIONS))}"
        )
    if len(data) < HEADER_SIZE:
        raise TruncatedError(
            f"file is truncated ({len(data)} bytes, inside the {HEADER_SIZE}-byte header)"
        )
    (stored_crc,) = _CRC.unpack_from(data, _FIELDS.size)
    if zlib.crc32(data[: _FIELDS.size]) != stored_crc:
        raise ChecksumError("header checksum mismatch: the file is corrupt")
    _, _, mode, height, width, count, block_size, fingerprint, payload = _FIELDS.unpack_from(data)
    if mode not in MODES:
        raise FormatError(f"unknown coding mode {mode} (expected 0 per-digit or 1 stream)")
    if (height, width) != DIGIT_SHAPE:
        raise FormatError(f"unsupported digit shape {height}x{width}; expected 28x28")
    if not 1 <= block_size <= MAX_BLOCK:
        raise FormatError(f"invalid block size {block_size} (expected 1 to {MAX_BLOCK})")
    return Header(MODES[mode], count, block_size, fingerprint, height, width, version, payload)


def verify_file(data: bytes, expected_fingerprint: str | None = None) -> Header:
    """Every check of :func:`parse_file`, without keeping the blocks.

    Walks the block structure once (lengths only, no bytes copied), so a file
    of any size is verified in constant memory; :func:`iter_blocks` then
    yields its blocks one at a time.
    """
    header = parse_header(data)
    expected_size = HEADER_SIZE + header.payload_size + CRC_SIZE
    if len(data) < expected_size:
        raise TruncatedError(
            f"file is truncated: {len(data)} bytes, but its header describes {expected_size}"
        )
    if len(data) > expected_size:
        raise TrailingDataError(
            f"{len(data) - expected_size} bytes of trailing data after the end of the file "
            f"({expected_size} bytes)"
        )
    body_end = expected_size - CRC_SIZE
    view = memoryview(data)
    (stored_crc,) = _CRC.unpack_from(data, body_end)
    if zlib.crc32(view[:body_end]) != stored_crc:
        raise ChecksumError("checksum mismatch: the file is corrupt")
    for _ in _walk_blocks(header, view, HEADER_SIZE, body_end, copy=False):
        pass
    if expected_fingerprint is not None and header.fingerprint_hex != expected_fingerprint:
        raise WrongModelError(
            f"file was written by model {header.fingerprint_hex[:16]}..., "
            f"not by the given model {expected_fingerprint[:16]}...; "
            "decode it with the model that wrote it"
        )
    return header


def iter_blocks(header: Header, data: bytes) -> Iterator[Block]:
    """The blocks of a file that :func:`verify_file` accepted, one at a time."""
    yield from _walk_blocks(
        header, memoryview(data), HEADER_SIZE, HEADER_SIZE + header.payload_size
    )


def parse_file(data: bytes, expected_fingerprint: str | None = None) -> tuple[Header, list[Block]]:
    """Parse and verify a whole file: header, length, CRC, block structure, model.

    Raises :class:`TruncatedError`, :class:`TrailingDataError`,
    :class:`ChecksumError`, :class:`~mnistcodec.errors.WrongModelError` or
    another :class:`~mnistcodec.errors.FormatError`, each with a specific message.
    """
    header = verify_file(data, expected_fingerprint)
    return header, list(iter_blocks(header, data))


def _walk_blocks(
    header: Header, view: memoryview, pos: int, end: int, copy: bool = True
) -> Iterator[Block]:
    """Yield the blocks between ``pos`` and ``end``; ``copy=False`` checks lengths only.

    Every length is checked against the bytes left before anything is read
    or copied; the blocks must fill the payload exactly.
    """
    # Every digit needs at least its length byte in per-digit mode, every block
    # its length byte in stream mode: bound the count before looping over it.
    min_bytes = header.count if header.mode == "per-digit" else header.block_count
    if min_bytes > end - pos:
        raise FormatError(
            f"corrupt file: it claims {header.count} digits but its payload is too short to hold them"
        )
    for n in block_counts(header.count, header.block_size):
        levels: list[int] = []
        if header.version != VERSION_1:
            levels, pos = _read_levels(header, view, pos, end, n)
        if header.mode == "per-digit":
            strings, pos = _read_strings(header.version, view, pos, end, n, copy)
            yield Block(n, strings=strings, levels=levels)
        else:
            length, pos = _read_varint(view, pos, end)
            if length > end - pos:
                raise FormatError("corrupt file: a stream runs past the end of the payload")
            yield Block(n, stream=bytes(view[pos : pos + length]) if copy else b"", levels=levels)
            pos += length
    if pos != end:
        raise FormatError(f"corrupt file: {end - pos} payload bytes are not part of any block")


def _read_strings(
    version: int, view: memoryview, pos: int, end: int, count: int, copy: bool
) -> tuple[list[bytes], int]:
    """A per-digit block's ``count`` lengths and strings (none kept unless ``copy``)."""
    lengths = []
    total = 0
    for _ in range(count):
        length, pos = _read_varint(view, pos, end)
        total += length
        lengths.append(length)
    size = -(-total // 8) if version == BITS_VERSION else total
    if size > end - pos:
        raise FormatError("corrupt file: strings run past the end of the payload")
    if not copy:
        return [], pos + size
    if version == BITS_VERSION:
        return unpack_bits(view[pos : pos + size], lengths), pos + size
    strings = []
    for length in lengths:
        strings.append(bytes(view[pos : pos + length]))
        pos += length
    return strings, pos


def _read_levels(
    header: Header, view: memoryview, pos: int, end: int, count: int
) -> tuple[list[int], int]:
    """A version-2 or -3 block's level prefix: ``([level], pos)`` or one level per digit."""
    if pos >= end:
        raise FormatError("corrupt file: a block's levels run past the end of the payload")
    kind = view[pos]
    if kind == _ONE_LEVEL:
        size = 1
    elif kind == _DIGIT_LEVELS and header.mode == "per-digit":
        size = count
    else:
        raise FormatError(f"corrupt file: unknown level layout {kind} in a {header.mode} block")
    if pos + 1 + size > end:
        raise FormatError("corrupt file: a block's levels run past the end of the payload")
    return list(view[pos + 1 : pos + 1 + size]), pos + 1 + size
