"""Entropy coding of quantised latents with constriction's range coder.

The complete rules are in ``docs/mnc-format.md``; this module implements them.

Symbols. For latent dimension ``i`` the encoder forms ``k = round(y_i - o_i)``
(an integer) and codes ``k - lower_i`` with the frozen categorical table of
that dimension (:mod:`mnistcodec.coding.tables`); a ``k`` outside the table is
coded as the escape symbol followed by the overflow code of ``k``.

Coded model. constriction codes with 24-bit fixed-point weights. Each row of
integer counts ``c`` (``n = K + 1`` entries summing to ``2**P``) is passed as
the float64 probabilities ``c / 2**P`` to ``Categorical(perfect=False)``, which
makes them (exactly, all sums being dyadic) the cumulative weights
``left_j = floor(C_j (2**24 - n) / 2**P) + j`` with ``C_j = c_0 + ... + c_{j-1}``,
the last symbol (the escape) taking what is left up to ``2**24``: about
``256 c_j + 1`` each for ``P = 16``. The stored integers therefore fix the coded
model; ``tests/test_conformance.py`` checks it row by row against constriction
(0.4.0 to 0.5.0 build it identically; float32 probabilities or ``perfect=True``
would give other weights).

Overflow code. ``z = zigzag(k)`` (``2k`` for ``k >= 0``, ``-2k - 1`` otherwise),
``m = z + 1 >= 1`` with ``n = bit_length(m) - 1`` in ``[0, 129]`` (float32
latents are below 2**128). ``n`` is coded with ``Uniform(130)``, then the ``n``
bits of ``m`` below its leading 1, most significant first, in chunks of 16 bits
and a last chunk of the remaining ``n mod 16`` bits, each with
``Uniform(2**bits)``. Any finite float32 latent therefore round-trips exactly.

Strings. Per-digit mode codes each digit into its own range-coder stream;
stream mode codes a block of digits into one stream (symbols of all digits
first, then their overflow values) with every trailing zero byte removed.
constriction emits 32-bit words. A per-digit string is one of two kinds
(``granularity``):

- ``"bit"`` (``.mnc`` version 3, the default): the shortest bit string that
  decodes to the same symbols when the decoder pads it with zero bits, that is
  the point of the coder's final interval with the most trailing zero bits,
  written down to its last 1 bit. It is held as bytes, its bits followed by
  zero bits up to a whole byte; its length in bits (:func:`string_bits`) is the
  position of its last 1 bit, so the bytes say it exactly.
- ``"byte"`` (versions 1 and 2): the big-endian bytes of the words, shortened to
  the shortest prefix that still decodes to the same symbols when the decoder
  pads it with zero bytes: at each length ``L`` from ``max(0, floor(I / 8) - 1)``
  up (``I`` the information content under the integer tables, its
  ``floor(I / 8)`` computed exactly), the prefix and the prefix plus one (as an
  ``L``-byte number) are candidates, and the first that decodes correctly is
  kept, trailing zero bytes removed.

A bit string is never longer than the byte string of the same digit, and both
decode with the same decoder.

Finding that prefix without trial decodes. Read as a binary fraction, a
zero-padded string decodes to the encoded symbols exactly when it lies in the
coder's final interval ``[low, low + range)``: the decoder mirrors the
encoder's interval arithmetic, and a point outside the final interval leaves it
at the first symbol whose sub-interval does not hold the point (it then decodes
another symbol or raises). After encoding, constriction's ``pos()`` gives the
number of words ``p`` already determined and the 64-bit state ``(lower,
range)``; with ``Z`` the value of those ``p`` words (pending carries resolved),
``low = Z * 2**64 + lower`` on a grid of ``32 (p + 2)`` bits. ``Z`` is read back
from the sealed output, whose first ``p + 1`` words are
``floor((Z * 2**64 + lower + 2**32 - 1) / 2**32)``. Each candidate is then one
integer comparison: the prefix is valid iff it is ``>= low`` and the prefix
plus one iff it is ``< low + range``. This selects exactly the string the
trial decodes select (the test suite checks it against that search).
The bit string needs no search: the integer of ``[low, low + range)`` with
the most trailing zero bits is unique and follows from the highest bit in
which ``low`` and ``low + range - 1`` differ (:func:`_most_trailing_zeros`).

Decode check. Unless disabled (generative sampling), the decoder re-encodes
the symbols it decoded and requires the result to equal its input byte for
byte; any string that is not exactly what the encoder would write is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import constriction
import numpy as np

from mnistcodec.coding import lane_coder
from mnistcodec.coding.tables import CodingTables
from mnistcodec.errors import FormatError

_OVERFLOW_EXPONENTS = 130
_CHUNK_BITS = 16
_STREAM_CHUNK = 1024
# floor(I / 8) is recomputed in integers when I / 8 is this close to an integer.
_EXACT_MARGIN = 1e-6
#: Per-digit string kinds: ``"bit"`` (``.mnc`` version 3) and ``"byte"`` (versions 1 and 2).
GRANULARITIES = ("bit", "byte")


class DecodeError(FormatError):
    """A string does not decode to a valid canonical code."""


@dataclass
class Symbols:
    """Quantised latents of a batch as table indices plus out-of-table values.

    ``indices``: int32 (N, D), table column per latent (``escape`` for overflow).
    ``overflow``: for each digit, the list of integer ``k`` values of its escaped
    latents, in dimension order.
    """

    indices: np.ndarray
    overflow: list[list[int]]


class LatentCoder(lane_coder.LaneCoding):
    """Codes integer latents ``k`` (N, D) with frozen :class:`CodingTables`."""

    def __init__(self, tables: CodingTables) -> None:
        self.tables = tables
        self._probs = np.ascontiguousarray(tables.probabilities())
        self._family = constriction.stream.model.Categorical(perfect=False)
        self._exponent_model = constriction.stream.model.Uniform(_OVERFLOW_EXPONENTS)
        self._chunk_models = {
            bits: constriction.stream.model.Uniform(1 << bits) for bits in range(1, _CHUNK_BITS + 1)
        }
        self._bits = tables.symbol_bits()
        self._lower = tables.lower.astype(np.int64)
        self._tiled: np.ndarray | None = None
        self._escape = tables.escape

    @property
    def symbol_dims(self) -> int:
        """Symbols per digit (columns of :attr:`Symbols.indices`)."""
        return self.tables.latent_dims

    def min_digit_bits(self) -> float:
        """The fewest bits any digit costs: every latent at its most probable symbol."""
        return float(self._bits.min(axis=1).sum())

    def component_of(self, k: np.ndarray) -> tuple[int | None, float]:
        """The component that codes one digit's latents ``k`` (D,) and its bits: none here."""
        return None, 0.0

    def rows(self, component: int | None) -> np.ndarray:
        """The table rows that code the latents (under ``component``, for a mixture)."""
        return np.arange(self.tables.latent_dims)

    # -- symbols <-> integer latents ------------------------------------------------------

    def to_symbols(self, k: np.ndarray) -> Symbols:
        """Integer latents (N, D) as float64 or object ints -> :class:`Symbols`."""
        k = np.asarray(k)
        width = self.tables.width
        rel = k - self._lower[None, :]
        inside = (rel >= 0) & (rel < width)
        indices = np.where(inside, rel, width).astype(np.int32)
        overflow: list[list[int]] = [[] for _ in range(k.shape[0])]
        for row, col in zip(*np.nonzero(~inside), strict=True):
            overflow[row].append(int(k[row, col]))
        return Symbols(indices, overflow)

    def from_symbols(self, symbols: Symbols) -> np.ndarray:
        """:class:`Symbols` -> integer latents as float64 (N, D); exact below 2**53.

        Escaped values are put in with ``float(int)``: exact for any value that
        came from a float32 latent.
        """
        k = (symbols.indices.astype(np.int64) + self._lower[None, :]).astype(np.float64)
        escaped = np.nonzero(symbols.indices == self.tables.escape)
        for (row, col), value in zip(
            zip(*escaped, strict=True), _flatten_in_order(symbols, escaped), strict=True
        ):
            k[row, col] = float(value)
        return k

    def table_bits(self, symbols: Symbols) -> np.ndarray:
        """Ideal bits per digit under the integer tables, overflow codes included."""
        d = np.arange(self.tables.latent_dims)[None, :]
        bits = self._bits[d, symbols.indices].sum(axis=1)
        extra = [sum(_overflow_bits(v) for v in values) for values in symbols.overflow]
        return bits + np.asarray(extra, dtype=np.float64)

    # -- low-level coding ------------------------------------------------------------------

    def _encode_overflow(self, encoder, value: int) -> None:
        z = 2 * value if value >= 0 else -2 * value - 1
        m = z + 1
        n = m.bit_length() - 1
        encoder.encode(n, self._exponent_model)
        remaining = n
        while remaining > 0:
            bits = min(_CHUNK_BITS, remaining)
            remaining -= bits
            encoder.encode((m >> remaining) & ((1 << bits) - 1), self._chunk_models[bits])

    def _decode_overflow(self, decoder) -> int:
        n = int(decoder.decode(self._exponent_model))
        m = 1
        remaining = n
        while remaining > 0:
            bits = min(_CHUNK_BITS, remaining)
            remaining -= bits
            m = (m << bits) | int(decoder.decode(self._chunk_models[bits]))
        z = m - 1
        return z // 2 if z % 2 == 0 else -(z + 1) // 2

    # Hooks for the symbols of one digit and of a block; a mixture's coder overrides them.

    def _escapes(self, indices: np.ndarray) -> int:
        """How many latents of one digit's symbols are escaped."""
        return int(np.count_nonzero(indices == self._escape))

    def _encode_symbols(self, encoder, indices: np.ndarray) -> None:
        encoder.encode(indices, self._family, self._probs)

    def _decode_symbols(self, decoder) -> np.ndarray:
        return decoder.decode(self._family, self._probs)

    def _encode_block(self, encoder, indices: np.ndarray) -> None:
        """The symbols of a block's digits, digit after digit (rows of tiled tables)."""
        for start in range(0, indices.shape[0], _STREAM_CHUNK):
            block = indices[start : start + _STREAM_CHUNK]
            encoder.encode(block.reshape(-1), self._family, self._tiled_probs(block.shape[0]))

    def _decode_block(self, decoder, count: int) -> np.ndarray:
        dims = self.symbol_dims
        parts = []
        for start in range(0, count, _STREAM_CHUNK):
            rows = min(_STREAM_CHUNK, count - start)
            probs = self._tiled_probs(rows)
            parts.append(decoder.decode(self._family, probs).reshape(rows, dims))
        return np.concatenate(parts).astype(np.int32) if parts else np.empty((0, dims), np.int32)

    def _encode_digit(
        self, indices: np.ndarray, overflow: list[int]
    ) -> constriction.stream.queue.RangeEncoder:
        """A range encoder holding one digit's symbols (not yet sealed)."""
        encoder = constriction.stream.queue.RangeEncoder()
        self._encode_symbols(encoder, indices)
        for value in overflow:
            self._encode_overflow(encoder, value)
        return encoder

    def _decode_digit(self, words: np.ndarray) -> tuple[np.ndarray, list[int]]:
        decoder = constriction.stream.queue.RangeDecoder(words)
        try:
            indices = self._decode_symbols(decoder)
            escapes = self._escapes(indices)
            overflow = [self._decode_overflow(decoder) for _ in range(escapes)] if escapes else []
        except (AssertionError, ValueError, OverflowError) as exc:
            raise DecodeError(f"string does not decode ({exc})") from None
        return indices, overflow

    def start_lengths(self, symbols: Symbols) -> list[int]:
        """First prefix length tried per digit: ``max(0, floor(I / 8) - 1)`` bytes.

        ``I`` comes from :meth:`table_bits` (float64); where ``I / 8`` lies within
        float rounding of an integer, ``floor(I / 8)`` is recomputed exactly.
        """
        starts = []
        for row, eighths in enumerate((self.table_bits(symbols) / 8).tolist()):
            whole = math.floor(eighths)
            if min(eighths - whole, whole + 1 - eighths) < _EXACT_MARGIN:
                whole = self._exact_eighths(symbols.indices[row], symbols.overflow[row])
            starts.append(max(0, whole - 1))
        return starts

    def _exact_eighths(self, indices: np.ndarray, overflow: list[int]) -> int:
        """``floor(I / 8)`` in integers, ``2**I = 2**(P D + N) 130**E / prod(counts)``.

        ``counts``: the count of every coded table entry (escapes included), ``E``
        the number of escaped latents and ``N`` the sum of their exponents ``n``.
        """
        product = 1
        for count in self.tables.counts[np.arange(indices.shape[0]), indices].tolist():
            product *= count
        exponents = sum(_overflow_exponent(value) for value in overflow)
        numerator = 1 << (self.tables.precision * indices.shape[0] + exponents)
        ratio = numerator * _OVERFLOW_EXPONENTS ** len(overflow) // product
        return (ratio.bit_length() - 1) // 8

    # -- per-digit strings -----------------------------------------------------------------

    def encode_strings(self, symbols: Symbols, granularity: str = "bit") -> list[bytes]:
        """One string per digit: the shortest bit string, or the shortest byte prefix."""
        _check_granularity(granularity)
        if granularity == "bit":
            plain = np.fromiter(
                (not values for values in symbols.overflow), bool, len(symbols.overflow)
            )
            strings: list[bytes | None] = [None] * plain.size
            rows = np.flatnonzero(plain)
            if rows.size < lane_coder.MIN_DIGITS:
                rows = rows[:0]
            for row, string in zip(rows, self._lane_encode(symbols.indices[rows]), strict=True):
                strings[row] = string
            return [
                string
                if string is not None
                else _shortest_bits(self._encode_digit(indices, overflow))
                for string, indices, overflow in zip(
                    strings, symbols.indices, symbols.overflow, strict=True
                )
            ]
        starts = self.start_lengths(symbols)
        return [
            _shortest_prefix(self._encode_digit(indices, overflow), start)
            for indices, overflow, start in zip(
                symbols.indices, symbols.overflow, starts, strict=True
            )
        ]

    def decode_strings(
        self, strings: list[bytes], check: bool = True, granularity: str = "bit"
    ) -> Symbols:
        """Decode per-digit strings; ``check`` requires each to be canonical.

        Digits are decoded in order; with ``check``, the first digit that is not
        canonical (or does not decode) raises. ``granularity`` names the rule the
        strings were written with (both kinds decode alike; the check differs).
        """
        _check_granularity(granularity)
        if len(strings) >= lane_coder.MIN_DIGITS:
            words, fits = lane_coder.strings_to_lanes(strings)
            indices, by_lanes = self._lane_decode(words)
            by_lanes &= fits
        else:
            indices = np.empty((len(strings), self.symbol_dims), dtype=np.int32)
            by_lanes = np.zeros(len(strings), dtype=bool)
        overflow: list[list[int]] = [[] for _ in strings]
        failure: DecodeError | None = None
        decoded = len(strings)
        # What the lanes left: decoded one by one, in order; the first failure ends decoding.
        for i in np.flatnonzero(~by_lanes).tolist():
            try:
                indices[i], overflow[i] = self._decode_digit(_bytes_to_words(strings[i]))
            except DecodeError as exc:
                failure, decoded = exc, i
                break
        del overflow[decoded:]
        if check:
            canonical = self.encode_strings(Symbols(indices[:decoded], overflow), granularity)
            for i in range(decoded):
                data = strings[i]
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

    # -- stream mode -----------------------------------------------------------------------

    def _tiled_probs(self, rows: int) -> np.ndarray:
        """The table repeated for ``rows`` digits (a view of one cached full-chunk copy)."""
        if self._tiled is None:
            self._tiled = np.tile(self._probs, (_STREAM_CHUNK, 1))
        return self._tiled[: rows * self.tables.latent_dims]

    def encode_stream(self, symbols: Symbols) -> bytes:
        """All digits of a block in one range-coder stream."""
        encoder = constriction.stream.queue.RangeEncoder()
        self._encode_block(encoder, symbols.indices)
        for values in symbols.overflow:
            for value in values:
                self._encode_overflow(encoder, value)
        return _words_to_bytes(encoder.get_compressed()).rstrip(b"\0")

    def decode_stream(self, data: bytes, count: int, check: bool = True) -> Symbols:
        """Decode ``count`` digits from one stream; ``check`` requires it to be canonical."""
        decoder = constriction.stream.queue.RangeDecoder(_bytes_to_words(data))
        try:
            indices = self._decode_block(decoder, count)
            overflow = [
                [self._decode_overflow(decoder) for _ in range(self._escapes(row))]
                for row in indices
            ]
        except (AssertionError, ValueError, OverflowError) as exc:
            raise DecodeError(f"stream does not decode ({exc})") from None
        symbols = Symbols(indices, overflow)
        if check and self.encode_stream(symbols) != data:
            raise DecodeError(
                "stream is not the encoding of what it decodes to "
                "(corrupt data, or a file for another model)"
            )
        return symbols


