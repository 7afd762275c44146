"""Entropy coding under a mixture prior: a component index, then the latents under it.

A mixture model (``components = C > 1``, :class:`~mnistcodec.model.variable_rate.MixtureBottleneck`)
freezes, per level, one table of ``C x D`` rows (row ``c D + i`` is latent
dimension ``i`` under component ``c``, all rows of one common width) and one
shared single-row table of the ``C`` component weights. A digit is coded as

1. its component ``c``, one symbol with the component table;
2. its ``D`` latents with rows ``c D .. c D + D - 1``, escapes as in
   :mod:`mnistcodec.coding.range_coder`;
3. the overflow values of the escaped latents, in dimension order.

The encoder chooses ``c`` as the component whose integer tables give the
fewest bits, ``-log2 w_c - sum_i log2 P_c(k_i)`` (overflow codes included;
ties go to the smaller index), summed in float64 (:meth:`MixtureCoder.exact_bits`).
Any choice decodes: the decoder reads ``c`` before anything else.

Searching all ``C`` components fast, with the same answer. Per latent
dimension ``i``, one integer table holds, for every value ``k`` in the union
of the components' windows, the bits of ``k`` under each component in fixed
point, ``q = round(2**S bits)`` (escape and overflow code where ``k`` is
outside component ``c``'s window; values outside every window cost every
component its escape and the same overflow code, which is left out). A
digit's ``C`` costs are then ``D`` rows summed (exact integer sums), and the
cheapest is found by one ``argmin``. Each rounded term is within ``1/2`` of
``2**S`` times its float64 value, so two components' integer costs differ
from ``2**S`` times their float64 costs' difference by at most ``D + 1``;
where the best two integer costs are more than :attr:`MixtureCoder.margin`
``= D + 2`` apart, the float64 search picks the same component (its own
rounding is below ``1e-9`` bits). The few digits closer than that are decided
by the float64 search itself, so the choice is that search's, digit for digit. The decoded component symbol must be a component (the
table's escape column is never coded). Stream mode codes, digit after digit,
the component and latents of each, then all overflow values. Strings are
shortened and checked exactly as in :mod:`mnistcodec.coding.range_coder`;
``docs/mnc-format.md`` states the rules.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mnistcodec.coding import lane_coder
from mnistcodec.coding.range_coder import (
    _OVERFLOW_EXPONENTS,
    DecodeError,
    LatentCoder,
    Symbols,
    _flatten_in_order,
    _overflow_bits,
    _overflow_exponent,
)
from mnistcodec.coding.tables import CodingTables
from mnistcodec.errors import ModelFileError

#: Fixed-point scale of the integer component search: costs in units of ``2**-12`` bits.
CHOICE_SCALE_BITS = 12
#: Largest integer search table (entries); a model whose windows spread wider uses float64 alone.
MAX_CHOICE_ENTRIES = 1 << 24
#: float32 holds every integer below this exactly: a search table whose ``D``-term sums stay
#: below it is summed in float32, others in float64.
FLOAT32_EXACT = 1 << 24


class MixtureCoder(LatentCoder):
    """Codes integer latents (N, D) as a component symbol then the latents under it.

    :class:`Symbols` of this coder have ``D + 1`` columns: the component, then
    the latents' table columns in the chosen component's rows.
    """

    def __init__(self, tables: CodingTables, components: CodingTables) -> None:
        count = components.width
        if components.latent_dims != 1 or count < 2 or tables.latent_dims % count:
            raise ModelFileError(
                f"mixture tables do not fit: {tables.latent_dims} rows for {count} components"
            )
        super().__init__(tables)
        self.components = components
        self.count = count
        self.dims = tables.latent_dims // count
        self._component_probs = np.ascontiguousarray(components.probabilities()[:1])
        self._component_bits = components.symbol_bits()[0]
        self._lower_by_component = self._lower.reshape(count, self.dims)
        # Each row's symbol bits end to end, and where row (c, i) starts: one gather per latent.
        self._flat_bits = np.ascontiguousarray(self._bits).reshape(-1)
        self._row_starts = (np.arange(tables.latent_dims) * (tables.width + 1)).reshape(count, -1)
        #: How far apart (in ``2**-S`` bits) the best two integer costs must be to decide alone.
        self.margin = self.dims + 2
        self._choice = self._choice_tables()

    @property
    def symbol_dims(self) -> int:
        return self.dims + 1

    def _rows(self, component: int) -> slice:
        return slice(component * self.dims, (component + 1) * self.dims)

    def component_of(self, k: np.ndarray) -> tuple[int, float]:
        """The component the encoder chooses for one digit's latents ``k`` (D,), and its bits."""
        component = int(self.to_symbols(np.asarray(k)[None]).indices[0, 0])
        return component, float(self._component_bits[component])

    def min_digit_bits(self) -> float:
        """The fewest bits any digit costs: the cheapest component with its most probable latents."""
        per_component = self._bits.min(axis=1).reshape(self.count, self.dims).sum(axis=1)
        return float((per_component + self._component_bits[:-1]).min())

    def rows(self, component: int | None) -> np.ndarray:
        return np.arange(self.dims) + int(component or 0) * self.dims

    # -- choosing the component -----------------------------------------------------------

    def _choice_tables(self) -> tuple[torch.Tensor, np.ndarray, np.ndarray, int] | None:
        """The integer search tables: ``(table (D R, C), low (D,), component costs (C,), R)``.

        Row ``i R + r`` of ``table`` is value ``k = low_i + r - 1`` of dimension ``i``
        for ``1 <= r <= R - 2``; rows ``0`` and ``R - 1`` stand for every value
        below and above the union of the windows (escape bits only). The table holds
        the integers as float32 where every sum of ``D`` of them stays below
        :data:`FLOAT32_EXACT` (float64 otherwise), so that its sums are exact; it is
        C-contiguous, each value's ``C`` costs in one row.
        """
        width, scale = self.tables.width, float(1 << CHOICE_SCALE_BITS)
        low = self._lower_by_component.min(axis=0)
        span = int((self._lower_by_component.max(axis=0) - low).max()) + width
        rows = span + 2
        if self.dims * rows * self.count > MAX_CHOICE_ENTRIES:
            return None
        values = low[:, None] + np.arange(rows)[None, :] - 1  # (D, R)
        bits = self._bits.reshape(self.count, self.dims, width + 1)
        escape = bits[:, :, width]  # (C, D)
        rel = values[None, :, :] - self._lower_by_component[:, :, None]  # (C, D, R)
        inside = (rel >= 0) & (rel < width)
        cost = np.take_along_axis(bits, np.where(inside, rel, width), axis=2)
        outside_all = ~inside.any(axis=0)  # (D, R): every component escapes
        outside_all[:, 0] = outside_all[:, -1] = True
        overflow = np.vectorize(lambda v: _overflow_bits(int(v)), otypes=[np.float64])(values)
        cost = np.where(inside, cost, escape[:, :, None] + np.where(outside_all, 0.0, overflow))
        table = np.rint(cost * scale).transpose(1, 2, 0).reshape(-1, self.count)
        if table.max() * self.dims >= 1 << 53:  # pragma: no cover - beyond exact float64 sums
            return None
        component = np.rint(self._component_bits[:-1] * scale).astype(np.int64)
        exact = np.float32 if table.max() * self.dims < FLOAT32_EXACT else np.float64
        return torch.from_numpy(np.ascontiguousarray(table, dtype=exact)), low, component, rows

    def exact_bits(self, k: np.ndarray) -> np.ndarray:
        """Each component's bits for each digit (N, C), float64: what the choice minimises."""
        return self._columns(np.asarray(k))[1]

    def choose(self, k: np.ndarray) -> np.ndarray:
        """Each digit's component (N,): the float64 search's argmin, found by the integer search."""
        k = np.asarray(k)
        if self._choice is None or k.shape[0] == 0:
            return np.argmin(self.exact_bits(k), axis=1)
        table, low, component, rows = self._choice
        clipped = np.clip(k, -(1 << 40), 1 << 40).astype(np.int64)
        index = np.clip(clipped - low[None, :] + 1, 0, rows - 1)
        index += np.arange(self.dims)[None, :] * rows
        # Each digit's D rows summed, exactly (:meth:`_choice_tables`), without an (N, D, C)
        # gather: 0.08 µs per digit against 0.78 for D NumPy row gathers summed in int32.
        total = F.embedding_bag(torch.from_numpy(index), table, mode="sum").numpy()
        cost = total.astype(np.int64) + component[None, :]  # (N, C)
        chosen = np.argmin(cost, axis=1)
        if self.count > 1:
            best_two = np.partition(cost, 1, axis=1)
            close = np.flatnonzero(best_two[:, 1] - best_two[:, 0] <= self.margin)
            if close.size:
                chosen[close] = np.argmin(self.exact_bits(k[close]), axis=1)
        return chosen

    # -- symbols <-> integer latents ------------------------------------------------------

    def _columns(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Table columns of ``k`` under every component, (N, C, D), and each choice's bits (N, C)."""
        width = self.tables.width
        # Integers beyond any table window stay beyond it when clipped, so int64 arithmetic serves.
        clipped = np.clip(k, -(1 << 40), 1 << 40).astype(np.int64)
        rel = clipped[:, None, :] - self._lower_by_component[None, :, :]
        inside = rel.astype(np.uint64) < width  # 0 <= rel < width
        columns = np.where(inside, rel, width)
        bits = np.take(self._flat_bits, columns + self._row_starts).sum(axis=2)
        bits += self._component_bits[None, :-1]
        if not inside.all():
            outside = np.nonzero(~inside)
            values = np.broadcast_to(k[:, None, :], inside.shape)[outside]
            extra = np.zeros(inside.shape)
            extra[outside] = [_overflow_bits(int(v)) for v in values.tolist()]
            bits = bits + extra.sum(axis=2)
        return columns, bits

    def to_symbols(self, k: np.ndarray) -> Symbols:
        """Integer latents (N, D) -> :class:`Symbols` under each digit's cheapest component."""
        k = np.asarray(k)
        chosen = self.choose(k)
        clipped = np.clip(k, -(1 << 40), 1 << 40).astype(np.int64)
        rel = clipped - self._lower_by_component[chosen]
        inside = rel.astype(np.uint64) < self.tables.width  # 0 <= rel < width
        picked = np.where(inside, rel, self.tables.escape)
        indices = np.concatenate([chosen[:, None], picked], axis=1).astype(np.int32)
        overflow: list[list[int]] = [[] for _ in range(k.shape[0])]
        for row, col in zip(*np.nonzero(picked == self.tables.escape), strict=True):
            overflow[row].append(int(k[row, col]))
        return Symbols(indices, overflow)

    def from_symbols(self, symbols: Symbols) -> np.ndarray:
        """:class:`Symbols` -> integer latents as float64 (N, D)."""
        chosen = symbols.indices[:, 0].astype(np.int64)
        latent = symbols.indices[:, 1:]
        k = (latent.astype(np.int64) + self._lower_by_component[chosen]).astype(np.float64)
        escape = latent == self.tables.escape
        if np.any(escape.sum(axis=1) != [len(values) for values in symbols.overflow]):
            raise DecodeError("overflow values do not match the escape symbols")
        escaped = np.nonzero(escape)
        values = _flatten_in_order(symbols, escaped)
        if values:
            k[escaped] = [float(value) for value in values]
        return k

    def table_bits(self, symbols: Symbols) -> np.ndarray:
        """Ideal bits per digit under the integer tables: component, latents and overflow codes."""
        chosen = symbols.indices[:, 0].astype(np.int64)
        rows = chosen[:, None] * self.dims + np.arange(self.dims)[None, :]
        bits = self._bits[rows, symbols.indices[:, 1:]].sum(axis=1) + self._component_bits[chosen]
        extra = [sum(_overflow_bits(v) for v in values) for values in symbols.overflow]
        return bits + np.asarray(extra, dtype=np.float64)

    # -- many digits at once --------------------------------------------------------------

    def _lane_tables(self) -> lane_coder.LaneTables:
        """The ``C x D`` latent rows, then the component row (row ``C D``)."""
        if self._lanes is None:
            width = max(self.tables.width, self.count) + 2
            latent = lane_coder.cumulative_table(self.tables.counts, self.tables.precision, width)
            component = lane_coder.cumulative_table(
                self.components.counts[:1], self.components.precision, width
            )
            self._lanes = lane_coder.LaneTables(np.concatenate([latent, component]))
        return self._lanes

    def _lane_rows(self, first: np.ndarray | None, count: int) -> np.ndarray:
        """Rows ``c D + i`` of each digit's latents under its component ``c``."""
        return first.astype(np.int64)[:, None] * self.dims + np.arange(self.dims)[None, :]

    def _lane_encode(self, indices: np.ndarray) -> list[bytes | None]:
        count = indices.shape[0]
        rows = np.empty(indices.shape, dtype=np.int64)
        rows[:, 0] = self.count * self.dims
        rows[:, 1:] = self._lane_rows(indices[:, 0], count)
        return lane_coder.encode_bit_strings(self._lane_tables(), rows, indices)

    def _lane_decode(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols, first, valid = lane_coder.decode_symbols(
            self._lane_tables(),
            words,
            self.dims,
            lambda first: self._lane_rows(first, len(first)),
            first_row=self.count * self.dims,
            first_escape=self.count,
        )
        indices = np.concatenate([first[:, None].astype(np.int32), cols], axis=1)
        return indices, valid & ~(cols == self.tables.escape).any(axis=1)

    # -- low-level coding ------------------------------------------------------------------

    def _encode_symbols(self, encoder, indices: np.ndarray) -> None:
        component = int(indices[0])
        encoder.encode(indices[:1], self._family, self._component_probs)
        encoder.encode(indices[1:], self._family, self._probs[self._rows(component)])

    def _decode_symbols(self, decoder) -> np.ndarray:
        component = int(decoder.decode(self._family, self._component_probs)[0])
        if component >= self.count:
            raise DecodeError(f"component symbol {component} is not one of {self.count} components")
        latent = decoder.decode(self._family, self._probs[self._rows(component)])
        return np.concatenate([[component], latent]).astype(np.int32)

    def _escapes(self, indices: np.ndarray) -> int:
        return int(np.count_nonzero(indices[1:] == self._escape))

    def _exact_eighths(self, indices: np.ndarray, overflow: list[int]) -> int:
        """``floor(I / 8)`` in integers, as the base class, with the component's count."""
        component = int(indices[0])
        product = int(self.components.counts[0, component])
        for count in self.tables.counts[self._rows(component), :][
            np.arange(self.dims), indices[1:]
        ].tolist():
            product *= count
        exponents = sum(_overflow_exponent(value) for value in overflow)
        numerator = 1 << (self.tables.precision * (self.dims + 1) + exponents)
        ratio = numerator * _OVERFLOW_EXPONENTS ** len(overflow) // product
        return (ratio.bit_length() - 1) // 8

    # -- stream mode: each digit's component and latents in turn ------------------------

    def _encode_block(self, encoder, indices: np.ndarray) -> None:
        for row in indices:
            self._encode_symbols(encoder, row)

    def _decode_block(self, decoder, count: int) -> np.ndarray:
        indices = np.empty((count, self.symbol_dims), dtype=np.int32)
        for row in range(count):
            indices[row] = self._decode_symbols(decoder)
        return indices
