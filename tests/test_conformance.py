"""Conformance: the golden files decoded and re-encoded from the specifications alone.

Everything here is written from ``docs/mnc-format.md`` and ``docs/model-format.md``
and imports nothing of mnistcodec: the ``.mnc`` container, the coded model that
follows from the stored integer tables, the range coder's arithmetic (in exact
integers, as the spec states it), the overflow code, the per-digit strings
(the shortest byte prefix of versions 1 and 2, the shortest bit string of
version 3), the synthesis transform (torch's functional layers, from the layer
table) and the model fingerprint; for a variable-rate model (``arch = "vr"``),
its per-level tables and gains and the levels of a version-2 or version-3 file;
for a mixture prior, the component coded before each digit's latents, and a
conditioned decoder's per-level maps; for model format version 2, codebook
levels (one index per digit, decoded by a lookup of uint8 codewords). Version 3 (levels in every block, for
every model; per-digit blocks with bit lengths and the strings' bits back to
back) is read next to versions 1 and 2: the golden files of every shipped model
in both formats (``<model>.<mode>.mnc``: version 1, or 2 for a variable-rate
model; ``<model>.v3.<mode>.mnc``: version 3) must decode to the golden digits
and re-encode byte for byte, and so must the overflow vectors; the coded model
must equal what constriction builds, row by row. The spec's test vectors hold
too: latents to float32 (offsets with gains, large ``k``;
``tests/golden/dequantisation.json``), every version with every model kind
(``tests/golden/kinds.*``), and the content hash's record read from its stored
text. A change to the code that
breaks the spec, or a constriction release that quantises differently, fails
here.

``python tests/test_conformance.py`` prints the worked example of the spec and
the same digit in version 3.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import constriction
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import load as load_tensors

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "golden"
PRETRAINED_DIR = ROOT / "src" / "mnistcodec" / "pretrained"
NAMES = sorted(p.name.removesuffix(".safetensors") for p in PRETRAINED_DIR.glob("*.safetensors"))
MODES = ("per-digit", "stream")
# Each model's golden files in two formats: "old" (version 1, or 2 for a variable-rate model,
# ``<name>.<mode>.mnc``) and "v3" (version 3, ``<name>.v3.<mode>.mnc``).
FORMATS = ("old", "v3")
# Models shipped since version 3 have version-3 golden files only.
CASES = [
    (name, fmt)
    for name in NAMES
    for fmt in FORMATS
    if (GOLDEN_DIR / f"{name}{'.v3' if fmt == 'v3' else ''}.per-digit.mnc").exists()
]
WITH_OLD = [name for name, fmt in CASES if fmt == "old"]

# The coder (docs/mnc-format.md, "The range coder"): 24-bit models, 64-bit state, 32-bit words.
MODEL_BITS = 24
TOTAL = 1 << MODEL_BITS
STATE_MAX = (1 << 64) - 1
WORD_BITS = 32
EXPONENTS = 130
CHUNK_BITS = 16
FLOAT32_MAX = float(np.finfo(np.float32).max)

# -- model files (docs/model-format.md) ---------------------------------------------------------


@dataclass
class Model:
    """What a decoder reads from a model file."""

    data: bytes
    header: dict
    record: dict
    tensors: dict[str, np.ndarray]
    level: int = 0

    @property
    def variable_rate(self) -> bool:
        return self.record["config"]["arch"] == "vr"

    @property
    def levels(self) -> int:
        return len(self.record["levels"]) if self.variable_rate else 1

    @property
    def dims(self) -> int:
        return self.record["config"]["latent_dims"]

    @property
    def codebook_levels(self) -> list[int]:
        """Levels whose digits are one codeword index (model format version 2)."""
        return self.record.get("codebook_levels", [])

    @property
    def is_codebook(self) -> bool:
        return self.level in self.codebook_levels

    @property
    def mixture_components(self) -> int:
        return self.record["config"].get("mixture_components", 1)

    @property
    def components(self) -> int:
        """C of a mixture prior (1: none), strings then code a component first; a codebook
        level codes none."""
        return 1 if self.is_codebook else self.mixture_components

    def pixels(self) -> np.ndarray:
        """A codebook level's codewords, uint8 (K, 28, 28)."""
        return self.tensors[f"codebook.level.{self.level}.pixels"]

    def table_names(self, level: int) -> list[str]:
        prefix = f"coding.level.{level}." if self.variable_rate else "coding."
        return [prefix + key for key in ("counts", "lower", "offsets")]

    @functools.cached_property
    def component_cdf(self) -> Cdf:
        """The coded model of a mixture's component table (columns 0 .. C-1, escape C)."""
        return categorical(
            self.tensors["coding.components.counts"][0].astype(np.int32), self.precision
        )

    def at_level(self, level: int) -> Model:
        """The same model, coding with level ``level``'s tables."""
        assert 0 <= level < self.levels
        return Model(self.data, self.header, self.record, self.tensors, level)

    def gains(self) -> np.ndarray:
        """``g_l = exp(log_gains[l])`` in float32 (1 for a fixed-rate model)."""
        if not self.variable_rate:
            return np.ones_like(self.offsets)
        log_gains = self.tensors["model.entropy_bottleneck.log_gains"][self.level]
        return torch.exp(torch.from_numpy(log_gains.astype(np.float32))).numpy()

    @property
    def precision(self) -> int:
        return self.record["coding"]["precision"]

    @property
    def counts(self) -> np.ndarray:
        """int32 (stored int32, or uint16 by a mixture model)."""
        return self.tensors[self.table_names(self.level)[0]].astype(np.int32)

    @property
    def lower(self) -> list[int]:
        return [int(v) for v in self.tensors[self.table_names(self.level)[1]]]

    @property
    def offsets(self) -> np.ndarray:
        return self.tensors[self.table_names(self.level)[2]]

    @property
    def width(self) -> int:
        return self.counts.shape[1] - 1

    @functools.cached_property
    def cdfs(self) -> list[Cdf]:
        """The coded model of every table row."""
        return [categorical(row, self.precision) for row in self.counts]

    def rows(self, component: int) -> range:
        """The table rows of the latents under ``component`` (all rows without a mixture; a
        codebook level's one row)."""
        if self.is_codebook:
            return range(1)
        return range(component * self.dims, (component + 1) * self.dims)

    def weight(self, name: str) -> torch.Tensor:
        """A synthesis tensor as float32 (stored float16 or float32)."""
        array = self.tensors[f"model.synthesis_transform.{name}"]
        return torch.from_numpy(array.astype(np.float32))


