"""The .mnc container: layout, round trips and every malformed-file case (no model needed)."""

from __future__ import annotations

import struct
import zlib

import pytest

from mnistcodec.coding.container import (
    CRC_SIZE,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    VERSION_1,
    Block,
    ChecksumError,
    Header,
    TrailingDataError,
    TruncatedError,
    block_counts,
    encode_file,
    parse_file,
    parse_header,
)
from mnistcodec.coding.inspection import inspect_bytes
from mnistcodec.errors import FormatError, WrongModelError

FINGERPRINT = bytes(range(32))


def per_digit_file(strings: list[bytes], block_size: int = 3, version: int = VERSION) -> bytes:
    blocks, start = [], 0
    for n in block_counts(len(strings), block_size):
        blocks.append(Block(n, strings=strings[start : start + n]))
        start += n
    header = Header("per-digit", len(strings), block_size, FINGERPRINT, version=version)
    return encode_file(header, blocks)


def stream_file(streams: list[bytes], counts: list[int], block_size: int) -> bytes:
    blocks = [Block(n, stream=s) for n, s in zip(counts, streams, strict=True)]
    return encode_file(Header("stream", sum(counts), block_size, FINGERPRINT), blocks)


STRINGS = [b"\xa6\xd9\x9e\x05\xb3\x2f", b"", b"\x01", b"\xff" * 200, b"\x10\x20", b"abc", b"z"]