def _check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown string granularity {granularity!r}; use one of {GRANULARITIES}")


def _final_interval(encoder) -> tuple[int, int, int]:
    """``(low, high, grid)``: the final interval ``[low, high)`` of ``encoder`` on ``grid`` bits."""
    full = _words_to_bytes(encoder.get_compressed())
    position, (lower, size) = encoder.pos()
    head = int.from_bytes(full[: 4 * (position + 1)], "big")
    low = (((head << 32) - lower) >> 64 << 64) + lower
    return low, low + size, 32 * (position + 2)


def _most_trailing_zeros(low: int, last: int) -> int:
    """The integer of ``[low, last]`` with the most trailing zero bits (it is unique).

    With ``t`` the highest bit in which ``low`` and ``last`` differ, every
    integer between them shares their bits above ``t``; the one with bit ``t``
    set and nothing below is in the range, and only ``low`` itself can have
    more trailing zeros (when its bits from ``t`` down are all 0).
    """
    if low == 0 or low == last:
        return low
    top = (low ^ last).bit_length() - 1
    if low & ((1 << (top + 1)) - 1) == 0:
        return low
    return last >> top << top


def _shortest_bits(encoder) -> bytes:
    """The shortest bit string that decodes like the full output of ``encoder``, as bytes.

    Its bits are those of the interval's point with the most trailing zeros,
    down to its last 1 bit, then zero bits up to a whole byte.
    """
    low, high, grid = _final_interval(encoder)
    point = _most_trailing_zeros(low, high - 1)
    if point == 0:
        return b""
    trailing = (point & -point).bit_length() - 1
    bits = grid - trailing
    pad = -bits % 8
    return ((point >> trailing) << pad).to_bytes((bits + pad) // 8, "big")


def _shortest_prefix(encoder, start: int) -> bytes:
    """The shortest prefix, from ``start`` bytes up, that decodes like the full string.

    See the module docstring: validity of a candidate is decided by comparing it
    with the final interval ``[low, high)`` of ``encoder`` (a range encoder holding
    one digit), on a grid of ``32 (p + 2)`` bits.
    """
    low, high, grid = _final_interval(encoder)
    full = _words_to_bytes(encoder.get_compressed()).rstrip(b"\0")
    for length in range(start, len(full)):
        shift = grid - 8 * length
        value = int.from_bytes(full[:length], "big")
        if value << shift >= low:
            return full[:length].rstrip(b"\0")
        value += 1
        if length and value < (1 << (8 * length)) and value << shift < high:
            return value.to_bytes(length, "big").rstrip(b"\0")
    return full


def _words_to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype=">u4").tobytes()


def _bytes_to_words(data: bytes) -> np.ndarray:
    pad = (-len(data)) % 4
    return np.frombuffer(data + b"\0" * pad, dtype=">u4").astype(np.uint32)


def _overflow_exponent(value: int) -> int:
    """``n = bit_length(zigzag(value) + 1) - 1``: the bits the overflow code sends after ``n``."""
    z = 2 * value if value >= 0 else -2 * value - 1
    return (z + 1).bit_length() - 1


def _overflow_bits(value: int) -> float:
    return float(np.log2(_OVERFLOW_EXPONENTS)) + _overflow_exponent(value)


def _flatten_in_order(symbols: Symbols, escaped: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """Overflow values lined up with ``np.nonzero`` order (row-major)."""
    out: list[int] = []
    for row in range(symbols.indices.shape[0]):
        out.extend(symbols.overflow[row])
    if len(out) != len(escaped[0]):
        raise DecodeError("overflow values do not match the escape symbols")
    return out