@functools.cache
def read_model(path: Path) -> Model:
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len])
    record = json.loads(header["__metadata__"]["mnistcodec"])
    assert record["format"] == "mnistcodec-model" and record["format_version"] in (1, 2)
    assert ("codebook_levels" in record) == (record["format_version"] == 2)
    return Model(data, header, record, load_tensors(data))


def fingerprint(model: Model) -> str:
    """SHA-256 over the head JSON, the coding tensors and the synthesis tensors as stored."""
    config = model.record["config"]
    head = {
        "arch": config["arch"],
        "latent_dims": config["latent_dims"],
        "precision": model.precision,
    }
    if model.mixture_components > 1:
        head["mixture_components"] = model.mixture_components
    if model.codebook_levels:
        head["codebook_levels"] = model.codebook_levels
    h = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
    names = [name for level in range(model.levels) for name in model.table_names(level)]
    if model.mixture_components > 1:
        names += [f"coding.components.{key}" for key in ("counts", "lower", "offsets")]
    for name in names:
        if model.header[name]["dtype"] == "U16":  # a mixture's counts: hashed as int32
            stored = np.frombuffer(stored_bytes(model, name), "<u2")
            h.update(stored.astype("<i4").tobytes())
        else:
            h.update(stored_bytes(model, name))
    dtypes = {"F16": "torch.float16", "F32": "torch.float32", "U8": "torch.uint8"}
    decoder = ("model.synthesis_transform.", "model.entropy_bottleneck.log_gains", "codebook.")
    for short, name in sorted(
        (k.removeprefix("model."), k) for k in model.header if k.startswith(decoder)
    ):
        h.update(short.encode() + b"\0" + dtypes[model.header[name]["dtype"]].encode() + b"\0")
        h.update(stored_bytes(model, name))
    return h.hexdigest()


def stored_bytes(model: Model, name: str) -> bytes:
    """A tensor's bytes exactly as the file stores them."""
    (header_len,) = struct.unpack("<Q", model.data[:8])
    start, end = model.header[name]["data_offsets"]
    return model.data[8 + header_len + start : 8 + header_len + end]


def content_hash(model: Model) -> str:
    (header_len,) = struct.unpack("<Q", model.data[:8])
    entries = {k: v for k, v in model.header.items() if k != "__metadata__"}
    rest = {k: v for k, v in model.record.items() if k != "content_sha256"}
    compact = {"sort_keys": True, "separators": (",", ":")}
    h = hashlib.sha256(b"mnistcodec-content-v1\0")
    h.update(json.dumps(entries, **compact).encode() + b"\0")
    h.update(json.dumps(rest, **compact).encode() + b"\0")
    h.update(model.data[8 + header_len :])
    return h.hexdigest()


# -- coded models: cumulative weights out of 2**24 ---------------------------------------------


@dataclass(frozen=True)
class Cdf:
    """``left[s]`` is symbol s's cumulative weight, ``left[-1] == 2**24``."""

    left: tuple[int, ...]

    def interval(self, symbol: int) -> tuple[int, int]:
        return self.left[symbol], self.left[symbol + 1] - self.left[symbol]

    def find(self, quantile: int) -> int:
        return bisect.bisect_right(self.left, quantile) - 1


def categorical(counts: np.ndarray, precision: int) -> Cdf:
    """The documented rule: ``left_i = floor(C_i (2**24 - n) / 2**precision) + i``."""
    n = len(counts)
    cumulative = [0, *np.cumsum(counts.astype(np.int64)).tolist()[:-1]]
    left = [(c * (TOTAL - n) >> precision) + i for i, c in enumerate(cumulative)]
    return Cdf((*left, TOTAL))


@functools.cache
def uniform(size: int) -> Cdf:
    """constriction's ``Uniform(size)``: ``2**24 // size`` each, the last symbol the rest."""
    per_bin = TOTAL // size
    return Cdf((*range(0, size * per_bin, per_bin), TOTAL))


# -- the range coder in exact integers ----------------------------------------------------------


class Encoder:
    """``low`` and ``range`` on a grid of ``64 + 32 * shifts`` bits."""

    def __init__(self) -> None:
        self.low, self.range, self.shifts, self.empty = 0, STATE_MAX, 0, True

    def encode(self, symbol: int, cdf: Cdf) -> None:
        left, weight = cdf.interval(symbol)
        scale = self.range >> MODEL_BITS
        self.low += scale * left
        self.range = scale * weight
        self.empty = False
        if self.range < 1 << WORD_BITS:
            self.low <<= WORD_BITS
            self.range <<= WORD_BITS
            self.shifts += 1

    def sealed(self) -> bytes:
        """The words constriction's ``get_compressed()`` returns, as big-endian bytes."""
        if self.empty:
            return b""
        point = (self.low + (1 << WORD_BITS) - 1) >> WORD_BITS
        out = point.to_bytes(4 * (self.shifts + 1), "big")
        if (self.low + self.range) >> WORD_BITS == point:
            out += bytes(4)
        return out


class Decoder:
    """Decodes a byte string padded with zero bytes without end."""

    def __init__(self, data: bytes, trace: list | None = None) -> None:
        self.data, self.read = data, 8
        self.point = int.from_bytes(data[:8].ljust(8, b"\0"), "big")
        self.low, self.range = 0, STATE_MAX
        self.trace = trace

    def decode(self, cdf: Cdf) -> int:
        scale = self.range >> MODEL_BITS
        quantile = (self.point - self.low) // scale
        if quantile >= TOTAL:
            raise ValueError("invalid data: the point lies past the last symbol")
        symbol = cdf.find(quantile)
        left, weight = cdf.interval(symbol)
        self.low += scale * left
        self.range = scale * weight
        word = None
        if self.range < 1 << WORD_BITS:
            word = self.data[self.read : self.read + 4].ljust(4, b"\0")
            self.read += 4
            self.low <<= WORD_BITS
            self.range <<= WORD_BITS
            self.point = self.point << WORD_BITS | int.from_bytes(word, "big")
        if self.trace is not None:
            self.trace.append((scale, quantile, symbol, left, weight, word))
        return symbol


