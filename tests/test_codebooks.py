"""K-means pixel codebooks: the low-rate reference codec of bench/rd_floor.py."""

from __future__ import annotations

import numpy as np
import pytest

from mnistcodec.data import load_split
from mnistcodec.errors import InputError
from mnistcodec.experiments import metrics
from mnistcodec.experiments.codebooks import measure_codebook, measure_codebooks, train_codebook


@pytest.fixture(scope="module")
def train_digits():
    return load_split("train").images[:400].copy()


def test_codewords_are_uint8_digits_and_the_table_codes_every_index(train_digits):
    codebook = train_codebook(train_digits, 8, iterations=5)
    assert codebook.codewords.shape == (8, 28, 28) and codebook.codewords.dtype == np.uint8
    counts = codebook.tables.counts
    assert counts.shape == (1, 9) and counts.min() >= 1
    assert int(counts.astype(np.int64).sum()) == 1 << codebook.tables.precision
    # The counts follow the training frequencies of the nearest codewords.
    chosen = np.bincount(codebook.assign(train_digits), minlength=8)
    assert np.argmax(counts[0, :8]) == np.argmax(chosen)


def test_a_digit_goes_to_its_nearest_codeword(train_digits, test_digits):
    codebook = train_codebook(train_digits, 16, iterations=5)
    digits = test_digits[:50]
    error = (
        (digits[:, None].astype(np.float64) - codebook.codewords[None].astype(np.float64)) ** 2
    ).sum(axis=(2, 3))
    best = error.min(axis=1)
    chosen = error[np.arange(50), codebook.assign(digits)]
    np.testing.assert_allclose(chosen, best, rtol=1e-5)


def test_strings_decode_to_the_indices_and_cost_about_their_information(train_digits, test_digits):
    codebook = train_codebook(train_digits, 16, iterations=5)
    indices = codebook.assign(test_digits)
    strings = codebook.encode(indices)
    np.testing.assert_array_equal(codebook.decode(strings), indices)
    point = measure_codebook(codebook, test_digits)
    expected = np.mean(codebook.tables.precision - np.log2(codebook.tables.counts[0, indices]))
    assert point.info_bits == pytest.approx(expected)
    assert abs(point.string_bits - point.info_bits) < 2.0
    decoded = codebook.codewords[indices]
    assert point.psnr_db == pytest.approx(metrics.mean_psnr(test_digits, decoded))


def test_more_codewords_cost_more_bits_and_give_more_psnr(train_digits, test_digits):
    small, large = measure_codebooks(train_digits, test_digits, sizes=(4, 64), iterations=5)
    assert small.codewords == 4 and large.codewords == 64
    assert small.info_bits < large.info_bits <= 6.0 + 1.0
    assert small.psnr_db < large.psnr_db


def test_the_same_seed_gives_the_same_codebook(train_digits):
    a = train_codebook(train_digits, 8, iterations=3, seed=1)
    b = train_codebook(train_digits, 8, iterations=3, seed=1)
    np.testing.assert_array_equal(a.codewords, b.codewords)


@pytest.mark.parametrize("size", [1, 401, 5000])
def test_impossible_sizes_are_refused(train_digits, size):
    with pytest.raises(InputError, match="codewords"):
        train_codebook(train_digits, size)


def test_digits_of_another_size_are_refused(train_digits):
    codebook = train_codebook(train_digits, 4, iterations=2)
    with pytest.raises(InputError):
        codebook.assign(np.zeros((3, 32, 32), dtype=np.uint8))
