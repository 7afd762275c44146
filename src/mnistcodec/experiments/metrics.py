"""Distortion metrics on 8-bit digits.

All functions take the original and the decoded digits as ``uint8`` arrays of
the same shape ``(..., H, W)`` (typically ``(N, 28, 28)``); the last two axes
are one image. Requiring ``uint8`` on both sides keeps the scale unambiguous:
a float array in [0, 1] passed by mistake would otherwise give a PSNR that is
off by 48 dB without any error.

Definitions (pixel values ``a`` and ``b`` on the 0..255 scale, ``P`` pixels
per image):

- ``MSE_i = (1/P) * sum_p (a_ip - b_ip)^2`` (per image ``i``)
- ``PSNR_i = 10 * log10(255^2 / max(MSE_i, MSE_FLOOR))`` dB
- ``psnr_of_mean_mse = 10 * log10(255^2 / max(mean_i MSE_i, MSE_FLOOR))`` dB
- ``MAD = mean_{i,p} |a_ip - b_ip| / 255`` (the seed's distortion, [0, 1] scale)

Identical images have ``MSE = 0`` and an infinite PSNR, which breaks means
and plots. The MSE is therefore floored at ``MSE_FLOOR = 255^2 * 10^(-PSNR_MAX/10)``
so that identical images score exactly ``PSNR_MAX = 100`` dB. Any real
difference scores far below that: one pixel off by one level in a 28x28
digit gives ``MSE = 1/784`` and a PSNR of 77.1 dB, so 100 dB unambiguously
means "lossless". The mean of per-image PSNRs (the figure the seed reports)
is therefore bounded and finite.
"""

from __future__ import annotations

import math

import numpy as np

from mnistcodec.errors import InputError
from mnistcodec.storage.digits import check_digits

PEAK = 255.0
"""Peak signal value of 8-bit images."""

PSNR_MAX = 100.0
"""PSNR (dB) reported for identical images (see the module docstring)."""

MSE_FLOOR = PEAK**2 * 10.0 ** (-PSNR_MAX / 10.0)
"""Smallest MSE used in a PSNR: ``255^2 * 1e-10`` (about 6.5e-6)."""


def _check_images(name: str, images: np.ndarray) -> np.ndarray:
    """``images`` ``(..., H, W)`` as an array, validated as digits by :func:`check_digits`.

    The leading axes are flattened for the check only: ``(H, W)`` is one
    image, ``(N, H, W)`` a batch, ``(A, B, H, W)`` a batch of ``A * B``.
    """
    images = np.asarray(images)
    if images.ndim < 2:
        raise InputError(
            f"{name} images must have at least 2 dimensions (H, W), got shape {images.shape}"
        )
    batch = images.reshape(math.prod(images.shape[:-2]), *images.shape[-2:])
    try:
        check_digits(batch, shape=None, allow_empty=False, allow_single=False)
    except InputError as exc:
        raise InputError(f"{name} images: {exc}") from None
    return images


def _check_pair(original: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays validated (:func:`_check_images`), and of the same shape."""
    original = _check_images("original", original)
    decoded = _check_images("decoded", decoded)
    if original.shape != decoded.shape:
        raise InputError(
            f"original and decoded images differ in shape: {original.shape} vs {decoded.shape}"
        )
    return original, decoded


def mse_per_image(original_uint8: np.ndarray, decoded_uint8: np.ndarray) -> np.ndarray:
    """Mean squared error per image on the 0..255 scale.

    ``MSE_i = (1/P) * sum_p (a_ip - b_ip)^2`` over the last two axes.
    Returns float64 with shape ``original.shape[:-2]``.
    """
    a, b = _check_pair(original_uint8, decoded_uint8)
    diff = a.astype(np.float64) - b.astype(np.float64)
    return np.mean(diff * diff, axis=(-2, -1))


def _psnr_from_mse(mse: np.ndarray | float) -> np.ndarray:
    return 10.0 * np.log10(PEAK**2 / np.maximum(mse, MSE_FLOOR))


def psnr_per_image(original_uint8: np.ndarray, decoded_uint8: np.ndarray) -> np.ndarray:
    """PSNR in dB of each image (peak 255).

    ``PSNR_i = 10 * log10(255^2 / max(MSE_i, MSE_FLOOR))``; identical images
    give exactly :data:`PSNR_MAX` (100 dB) instead of infinity.
    Input ``(N, H, W)`` uint8 arrays; returns float64 of shape ``(N,)``
    (generally ``original.shape[:-2]``).
    """
    return _psnr_from_mse(mse_per_image(original_uint8, decoded_uint8))


def mean_psnr(original_uint8: np.ndarray, decoded_uint8: np.ndarray) -> float:
    """Mean of the per-image PSNRs in dB (the seed's reported PSNR)."""
    return float(np.mean(psnr_per_image(original_uint8, decoded_uint8)))


def psnr_of_mean_mse(original_uint8: np.ndarray, decoded_uint8: np.ndarray) -> float:
    """PSNR in dB of the MSE averaged over all images (equivalently over all pixels).

    ``10 * log10(255^2 / max(mean_i MSE_i, MSE_FLOOR))``. Lower than or equal
    to the mean of per-image PSNRs (Jensen), and dominated by the worst digits.
    """
    mse = mse_per_image(original_uint8, decoded_uint8)
    return float(_psnr_from_mse(float(np.mean(mse))))


def mad(original_uint8: np.ndarray, decoded_uint8: np.ndarray) -> float:
    """Mean absolute difference on the [0, 1] scale: ``mean |a - b| / 255``.

    This is the seed's training distortion (pixels scaled to [0, 1]) computed
    on the 8-bit decoded output, averaged over all pixels of all images.
    """
    a, b = _check_pair(original_uint8, decoded_uint8)
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16))) / PEAK)