# -- symbols, overflow code, strings ------------------------------------------------------------


def table_columns(model: Model, k: list[int], component: int = 0) -> list[int]:
    width, lower = model.width, [model.lower[row] for row in model.rows(component)]
    return [v - lo if 0 <= v - lo < width else width for v, lo in zip(k, lower, strict=True)]


def zigzag(k: int) -> int:
    return 2 * k if k >= 0 else -2 * k - 1


def encode_overflow(encoder: Encoder, k: int) -> None:
    m = zigzag(k) + 1
    n = m.bit_length() - 1
    encoder.encode(n, uniform(EXPONENTS))
    remaining = n
    while remaining:
        bits = min(CHUNK_BITS, remaining)
        remaining -= bits
        encoder.encode((m >> remaining) & ((1 << bits) - 1), uniform(1 << bits))


def decode_overflow(decoder: Decoder) -> int:
    n = decoder.decode(uniform(EXPONENTS))
    m, remaining = 1, n
    while remaining:
        bits = min(CHUNK_BITS, remaining)
        remaining -= bits
        m = m << bits | decoder.decode(uniform(1 << bits))
    z = m - 1
    return z // 2 if z % 2 == 0 else -(z + 1) // 2


def encode_digits(
    model: Model, latents: list[list[int]], components: list[int] | None = None
) -> Encoder:
    """All table symbols digit after digit, then every overflow code (one digit: a string).

    A mixture model's digit starts with its component (``components``).
    """
    encoder, cdfs = Encoder(), model.cdfs
    escaped = []
    for index, k in enumerate(latents):
        component = components[index] if model.components > 1 else 0
        if model.components > 1:
            encoder.encode(component, model.component_cdf)
        rows = model.rows(component)
        for dim, column in enumerate(table_columns(model, k, component)):
            encoder.encode(column, cdfs[rows[dim]])
            if column == model.width:
                escaped.append(k[dim])
    for value in escaped:
        encode_overflow(encoder, value)
    return encoder


def decode_digits(
    model: Model,
    data: bytes,
    count: int,
    trace: list | None = None,
    components: list[int] | None = None,
) -> list[list[int]]:
    """``count`` digits' table symbols, then their overflow codes (one digit: a string).

    A mixture model's digit starts with its component, appended to ``components``.
    """
    decoder, cdfs = Decoder(data, trace), model.cdfs
    chosen, columns = [], []
    for _ in range(count):
        component = decoder.decode(model.component_cdf) if model.components > 1 else 0
        assert component < model.components, "a component symbol must name a component"
        chosen.append(component)
        columns.append([decoder.decode(cdfs[row]) for row in model.rows(component)])
    latents = []
    for row in columns:
        values = [decode_overflow(decoder) if c == model.width else None for c in row]
        latents.append(values)
    for component, row, values in zip(chosen, columns, latents, strict=True):
        rows = model.rows(component)
        for dim, column in enumerate(row):
            if column != model.width:
                values[dim] = column + model.lower[rows[dim]]
    if components is not None:
        components += chosen
    return latents


def information_ratio(model: Model, k: list[int], component: int = 0) -> tuple[int, int]:
    """``2**I`` as the exact fraction ``(numerator, product)``, a mixture's component included."""
    columns = table_columns(model, k, component)
    counts, rows = model.counts, model.rows(component)
    product, symbols = 1, len(k)
    if model.components > 1:
        product, symbols = int(model.tensors["coding.components.counts"][0, component]), len(k) + 1
    for dim, column in enumerate(columns):
        product *= int(counts[rows[dim], column])
    escaped = [v for v, c in zip(k, columns, strict=True) if c == model.width]
    exponent_bits = sum((zigzag(v) + 1).bit_length() - 1 for v in escaped)
    numerator = (1 << (model.precision * symbols + exponent_bits)) * EXPONENTS ** len(escaped)
    return numerator, product


