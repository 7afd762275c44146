"""Real entropy coding: exact round trips, extreme latents, determinism, malformed files."""

from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import (
    HEADER_SIZE,
    Block,
    ChecksumError,
    Header,
    TrailingDataError,
    TruncatedError,
    encode_file,
    parse_file,
    string_bits,
)
from mnistcodec.coding.files import (
    compress_file,
    compress_to_bytes,
    decode_latents_bytes,
    decompress_bytes,
    decompress_file,
)
from mnistcodec.coding.inspection import inspect_file
from mnistcodec.coding.model_files import save_model
from mnistcodec.coding.range_coder import DecodeError, LatentCoder
from mnistcodec.coding.tables import CodingTables
from mnistcodec.coding.zoo import resolve_model
from mnistcodec.errors import FormatError, InputError, OutputError, WrongModelError

FLOAT32_MAX = float(np.finfo(np.float32).max)
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def make_spread_model(tiny_model, digits: np.ndarray, path) -> Codec:
    """The tiny model rescaled so its latents and reconstructions vary.

    The one-epoch fixture model maps every digit to nearly the same latents
    and a nearly black image; scaling its last analysis layer (latent spread
    about 4), resetting the prior scales and amplifying the last synthesis
    layer gives digits with distinct strings, some latents outside the coding
    tables (escape codes) and varied pixels. Saved (frozen) like any model.
    """
    model = copy.deepcopy(tiny_model.model)
    with torch.no_grad():
        x = torch.from_numpy(digits).float().div(255).unsqueeze(1)
        scale = 4.0 / model.analysis_transform(x).std()
        model.analysis_transform.fc_2.weight.mul_(scale)
        model.analysis_transform.fc_2.bias.mul_(scale)
        model.prior.log_scale.fill_(0.0)
        model.synthesis_transform.conv_2.weight.mul_(8.0)
    return Codec(save_model(model, path))


