"""Entropy coding of quantised latents with constriction's range coder.

Symbols. For latent dimension ``i`` the encoder forms ``k = round(y_i - o_i)``
(an integer) and codes ``k - lower_i`` with the frozen categorical table of
that dimension (:mod:`mnistcodec.coding.tables`); a ``k`` outside the table is
coded as the escape symbol followed by the overflow code of ``k``.

Overflow code. ``z = zigzag(k)`` (``2k`` for ``k >= 0``, ``-2k - 1`` otherwise),
``m = z + 1 >= 1`` with ``n = bit_length(m) - 1`` in ``[0, 129]`` (float32
latents are below 2**128). ``n`` is coded uniformly over 130 values, then the
``n`` bits of ``m`` below its leading 1 in chunks of at most 16 bits, each
uniformly. Any finite float32 latent therefore round-trips exactly.

Strings. Per-digit mode codes each digit into its own range-coder stream;
stream mode codes a block of digits into one stream (symbols of all digits
first, then their overflow values). constriction emits 32-bit words; a string is
their big-endian bytes, shortened to the shortest prefix that still decodes to
the same symbols when the decoder pads it with zero bytes: at each length ``L``
from just below the information content, the prefix and the prefix plus one
(as an ``L``-byte number) are tried, and the first that decodes correctly is
kept. Stream mode only drops trailing zero bytes.

Decode check. Unless disabled (generative sampling), the decoder re-encodes
the symbols it decoded and requires the result to equal its input byte for
byte; any string that is not exactly what the encoder would write is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np

from mnistcodec.coding.tables import CodingTables
from mnistcodec.errors import FormatError

_OVERFLOW_EXPONENTS = 130
_CHUNK_BITS = 16
_STREAM_CHUNK = 1024


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


class LatentCoder:
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

    def _encode_digit(self, indices: np.ndarray, overflow: list[int]) -> np.ndarray:
        encoder = constriction.stream.queue.RangeEncoder()
        encoder.encode(indices, self._family, self._probs)
        for value in overflow:
            self._encode_overflow(encoder, value)
        return encoder.get_compressed()

    def _decode_digit(self, data: bytes) -> tuple[np.ndarray, list[int]]:
        decoder = constriction.stream.queue.RangeDecoder(_bytes_to_words(data))
        try:
            indices = decoder.decode(self._family, self._probs)
            overflow = [
                self._decode_overflow(decoder)
                for _ in range(int(np.count_nonzero(indices == self.tables.escape)))
            ]
        except (AssertionError, ValueError, OverflowError) as exc:
            raise DecodeError(f"string does not decode ({exc})") from None
        return indices.astype(np.int32), overflow

    # -- per-digit strings -----------------------------------------------------------------

    def encode_strings(self, symbols: Symbols) -> list[bytes]:
        """One shortest-prefix string per digit."""
        info = self.table_bits(symbols)
        strings = []
        for i in range(symbols.indices.shape[0]):
            words = self._encode_digit(symbols.indices[i], symbols.overflow[i])
            strings.append(
                self._shortest_prefix(_words_to_bytes(words), symbols.indices[i], symbols.overflow[i], info[i])
            )
        return strings

    def _shortest_prefix(
        self, full: bytes, indices: np.ndarray, overflow: list[int], info_bits: float
    ) -> bytes:
        full = full.rstrip(b"\0")
        start = max(0, int(info_bits // 8) - 1)
        for length in range(start, len(full)):
            prefix = full[:length]
            candidates = [prefix]
            value = int.from_bytes(prefix, "big") + 1
            if length and value < (1 << (8 * length)):
                candidates.append(value.to_bytes(length, "big"))
            for candidate in candidates:
                candidate = candidate.rstrip(b"\0")
                try:
                    got, got_overflow = self._decode_digit(candidate)
                except DecodeError:
                    continue
                if np.array_equal(got, indices) and got_overflow == overflow:
                    return candidate
        return full

    def decode_strings(self, strings: list[bytes], check: bool = True) -> Symbols:
        """Decode per-digit strings; ``check`` requires each to be canonical."""
        dims = self.tables.latent_dims
        indices = np.empty((len(strings), dims), dtype=np.int32)
        overflow: list[list[int]] = []
        for i, data in enumerate(strings):
            indices[i], values = self._decode_digit(data)
            overflow.append(values)
            if check and data.endswith(b"\0"):
                raise DecodeError(f"string {i} is not canonical (trailing zero byte)")
            if check:
                info = float(self.table_bits(Symbols(indices[i : i + 1], [values]))[0])
                words = self._encode_digit(indices[i], values)
                canonical = self._shortest_prefix(_words_to_bytes(words), indices[i], values, info)
                if canonical != data:
                    raise DecodeError(
                        f"string {i} is not the encoding of what it decodes to "
                        "(corrupt data, or a file for another model)"
                    )
        return Symbols(indices, overflow)

    # -- stream mode -----------------------------------------------------------------------

    def encode_stream(self, symbols: Symbols) -> bytes:
        """All digits of a block in one range-coder stream."""
        encoder = constriction.stream.queue.RangeEncoder()
        n = symbols.indices.shape[0]
        for start in range(0, n, _STREAM_CHUNK):
            block = symbols.indices[start : start + _STREAM_CHUNK]
            probs = np.tile(self._probs, (block.shape[0], 1))
            encoder.encode(block.reshape(-1), self._family, probs)
        for values in symbols.overflow:
            for value in values:
                self._encode_overflow(encoder, value)
        return _words_to_bytes(encoder.get_compressed()).rstrip(b"\0")

    def decode_stream(self, data: bytes, count: int, check: bool = True) -> Symbols:
        """Decode ``count`` digits from one stream; ``check`` requires it to be canonical."""
        decoder = constriction.stream.queue.RangeDecoder(_bytes_to_words(data))
        dims = self.tables.latent_dims
        parts = []
        try:
            for start in range(0, count, _STREAM_CHUNK):
                rows = min(_STREAM_CHUNK, count - start)
                probs = np.tile(self._probs, (rows, 1))
                parts.append(decoder.decode(self._family, probs).reshape(rows, dims))
            indices = (
                np.concatenate(parts).astype(np.int32) if parts else np.empty((0, dims), np.int32)
            )
            overflow = [
                [self._decode_overflow(decoder) for _ in range(int(np.count_nonzero(row == self.tables.escape)))]
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


def _words_to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype=">u4").tobytes()


def _bytes_to_words(data: bytes) -> np.ndarray:
    pad = (-len(data)) % 4
    return np.frombuffer(data + b"\0" * pad, dtype=">u4").astype(np.uint32)


def _overflow_bits(value: int) -> float:
    z = 2 * value if value >= 0 else -2 * value - 1
    return float(np.log2(_OVERFLOW_EXPONENTS)) + (z + 1).bit_length() - 1


def _flatten_in_order(symbols: Symbols, escaped: tuple[np.ndarray, np.ndarray]) -> list[int]:
    """Overflow values lined up with ``np.nonzero`` order (row-major)."""
    out: list[int] = []
    for row in range(symbols.indices.shape[0]):
        out.extend(symbols.overflow[row])
    if len(out) != len(escaped[0]):
        raise DecodeError("overflow values do not match the escape symbols")
    return out