def start_length(model: Model, k: list[int], component: int = 0) -> int:
    """``max(0, floor(I / 8) - 1)``, ``floor(I / 8)`` in exact integers."""
    numerator, product = information_ratio(model, k, component)
    floor_log2 = (numerator // product).bit_length() - 1
    return max(0, floor_log2 // 8 - 1)


def shortest_prefix(encoder: Encoder, start: int) -> bytes:
    full = encoder.sealed().rstrip(b"\0")
    grid = 64 + 32 * encoder.shifts
    low, high = encoder.low, encoder.low + encoder.range
    for length in range(start, len(full)):
        value = int.from_bytes(full[:length], "big")
        shift = grid - 8 * length
        if value << shift >= low:
            return full[:length].rstrip(b"\0")
        value += 1
        if length and value < 1 << (8 * length) and value << shift < high:
            return value.to_bytes(length, "big").rstrip(b"\0")
    return full


def trailing_zeros(value: int) -> int:
    return (value & -value).bit_length() - 1


def shortest_point(low: int, high: int) -> int:
    """The integer of ``[low, high]`` with the most trailing zero bits (``a``, ``b`` of the spec)."""
    if low == 0 or low == high:
        return low
    t = (low ^ high).bit_length() - 1
    return low if low % (1 << (t + 1)) == 0 else high >> t << t


def shortest_bits(encoder: Encoder) -> str:
    """Version 3: the top ``G - z`` bits of that point, '0'/'1' (empty for the point 0)."""
    grid = 64 + 32 * encoder.shifts
    low, high = encoder.low, encoder.low + encoder.range - 1
    point = shortest_point(low, high)
    if point == 0:
        return ""
    zeros = trailing_zeros(point)
    coarser = 1 << (zeros + 1)  # the claim: no shorter string decodes
    assert low <= point <= high and -(-low // coarser) * coarser > high
    return format(point >> zeros, f"0{grid - zeros}b")


def bits_to_bytes(bits: str) -> bytes:
    """A bit string followed by zero bits up to a whole byte."""
    padded = bits.ljust(-(-len(bits) // 8) * 8, "0")
    return int(padded or "0", 2).to_bytes(len(padded) // 8, "big")


def encode_string(model: Model, k: list[int], component: int = 0, version: int = 1) -> bytes | str:
    """A digit's string: bytes in versions 1 and 2, a '0'/'1' bit string in version 3."""
    encoder = encode_digits(model, [k], [component])
    if version == 3:
        return shortest_bits(encoder)
    return shortest_prefix(encoder, start_length(model, k, component))


def encode_stream(
    model: Model, latents: list[list[int]], components: list[int] | None = None
) -> bytes:
    return encode_digits(model, latents, components).sealed().rstrip(b"\0")


# -- the .mnc container -------------------------------------------------------------------------

MAGIC = b"\x89MNC\r\n\x1a\n"
FIELDS = struct.Struct(">8sBBHHII32sQ")


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out) + bytes([value])


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


@dataclass
class Mnc:
    mode: int
    count: int
    block_size: int
    fingerprint: bytes
    # per-digit: lists of strings (bytes; version 3: '0'/'1' bit strings); stream: (count, stream)
    blocks: list
    version: int = 1
    levels: list = None  # versions 2 and 3: each block's levels ([l] for the block, or per digit)

    def digit_levels(self, index: int, count: int) -> list[int]:
        if self.version == 1:
            return [0] * count
        levels = self.levels[index]
        return levels if len(levels) == count else levels * count


def read_levels(data: bytes, pos: int, mode: int, n: int) -> tuple[list[int], int]:
    """A version-2 or -3 block's levels: ``00 l`` or, per-digit blocks only, ``01 l_1 .. l_n``."""
    kind = data[pos]
    assert kind == 0 or (kind == 1 and mode == 0)
    size = 1 if kind == 0 else n
    assert pos + 1 + size <= len(data)
    return list(data[pos + 1 : pos + 1 + size]), pos + 1 + size


def read_strings(data: bytes, pos: int, n: int, version: int) -> tuple[list, int]:
    """A per-digit block's n lengths, then its strings: bytes, or (version 3) bits back to back."""
    lengths = []
    for _ in range(n):
        length, pos = read_varint(data, pos)
        lengths.append(length)
    if version < 3:
        strings = []
        for length in lengths:
            strings.append(data[pos : pos + length])
            pos += length
        return strings, pos
    size = -(-sum(lengths) // 8)
    assert pos + size <= len(data)
    bits = "".join(f"{byte:08b}" for byte in data[pos : pos + size])
    strings, start = [], 0
    for length in lengths:
        strings.append(bits[start : start + length])
        start += length
    assert all(s.endswith("1") for s in strings if s), "a bit string ends with a 1 bit"
    assert "1" not in bits[start:], "the padding bits are 0"
    return strings, pos + size


def parse_mnc(data: bytes) -> Mnc:
    magic, version, mode, height, width, count, block, fp, payload = FIELDS.unpack_from(data)
    assert (magic, height, width) == (MAGIC, 28, 28) and version in (1, 2, 3)
    assert struct.unpack_from(">I", data, 62)[0] == zlib.crc32(data[:62])
    assert len(data) == 70 + payload
    assert struct.unpack_from(">I", data, 66 + payload)[0] == zlib.crc32(data[: 66 + payload])
    body = data[: 66 + payload]  # nothing of a block may run into the file CRC
    pos, blocks, levels = 66, [], []
    for first in range(0, count, block):
        n = min(block, count - first)
        if version >= 2:
            block_levels, pos = read_levels(body, pos, mode, n)
            levels.append(block_levels)
        if mode == 0:
            strings, pos = read_strings(body, pos, n, version)
            blocks.append(strings)
        else:
            length, pos = read_varint(body, pos)
            blocks.append((n, body[pos : pos + length]))
            pos += length
    assert pos == len(body)
    return Mnc(mode, count, block, fp, blocks, version, levels if version >= 2 else None)


def write_strings(strings: list, version: int) -> bytes:
    """A per-digit block after its levels: the lengths (bytes, or bits in version 3), the strings."""
    lengths = b"".join(varint(len(s)) for s in strings)
    if version < 3:
        return lengths + b"".join(strings)
    return lengths + bits_to_bytes("".join(strings))


def write_mnc(mnc: Mnc) -> bytes:
    payload = b""
    for index, block in enumerate(mnc.blocks):
        if mnc.version >= 2:
            levels = mnc.levels[index]
            payload += bytes([0, levels[0]]) if len(levels) == 1 else bytes([1, *levels])
        if mnc.mode == 0:
            payload += write_strings(block, mnc.version)
        else:
            payload += varint(len(block[1])) + block[1]
    fields = FIELDS.pack(
        MAGIC,
        mnc.version,
        mnc.mode,
        28,
        28,
        mnc.count,
        mnc.block_size,
        mnc.fingerprint,
        len(payload),
    )
    body = fields + struct.pack(">I", zlib.crc32(fields)) + payload
    return body + struct.pack(">I", zlib.crc32(body))


def mnc_levels(mnc: Mnc) -> list[int]:
    """Every digit's level, in order (0 throughout a version-1 file)."""
    out = []
    for index, block in enumerate(mnc.blocks):
        out += mnc.digit_levels(index, len(block) if mnc.mode == 0 else block[0])
    return out


def string_bytes(string: bytes | str) -> bytes:
    """What the decoder reads of a string (before its zero padding); refuses a trailing zero."""
    if isinstance(string, str):
        assert not string.endswith("0")
        return bits_to_bytes(string)
    assert not string.endswith(b"\0")
    return string


def decode_mnc(model: Model, mnc: Mnc, components: list[int] | None = None) -> list[list[int]]:
    """Every digit's integer latents; a mixture's components are appended to ``components``."""
    latents = []
    for index, block in enumerate(mnc.blocks):
        if mnc.mode == 0:
            for string, level in zip(block, mnc.digit_levels(index, len(block)), strict=True):
                data = string_bytes(string)
                latents += decode_digits(model.at_level(level), data, 1, components=components)
        else:
            (level,) = set(mnc.digit_levels(index, block[0]))
            latents += decode_digits(
                model.at_level(level), block[1], block[0], components=components
            )
    return latents


def reencode_mnc(
    model: Model, mnc: Mnc, latents: list[list[int]], components: list[int] | None = None
) -> bytes:
    """The file again from its latents (a mixture's: with the components it coded)."""
    blocks, first = [], 0
    components = components or [0] * len(latents)
    for index, block in enumerate(mnc.blocks):
        n = len(block) if mnc.mode == 0 else block[0]
        part, levels = latents[first : first + n], mnc.digit_levels(index, n)
        chosen = components[first : first + n]
        if mnc.mode == 0:
            blocks.append(
                [
                    encode_string(model.at_level(lv), k, c, mnc.version)
                    for k, lv, c in zip(part, levels, chosen, strict=True)
                ]
            )
        else:
            blocks.append((n, encode_stream(model.at_level(levels[0]), part, chosen)))
        first += n
    fields = (mnc.mode, mnc.count, mnc.block_size, mnc.fingerprint, blocks, mnc.version, mnc.levels)
    return write_mnc(Mnc(*fields))


# -- latents to pixels (docs/mnc-format.md, "Decoding") ------------------------------------------


def float32_of(k: int) -> np.float32:
    """``float32(k)``: the nearest float64 (Python's ``float(int)``, ties to even), saturated
    to the largest finite float32 of its sign, then the nearest float32 (ties to even)."""
    return np.float32(min(max(float(k), -FLOAT32_MAX), FLOAT32_MAX))


def dequantise(k: int, offset: np.float32, gain: np.float32) -> np.float32:
    """``y^ = (float32(k) + o) / g``: one float32 addition, then one float32 division."""
    with np.errstate(over="ignore"):
        return (float32_of(k) + np.float32(offset)) / np.float32(gain)


def float32_once(k: int) -> float:
    """``k`` rounded once to float32 (ties to even; infinity beyond its range): NOT the rule,
    which goes through float64; the test vectors must tell the two apart."""
    magnitude, shift = abs(k), max(0, abs(k).bit_length() - 24)
    q, r = divmod(magnitude, 1 << shift)
    if shift and (r > 1 << (shift - 1) or (r == 1 << (shift - 1) and q & 1)):
        q += 1
    value = q << shift
    return math.copysign(math.inf if value >= 1 << 128 else float(value), k)


def float32_bits(value) -> str:
    return f"{int(np.float32(value).view(np.uint32)):08x}"


def float32_from_bits(text: str) -> np.float32:
    return np.uint32(int(text, 16)).view(np.float32)


# -- the synthesis transform (arch "seed") ------------------------------------------------------


def synthesise(
    model: Model, latents: list[list[int]], levels: list[int] | None = None
) -> np.ndarray:
    """uint8 (N, 28, 28): ``y^ = (float32(k) + o_l) / g_l``, float32 layers,
    ``round_half_even(255 x)`` saturated."""
    levels = levels or [0] * len(latents)
    books = [i for i, level in enumerate(levels) if level in model.codebook_levels]
    if books:  # a codebook digit is its codeword; the others go through the transform
        out = np.zeros((len(latents), 28, 28), dtype=np.uint8)
        for i in books:
            (index,) = latents[i]
            out[i] = model.at_level(levels[i]).pixels()[index]
        rest = [i for i in range(len(latents)) if i not in books]
        if rest:
            out[rest] = synthesise(model, [latents[i] for i in rest], [levels[i] for i in rest])
        return out
    k = np.array([[float32_of(v) for v in row] for row in latents], dtype=np.float32)
    dims = model.dims  # a mixture level's C x D offsets are all 0: its first D serve
    offsets = np.stack([model.at_level(lv).offsets[:dims].astype(np.float32) for lv in levels])
    gains = np.stack([model.at_level(level).gains() for level in levels])
    with np.errstate(over="ignore"):
        y = torch.from_numpy((k + offsets) / gains)
    w = model.weight
    conditioned = model.record["config"].get("conditioned_decoder", False)
    index = torch.tensor(levels, dtype=torch.int64)

    def affine(layer: str, h: torch.Tensor) -> torch.Tensor:
        """A conditioned decoder's ``h * exp(s_l) + t_l``, per unit or channel, before the ReLU."""
        if not conditioned:
            return h
        shape = (h.shape[0], -1) + (1,) * (h.dim() - 2)
        scale = torch.exp(w(f"level_log_scales.{layer}")[index]).view(shape)
        return h * scale + w(f"level_shifts.{layer}")[index].view(shape)

    with torch.no_grad():
        h = F.leaky_relu(affine("fc_1", F.linear(y, w("fc_1.weight"), w("fc_1.bias"))), 0.2)
        h = F.linear(h, w("fc_2.weight"), w("fc_2.bias")).reshape(-1, 50, 7, 7)
        h = F.leaky_relu(affine("fc_2", h), 0.2)
        for layer in ("conv_1", "conv_2"):
            h = F.conv_transpose2d(
                h, w(f"{layer}.weight"), w(f"{layer}.bias"), stride=2, padding=2, output_padding=1
            )
            h = F.leaky_relu(affine(layer, h) if layer == "conv_1" else h, 0.2)
    pixels = np.nan_to_num(np.rint(h.numpy()[:, 0] * np.float32(255)), nan=0.0)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def read_idx_images(path: Path) -> np.ndarray:
    data = path.read_bytes()
    magic, n, rows, cols = struct.unpack_from(">IIII", data)
    assert magic == 0x803 and len(data) == 16 + n * rows * cols
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, rows, cols)


# -- tests --------------------------------------------------------------------------------------


def model_path(name: str) -> Path:
    return PRETRAINED_DIR / f"{name}.safetensors"


def golden_path(name: str, fmt: str, mode: str) -> Path:
    """``<name>.<mode>.mnc`` (format "old") or ``<name>.v3.<mode>.mnc`` (format "v3")."""
    return GOLDEN_DIR / f"{name}{'.v3' if fmt == 'v3' else ''}.{mode}.mnc"


def check_version(model: Model, mnc: Mnc, fmt: str) -> None:
    """The version a format has; a fixed-rate model's version-3 blocks all start ``00 00``."""
    assert mnc.version == (3 if fmt == "v3" else 2 if model.variable_rate else 1)
    if mnc.version == 3 and not model.variable_rate:
        assert mnc.levels == [[0]] * len(mnc.blocks)


@pytest.mark.parametrize("name", NAMES)
def test_fingerprint_and_content_hash_recomputed_from_the_spec(name):
    model = read_model(model_path(name))
    assert fingerprint(model) == model.record["fingerprint"]
    assert content_hash(model) == model.record["content_sha256"]
    for level in range(model.levels):
        at = model.at_level(level)
        counts = at.counts
        rows = 1 if at.is_codebook else model.mixture_components * model.dims
        assert counts.shape[0] == rows and np.all(counts >= 1)
        assert np.all(counts.astype(np.int64).sum(axis=1) == 1 << model.precision)


def without_spaces(text: str) -> str:
    """JSON text with every space outside its strings removed."""
    out, in_string, escaped = [], False, False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == " ":
            continue
        out.append(char)
    return "".join(out)


@pytest.mark.parametrize("name", NAMES)
def test_the_hashed_record_is_the_stored_text_without_spaces_and_content_hash(name):
    """The content hash's record, re-serialised by Python, is the stored record text with the
    spaces outside strings and the ``content_sha256`` member removed (a reader in another
    language needs no Python float formatting); the entries JSON begins as the spec shows."""
    model = read_model(model_path(name))
    stored = model.header["__metadata__"]["mnistcodec"]
    member = f'"content_sha256":"{model.record["content_sha256"]}"'
    text = without_spaces(stored)
    text = (
        text.replace(member + ",", "") if member + "," in text else text.replace("," + member, "")
    )
    rest = {k: v for k, v in model.record.items() if k != "content_sha256"}
    assert text == json.dumps(rest, sort_keys=True, separators=(",", ":"))
    if name == "seed-lmbda2000":
        entries = {k: v for k, v in model.header.items() if k != "__metadata__"}
        compact = json.dumps(entries, sort_keys=True, separators=(",", ":"))
        documented = '{"coding.counts":{"data_offsets":[200,2600],"dtype":"I32","shape":[50,12]},'
        assert compact.startswith(documented + '"coding.lower":{"data_offsets":[2600,2800],')


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name, fmt", CASES)
def test_golden_file_decodes_and_reencodes_from_the_spec(name, fmt, mode):
    model = read_model(model_path(name))
    data = golden_path(name, fmt, mode).read_bytes()
    mnc = parse_mnc(data)
    check_version(model, mnc, fmt)
    assert mnc.fingerprint.hex() == model.record["fingerprint"]
    components: list[int] = []
    latents = decode_mnc(model, mnc, components)
    assert len(latents) == mnc.count == 24
    assert reencode_mnc(model, mnc, latents, components) == data
    if model.mixture_components > 1:  # each digit's component is one with the least information
        for k, level, chosen in zip(latents, mnc_levels(mnc), components, strict=True):
            at = model.at_level(level)
            if at.is_codebook:
                continue
            ratios = [information_ratio(at, k, c) for c in range(at.components)]
            bits = [math.log2(n) - math.log2(p) for n, p in ratios]
            assert bits[chosen] <= min(bits) + 1e-9
    expected = read_idx_images(GOLDEN_DIR / f"{name}.decoded.idx")
    pixels = synthesise(model, latents, mnc_levels(mnc))
    assert np.abs(pixels.astype(int) - expected).max() <= 1
    assert np.count_nonzero(pixels != expected) <= pixels.size // 1000


@pytest.mark.parametrize("name, fmt", CASES)
def test_both_modes_decode_to_the_same_latents(name, fmt):
    model = read_model(model_path(name))
    per_digit, stream = (
        decode_mnc(model, parse_mnc(golden_path(name, fmt, mode).read_bytes())) for mode in MODES
    )
    assert per_digit == stream


def test_latents_to_pixels_vectors():
    """``tests/golden/dequantisation.json``: the rule, bit for bit, where a choice matters."""
    document = json.loads((GOLDEN_DIR / "dequantisation.json").read_text())
    other_order = double_rounding = saturated = infinite = 0
    for case in document["cases"]:
        k = int(case["k"])
        offset, gain = float32_from_bits(case["offset"]), float32_from_bits(case["gain"])
        y = dequantise(k, offset, gain)
        assert float32_bits(y) == case["y_hat"], case
        f = float32_of(k)
        with np.errstate(over="ignore"):
            others = [f / gain + offset / gain, (f + offset) * (np.float32(1) / gain)]
            exact = np.float32((float(k) + float(offset)) / float(gain))
        other_order += any(float32_bits(v) != case["y_hat"] for v in [*others, exact])
        once = float32_once(k)
        double_rounding += math.isfinite(once) and once != float(f)
        saturated += math.isinf(once)
        infinite += bool(np.isinf(y))
    # The vectors tell the rule from the other readings of it.
    assert other_order >= 10 and double_rounding >= 3 and saturated >= 3 and infinite >= 2


@pytest.mark.parametrize("name", [n for n in NAMES if read_model(model_path(n)).variable_rate])
def test_exp_of_gains_and_scales_is_within_one_ulp_of_exact(name):
    """The spec lets ``exp`` be off by one ulp: torch's float32 exp is, and nothing more."""
    model = read_model(model_path(name))
    logs = [k for k in model.tensors if "log_gains" in k or "level_log_scales" in k]
    assert logs
    for key in logs:
        x = model.tensors[key].astype(np.float32)
        ours = torch.exp(torch.from_numpy(x)).numpy()
        exact = np.exp(x.astype(np.float64)).astype(np.float32)  # correctly rounded but for ties
        ulps = np.abs(ours.view(np.int32).astype(np.int64) - exact.view(np.int32))
        assert ulps.max() <= 1, key


@pytest.mark.parametrize(
    "file, version",
    [("kinds.vr-balanced.version-1.mnc", 1), ("kinds.seed-lmbda2000.version-2.mnc", 2)],
)
def test_every_version_decodes_with_every_model_kind(file, version):
    """A version-1 file of a variable-rate model (its digits at level 0) and a version-2 file
    of a fixed-rate model (levels 00 00) are valid: they decode and re-encode byte for byte."""
    data = (GOLDEN_DIR / file).read_bytes()
    model = read_model(model_path(file.split(".")[1]))
    mnc = parse_mnc(data)
    assert mnc.version == version and model.variable_rate == (version == 1)
    latents = decode_mnc(model, mnc)
    assert latents == json.loads((GOLDEN_DIR / "kinds.latents.json").read_text())[file]
    assert set(mnc_levels(mnc)) == {0}
    assert reencode_mnc(model, mnc, latents) == data


def test_every_model_has_version_3_golden_files():
    assert all((name, "v3") in CASES for name in NAMES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", WITH_OLD)
def test_v3_and_old_files_decode_to_the_same_latents(name, mode):
    """Same latents, levels and components; v3 bit strings no longer than the byte strings."""
    model = read_model(model_path(name))
    old, v3 = (parse_mnc(golden_path(name, fmt, mode).read_bytes()) for fmt in FORMATS)
    old_components: list[int] = []
    v3_components: list[int] = []
    assert decode_mnc(model, old, old_components) == decode_mnc(model, v3, v3_components)
    assert old_components == v3_components and mnc_levels(old) == mnc_levels(v3)
    if mode == "stream":  # stream blocks are unchanged from version 2
        assert v3.blocks == old.blocks
        return
    for old_block, v3_block in zip(old.blocks, v3.blocks, strict=True):
        for string, bits in zip(old_block, v3_block, strict=True):
            # the byte string's point is in the interval: it has no more trailing zeros than p
            last_one = 8 * len(string) - trailing_zeros(string[-1]) if string else 0
            assert len(bits) <= last_one


def constriction_interval(probabilities: np.ndarray | None, symbol: int, model) -> tuple[int, int]:
    """(left, weight) of ``symbol`` as constriction codes it, read off the encoder's state.

    From a fresh encoder (range ``2**64 - 1``), one symbol leaves ``lower = s * left``
    and ``range = s * weight`` with ``s = (2**64 - 1) >> 24``.
    """
    encoder = constriction.stream.queue.RangeEncoder()
    if probabilities is None:
        encoder.encode(np.array([symbol], np.int32), model)
    else:
        encoder.encode(np.array([symbol], np.int32), model, probabilities[None, :])
    position, (lower, size) = encoder.pos()
    scale = STATE_MAX >> MODEL_BITS
    assert position == 0 and lower % scale == 0 and size % scale == 0
    return lower // scale, size // scale


@pytest.mark.parametrize("name", NAMES)
def test_coded_model_is_the_documented_rule_for_every_row(name):
    family = constriction.stream.model.Categorical(perfect=False)
    model = read_model(model_path(name))
    for level in range(model.levels):
        at = model.at_level(level)
        # A mixture's 16 x 800 rows are built by one rule: its first and last components' rows.
        last = at.components - 1
        checked = [*at.rows(0), *(at.rows(last) if last else [])]
        probabilities = at.counts.astype(np.float64) / (1 << at.precision)
        for index in checked:
            row, cdf = probabilities[index], at.cdfs[index]
            for symbol in range(len(row)):
                assert constriction_interval(row, symbol, family) == cdf.interval(symbol)
    if model.mixture_components > 1:
        counts = model.tensors["coding.components.counts"][0].astype(np.float64)
        row = counts / (1 << model.precision)
        for symbol in range(len(row)):
            assert constriction_interval(row, symbol, family) == model.component_cdf.interval(
                symbol
            )


def test_overflow_models_are_constriction_uniform_models():
    for size in (EXPONENTS, *(1 << bits for bits in range(1, CHUNK_BITS + 1))):
        coder_model, expected = constriction.stream.model.Uniform(size), uniform(size)
        for symbol in sorted({*range(min(size, 4)), *range(max(0, size - 4), size), size // 2}):
            assert constriction_interval(None, symbol, coder_model) == expected.interval(symbol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_overflow_vectors_decode_and_reencode_from_the_spec(fmt, mode):
    record = json.loads((GOLDEN_DIR / "overflow.latents.json").read_text())
    model = read_model(model_path(record["model"]))
    data = golden_path("overflow", fmt, mode).read_bytes()
    mnc = parse_mnc(data)
    check_version(model, mnc, fmt)
    assert mnc.block_size == record["block_size"] and len(mnc.blocks) == 3
    assert mnc.fingerprint.hex() == model.record["fingerprint"]
    latents = decode_mnc(model, mnc)
    assert latents == record["latents"]
    assert reencode_mnc(model, mnc, latents) == data


# -- the worked example of docs/mnc-format.md ---------------------------------------------------

EXAMPLE_MODEL = "seed-lmbda2000"


def worked_example(name: str = EXAMPLE_MODEL, digit: int = 0) -> str:
    """Digit ``digit`` of ``<name>.per-digit.mnc`` decoded step by step (text for the doc)."""
    model = read_model(model_path(name))
    data = (GOLDEN_DIR / f"{name}.per-digit.mnc").read_bytes()
    mnc = parse_mnc(data)
    string = mnc.blocks[0][digit]
    lines = [
        f"file {name}.per-digit.mnc: {len(data)} bytes",
        f"  bytes 0-21: {data[:22].hex(' ')}",
        f"  mode {mnc.mode}, 28x28, N = {mnc.count}, B = {mnc.block_size}",
        f"  fingerprint {mnc.fingerprint.hex()}",
        f"  payload length {int.from_bytes(data[54:62], 'big')}, header CRC {data[62:66].hex()}",
        f"  block 0: {mnc.count} lengths {data[66 : 66 + mnc.count].hex(' ')}, then the strings",
        f"digit {digit}: {len(string)} bytes {string.hex(' ')}",
        "",
        f"row 0 counts: {model.counts[0].tolist()}",
        f"row 0 left:   {list(model.cdfs[0].left)}",
        "",
        "dim  scale          quantile  column  left      weight    k   word read",
    ]
    trace: list = []
    (k,) = decode_digits(model, string, 1, trace)
    for dim, (scale, quantile, column, left, weight, word) in enumerate(trace):
        read = word.hex() if word is not None else ""
        row = f"{dim:<4} {scale:<14} {quantile:<9} {column:<7} {left:<9} {weight:<9} {k[dim]:<3} {read}"
        lines.append(row.rstrip())
    encoder = encode_digits(model, [k])
    grid, full = 64 + 32 * encoder.shifts, encoder.sealed()
    start = start_length(model, k)
    lines += [
        "",
        f"re-encoding: s = {encoder.shifts} shifts, grid G = {grid} bits",
        f"  low  = {encoder.low:#x}",
        f"  high = {encoder.low + encoder.range:#x}",
        f"  sealed: {full.hex(' ')}",
        f"  start = max(0, floor(I / 8) - 1) = {start}",
    ]
    for length in range(start, len(full.rstrip(b"\0"))):
        value = int.from_bytes(full[:length], "big") << (grid - 8 * length)
        step = 1 << (grid - 8 * length)
        lines.append(
            f"  L = {length}: prefix {full[:length].hex()} ({'>=' if value >= encoder.low else '<'} low), "
            f"plus one ({'<' if value + step < encoder.low + encoder.range else '>='} high)"
        )
    lines += [
        f"  string: {encode_string(model, k).hex(' ')}",
        "",
        f"y^ = k + o (every offset of this model is {model.offsets.max():g}); pixels of row 14:",
        f"  {synthesise(model, [k])[0, 14].tolist()}",
    ]
    return "\n".join(lines)


def test_the_worked_example_in_the_spec_is_what_this_decoder_prints():
    spec = (ROOT / "docs" / "mnc-format.md").read_text()
    assert worked_example() in spec


def worked_example_v3(name: str = EXAMPLE_MODEL, digit: int = 0) -> str:
    """Digit ``digit`` of ``<name>.v3.per-digit.mnc``: its bit string from the encoder's state."""
    model = read_model(model_path(name))
    mnc = parse_mnc(golden_path(name, "v3", "per-digit").read_bytes())
    bits = mnc.blocks[0][digit]
    (k,) = decode_digits(model, string_bytes(bits), 1)
    encoder = encode_digits(model, [k])
    grid, low, high = 64 + 32 * encoder.shifts, encoder.low, encoder.low + encoder.range - 1
    assert 0 < low < high and shortest_bits(encoder) == bits
    t = (low ^ high).bit_length() - 1
    byte = (grid - 1 - t) // 8
    a_byte, b_byte = ((v >> (grid - 8 * byte - 8)) & 0xFF for v in (low, high))
    point = shortest_point(low, high)
    zeros, whole = trailing_zeros(point), len(bits) // 8 * 8
    if low % (1 << (t + 1)) == 0:
        rule = "are all 0, so p = a"
    else:
        rule = f"are not all 0, so p = b with its {t} lowest bits cleared"
    return "\n".join(
        [
            f"a = low      = {low:#0{grid // 4 + 2}x}",
            f"b = high - 1 = {high:#0{grid // 4 + 2}x}",
            f"highest differing bit: t = {t} (byte {byte}: {a_byte:02x} = {nibbles(a_byte)}, "
            f"{b_byte:02x} = {nibbles(b_byte)})",
            f"the {t + 1} lowest bits of a {rule}",
            f"p = {point:#0{grid // 4 + 2}x}, z = {zeros} trailing zeros",
            f"string: G - z = {grid} - {zeros} = {len(bits)} bits, "
            f"{bits_to_bytes(bits[:whole]).hex(' ')} then {bits[whole:]}",
        ]
    )


def nibbles(byte: int) -> str:
    return f"{byte >> 4:04b} {byte & 0xF:04b}"


def test_the_v3_worked_example_in_the_spec_is_what_this_decoder_prints():
    spec = (ROOT / "docs" / "mnc-format.md").read_text()
    assert worked_example_v3() in spec
    data = golden_path(EXAMPLE_MODEL, "v3", "per-digit").read_bytes()
    old = parse_mnc(golden_path(EXAMPLE_MODEL, "old", "per-digit").read_bytes())
    mnc = parse_mnc(data)
    strings = mnc.blocks[0]
    assert (len(data), mnc.count, len(old.blocks[0]), mnc.levels) == (248, 24, 24, [[0]])
    assert data[66:68] == bytes(2) and data[68:72] == bytes.fromhex("33351e31")
    assert [len(s) for s in strings[:4]] == [51, 53, 30, 49]
    assert bits_to_bytes(strings[0]) == bytes.fromhex("6b44a5ea00efa0") == old.blocks[0][0]
    assert int(strings[0], 2) << (96 - 51) == 0x6B44A5EA00EFA00000000000
    first = 68 + sum(len(varint(len(s))) for s in strings)  # after the levels and lengths
    assert data[first : first + 7] == bytes.fromhex("6b44a5ea00efbb")
    assert strings[0].endswith("101") and strings[1].startswith("11011")


if __name__ == "__main__":
    print(worked_example())
    print()
    print(worked_example_v3())


CODEBOOK_FILES = ["level-2.v3.per-digit", "level-2.v3.stream", "target.v3.per-digit"]


@pytest.mark.parametrize("stem", CODEBOOK_FILES)
def test_codebook_level_files_decode_and_reencode_from_the_spec(stem):
    """``vr-codebook``'s files at codebook level 2 and at levels mixing codebooks and the
    network (``tests/golden/make_codebook_levels.py``): a codebook digit is one index whose
    codeword is its pixels, exactly."""
    model = read_model(model_path("vr-codebook"))
    assert model.codebook_levels == [0, 1, 2, 3, 4]
    data = (GOLDEN_DIR / f"vr-codebook.{stem}.mnc").read_bytes()
    mnc = parse_mnc(data)
    assert mnc.fingerprint.hex() == model.record["fingerprint"]
    components: list[int] = []
    latents = decode_mnc(model, mnc, components)
    assert reencode_mnc(model, mnc, latents, components) == data
    levels = mnc_levels(mnc)
    books = [i for i, level in enumerate(levels) if level in model.codebook_levels]
    assert books and all(len(latents[i]) == 1 for i in books)
    if stem.startswith("target"):
        assert len(books) < len(levels)  # network digits too
    expected = read_idx_images(GOLDEN_DIR / f"vr-codebook.{stem}.digits.idx")
    pixels = synthesise(model, latents, levels)
    assert np.array_equal(pixels[books], expected[books])
    assert np.abs(pixels.astype(int) - expected).max() <= 1


def test_a_codebook_index_past_the_codewords_is_not_a_digit():
    """The escape of a codebook level's table decodes to an index no codeword has."""
    model = read_model(model_path("vr-codebook")).at_level(0)
    encoder = encode_digits(model, [[model.width]])  # the escape: an overflow code follows
    (k,) = decode_digits(model, encoder.sealed(), 1)
    assert k == [model.width] and k[0] >= model.pixels().shape[0]
