"""Encoder-side search among training latents: never a worse Lagrangian, files the unchanged decoder reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import parse_header
from mnistcodec.coding.zoo import resolve_model
from mnistcodec.data import load_split
from mnistcodec.errors import InputError

DIGITS = 120
CANDIDATES = 256


@pytest.fixture(scope="module")
def shipped():
    return resolve_model("vr-mse")


@pytest.fixture(scope="module")
def train_digits():
    return load_split("train").images[:3000].copy()


def lagrangians(codec: Codec, images: np.ndarray, k: np.ndarray, bits: np.ndarray, level: int):
    """Each digit's ``I(k) + lambda D`` with ``D`` the squared error of its decoded uint8 digit."""
    decoded = codec.synthesise(k, level).astype(np.float64) / 255.0
    error = decoded - images.astype(np.float64) / 255.0
    return bits + codec.lambdas[level] * (error**2).reshape(len(images), -1).mean(axis=1)


@pytest.mark.parametrize("level", [1, 3])
def test_the_search_never_worsens_a_digit_and_finds_better_latents(
    shipped, train_digits, test_digits, level
):
    images = test_digits[:DIGITS]
    plain = Codec(shipped, precision="fp32")
    searched = Codec(shipped, precision="fp32")
    searched.enable_search(train_digits, CANDIDATES)
    k0, bits0 = plain.analyse(images, level)
    k1, bits1 = searched.analyse(images, level)
    before = lagrangians(plain, images, k0, bits0, level)
    after = lagrangians(plain, images, k1, bits1, level)
    assert np.all(after <= before + 1e-4)
    assert after.mean() < before.mean() and np.any(k1 != k0)
    # The reported bits are the information content of the latents sent.
    levels = np.full(DIGITS, level)
    y = plain.quantiser.dequantise(
        torch.from_numpy(k1.astype(np.float32)), torch.from_numpy(levels)
    )
    _, recomputed = plain.quantise(y, levels)
    np.testing.assert_allclose(bits1, recomputed, atol=1e-4)


def test_candidates_are_the_most_frequent_training_latents(shipped, train_digits):
    codec = Codec(shipped, precision="fp32")
    search = codec.enable_search(train_digits, 32)
    candidates = search.level(2)
    levels = np.full(len(train_digits), 2)
    k, bits = codec.quantise(codec.latents(train_digits), levels)
    unique, counts = np.unique(k, axis=0, return_counts=True)
    frequency = {tuple(row): n for row, n in zip(unique.tolist(), counts.tolist(), strict=True)}
    chosen = [frequency[tuple(row)] for row in candidates.k.tolist()]
    assert chosen == sorted(chosen, reverse=True) and len(chosen) == 32
    assert min(chosen) >= sorted(counts.tolist(), reverse=True)[31]
    row = np.flatnonzero((k == candidates.k[0]).all(axis=1))[0]
    assert candidates.bits[0] == pytest.approx(bits[row])
    pixels = codec.synthesise(candidates.k, np.full(32, 2)).reshape(32, -1) / 255.0
    np.testing.assert_allclose(candidates.pixels.numpy(), pixels, atol=1e-6)


def test_searched_files_decode_with_the_unchanged_decoder(shipped, train_digits, test_digits):
    images = test_digits[:DIGITS]
    searched = Codec(shipped, precision="fp32")
    searched.enable_search(train_digits, CANDIDATES)
    strings, _ = searched.compress(images, 2)
    k, _ = searched.analyse(images, 2)
    plain = Codec(shipped, precision="fp32")
    assert np.array_equal(plain.decode_latents(strings, levels=2), k)
    decoded = plain.decompress(strings, levels=2)
    assert np.array_equal(decoded, plain.synthesise(k, 2))
    assert not np.array_equal(decoded, plain.reconstruct(images, 2))


def test_a_fixed_rate_model_can_search_too(tiny_model, train_digits, test_digits):
    images = test_digits[:DIGITS]
    plain = Codec(tiny_model, precision="fp32")
    searched = Codec(tiny_model, precision="fp32")
    searched.enable_search(train_digits, CANDIDATES)
    k0, bits0 = plain.analyse(images)
    k1, bits1 = searched.analyse(images)

    # The tiny model's distortion is the lab's (MAD): the search uses it.
    def cost(k, bits):
        decoded = plain.synthesise(k).astype(np.float64) / 255.0
        mad = np.abs(decoded - images / 255.0).reshape(len(images), -1).mean(axis=1)
        return bits + plain.lambdas[0] * mad

    assert np.all(cost(k1, bits1) <= cost(k0, bits0) + 1e-4)
    strings, _ = searched.compress(images)
    assert np.array_equal(plain.decompress(strings), plain.synthesise(k1))


@pytest.mark.parametrize("candidates", [0, -1, 10**6, 2.5])
def test_the_number_of_candidates_is_checked(shipped, train_digits, candidates):
    with pytest.raises(InputError, match="candidates"):
        Codec(shipped).enable_search(train_digits, candidates)


def test_compress_search_through_the_cli(tmp_path, capsys):
    out = tmp_path / "searched.mnc"
    args = ["compress", "--split", "test", "--index", "0:40", "--level", "2", "--search", "128"]
    assert main([*args, "-o", str(out)]) == 0
    assert "compressed 40 digits" in capsys.readouterr().out
    assert parse_header(out.read_bytes()).count == 40
    assert main(["decompress", str(out), "-o", str(tmp_path / "digits.png")]) == 0
    bad = ["compress", "--split", "test", "--search", "-3", "-o", str(tmp_path / "x.mnc")]
    assert main(bad) == 2 and "must be from 0" in capsys.readouterr().err


def test_rate_control_codes_the_searched_latents(shipped, train_digits, test_digits):
    from mnistcodec.coding.rate_control import RateTarget, choose_levels

    digits = test_digits[:40]
    searched = Codec(shipped, precision="fp32")
    searched.enable_search(train_digits, CANDIDATES)
    choice = choose_levels(searched, digits, RateTarget(psnr=16.0))
    for level in np.unique(choice.levels).tolist():
        rows = np.flatnonzero(choice.levels == level)
        k, _ = searched.analyse(digits[rows], level)
        strings = [choice.strings[i] for i in rows]
        assert np.array_equal(searched.decode_latents(strings, levels=level), k)