def with_crcs(data: bytearray) -> bytes:
    """Recompute both CRCs after tampering, to reach the checks behind them."""
    data[62:66] = struct.pack(">I", zlib.crc32(bytes(data[:62])))
    data[-4:] = struct.pack(">I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


@pytest.mark.parametrize("version", [VERSION_1, VERSION])
def test_per_digit_round_trip_with_blocks_and_long_lengths(version):
    data = per_digit_file(STRINGS, block_size=3, version=version)
    header, blocks = parse_file(data)
    assert (header.mode, header.count, header.block_size) == ("per-digit", 7, 3)
    assert [b.count for b in blocks] == [3, 3, 1]
    assert [s for b in blocks for s in b.strings] == STRINGS
    assert header.fingerprint == FINGERPRINT
    assert len(data) == HEADER_SIZE + header.payload_size + CRC_SIZE
    if version == VERSION_1:
        # 200-byte string: a two-byte varint length.
        assert header.payload_size == sum(map(len, STRINGS)) + 6 + 2
    else:
        # Levels (2 bytes a block), bit lengths (1600 bits: two bytes), packed bits.
        bits = [[48, 0, 8], [1600, 11, 24], [7]]
        packed = sum(-(-sum(block) // 8) for block in bits)
        assert header.payload_size == 3 * 2 + 6 + 2 + packed


def test_version_3_packs_bit_strings_back_to_back():
    # 3 bits (101), 9 bits (1000 0000 1), 1 bit (1): 13 bits in 2 bytes, 3 padding bits.
    data = per_digit_file([b"\xa0", b"\x80\x80", b"\x80"], block_size=4096)
    assert data[HEADER_SIZE:-CRC_SIZE] == bytes([0, 0, 3, 9, 1, 0b10110000, 0b00011000])
    _, blocks = parse_file(data)
    assert blocks[0].strings == [b"\xa0", b"\x80\x80", b"\x80"]


@pytest.mark.parametrize(
    "strings, message", [([b"\xa0", b"\x80"], "end with a 1 bit"), ([b"\xa0"], "padding")]
)
def test_version_3_strings_end_with_a_one_bit_and_padding_is_zero(strings, message):
    data = bytearray(per_digit_file(strings, block_size=4096))
    if message == "padding":
        data[-CRC_SIZE - 1] |= 0x01
    else:
        data[HEADER_SIZE + 2] = 2  # the bits 1011: now 10, then 11
        data[HEADER_SIZE + 3] = 2
    with pytest.raises(FormatError, match=message):
        parse_file(with_crcs(data))


def test_version_3_refuses_strings_that_cannot_say_their_length():
    with pytest.raises(ValueError, match="zero byte"):
        per_digit_file([b"\x05\x00"], block_size=4096)


def test_stream_round_trip():
    data = stream_file([b"\x01" * 300, b"\x02\x03"], [4, 1], block_size=4)
    header, blocks = parse_file(data)
    assert header.mode == "stream" and header.count == 5
    assert [(b.count, b.stream) for b in blocks] == [(4, b"\x01" * 300), (1, b"\x02\x03")]


@pytest.mark.parametrize("version", [VERSION_1, VERSION])
def test_layout_is_as_documented(version):
    data = per_digit_file([b"\x05"], block_size=4096, version=version)
    assert data[:8] == MAGIC and data[8] == version and data[9] == 0
    assert struct.unpack(">HHII", data[10:22]) == (28, 28, 1, 4096)
    assert data[22:54] == FINGERPRINT
    # Version 1: the length 1 and the byte; version 3: level 0, the length 8 bits, the bits.
    payload = b"\x01\x05" if version == VERSION_1 else b"\x00\x00\x08\x05"
    assert struct.unpack(">Q", data[54:62]) == (len(payload),)
    assert struct.unpack(">I", data[62:66]) == (zlib.crc32(data[:62]),)
    end = 66 + len(payload)
    assert data[66:end] == payload
    assert struct.unpack(">I", data[end:]) == (zlib.crc32(data[:end]),)


def test_encode_refuses_blocks_that_do_not_match_the_header():
    with pytest.raises(ValueError):
        encode_file(Header("per-digit", 5, 4, FINGERPRINT), [Block(5, strings=[b""] * 5)])


def test_empty_file():
    with pytest.raises(FormatError, match="empty"):
        parse_file(b"")


@pytest.mark.parametrize(
    "data", [b"PK\x03\x04" + bytes(100), b"\x89PNG\r\n\x1a\n" + bytes(100), b"x"]
)
def test_bad_magic(data):
    with pytest.raises(FormatError, match="bad magic"):
        parse_file(data)


def test_wrong_version_is_named():
    data = bytearray(per_digit_file(STRINGS))
    data[8] = 4
    with pytest.raises(FormatError, match="version 4"):
        parse_file(with_crcs(data))


def test_every_truncation_is_reported_as_truncated():
    data = per_digit_file(STRINGS)
    for length in range(1, len(data)):
        with pytest.raises(TruncatedError):
            parse_file(data[:length])


@pytest.mark.parametrize("extra", [b"\0", b"garbage", bytes(1000)])
def test_trailing_data(extra):
    data = per_digit_file(STRINGS)
    with pytest.raises(TrailingDataError, match=f"{len(extra)} bytes of trailing data"):
        parse_file(data + extra)


def test_any_flipped_byte_after_the_version_is_a_checksum_error():
    data = per_digit_file(STRINGS)
    for position in range(9, len(data)):
        corrupt = bytearray(data)
        corrupt[position] ^= 0x40
        with pytest.raises(ChecksumError):
            parse_file(bytes(corrupt))


def test_flipped_magic_or_version_byte():
    for position in range(9):
        corrupt = bytearray(per_digit_file(STRINGS))
        corrupt[position] ^= 0x01
        # The version byte 3 flipped reads as version 2, whose header CRC then fails.
        with pytest.raises(FormatError, match="magic|version|header checksum"):
            parse_file(bytes(corrupt))


@pytest.mark.parametrize(
    "position, value, message",
    [(9, 7, "unknown coding mode"), (11, 32, "digit shape"), (21, 0, "block size")],
)
def test_bad_header_fields_behind_a_valid_crc(position, value, message):
    data = bytearray(per_digit_file(STRINGS))
    if position == 21:
        data[18:22] = b"\0\0\0\0"
    data[position] = value
    with pytest.raises(FormatError, match=message):
        parse_file(with_crcs(data))


def test_crafted_structure_with_valid_crcs_is_a_format_error():
    # A huge digit count with a tiny payload: refused before any loop over it.
    data = bytearray(per_digit_file(STRINGS))
    data[14:18] = struct.pack(">I", 2**32 - 1)
    with pytest.raises(FormatError, match="too short"):
        parse_file(with_crcs(data))
    # A length that runs past the payload (after the levels 00 00).
    lengths = HEADER_SIZE + 2
    data = bytearray(per_digit_file([b"\x01\x02"], block_size=1))
    data[lengths] = 50
    with pytest.raises(FormatError, match="past the end"):
        parse_file(with_crcs(data))
    # Payload bytes that belong to no block.
    data = bytearray(per_digit_file([b"\x01\x02"], block_size=1))
    data[lengths] = 1
    with pytest.raises(FormatError, match="not part of any block"):
        parse_file(with_crcs(data))
    # A varint that never ends.
    data = bytearray(per_digit_file([b"\xff" * 20], block_size=1))
    data[lengths : lengths + 12] = b"\xff" * 12
    with pytest.raises(FormatError, match="varint"):
        parse_file(with_crcs(data))
    # An unknown level layout.
    data = bytearray(per_digit_file([b"\x01\x02"], block_size=1))
    data[HEADER_SIZE] = 7
    with pytest.raises(FormatError, match="level layout"):
        parse_file(with_crcs(data))


def test_wrong_model_names_both_fingerprints():
    data = per_digit_file(STRINGS)
    other = "ab" * 32
    with pytest.raises(WrongModelError) as info:
        parse_file(data, expected_fingerprint=other)
    assert FINGERPRINT.hex()[:16] in str(info.value) and other[:16] in str(info.value)
    parse_file(data, expected_fingerprint=FINGERPRINT.hex())


def test_parse_header_alone():
    header = parse_header(per_digit_file(STRINGS))
    assert header.block_count == 3 and header.fingerprint_hex == FINGERPRINT.hex()


def test_inspect_without_a_model():
    info = inspect_bytes(per_digit_file(STRINGS, block_size=3))
    assert info["mode"] == "per-digit" and info["count"] == 7 and info["blocks"] == 3
    assert info["string_bits"] == [48, 0, 8, 1600, 11, 24, 7] and "string_bytes" not in info
    assert info["levels"] == [0] * 7
    assert info["fingerprint"] == FINGERPRINT.hex()
    info = inspect_bytes(per_digit_file(STRINGS, block_size=3, version=VERSION_1))
    assert info["string_bytes"] == [len(s) for s in STRINGS] and "levels" not in info
    assert info["string_bits"] == [8 * len(s) for s in STRINGS]
    info = inspect_bytes(stream_file([b"\x01" * 30, b"\x02"], [4, 2], block_size=4))
    assert info["stream_bytes"] == [30, 1] and info["stream_bits_per_digit"] == 8 * 31 / 6
    corrupt = bytearray(per_digit_file(STRINGS))
    corrupt[-1] ^= 1
    with pytest.raises(ChecksumError):
        inspect_bytes(bytes(corrupt))


def test_a_file_of_no_digits_parses_and_inspects():
    from mnistcodec.cli.inspect_cmd import format_inspection

    for mode in ("per-digit", "stream"):
        data = encode_file(Header(mode, 0, 16, FINGERPRINT), [])
        info = inspect_bytes(data)
        assert info["count"] == 0 and info["blocks"] == 0
        assert "digits          0" in format_inspection(info)
