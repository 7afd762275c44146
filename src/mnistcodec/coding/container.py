"""The compressed file format (``.mnc``), version 1. Spec: ``docs/mnc-format.md``.

::

    offset  size  field
    0       8     magic b"\\x89MNC\\r\\n\\x1a\\n"
    8       1     format version (1)
    9       1     mode: 0 = per-digit strings, 1 = stream
    10      2     height (u16, big-endian), 11.. all integers big-endian
    12      2     width (u16)
    14      4     digit count N (u32)
    18      4     block size B (u32, >= 1): digits per block, the last may be shorter
    22      32    model fingerprint (SHA-256)
    54      ...   blocks, one per ceil(N / B)
    end-4   4     CRC-32 of every byte before it

    per-digit block:  n varint lengths (LEB128), then the n strings
    stream block:     one varint byte length, then the stream

Parsing bounds every count and length by the bytes actually present before
anything is allocated, and checks the CRC before any payload is decoded.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from mnistcodec.errors import FormatError, WrongModelError

MAGIC = b"\x89MNC\r\n\x1a\n"
VERSION = 1
MODES = {0: "per-digit", 1: "stream"}
MODE_CODES = {name: code for code, name in MODES.items()}
_HEADER = struct.Struct(">8sBBHHII32s")
HEADER_SIZE = _HEADER.size
CRC_SIZE = 4
MAX_BLOCK = 1 << 20


class ChecksumError(FormatError):
    """The file's CRC does not match its contents."""


class TruncatedError(FormatError):
    """The file ends before its contents do."""


class TrailingDataError(FormatError):
    """Bytes follow the end of an otherwise valid file."""


@dataclass
class Header:
    mode: str
    count: int
    block_size: int
    fingerprint: bytes
    height: int = 28
    width: int = 28
    version: int = VERSION

    def pack(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            self.version,
            MODE_CODES[self.mode],
            self.height,
            self.width,
            self.count,
            self.block_size,
            self.fingerprint,
        )

    @property
    def fingerprint_hex(self) -> str:
        return self.fingerprint.hex()


@dataclass
class Block:
    """One block: its digit count and either per-digit strings or one stream."""

    count: int
    strings: list[bytes] = field(default_factory=list)
    stream: bytes = b""


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
            raise TruncatedError("file is truncated (inside a length field)")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise FormatError("malformed length field (varint too long)")


def encode_file(header: Header, blocks: list[Block]) -> bytes:
    """Serialise a header and its blocks, appending the CRC-32."""
    parts = [header.pack()]
    for block in blocks:
        if header.mode == "per-digit":
            parts.extend(_varint(len(s)) for s in block.strings)
            parts.extend(block.strings)
        else:
            parts.append(_varint(len(block.stream)))
            parts.append(block.stream)
    body = b"".join(parts)
    return body + struct.pack(">I", zlib.crc32(body))


def block_counts(count: int, block_size: int) -> Iterator[int]:
    for start in range(0, count, block_size):
        yield min(block_size, count - start)


def parse_header(data: bytes) -> Header:
    """Validate magic, version and header fields (no CRC check)."""
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise FormatError("not an mnistcodec compressed file (bad magic)")
    if len(data) < HEADER_SIZE + CRC_SIZE:
        raise TruncatedError("file is truncated (incomplete header)")
    _, version, mode, height, width, count, block_size, fingerprint = _HEADER.unpack_from(data)
    if version != VERSION:
        raise FormatError(f"unsupported format version {version}; this mnistcodec reads version {VERSION}")
    if mode not in MODES:
        raise FormatError(f"unknown coding mode {mode}")
    if (height, width) != (28, 28):
        raise FormatError(f"unsupported digit shape {height}x{width}; expected 28x28")
    if block_size < 1 or block_size > MAX_BLOCK:
        raise FormatError(f"invalid block size {block_size}")
    return Header(MODES[mode], count, block_size, fingerprint, height, width, version)


def parse_file(data: bytes, expected_fingerprint: str | None = None) -> tuple[Header, list[Block]]:
    """Parse and verify a whole file: magic, version, structure, CRC, model.

    The structure is walked first (every count and length bounded by the bytes
    present), which tells where the CRC must be: a file that ends before it is
    truncated, one with bytes after it has trailing data, and a CRC that does
    not match means corruption.
    """
    header = parse_header(data)
    view = memoryview(data)
    end = len(data)
    pos = HEADER_SIZE
    # Every digit needs at least one byte (its length) in per-digit mode, every
    # block at least one byte in stream mode: bound the count before looping.
    min_bytes = header.count if header.mode == "per-digit" else -(-header.count // header.block_size)
    if min_bytes > end - pos:
        raise TruncatedError(f"file claims {header.count} digits but is too short to hold them")
    blocks = []
    for n in block_counts(header.count, header.block_size):
        if header.mode == "per-digit":
            lengths = []
            for _ in range(n):
                length, pos = _read_varint(view, pos, end)
                lengths.append(length)
            if pos + sum(lengths) > end:
                raise TruncatedError("file is truncated (strings run past the end)")
            strings = []
            for length in lengths:
                strings.append(bytes(view[pos : pos + length]))
                pos += length
            blocks.append(Block(n, strings=strings))
        else:
            length, pos = _read_varint(view, pos, end)
            if pos + length > end:
                raise TruncatedError("file is truncated (stream runs past the end)")
            blocks.append(Block(n, stream=bytes(view[pos : pos + length])))
            pos += length
    if pos + CRC_SIZE > end:
        raise TruncatedError("file is truncated (missing checksum)")
    (stored_crc,) = struct.unpack_from(">I", data, pos)
    crc_ok = zlib.crc32(view[:pos]) == stored_crc
    if crc_ok and pos + CRC_SIZE < end:
        raise TrailingDataError(f"{end - pos - CRC_SIZE} bytes of trailing data after the end of the file")
    if not crc_ok:
        raise ChecksumError("checksum mismatch: the file is corrupt")
    if expected_fingerprint is not None and header.fingerprint_hex != expected_fingerprint:
        raise WrongModelError(
            f"file was written by model {header.fingerprint_hex[:16]}..., "
            f"not by the given model {expected_fingerprint[:16]}...; "
            "decode it with the model that wrote it"
        )
    return header, blocks
