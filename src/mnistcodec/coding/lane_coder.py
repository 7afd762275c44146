"""Range coding of many per-digit strings at once: one digit per NumPy lane.

A batch of per-digit strings is ``N`` independent runs of the range coder of
``docs/mnc-format.md`` ("The range coder"), each over one digit's symbols. This
module runs them side by side: every step codes symbol ``j`` of all ``N``
digits with vector operations on ``uint64`` lanes, so the per-digit cost is a
few array operations per symbol instead of a Python call per digit.
:class:`~mnistcodec.coding.range_coder.LatentCoder` uses it for version-3 bit
strings and for decoding; the strings are byte for byte those of the scalar
coder built on constriction (``tests/test_lane_coder.py`` checks every shipped
model, the golden files and every exceptional case). What the lanes do not
handle is handed back, per digit, to the scalar coder:

* digits with an escaped latent (their overflow codes follow the symbols);
* strings longer than :data:`MAX_WORDS` words (random strings of ``sample``);
* decoding that meets invalid data or an escaped component;
* the rare final intervals whose shortest bit string needs more than the
  64-bit window arithmetic below (a point whose 64 low bits are all 0 and
  whose trailing zeros reach into the shifted words).

Encoder lane state, with the unbounded-integer coder of the spec: ``low`` is
``H * 2**64 + lo`` on a grid of ``G = 64 + 32 s`` bits, ``H`` being the ``s``
words already shifted out (kept with their pending carries in ``words``), and
``lo`` the 64-bit window. Coding ``(left, w)``: ``scale = range >> 24``,
``lo += scale * left`` (a product below ``2**64``; a wrap adds 1 to ``H``),
``range = scale * w``, and when ``range < 2**32`` the window's top word moves
to ``words`` (at most once per symbol, as ``range >= 2**8`` before the shift).
``low + range <= 2**G - 1`` holds throughout, so a carry never leaves ``H``.

Decoder lane state: ``diff = point - low`` and ``range``, both below ``2**64``
for valid data (``point`` lies in ``[low, low + range)``); a symbol is the
``s`` with ``left[s] <= diff // scale < left[s+1]``, and a shift brings in the
lane's next word: ``diff = diff * 2**32 + word``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Longest string (32-bit words) a lane decodes; longer ones go to the scalar coder.
MAX_WORDS = 64
#: Fewest digits worth lanes: each step costs a few array operations whatever the count,
#: about 1 ms per call, against some 10 microseconds per digit for the scalar coder.
MIN_DIGITS = 64
_MODEL_BITS = 24
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_U32 = np.uint64(32)
_U24 = np.uint64(_MODEL_BITS)
_WORD_MASK = np.uint64(0xFFFFFFFF)
_RANGE_START = np.uint64((1 << 64) - 1)
_ROW_STRIDE = 1 << 25  # row offset in the flattened search array (above 2**24)


def cumulative_table(counts: np.ndarray, precision: int, width: int) -> np.ndarray:
    """Each row's cumulative weights ``left`` (R, width) as uint64, padded with ``2**24``.

    Row ``r`` with ``n`` entries of counts ``c`` (prefix sums ``C``):
    ``left[j] = floor(C[j] (2**24 - n) / 2**precision) + j`` for ``j < n`` and
    ``2**24`` from ``j = n`` on (docs/mnc-format.md, "The coded model").
    """
    counts = np.asarray(counts, dtype=np.int64)
    rows, n = counts.shape
    if width < n + 1:
        raise ValueError(f"a table of {n} entries needs width {n + 1}, got {width}")
    prefix = np.zeros((rows, n), dtype=np.int64)
    np.cumsum(counts[:, :-1], axis=1, out=prefix[:, 1:])
    # prefix < 2**precision <= 2**24 and (2**24 - n) < 2**24: the product fits in int64.
    left = (prefix * ((1 << _MODEL_BITS) - n)) >> precision
    left += np.arange(n, dtype=np.int64)[None, :]
    table = np.full((rows, width), 1 << _MODEL_BITS, dtype=np.uint64)
    table[:, :n] = left
    return table


class LaneTables:
    """The cumulative weights of every row a coder uses, one search array over all of them."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = np.ascontiguousarray(table, dtype=np.uint64)
        rows, width = self.table.shape
        self.width = width
        self._flat = self.table.reshape(-1)
        offsets = (np.arange(rows, dtype=np.uint64) * np.uint64(_ROW_STRIDE))[:, None]
        self._search = (self.table + offsets).reshape(-1)

    def bounds(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(left, w)`` of symbol ``cols`` in rows ``rows`` (lane arrays)."""
        at = rows.astype(np.int64) * self.width + cols
        left = self._flat[at]
        return left, self._flat[at + 1] - left

    def find(self, rows: np.ndarray, quantile: np.ndarray) -> np.ndarray:
        """The column ``s`` of each lane's row with ``left[s] <= quantile < left[s + 1]``."""
        key = rows.astype(np.uint64) * np.uint64(_ROW_STRIDE) + quantile
        at = np.searchsorted(self._search, key, side="right").astype(np.int64) - 1
        return at - rows.astype(np.int64) * self.width


class LaneCoding:
    """What a coder (:class:`~mnistcodec.coding.range_coder.LatentCoder`) adds to code by lanes.

    It needs the coder's ``tables``, ``symbol_dims`` and ``_escape``; a
    mixture's coder overrides the rows (component first, then the latents'
    rows under it).
    """

    _lanes: LaneTables | None = None

    def _lane_tables(self) -> LaneTables:
        """Cumulative weights of the latent rows (a mixture adds its component row last)."""
        if self._lanes is None:
            width = self.tables.width + 2
            self._lanes = LaneTables(
                cumulative_table(self.tables.counts, self.tables.precision, width)
            )
        return self._lanes

    def _lane_rows(self, first: np.ndarray | None, count: int) -> np.ndarray:
        """The rows of each digit's table symbols (N, D): dimension ``i`` uses row ``i``."""
        dims = self.tables.latent_dims
        return np.broadcast_to(np.arange(dims, dtype=np.int64), (count, dims))

    def _lane_encode(self, indices: np.ndarray) -> list[bytes | None]:
        """Bit strings of digits without escapes, by lanes (``None``: the scalar coder's)."""
        rows = self._lane_rows(None, indices.shape[0])
        return encode_bit_strings(self._lane_tables(), rows, indices)

    def _lane_decode(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Symbols (N, D) decoded by lanes, and which lanes decoded without an exception."""
        cols, _, valid = decode_symbols(
            self._lane_tables(),
            words,
            self.symbol_dims,
            lambda _: self._lane_rows(None, len(words)),
        )
        return cols, valid & ~(cols == self._escape).any(axis=1)


# -- encoding --------------------------------------------------------------------------------


def encode_bit_strings(
    tables: LaneTables, rows: np.ndarray, cols: np.ndarray
) -> list[bytes | None]:
    """Version-3 bit strings of ``N`` digits: lane ``n`` codes ``cols[n, j]`` with row ``rows[n, j]``.

    ``None`` for a digit whose final interval the window arithmetic does not
    settle (see the module docstring): the caller codes it with the scalar coder.
    """
    count, steps = cols.shape
    if count == 0:
        return []
    words = np.zeros((count, steps + 2), dtype=np.uint64)
    shifted = np.zeros(count, dtype=np.int64)
    lo = np.zeros(count, dtype=np.uint64)
    rng = np.full(count, _RANGE_START, dtype=np.uint64)
    lanes = np.arange(count)
    with np.errstate(over="ignore"):
        for j in range(steps):
            left, width = tables.bounds(rows[:, j], cols[:, j])
            scale = rng >> _U24
            new = lo + scale * left
            carry = np.flatnonzero(new < lo)
            lo = new
            if carry.size:
                _carry_into_words(words, carry, shifted[carry] - 1)
            rng = scale * width
            shift = np.flatnonzero(rng < np.uint64(1 << 32))
            if shift.size:
                words[shift, shifted[shift]] = lo[shift] >> _U32
                lo[shift] <<= _U32
                rng[shift] <<= _U32
                shifted[shift] += 1
        return _bit_strings(words, shifted, lo, rng, lanes)


def _carry_into_words(words: np.ndarray, lanes: np.ndarray, at: np.ndarray) -> None:
    """Add 1 at word ``at`` of each lane, carrying upward (never past word 0: see above)."""
    while lanes.size:
        value = words[lanes, at] + _ONE
        wrapped = value > _WORD_MASK
        words[lanes, at] = value & _WORD_MASK
        lanes, at = lanes[wrapped], at[wrapped] - 1


def _bit_length(x: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of uint64 lanes (exact: each 32-bit half is exact in float64)."""
    high = (x >> _U32).astype(np.float64)
    low = (x & _WORD_MASK).astype(np.float64)
    return np.where(high > 0, 32 + np.frexp(high)[1], np.frexp(low)[1]).astype(np.int64)


def _bit_strings(
    words: np.ndarray, shifted: np.ndarray, lo: np.ndarray, rng: np.ndarray, lanes: np.ndarray
) -> list[bytes | None]:
    """The final intervals' shortest bit strings (docs/mnc-format.md, version 3), per lane."""
    a = lo
    b = lo + (rng - _ONE)
    carried = b < a  # b = (H + 1) 2**64 + b': a and b differ above the window
    settled = ~carried  # a and b share H: the point follows from the window alone
    top = _bit_length(a ^ b) - 1  # highest differing bit, 32 <= top <= 63 as range >= 2**32
    below = np.where(top >= 63, ~np.uint64(0), (_ONE << (top + 1).astype(np.uint64)) - _ONE)
    point = np.where(a & below == 0, a, (b >> top.astype(np.uint64)) << top.astype(np.uint64))
    settled &= point != 0
    trailing = _bit_length(point & (~point + _ONE)) - 1
    bits = 32 * shifted + 64 - trailing
    # With a carry the highest differing bit is 64 + ctz(H + 1), and the point is
    # (H + 1) 2**64, unless a's window is 0 and H even (then it is a: left to the scalar coder).
    last = words[lanes, np.maximum(shifted - 1, 0)]
    fix = np.flatnonzero(carried & (shifted > 0) & ~((a == 0) & (last & _ONE == 0)))
    if fix.size:
        words = words.copy()
        _carry_into_words(words, fix, shifted[fix] - 1)  # H + 1 (below 2**(32 s): no overflow)
        nonzero = words[fix] != 0
        lowest = words.shape[1] - 1 - np.argmax(nonzero[:, ::-1], axis=1)  # its last nonzero word
        word = words[fix, lowest]
        zeros = 32 * (shifted[fix] - 1 - lowest) + _bit_length(word & (~word + _ONE)) - 1
        bits[fix] = 32 * shifted[fix] - zeros
        point[fix] = 0
        settled[fix] = True
    nbytes = (bits + 7) // 8
    # Each lane's bytes: its shifted words, then the 8 bytes of the point (its low bits are 0).
    stride = 4 * words.shape[1] + 8
    out = np.zeros((lanes.size, stride), dtype=np.uint8)
    out[:, : 4 * words.shape[1]] = words.astype(">u4").view(np.uint8).reshape(lanes.size, -1)
    point_bytes = point.astype(">u8").view(np.uint8).reshape(-1, 8)
    out[lanes[:, None], 4 * shifted[:, None] + np.arange(8)[None, :]] = point_bytes
    data = out.tobytes()
    return [
        data[n * stride : n * stride + size] if ok else None
        for n, (size, ok) in enumerate(zip(nbytes.tolist(), settled.tolist(), strict=True))
    ]


# -- decoding ------------------------------------------------------------------------------


def strings_to_lanes(strings: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """``(words (N, MAX_WORDS + 2) uint64, fits (N,) bool)``: each string's zero-padded words.

    A string longer than :data:`MAX_WORDS` words does not fit (its row is left zero).
    """
    size = 4 * (MAX_WORDS + 2)
    fits = np.fromiter((len(s) <= 4 * MAX_WORDS for s in strings), bool, len(strings))
    blank = b"\0" * size
    data = b"".join(
        s.ljust(size, b"\0") if ok else blank for s, ok in zip(strings, fits, strict=True)
    )
    words = np.frombuffer(data, dtype=">u4").reshape(len(strings), -1).astype(np.uint64)
    return words, fits


def decode_symbols(
    tables: LaneTables,
    words: np.ndarray,
    steps: int,
    rows_of: Callable[[np.ndarray | None], np.ndarray],
    first_row: int | None = None,
    first_escape: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode ``steps`` symbols per lane: ``(cols (N, steps) int32, first (N,), valid (N,))``.

    With ``first_row``, a first symbol is decoded with that row (a mixture's
    component; ``first_escape`` is its invalid column) before the ``steps``
    others, and ``rows_of(first)`` gives the (N, steps) rows of the others for
    lanes with those first symbols; without it ``rows_of(None)`` does. ``valid`` is false for a lane that met
    invalid data or an escaped first symbol: its columns mean nothing and the caller decodes it with the scalar coder.
    """
    count = words.shape[0]
    valid = np.ones(count, dtype=bool)
    diff = (words[:, 0] << _U32) | words[:, 1]
    rng = np.full(count, _RANGE_START, dtype=np.uint64)
    next_word = np.full(count, 2, dtype=np.int64)
    lanes = np.arange(count)  # the string each lane decodes
    last_word = words.shape[1] - 1
    limit = np.uint64(1 << _MODEL_BITS)

    def step(rows: np.ndarray) -> np.ndarray:
        nonlocal diff, rng
        scale = rng >> _U24
        quantile = diff // scale
        bad = quantile >= limit
        if bad.any():
            valid[lanes[bad]] = False
            quantile[bad] = 0
        col = tables.find(rows, quantile)
        left, width = tables.bounds(rows, col)
        diff = diff - scale * left
        rng = scale * width
        shift = np.flatnonzero(rng < np.uint64(1 << 32))
        if shift.size:
            at = next_word[shift]
            # Past the room: the zero padding without end (a fitting string is shorter).
            word = np.where(at > last_word, _ZERO, words[lanes[shift], np.minimum(at, last_word)])
            diff[shift] = (diff[shift] << _U32) | word
            rng[shift] <<= _U32
            next_word[shift] += 1
        return col

    with np.errstate(over="ignore"):
        first = None
        if first_row is not None:
            first = step(np.full(count, first_row, dtype=np.int64))
            escaped = first >= first_escape
            valid[escaped] = False
            first = np.where(escaped, 0, first)
            # Lanes in component order: each step's table lookups then walk the rows in
            # order, which keeps the search in cache (about 5x faster for 16 components).
            order = np.argsort(first, kind="stable")
            lanes, diff, rng, next_word = order, diff[order], rng[order], next_word[order]
        rows = rows_of(None if first is None else first[lanes])  # in lane order
        in_lane_order = np.empty((count, steps), dtype=np.int32)
        for j in range(steps):
            in_lane_order[:, j] = step(rows[:, j])
        cols = np.empty_like(in_lane_order)
        cols[lanes] = in_lane_order
    return cols, first, valid
