"""The spec's test vectors through the library (``tests/test_conformance.py`` checks them from
the spec alone): latents to float32 (offsets with gains, large ``k``) and every version with
every model kind; and the order of the reader's checks where docs/mnc-format.md settles it."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import (
    HEADER_SIZE,
    Block,
    Header,
    TruncatedError,
    encode_file,
    parse_file,
    parse_header,
)
from mnistcodec.coding.files import decode_latents_bytes, decompress_bytes
from mnistcodec.errors import FormatError

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def float32_from_bits(text: str) -> float:
    return float(np.uint32(int(text, 16)).view(np.float32))


def test_the_decoder_turns_latents_into_the_vectors_float32_values():
    """Each case's ``k`` through the decoder's own path (overflow symbols to latents, then the
    latents the synthesis transform receives), with the case's offset and gain."""
    cases = json.loads((GOLDEN_DIR / "dequantisation.json").read_text())["cases"]
    codec = Codec.from_model("vr-balanced", device="cpu", precision="fp32")
    level, dims, coder = 0, codec.latent_dims, codec.coders[0]
    received = {}

    def synthesis(y_hat, index=None):
        received["y"] = y_hat.detach().clone()
        return torch.zeros(y_hat.shape[0], 1, 28, 28)

    codec.model.synthesis_transform.forward = synthesis
    for start in range(0, len(cases), dims):
        part = cases[start : start + dims]
        rows = [(c["k"], c["offset"], c["gain"]) for c in part]
        rows += [("0", "00000000", "3f800000")] * (dims - len(part))
        k = np.array([[int(r[0]) for r in rows]], dtype=object)
        codec.level_offsets[level] = torch.tensor([float32_from_bits(r[1]) for r in rows])
        codec.gains[level] = torch.tensor([float32_from_bits(r[2]) for r in rows])
        codec.synthesise(coder.from_symbols(coder.to_symbols(k)), np.array([level]))
        got = received["y"][0, : len(part)].numpy().view(np.uint32)
        assert [f"{int(v):08x}" for v in got] == [c["y_hat"] for c in part]


@pytest.mark.parametrize(
    "file", ["kinds.vr-balanced.version-1.mnc", "kinds.seed-lmbda2000.version-2.mnc"]
)
def test_every_version_decodes_with_every_model_kind(file):
    data = (GOLDEN_DIR / file).read_bytes()
    codec = Codec.from_model(file.split(".")[1], device="cpu", precision="fp32")
    assert parse_header(data).version == int(file[-5])
    expected = json.loads((GOLDEN_DIR / "kinds.latents.json").read_text())[file]
    assert decode_latents_bytes(codec, data).astype(np.int64).tolist() == expected
    # At level 0, the level a version-1 file's digits are at.
    k = np.asarray(expected, dtype=np.float64)
    assert np.array_equal(decompress_bytes(codec, data), codec.synthesise(k, 0))


def with_crcs(data: bytearray) -> bytes:
    """``data`` with both CRCs recomputed (a file crafted to pass them)."""
    data[62:66] = struct.pack(">I", zlib.crc32(bytes(data[:62])))
    data[-4:] = struct.pack(">I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def file_of(blocks: list[Block], mode: str = "per-digit", block_size: int = 2) -> bytes:
    header = Header(mode, sum(b.count for b in blocks), block_size, bytes(32))
    return encode_file(header, blocks)


def test_the_checks_run_in_the_documented_order():
    """docs/mnc-format.md, "Reading: checks and errors": the cases its order settles."""
    valid = file_of([Block(2, strings=[b"\x80", b"\xc0"], levels=[0])])
    # The version is checked as soon as its byte is there: before a truncation.
    for size in (9, 30, 65):
        short = bytearray(valid[:size])
        short[8] = 9
        with pytest.raises(FormatError, match="version 9"):
            parse_file(bytes(short))
    with pytest.raises(TruncatedError):
        parse_file(valid[:8])
    # "N cannot fit": N > P per digit, ceil(N / B) > P in stream mode; N = P passes it.
    payload = len(valid) - HEADER_SIZE - 4
    for count, fits in [(payload, True), (payload + 1, False)]:
        data = bytearray(valid)
        data[14:18] = struct.pack(">I", count)
        with pytest.raises(FormatError) as caught:
            parse_file(with_crcs(data))
        assert ("too short to hold" in str(caught.value)) != fits
    stream = file_of([Block(2, stream=b"\x01", levels=[0])], "stream", 2)
    data = bytearray(stream)
    data[14:18] = struct.pack(">I", 2 * (len(stream) - HEADER_SIZE - 4) + 1)  # blocks of 2
    with pytest.raises(FormatError, match="too short to hold"):
        parse_file(with_crcs(data))
    # Units: version-3 lengths are bits, and the strings take ceil(sum / 8) bytes.
    bits = file_of([Block(2, strings=[b"\x80", b"\xc0"], levels=[0])])  # 1 + 2 bits: 1 byte
    assert len(bits) - HEADER_SIZE - 4 == 2 + 2 + 1
    data = bytearray(bits)
    data[HEADER_SIZE + 3] = 8 + 2  # 1 + 10 bits: 2 bytes, one more than there is
    with pytest.raises(FormatError, match="strings run past"):
        parse_file(with_crcs(data))
