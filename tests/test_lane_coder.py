"""Range coding by lanes (many digits at once) against the scalar coder built on constriction.

The lanes must give, string for string, what the scalar path gives: the same
version-3 bit strings, the same decoded symbols, and the same errors at the
same digit for strings that do not decode or are not canonical.
"""

from __future__ import annotations

import numpy as np
import pytest

from mnistcodec.coding import lane_coder
from mnistcodec.coding.api import Codec
from mnistcodec.coding.range_coder import (
    DecodeError,
    LatentCoder,
    Symbols,
    _bytes_to_words,
    _final_interval,
    _shortest_bits,
)
from mnistcodec.coding.tables import CodingTables
from mnistcodec.coding.zoo import DEFAULT_MODEL, shipped_models


def _scalar_strings(coder: LatentCoder, symbols: Symbols) -> list[bytes]:
    return [
        _shortest_bits(coder._encode_digit(indices, overflow))
        for indices, overflow in zip(symbols.indices, symbols.overflow, strict=True)
    ]


def _scalar_decode(coder: LatentCoder, strings: list[bytes], check: bool) -> Symbols:
    """What ``decode_strings`` did one digit at a time: decode in order, then the check."""
    indices = np.empty((len(strings), coder.symbol_dims), dtype=np.int32)
    overflow: list[list[int]] = []
    failure = None
    for i, data in enumerate(strings):
        try:
            indices[i], values = coder._decode_digit(_bytes_to_words(data))
        except DecodeError as exc:
            failure = exc
            break
        overflow.append(values)
    if check:
        canonical = _scalar_strings(coder, Symbols(indices[: len(overflow)], overflow))
        for i, data in enumerate(strings[: len(overflow)]):
            if data.endswith(b"\0"):
                raise DecodeError(f"string {i} is not canonical (trailing zero byte)")
            if canonical[i] != data:
                raise DecodeError(
                    f"string {i} is not the encoding of what it decodes to "
                    "(corrupt data, or a file for another model)"
                )
    if failure is not None:
        raise failure
    return Symbols(indices, overflow)


def _same_outcome(coder: LatentCoder, strings: list[bytes], check: bool) -> None:
    try:
        expected = _scalar_decode(coder, strings, check)
    except DecodeError as exc:
        with pytest.raises(DecodeError) as caught:
            coder.decode_strings(strings, check=check)
        assert str(caught.value) == str(exc)
        return
    got = coder.decode_strings(strings, check=check)
    assert np.array_equal(got.indices, expected.indices)
    assert got.overflow == expected.overflow


def _inputs(test_digits: np.ndarray) -> np.ndarray:
    """Test digits, noise (escaped latents) and blank and full images."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(40, 28, 28), dtype=np.uint8)
    extremes = np.stack([np.zeros((28, 28), np.uint8), np.full((28, 28), 255, np.uint8)])
    return np.concatenate([test_digits, noise, extremes])


@pytest.mark.parametrize("name", sorted(shipped_models()))
def test_lanes_write_the_scalar_coders_strings_and_read_them_back(name, test_digits):
    codec = Codec.from_model(name, precision="fp32")
    images = _inputs(test_digits)
    levels = sorted({0, codec.default_level, codec.levels - 1})
    for level in levels:
        k, _ = codec.analyse(images, level)
        coder = codec.coders[level]
        symbols = coder.to_symbols(k)
        strings = coder.encode_strings(symbols)
        assert strings == _scalar_strings(coder, symbols)
        decoded = coder.decode_strings(strings)
        assert np.array_equal(decoded.indices, symbols.indices)
        assert decoded.overflow == symbols.overflow


def _random_coder(rng: np.random.Generator, dims: int, width: int) -> LatentCoder:
    """A coder over random tables, some rows nearly certain (long runs without output)."""
    precision = 16
    counts = np.empty((dims, width + 1), dtype=np.int32)
    for row in range(dims):
        weights = rng.gamma(0.3 if row % 3 else 5.0, size=width + 1) + 1e-3
        raw = np.maximum(1, np.floor(weights / weights.sum() * (1 << precision))).astype(np.int64)
        raw[np.argmax(raw)] += (1 << precision) - raw.sum()
        counts[row] = raw
    tables = CodingTables(
        counts=counts,
        lower=np.full(dims, -(width // 2), dtype=np.int32),
        offsets=np.zeros(dims, dtype=np.float32),
        precision=precision,
    )
    return LatentCoder(tables.validate())


def test_lanes_match_the_scalar_coder_on_random_tables_carries_and_all():
    rng = np.random.default_rng(1)
    settled = fallen_back = carried = 0
    for dims, width in ((1, 3), (4, 9), (50, 31), (120, 5)):
        coder = _random_coder(rng, dims, width)
        probs = coder.tables.counts / coder.tables.counts.sum(axis=1, keepdims=True)
        cols = np.stack([rng.choice(width + 1, size=3000, p=probs[d]) for d in range(dims)], axis=1)
        cols[cols == width] = 0  # no escapes: every digit goes through the lanes
        symbols = Symbols(cols.astype(np.int32), [[] for _ in range(len(cols))])
        lanes = coder._lane_encode(symbols.indices)
        fallen_back += sum(string is None for string in lanes)
        settled += sum(string is not None for string in lanes)
        strings = coder.encode_strings(symbols)
        assert strings == _scalar_strings(coder, symbols)
        decoded = coder.decode_strings(strings)
        assert np.array_equal(decoded.indices, symbols.indices)
        for indices in symbols.indices:
            low, high, _ = _final_interval(coder._encode_digit(indices, []))
            carried += (low % (1 << 64)) + (high - low - 1) >= 1 << 64
    # The window arithmetic, its carry case and the hand-back to the scalar coder all ran.
    assert settled > 1000 and fallen_back > 10 and carried > 100


def test_random_and_corrupt_strings_give_the_scalar_outcome(test_digits):
    codec = Codec.from_model(DEFAULT_MODEL, precision="fp32")
    coder = codec.coders[codec.default_level]
    rng = np.random.default_rng(2)
    # Random strings of every length up to beyond what the lanes hold, decoded without the check.
    for _ in range(20):
        strings = [rng.bytes(int(n)) for n in rng.integers(0, 4 * lane_coder.MAX_WORDS + 40, 64)]
        _same_outcome(coder, strings, check=False)
        _same_outcome(coder, strings, check=True)
    k, _ = codec.analyse(test_digits[:64], codec.default_level)
    good = coder.encode_strings(coder.to_symbols(k))
    for _ in range(40):
        strings = list(good)
        i = int(rng.integers(len(strings)))
        data = bytearray(strings[i] or b"\0")
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        strings[i] = bytes(data) if rng.random() < 0.8 else bytes(data) + b"\0"
        _same_outcome(coder, strings, check=True)


def test_cumulative_tables_follow_the_spec_rule():
    counts = np.array([[1, 1, 1, 32, 4702, 56061, 4738]], dtype=np.int64)
    counts[0, -1] += (1 << 16) - counts.sum()
    table = lane_coder.cumulative_table(counts, 16, counts.shape[1] + 2)
    n = counts.shape[1]
    prefix = np.concatenate([[0], np.cumsum(counts[0, :-1])])
    expected = [(int(c) * ((1 << 24) - n) >> 16) + j for j, c in enumerate(prefix)]
    assert table[0, :n].tolist() == expected
    assert table[0, :4].tolist() == [0, 256, 513, 770]  # docs/mnc-format.md's worked row
    assert table[0, n:].tolist() == [1 << 24, 1 << 24]
