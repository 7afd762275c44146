"""Pixel codebooks: whole digits quantised to one of K learned codewords, the index entropy coded.

A reference codec for the low rates, where one digit at a time is coded in a
handful of bits and vector quantisation of the whole digit is hard to beat:

* **Training** (:func:`train_codebook`): K-means on the training digits,
  pixels on [0, 1], squared error; the K codewords start as K distinct
  training digits drawn with ``seed`` and take ``iterations`` Lloyd steps
  (assign every digit to its nearest codeword, move each codeword to the mean
  of its digits; a codeword left without digits stays where it is). The
  codewords are then rounded to ``uint8``, what a decoder outputs.
* **Coding**: a digit is sent as the index ``i`` of its nearest ``uint8``
  codeword, ``argmin_i ||x - c_i||^2``. The index is range coded with one
  integer table (:class:`~mnistcodec.coding.tables.CodingTables`, one row of
  K counts and an escape of mass 0) that quantises the training frequencies
  ``n_i / N``, every count at least 1 (a codeword no training digit chose
  stays codable). Its information content is ``-log2(count_i / 2^16)``; the
  real per-digit bit strings come from the same range coder as every
  ``.mnc`` string (:class:`~mnistcodec.coding.range_coder.LatentCoder`) and
  are decoded back to check them.

Decoding is a table lookup of ``uint8`` pixels, so it is exact on every
machine. The codebook costs ``784 K`` bytes: 3.2 MB for 4,096 codewords. Its
rate grows as ``log2 K``, so it serves the low rates only: past about 12 bits
a codebook would need more codewords than there are training digits.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from mnistcodec.coding.codebook_levels import Codebook
from mnistcodec.coding.container import string_bits
from mnistcodec.coding.tables import DEFAULT_PRECISION, MAX_TABLE_WIDTH, CodingTables, quantize_pmf
from mnistcodec.errors import InputError
from mnistcodec.experiments import metrics
from mnistcodec.storage.digits import check_digits

#: The codebook sizes the benchmark measures (4 to 12 bits of index).
DEFAULT_SIZES = (16, 64, 256, 1024, 4096)
ITERATIONS = 25


_CHUNK = 8192


def flat_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 digits (N, H, W) -> float32 (N, H W) on [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).reshape(images.shape[0], -1).float() / 255


def nearest(x: torch.Tensor, centres: torch.Tensor) -> np.ndarray:
    """``argmin_i ||x_n - c_i||^2`` per row of ``x``, in chunks (float32 matrix products): the
    K-means assignment step (coding chooses a codeword exactly, by
    :meth:`~mnistcodec.coding.codebook_levels.Codebook.assign`)."""
    norms = (centres * centres).sum(dim=1)
    parts = [
        torch.argmin(norms[None, :] - 2.0 * x[i : i + _CHUNK] @ centres.T, dim=1)
        for i in range(0, x.shape[0], _CHUNK)
    ]
    return torch.cat(parts).numpy().astype(np.int64)


def train_codebook(
    train_images: np.ndarray,
    size: int,
    iterations: int = ITERATIONS,
    seed: int = 0,
    precision: int = DEFAULT_PRECISION,
) -> Codebook:
    """K-means codewords of the training digits and their index table (see the module)."""
    images = check_digits(train_images, shape=None, allow_empty=False, allow_single=False)
    n = images.shape[0]
    if not 2 <= size <= min(n, MAX_TABLE_WIDTH):
        raise InputError(
            f"a codebook needs 2 to {min(n, MAX_TABLE_WIDTH)} codewords here, got {size}"
        )
    if iterations < 1:
        raise InputError(f"iterations must be at least 1, got {iterations}")
    x = flat_unit(images)
    generator = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(n, generator=generator)[:size]].clone()
    for _ in range(iterations):
        assigned = torch.from_numpy(nearest(x, centres))
        sums = torch.zeros_like(centres).index_add_(0, assigned, x)
        counts = torch.bincount(assigned, minlength=size).to(x.dtype)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    codewords = np.clip(np.round(centres.numpy() * 255.0), 0, 255).astype(np.uint8)
    codewords = codewords.reshape(size, *images.shape[1:])
    chosen = nearest(x, flat_unit(codewords))
    frequencies = np.bincount(chosen, minlength=size).astype(np.float64) / n
    pmf = np.concatenate([frequencies, [0.0]])[None]  # the escape: mass 0, never coded
    tables = CodingTables(
        counts=quantize_pmf(pmf, precision),
        lower=np.zeros(1, dtype=np.int32),
        offsets=np.zeros(1, dtype=np.float32),
        precision=precision,
    ).validate()
    return Codebook(codewords, tables)


@dataclass(frozen=True)
class CodebookPoint:
    """One codebook measured on ``n`` test digits (rates in bits per digit)."""

    codewords: int
    info_bits: float
    string_bits: float
    psnr_db: float
    psnr_of_mean_mse_db: float
    mad: float
    n: int
    train_seconds: float

    def row(self) -> dict:
        return asdict(self)


def measure_codebook(codebook: Codebook, test_images: np.ndarray, seconds: float = 0.0):
    """Code ``test_images`` with ``codebook`` into real strings, decode them, and measure."""
    test = check_digits(test_images, shape=codebook.codewords.shape[1:], allow_empty=False)
    indices = codebook.assign(test)
    strings = codebook.encode(indices)
    if not np.array_equal(codebook.decode(strings), indices):
        raise AssertionError("codebook strings do not decode to their indices")
    decoded = codebook.codewords[indices]
    return CodebookPoint(
        codewords=codebook.size,
        info_bits=float(codebook.index_bits(indices).mean()),
        string_bits=float(np.mean([string_bits(s) for s in strings])),
        psnr_db=metrics.mean_psnr(test, decoded),
        psnr_of_mean_mse_db=metrics.psnr_of_mean_mse(test, decoded),
        mad=metrics.mad(test, decoded),
        n=int(test.shape[0]),
        train_seconds=round(float(seconds), 2),
    )


def measure_codebooks(
    train_images: np.ndarray,
    test_images: np.ndarray,
    sizes: Sequence[int] = DEFAULT_SIZES,
    iterations: int = ITERATIONS,
    seed: int = 0,
    log=None,
) -> list[CodebookPoint]:
    """Train one codebook per size on the training digits and measure it on the test digits."""
    points = []
    for size in sizes:
        t0 = time.perf_counter()
        codebook = train_codebook(train_images, size, iterations=iterations, seed=seed)
        point = measure_codebook(codebook, test_images, time.perf_counter() - t0)
        if log is not None:
            log(
                f"{size} codewords: {point.info_bits:.2f} bits ({point.string_bits:.2f} in strings), "
                f"{point.psnr_db:.2f} dB"
            )
        points.append(point)
    return points
