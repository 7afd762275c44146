from __future__ import annotations

import math

import numpy as np
import pytest

from mnistcodec.errors import InputError, MnistCodecError
from mnistcodec.experiments.metrics import (
    MSE_FLOOR,
    PSNR_MAX,
    mad,
    mean_psnr,
    mse_per_image,
    psnr_of_mean_mse,
    psnr_per_image,
)


def _digits(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def test_identical_images_give_documented_cap():
    x = _digits()
    psnr = psnr_per_image(x, x.copy())
    assert psnr.dtype == np.float64
    assert psnr.shape == (3,)
    assert np.all(psnr == PSNR_MAX)
    assert PSNR_MAX == 100.0
    assert math.isclose(10 * math.log10(255.0**2 / MSE_FLOOR), 100.0)
    assert psnr_of_mean_mse(x, x) == PSNR_MAX
    assert mad(x, x) == 0.0


def test_one_pixel_off_by_one():
    a = np.zeros((1, 28, 28), np.uint8)
    b = a.copy()
    b[0, 3, 4] = 1
    expected = 10 * math.log10(255.0**2 * 784)  # MSE = 1/784
    assert psnr_per_image(a, b)[0] == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(77.0740, abs=1e-4)
    assert mad(a, b) == pytest.approx(1 / 784 / 255)


def test_black_vs_white_is_zero_db_and_mad_one():
    a = np.zeros((2, 28, 28), np.uint8)
    b = np.full((2, 28, 28), 255, np.uint8)
    assert np.allclose(psnr_per_image(a, b), 0.0)
    assert mad(a, b) == 1.0


def test_constant_difference():
    a = np.full((1, 28, 28), 100, np.uint8)
    b = np.full((1, 28, 28), 116, np.uint8)
    assert mse_per_image(a, b)[0] == 256.0
    assert psnr_per_image(a, b)[0] == pytest.approx(20 * math.log10(255 / 16))
    assert psnr_per_image(b, a)[0] == pytest.approx(20 * math.log10(255 / 16))  # symmetric
    assert mad(a, b) == pytest.approx(16 / 255)


def test_mean_of_psnrs_vs_psnr_of_mean_mse():
    a = np.full((2, 28, 28), 50, np.uint8)
    b = a.copy()
    b[0] += 1  # MSE 1
    b[1] += 10  # MSE 100
    per = psnr_per_image(a, b)
    assert per == pytest.approx([10 * math.log10(65025), 10 * math.log10(650.25)])
    assert mean_psnr(a, b) == pytest.approx(np.mean(per))
    assert psnr_of_mean_mse(a, b) == pytest.approx(10 * math.log10(65025 / 50.5))
    assert psnr_of_mean_mse(a, b) < mean_psnr(a, b)
    assert mad(a, b) == pytest.approx(5.5 / 255)


def test_no_uint8_wraparound():
    a = np.array([[[0, 255]]], np.uint8)
    b = np.array([[[255, 0]]], np.uint8)
    assert mad(a, b) == 1.0
    assert mse_per_image(a, b)[0] == 255.0**2


def test_leading_axes_are_kept():
    x = _digits(6).reshape(2, 3, 28, 28)
    y = x ^ 1
    assert psnr_per_image(x, y).shape == (2, 3)


@pytest.mark.parametrize(
    "a, b",
    [
        (np.zeros((2, 28, 28), np.float32), np.zeros((2, 28, 28), np.float32)),
        (np.zeros((2, 28, 28), np.uint8), np.zeros((2, 28, 28), np.float64)),
        (np.zeros((2, 28, 28), np.uint8), np.zeros((3, 28, 28), np.uint8)),
        (np.zeros((0, 28, 28), np.uint8), np.zeros((0, 28, 28), np.uint8)),
        (np.zeros(5, np.uint8), np.zeros(5, np.uint8)),
    ],
)
def test_bad_inputs_are_input_errors(a, b):
    for fn in (psnr_per_image, psnr_of_mean_mse, mad):
        with pytest.raises(InputError):
            fn(a, b)
    assert issubclass(InputError, MnistCodecError)


def test_errors_name_the_bad_array_and_the_fix():
    good = _digits()
    with pytest.raises(InputError, match=r"decoded images: .*uint8.*np\.clip"):
        mad(good, good.astype(np.float32) / 255)
    with pytest.raises(InputError, match=r"original images: no digits"):
        psnr_per_image(good[:0], good[:0])
    with pytest.raises(InputError, match=r"differ in shape: \(3, 28, 28\) vs \(2, 28, 28\)"):
        mse_per_image(good, good[:2])


def test_single_images_and_other_sizes_are_accepted():
    a = np.zeros((28, 28), np.uint8)
    assert psnr_per_image(a, a + 16).shape == ()
    b = np.zeros((4, 10, 12), np.uint8)
    assert mse_per_image(b, b + 2).tolist() == [4.0] * 4
