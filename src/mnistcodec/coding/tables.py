"""Freezing a prior into integer coding tables.

Done once, when a model is saved; the tables are stored in the model file and
used as stored by encoder and decoder, which never evaluate the prior in
floating point (the range coder's 24-bit models follow from the integer counts
by the rule of ``docs/mnc-format.md``, "The coded model"). For latent
dimension ``i`` with quantisation offset ``o_i``:

* the in-table symbols are the integers ``k`` in ``[lower_i, lower_i + K - 1]``
  (the quantised latent is ``y^ = k + o_i``); the window covers at least the
  central ``1 - tail_mass`` of the prior, and every row has the same width K;
* the probability of ``k`` is ``P_i(k) = F_i(k + o_i + 1/2) - F_i(k + o_i - 1/2)``,
  computed in float64, and the escape symbol (index ``K``) gets the mass left
  outside the window;
* these ``K + 1`` probabilities are quantised to integer counts summing to
  ``2**precision`` with every count at least 1 (largest-remainder rounding,
  ties broken by index), so any symbol, escape included, stays codable.

A latent outside the window is coded as the escape symbol followed by its
integer value through the overflow code of :mod:`mnistcodec.coding.range_coder`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from mnistcodec.errors import ModelFileError
from mnistcodec.model.priors import Prior

DEFAULT_PRECISION = 16
DEFAULT_TAIL_MASS = 2.0**-8
MAX_TABLE_WIDTH = 4096


@dataclass(frozen=True)
class CodingTables:
    """Integer tables for one model: ``counts`` (D, K+1), ``lower`` (D,), ``offsets`` (D,)."""

    counts: np.ndarray  # int32, each row sums to 2**precision, last column = escape
    lower: np.ndarray  # int32, symbol value of column 0 per row
    offsets: np.ndarray  # float32, quantisation offsets o_i
    precision: int

    @property
    def latent_dims(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def width(self) -> int:
        """Number of in-table values K (the escape is column K)."""
        return int(self.counts.shape[1] - 1)

    @property
    def escape(self) -> int:
        return self.width

    def probabilities(self) -> np.ndarray:
        """``counts / 2**precision`` as float64: exact dyadic rationals."""
        return self.counts.astype(np.float64) / float(1 << self.precision)

    def symbol_bits(self) -> np.ndarray:
        """``-log2(count / 2**precision)`` per table entry, shape (D, K+1)."""
        return self.precision - np.log2(self.counts.astype(np.float64))

    def validate(self) -> CodingTables:
        """Check shapes, dtypes and that every row is a valid quantised pmf."""
        c, lo, off = self.counts, self.lower, self.offsets
        if not (1 <= self.precision <= 24):
            raise ModelFileError(f"coding precision {self.precision} outside 1..24")
        if c.ndim != 2 or c.shape[1] < 2 or c.shape[1] > MAX_TABLE_WIDTH + 1:
            raise ModelFileError(f"coding table has invalid shape {c.shape}")
        if off.ndim != 1 or c.shape[0] != off.shape[0] or lo.shape != (c.shape[0],):
            raise ModelFileError("coding table offsets do not match the table")
        if c.min() < 1 or np.any(c.astype(np.int64).sum(axis=1) != (1 << self.precision)):
            raise ModelFileError("coding table rows are not valid quantised distributions")
        if not np.all(np.isfinite(off)):
            raise ModelFileError("coding table offsets are not finite")
        return self


def quantize_pmf(pmf: np.ndarray, precision: int) -> np.ndarray:
    """Integer counts >= 1 summing to ``2**precision`` per row, close to ``pmf``.

    Every entry first gets 1; the remaining ``2**precision - n`` counts are
    shared in proportion to ``pmf`` by the largest-remainder method.
    """
    pmf = np.clip(np.asarray(pmf, dtype=np.float64), 0.0, None)
    pmf = pmf / pmf.sum(axis=1, keepdims=True)
    rows, n = pmf.shape
    free = (1 << precision) - n
    if free < 0:
        raise ValueError(f"{n} symbols do not fit in {precision}-bit precision")
    scaled = pmf * free
    counts = np.floor(scaled).astype(np.int64)
    remainder = scaled - counts
    missing = free - counts.sum(axis=1)
    order = np.argsort(-remainder, axis=1, kind="stable")
    for r in range(rows):
        counts[r, order[r, : missing[r]]] += 1
    return (counts + 1).astype(np.int32)


def _windows(low_q: torch.Tensor, high_q: torch.Tensor, offsets: torch.Tensor, precision: int):
    """Common-width integer windows covering ``[low_q, high_q]`` per row."""
    lower = torch.floor(low_q - offsets).to(torch.int64)
    upper = torch.ceil(high_q - offsets).to(torch.int64)
    widths = upper - lower + 1
    width = int(min(max(int(widths.max()), 1), MAX_TABLE_WIDTH, (1 << precision) - 1))
    lower = lower - torch.div(width - widths.clamp(max=width), 2, rounding_mode="floor")
    grid = lower[:, None] + torch.arange(width, dtype=torch.int64)[None, :]
    return lower, grid


def _with_escape(pmf: torch.Tensor, precision: int) -> np.ndarray:
    escape = (1.0 - pmf.sum(dim=1, keepdim=True)).clamp_min(0.0)
    return quantize_pmf(torch.cat([pmf, escape], dim=1).numpy(), precision)


@torch.no_grad()
def build_tables(
    prior: Prior, precision: int = DEFAULT_PRECISION, tail_mass: float = DEFAULT_TAIL_MASS
) -> CodingTables:
    """Freeze ``prior`` into :class:`CodingTables` (float64 evaluation, done once)."""
    prior64 = copy.deepcopy(prior).to(device="cpu", dtype=torch.float64)
    dims = prior64.latent_dims
    offsets = prior64.quantization_offset().to(torch.float64).to(torch.float32).to(torch.float64)
    low_q = prior64.quantile(torch.full((dims,), tail_mass / 2, dtype=torch.float64))
    high_q = prior64.quantile(torch.full((dims,), 1 - tail_mass / 2, dtype=torch.float64))
    lower, grid = _windows(low_q, high_q, offsets, precision)
    values = grid.to(torch.float64) + offsets[:, None]
    pmf = prior64.prob(values.T.contiguous()).T
    return CodingTables(
        counts=_with_escape(pmf, precision),
        lower=lower.numpy().astype(np.int32),
        offsets=offsets.numpy().astype(np.float32),
        precision=precision,
    ).validate()


def build_weight_table(weights: torch.Tensor, precision: int = DEFAULT_PRECISION) -> CodingTables:
    """One row coding the index ``c`` of ``C`` weights ``w_c`` (a mixture's components).

    The counts quantise ``w`` (and an escape of mass 0, never coded) as
    :func:`quantize_pmf` does; ``lower = 0`` and the offset is 0.
    """
    pmf = torch.cat([weights.detach().double().cpu(), torch.zeros(1, dtype=torch.float64)])
    return CodingTables(
        counts=quantize_pmf(pmf[None].numpy(), precision),
        lower=np.zeros(1, dtype=np.int32),
        offsets=np.zeros(1, dtype=np.float32),
        precision=precision,
    ).validate()