@pytest.fixture(scope="module")
def spread_path(tiny_model, test_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("spread") / "spread model é.safetensors"
    make_spread_model(tiny_model, test_digits, path)
    return path


@pytest.fixture(scope="module")
def codec(spread_path):
    return Codec.from_model(spread_path)


@pytest.fixture(scope="module")
def per_digit_bytes(codec, test_digits):
    return compress_to_bytes(codec, test_digits, mode="per-digit", block_size=128).data


# -- round trips -------------------------------------------------------------------------


def test_spread_model_exercises_the_coder(codec, test_digits):
    k, _ = codec.analyse(test_digits)
    symbols = codec.coder.to_symbols(k)
    assert len(np.unique(k, axis=0)) == len(test_digits)
    assert sum(map(len, symbols.overflow)) > 0, "some latents must use the escape code"
    assert (
        len(np.unique(codec.reconstruct(test_digits).reshape(len(test_digits), -1), axis=0)) > 100
    )


@pytest.mark.parametrize(
    "mode, block_size", [("per-digit", 128), ("stream", 128), ("stream", 4096)]
)
def test_file_round_trip_is_exact(codec, test_digits, mode, block_size):
    result = compress_to_bytes(codec, test_digits, mode=mode, block_size=block_size)
    k, info = codec.analyse(test_digits)
    assert np.array_equal(result.info_bits, info)
    assert np.array_equal(decode_latents_bytes(codec, result.data), k)
    decoded = decompress_bytes(codec, result.data)
    assert decoded.dtype == np.uint8 and decoded.shape == test_digits.shape
    assert np.array_equal(decoded, codec.reconstruct(test_digits))
    assert result.header.block_count == -(-len(test_digits) // block_size)


def test_fixture_model_round_trip(tiny_model, test_digits):
    codec = Codec(tiny_model)
    strings, _ = codec.compress(test_digits[:50])
    assert np.array_equal(codec.decompress(strings), codec.reconstruct(test_digits[:50]))
    stream, _ = codec.compress_stream(test_digits[:50])
    assert np.array_equal(codec.decompress_stream(stream, 50), codec.reconstruct(test_digits[:50]))


def test_per_digit_overhead_and_stream_amortise(codec, test_digits):
    per_digit = compress_to_bytes(codec, test_digits, mode="per-digit")
    stream = compress_to_bytes(codec, test_digits, mode="stream")
    table_bits = codec.coder.table_bits(codec.coder.to_symbols(codec.analyse(test_digits)[0]))
    assert per_digit.payload_bits_per_digit - table_bits.mean() < 4
    assert stream.payload_bits_per_digit < table_bits.mean() * 1.01
    assert len(stream.data) < len(per_digit.data)


def test_single_digit_and_small_chunks(spread_path, test_digits):
    small = Codec.from_model(spread_path, chunk_size=7)
    big = Codec.from_model(spread_path)
    data = compress_to_bytes(small, test_digits[:30], mode="stream", block_size=11).data
    assert np.array_equal(decompress_bytes(big, data), big.reconstruct(test_digits[:30]))
    one = compress_to_bytes(big, test_digits[5], mode="per-digit").data
    assert np.array_equal(decompress_bytes(big, one)[0], big.reconstruct(test_digits[5])[0])


def test_coding_uses_only_the_stored_tables(spread_path, test_digits, per_digit_bytes):
    """Changing the float prior after loading changes nothing in coding."""
    codec = Codec.from_model(spread_path)
    with torch.no_grad():
        codec.model.prior.log_scale.add_(3.0)
    again = compress_to_bytes(codec, test_digits, mode="per-digit", block_size=128).data
    assert again == per_digit_bytes
    assert np.array_equal(
        decompress_bytes(codec, again), Codec.from_model(spread_path).reconstruct(test_digits)
    )


def test_reconstructions_do_not_depend_on_batch_size(codec, test_digits):
    k, _ = codec.analyse(test_digits)
    whole = codec.synthesise(k)
    assert all(np.array_equal(codec.synthesise(k[:n]), whole[:n]) for n in (1, 7, 100))


def test_bad_arguments(codec, test_digits, tmp_path):
    with pytest.raises(InputError, match="empty"):
        compress_to_bytes(codec, test_digits[:0])
    with pytest.raises(InputError, match="mode"):
        compress_to_bytes(codec, test_digits[:2], mode="zip")
    with pytest.raises(InputError, match="block size"):
        compress_to_bytes(codec, test_digits[:2], block_size=0)
    with pytest.raises(InputError, match="uint8"):
        compress_to_bytes(codec, test_digits[:2].astype(np.float32))
    with pytest.raises(InputError, match="not found"):
        decompress_file(codec, tmp_path / "missing.mnc")
    with pytest.raises(InputError, match="directory"):
        decompress_file(codec, tmp_path)


# -- extreme latents (property tests) -------------------------------------------------------


def _float32_integer(value: float) -> float:
    return float(np.round(np.float32(value)))


LATENT = st.one_of(
    st.integers(-40, 40).map(float),
    st.integers(-(2**24), 2**24).map(float),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(_float32_integer),
    st.sampled_from([0.0, -0.0, FLOAT32_MAX, -FLOAT32_MAX, 2.0**127, -(2.0**64), 2.0**24 + 2]),
)


@pytest.fixture(scope="module")
def coder(tiny_model):
    return LatentCoder(tiny_model.tables)


def latent_arrays(dims: int):
    rows = st.lists(LATENT, min_size=dims, max_size=dims)
    return st.lists(rows, min_size=1, max_size=4).map(lambda r: np.array(r, dtype=np.float64))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_float32_integer_latents_round_trip(coder, data):
    k = data.draw(latent_arrays(coder.tables.latent_dims))
    symbols = coder.to_symbols(k)
    strings = coder.encode_strings(symbols)
    assert np.array_equal(coder.from_symbols(coder.decode_strings(strings)), k)
    stream = coder.encode_stream(symbols)
    assert np.array_equal(coder.from_symbols(coder.decode_stream(stream, k.shape[0])), k)


def test_extreme_latents_decode_to_valid_digits(codec):
    """Huge latents reach the decoder exactly; the network output stays valid uint8."""
    k = np.zeros((3, codec.latent_dims))
    k[0, :] = FLOAT32_MAX
    k[1, ::2] = -FLOAT32_MAX
    k[2, 0] = 2.0**100
    symbols = codec.coder.to_symbols(k)
    strings = codec.coder.encode_strings(symbols)
    assert np.array_equal(codec.decode_latents(strings), k)
    assert codec.decompress(strings).dtype == np.uint8
    stream = codec.coder.encode_stream(symbols)
    assert np.array_equal(codec.decode_stream_latents(stream, 3), k)
    assert codec.decompress_stream(stream, 3).dtype == np.uint8


@pytest.mark.parametrize("infix, granularity", [("", "byte"), ("v3.", "bit")])
@pytest.mark.parametrize("mode", ["per-digit", "stream"])
def test_overflow_golden_files_decode_and_reencode(mode, infix, granularity):
    """The escapes of ``tests/golden/overflow.*`` (see ``make_overflow.py``) keep their bytes.

    ``overflow.<mode>.mnc`` is version 1 (byte strings), ``overflow.v3.<mode>.mnc`` version 3.
    """
    record = json.loads((GOLDEN_DIR / "overflow.latents.json").read_text())
    coder = LatentCoder(resolve_model(record["model"]).tables)
    data = (GOLDEN_DIR / f"overflow.{infix}{mode}.mnc").read_bytes()
    _, blocks = parse_file(data)
    first = 0
    for block in blocks:
        k = np.array(record["latents"][first : first + block.count], dtype=object)
        symbols = coder.to_symbols(k)
        if mode == "per-digit":
            assert coder.encode_strings(symbols, granularity) == block.strings
            decoded = coder.decode_strings(block.strings, granularity=granularity)
        else:
            assert coder.encode_stream(symbols) == block.stream
            decoded = coder.decode_stream(block.stream, block.count)
        assert np.array_equal(decoded.indices, symbols.indices)
        assert decoded.overflow == symbols.overflow
        first += block.count


def test_start_length_is_exact_where_float_rounding_crosses_a_byte():
    """``floor(I / 8)`` is exact: ``125 * 41 * 101 * 8101 * 268501 = 2**50 + 1``, so with
    one more 2-bit symbol ``I = 72 - 1.3e-15``, which float64 rounds to 72."""
    counts = [125, 41, 101, 8101, 268501, 2**22]
    rows = np.array([[c, 2**24 - c] for c in counts], dtype=np.int32)
    zeros = np.zeros(len(counts))
    tables = CodingTables(rows, zeros.astype(np.int32), zeros.astype(np.float32), 24).validate()
    coder = LatentCoder(tables)
    symbols = coder.to_symbols(zeros[None, :])
    assert float(coder.table_bits(symbols)[0]) == 72.0
    assert coder.start_lengths(symbols) == [7]
    strings = coder.encode_strings(symbols)
    assert np.array_equal(coder.decode_strings(strings).indices, symbols.indices)


# -- determinism across processes and thread counts ------------------------------------

DECODE_SCRIPT = """
import sys, torch
threads = int(sys.argv[1])
torch.set_num_threads(threads)
from mnistcodec.coding.api import Codec
from mnistcodec.coding.files import decompress_file
assert torch.get_num_threads() == threads
images = decompress_file(Codec.from_model(sys.argv[2]), sys.argv[3])
open(sys.argv[4], "wb").write(images.tobytes())
"""


def test_decoding_in_other_processes_with_1_and_2_threads_is_identical(
    spread_path, codec, test_digits, tmp_path
):
    mnc = tmp_path / "written here.mnc"
    compress_file(codec, test_digits, mnc)
    outputs, procs = {}, []
    for threads in (1, 2):
        outputs[threads] = tmp_path / f"decoded-{threads}.raw"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        cmd = [
            sys.executable,
            "-c",
            DECODE_SCRIPT,
            str(threads),
            str(spread_path),
            str(mnc),
            str(outputs[threads]),
        ]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    one, two = (outputs[t].read_bytes() for t in (1, 2))
    assert one == two
    assert one == decompress_file(codec, mnc).tobytes()
    assert one == codec.reconstruct(test_digits).tobytes()


# -- malformed files through the decoder ---------------------------------------------------


def _retabulate(data: bytes, mutate) -> bytes:
    """Parse, let ``mutate`` edit the blocks, re-encode with fresh CRCs."""
    header, blocks = parse_file(data)
    mutate(blocks)
    return encode_file(header, blocks)


def _flip_middle(data: bytes) -> bytes:
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x08
    return bytes(flipped)


MALFORMED = {
    "bad magic": (lambda d: b"GIF89a" + d[6:], FormatError, "bad magic"),
    "version": (lambda d: d[:8] + b"\x09" + d[9:], FormatError, "version 9"),
    "trailing garbage": (lambda d: d + b"\0\0", TrailingDataError, "trailing"),
    "flipped payload byte": (_flip_middle, ChecksumError, "checksum"),
    **{
        f"truncated {n}": (lambda d, n=n: d[:n], TruncatedError, "truncated")
        for n in (3, 8, 40, HEADER_SIZE, HEADER_SIZE + 1, 500, -1)
    },
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_are_specific_errors(codec, per_digit_bytes, case):
    tamper, error, message = MALFORMED[case]
    with pytest.raises(error, match=message):
        decompress_bytes(codec, tamper(per_digit_bytes))


def test_a_file_of_no_digits_is_refused_by_the_decoder(codec):
    data = encode_file(Header("per-digit", 0, 16, bytes.fromhex(codec.fingerprint)), [])
    with pytest.raises(FormatError, match="no digits"):
        decompress_bytes(codec, data)


def test_non_canonical_and_garbage_strings_behind_valid_crcs(codec, per_digit_bytes):
    def extend(blocks):
        blocks[1].strings[5] = blocks[1].strings[5] + b"\x01"

    def garbage(blocks):
        blocks[0].strings[0] = b"\xde\xad\xbe\xef\x00\x11\x22\x33\x44"

    def a_one_bit_far_behind(blocks):
        # The same point plus less than the coder's resolution: it decodes to the
        # same latents, but it is not their string. (A 1 bit right behind the
        # string often is the string of other latents: bit strings leave little
        # room for invalid codes.)
        blocks[0].strings[3] = blocks[0].strings[3] + bytes(16) + b"\x01"

    for mutate, where in (
        (extend, "block 1 .digits 128 to 255."),
        (garbage, "block 0"),
        (a_one_bit_far_behind, "block 0"),
    ):
        bad = _retabulate(per_digit_bytes, mutate)
        with pytest.raises(DecodeError, match=where):
            decompress_bytes(codec, bad)
    # Without the check (generative use) the extended string decodes.
    assert decompress_bytes(codec, _retabulate(per_digit_bytes, extend), check=False).shape == (
        300,
        28,
        28,
    )


def test_version_1_byte_strings_decode_and_are_checked_by_their_own_rule(codec, test_digits):
    """A version-1 file (byte strings, as earlier releases wrote) decodes; a trailing zero byte does not."""
    strings, _ = codec.compress(test_digits[:30], granularity="byte")
    header = Header("per-digit", 30, 16, bytes.fromhex(codec.fingerprint), version=1)
    blocks = [Block(16, strings=strings[:16]), Block(14, strings=strings[16:])]
    data = encode_file(header, blocks)
    assert np.array_equal(decompress_bytes(codec, data), codec.reconstruct(test_digits[:30]))
    bits, _ = codec.compress(test_digits[:30])
    assert sum(map(string_bits, bits)) < 8 * sum(map(len, strings))
    # The bit strings are not the byte rule's strings: refused in a version-1 file.
    differs = next(i for i in range(16) if bits[i] != strings[i])
    wrong = [Block(16, strings=[*strings[:differs], bits[differs], *strings[differs + 1 : 16]])]
    wrong.append(blocks[1])
    with pytest.raises(DecodeError, match="block 0"):
        decompress_bytes(codec, encode_file(header, wrong))
    zero = [Block(16, strings=[strings[0] + b"\0", *strings[1:16]]), blocks[1]]
    with pytest.raises(DecodeError, match="trailing zero byte"):
        decompress_bytes(codec, encode_file(header, zero))


def test_tampered_stream_behind_valid_crcs(codec, test_digits):
    data = compress_to_bytes(codec, test_digits[:40], mode="stream").data

    def extend(blocks):
        blocks[0].stream = blocks[0].stream + b"\x07"

    with pytest.raises(DecodeError, match="block 0"):
        decompress_bytes(codec, _retabulate(data, extend))


def test_stream_claiming_far_more_digits_than_it_holds(codec, test_digits):
    data = bytearray(
        compress_to_bytes(codec, test_digits[:4], mode="stream", block_size=2**20).data
    )
    data[14:18] = struct.pack(">I", 2**20)
    data[62:66] = struct.pack(">I", zlib.crc32(bytes(data[:62])))
    data[-4:] = struct.pack(">I", zlib.crc32(bytes(data[:-4])))
    with pytest.raises(DecodeError, match="cannot hold"):
        decompress_bytes(codec, bytes(data))


def test_wrong_model_names_both_fingerprints(
    tiny_model, test_digits, per_digit_bytes, codec, tmp_path
):
    other_model = copy.deepcopy(codec.model)
    with torch.no_grad():
        other_model.synthesis_transform.fc_1.weight.add_(1e-3)
    other = Codec(save_model(other_model, tmp_path / "other.safetensors"))
    assert other.fingerprint != codec.fingerprint
    with pytest.raises(WrongModelError) as info:
        decompress_bytes(other, per_digit_bytes)
    message = str(info.value)
    assert codec.fingerprint[:16] in message and other.fingerprint[:16] in message
    with pytest.raises(WrongModelError):
        decompress_bytes(Codec(tiny_model), per_digit_bytes)


# -- output files ------------------------------------------------------------------------


class _RefusingCodec:
    """Stands in for a codec where no work may happen."""

    fingerprint = "00" * 32

    def __getattr__(self, name):
        raise AssertionError(f"codec.{name} used before the output path was checked")


def test_existing_output_is_refused_before_any_work(test_digits, tmp_path):
    out = tmp_path / "kept.mnc"
    out.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists"):
        compress_file(_RefusingCodec(), test_digits, out)
    assert out.read_bytes() == b"precious"
    with pytest.raises(InputError, match="does not exist"):
        compress_file(_RefusingCodec(), test_digits, tmp_path / "no such dir" / "x.mnc")


def test_force_overwrites_and_output_decodes(codec, test_digits, tmp_path):
    out = tmp_path / "ünï cødé out.mnc"
    out.write_bytes(b"old")
    compress_file(codec, test_digits[:20], out, mode="stream", force=True)
    assert np.array_equal(decompress_file(codec, out), codec.reconstruct(test_digits[:20]))
    info = inspect_file(out)
    assert (
        info["mode"] == "stream"
        and info["count"] == 20
        and info["fingerprint"] == codec.fingerprint
    )


def test_failed_write_leaves_no_partial_or_temporary_file(
    codec, test_digits, tmp_path, monkeypatch
):
    import mnistcodec.storage.atomic

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mnistcodec.storage.atomic.os, "replace", failing_replace)
    monkeypatch.setattr(mnistcodec.storage.atomic.os, "link", failing_replace)
    with pytest.raises(OutputError, match="No space left on device"):
        compress_file(codec, test_digits[:10], tmp_path / "out.mnc")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_compression_leaves_nothing(codec, test_digits, tmp_path, monkeypatch):
    def interrupted(images):
        raise KeyboardInterrupt

    monkeypatch.setattr(codec, "compress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compress_file(codec, test_digits[:10], tmp_path / "out.mnc")
    assert list(tmp_path.iterdir()) == []


# -- generative use -------------------------------------------------------------------------


def test_sample_is_valid_and_reproducible(codec):
    first = codec.sample(16, seed=3, nbytes=8)
    assert first.dtype == np.uint8 and first.shape == (16, 28, 28)
    assert np.array_equal(first, codec.sample(16, seed=3, nbytes=8))
    assert not np.array_equal(first, codec.sample(16, seed=4, nbytes=8))
    assert len(np.unique(first.reshape(16, -1), axis=0)) > 1
    assert codec.sample(3, seed=0, nbytes=0).shape == (3, 28, 28)
    assert codec.sample(4, seed=1, nbytes=64).dtype == np.uint8


def test_sample_arguments(codec):
    for kwargs in ({"n": 0}, {"nbytes": -1}, {"seed": -5}):
        with pytest.raises(InputError):
            codec.sample(**{"n": 2, **kwargs})
