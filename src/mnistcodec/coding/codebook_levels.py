"""Codebook levels: levels of a variable-rate model that send a whole digit as one index.

At the lowest rates one digit at a time is coded in a handful of bits, and
vector quantisation of the whole digit beats the autoencoder there by 2 to 4
bits (``bench/rd_floor.py``). A model of format version 2 may therefore make
some of its levels **codebook levels** (the record's ``codebook_levels``):

* level ``l`` holds ``K`` codewords, ``uint8`` digits ``c_0 .. c_{K-1}``
  (tensor ``codebook.level.<l>.pixels``, (K, 28, 28)), and its coding tables
  ``coding.level.<l>.*`` have one row: ``K`` counts and the escape, lower
  bound 0, offset 0;
* a digit at that level is the index ``i`` of one codeword, range coded with
  that row exactly as a one-latent digit (its information content is
  ``-log2(count_i / 2^precision)``); it decodes to ``c_i``, a table lookup,
  exact on every machine; the synthesis transform is not used;
* the encoder sends the codeword nearest in squared error,
  ``argmin_i ||x - c_i||^2`` (ties: the lowest index), computed exactly on
  the integer pixels, so every machine and the JavaScript library choose alike.

Inside the codec a codebook digit's integer latents ``k`` (D,) carry the
index in column 0 and zeros elsewhere, so that every level's digits travel
through the same arrays. Building the codebooks (K-means) is
:mod:`mnistcodec.experiments.codebooks`; writing them into a model is
:func:`with_codebooks`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from mnistcodec.coding.range_coder import DecodeError, LatentCoder, Symbols
from mnistcodec.coding.tables import MAX_TABLE_WIDTH, CodingTables
from mnistcodec.errors import ModelFileError
from mnistcodec.storage.digits import IMAGE_SHAPE, check_digits

#: The record key listing a model's codebook levels (model format version 2).
RECORD_KEY = "codebook_levels"
#: Each codebook level's codewords are the tensor ``PIXELS_PREFIX + "<l>.pixels"``.
PIXELS_PREFIX = "codebook.level."
#: Most codewords a level may hold (the coding tables' width limit).
MAX_CODEWORDS = MAX_TABLE_WIDTH
_CHUNK = 1024


def pixels_name(level: int) -> str:
    """The tensor holding codebook level ``level``'s codewords."""
    return f"{PIXELS_PREFIX}{level}.pixels"


@dataclass(frozen=True)
class Codebook:
    """``codewords`` uint8 (K, 28, 28) and the one-row integer table coding their index."""

    codewords: np.ndarray
    tables: CodingTables

    @property
    def size(self) -> int:
        return int(self.codewords.shape[0])

    def assign(self, images: np.ndarray) -> np.ndarray:
        """Each digit's nearest codeword under squared error, int64 (N,) (ties: lowest index).

        Exact, in integers: with ``x' = x - 128`` and ``c' = c - 128`` (int8),
        ``||x - c||^2 = ||x||^2 + ||c||^2 - 256 sum c' - 2 x'.c' - 2 (128 sum x' + P 128^2)``,
        and the terms of ``x`` alone do not change the argmin, so the search is
        ``argmin_i (b_i - 2 x'.c'_i)`` with ``b_i = ||c_i||^2 - 256 sum c'_i``, every
        term an int32 (``x'.c'`` is one int8 matrix product, VNNI where the CPU has
        it). Where int8 products are missing, the same in float64 (exact below 2^53).
        """
        images = check_digits(images, shape=self.codewords.shape[1:], allow_empty=True)
        x = torch.from_numpy(np.ascontiguousarray(images)).reshape(images.shape[0], -1)
        bias, signed = self._search_terms
        parts = []
        for start in range(0, x.shape[0], _CHUNK):
            rows = (x[start : start + _CHUNK].to(torch.int16) - 128).to(torch.int8)
            try:
                dot = torch._int_mm(rows, signed)
            except RuntimeError:  # no int8 product here: float64 holds it exactly
                dot = (rows.double() @ signed.double()).to(torch.int32)
            parts.append(torch.argmin(bias[None, :] - 2 * dot, dim=1))
        return torch.cat(parts).numpy().astype(np.int64) if parts else np.zeros(0, np.int64)

    @functools.cached_property
    def _search_terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(b (K,) int32, c' transposed (P, K) int8)`` of :meth:`assign`."""
        words = self.codewords.reshape(self.size, -1).astype(np.int64)
        bias = (words**2).sum(axis=1) - 256 * (words - 128).sum(axis=1)
        signed = torch.from_numpy((words - 128).astype(np.int8).T.copy())
        return torch.from_numpy(bias.astype(np.int32)), signed

    def index_bits(self, indices: np.ndarray) -> np.ndarray:
        """Information content of each index under the integer table, bits (N,)."""
        return self.tables.symbol_bits()[0, np.asarray(indices, dtype=np.int64)]

    def coder(self, latent_dims: int = 1) -> CodebookCoder:
        return CodebookCoder(self, latent_dims)

    def encode(self, indices: np.ndarray) -> list[bytes]:
        """One range-coded bit string per index."""
        coder = self.coder()
        return coder.encode_strings(coder.to_symbols(np.asarray(indices)[:, None]))

    def decode(self, strings: list[bytes]) -> np.ndarray:
        """The indices the strings code, int64 (N,); a string that is not canonical raises."""
        coder = self.coder()
        return coder.from_symbols(coder.decode_strings(strings)).astype(np.int64)[:, 0]


class CodebookCoder(LatentCoder):
    """Codes a codebook level's digits: the index in column 0 of ``k`` (N, D), one symbol each."""

    def __init__(self, codebook: Codebook, latent_dims: int) -> None:
        super().__init__(codebook.tables)
        self.codebook = codebook
        self.latent_dims = latent_dims

    def to_symbols(self, k: np.ndarray) -> Symbols:
        return super().to_symbols(np.asarray(k)[:, :1])

    def from_symbols(self, symbols: Symbols) -> np.ndarray:
        """Symbols -> (N, D) float64: the index in column 0; an index past the codewords raises."""
        index = super().from_symbols(symbols)[:, 0]
        bad = (index < 0) | (index >= self.codebook.size)
        if bad.any():
            raise DecodeError(
                f"a codebook digit decodes to index {index[bad][0]:.0f}, but the level has "
                f"{self.codebook.size} codewords; the data is corrupt"
            )
        k = np.zeros((index.shape[0], self.latent_dims))
        k[:, 0] = index
        return k


def choose(
    codebook: Codebook, images: np.ndarray, latent_dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """Digits at a codebook level -> (``k`` (N, D) float64 with the index in column 0, bits (N,))."""
    index = codebook.assign(images)
    k = np.zeros((index.shape[0], latent_dims))
    k[:, 0] = index
    return k, codebook.index_bits(index)


def lookup(codebook: Codebook, k: np.ndarray) -> np.ndarray:
    """``k`` (N, D) with indices in column 0 -> the codewords (N, 28, 28) uint8."""
    index = np.clip(np.nan_to_num(np.asarray(k, dtype=np.float64)[:, 0]), 0, codebook.size - 1)
    return codebook.codewords[index.astype(np.int64)]


# -- model files -------------------------------------------------------------------------------


def record_levels(record: Mapping, level_count: int, version: int, name: str) -> tuple[int, ...]:
    """The codebook levels a record lists, checked: none in version 1, distinct levels in 2."""
    levels = record.get(RECORD_KEY, [])
    if version == 1:
        if RECORD_KEY in record:
            raise ModelFileError(
                f"{name}: {RECORD_KEY} needs model format version 2, the file says version 1"
            )
        return ()
    if (
        not isinstance(levels, list)
        or not levels
        or any(type(level) is not int or not 0 <= level < level_count for level in levels)
        or levels != sorted(set(levels))
        or len(levels) >= level_count
    ):
        raise ModelFileError(
            f"{name}: {RECORD_KEY} must list distinct levels from 0 to {level_count - 1} in "
            f"ascending order, leaving at least one level to the network; got {str(levels)[:60]}"
        )
    return tuple(levels)


def read_codebooks(
    tensors: Mapping[str, torch.Tensor], levels: tuple[int, ...], tables: list, name: str
) -> dict[int, Codebook]:
    """The codebooks of ``levels``: pixels uint8 (K, 28, 28) matching one-row tables of width K."""
    out = {}
    for level in levels:
        pixels, table = tensors.get(pixels_name(level)), tables[level]
        if pixels is None:
            raise ModelFileError(f"{name} lacks {pixels_name(level)}")
        if (
            pixels.dtype != torch.uint8
            or pixels.ndim != 3
            or tuple(pixels.shape[1:]) != IMAGE_SHAPE
            or not 1 <= pixels.shape[0] <= MAX_CODEWORDS
        ):
            raise ModelFileError(
                f"{name}: tensor {pixels_name(level)} is {str(pixels.dtype).removeprefix('torch.')} "
                f"{tuple(pixels.shape)}, expected uint8 (K, 28, 28) with K from 1 to {MAX_CODEWORDS}"
            )
        check_table(table, int(pixels.shape[0]), f"{name}: level {level}'s table")
        out[level] = Codebook(pixels.numpy().copy(), table)
    return out


def check_table(table: CodingTables, size: int, what: str) -> None:
    """A codebook level's table: one row, ``size`` entries and the escape, lower 0, offset 0."""
    if (
        table.latent_dims != 1
        or table.width != size
        or int(table.lower[0]) != 0
        or float(table.offsets[0]) != 0.0
    ):
        raise ModelFileError(
            f"{what} must be one row of {size} counts and the escape, lower 0 and offset 0"
        )


def pixel_tensors(codebooks: Mapping[int, Codebook]) -> dict[str, torch.Tensor]:
    """The codebooks as model-file tensors (what the fingerprint covers besides their tables)."""
    return {
        pixels_name(level): torch.from_numpy(np.ascontiguousarray(cb.codewords, dtype=np.uint8))
        for level, cb in sorted(codebooks.items())
    }


# -- routing a batch's digits ------------------------------------------------------------------


def codebook_rows(codebooks: Mapping[int, Codebook], levels: np.ndarray) -> np.ndarray | None:
    """Which digits are at a codebook level (bool (N,)), or None when none is."""
    if not codebooks:
        return None
    rows = np.isin(levels, list(codebooks))
    return rows if rows.any() else None


def choose_at_levels(
    codebooks: Mapping[int, Codebook], images: np.ndarray, levels: np.ndarray, latent_dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(k (N, D), bits (N,))`` for every digit at a codebook level; other rows stay 0."""
    k, bits = np.zeros((levels.size, latent_dims)), np.zeros(levels.size)
    for level, book in codebooks.items():
        rows = np.flatnonzero(levels == level)
        if rows.size:
            k[rows], bits[rows] = choose(book, images[rows], latent_dims)
    return k, bits


def lookup_at_levels(
    codebooks: Mapping[int, Codebook], k: np.ndarray, levels: np.ndarray
) -> np.ndarray:
    """uint8 digits (N, 28, 28): the codewords of the rows at codebook levels, 0 elsewhere."""
    out = np.zeros((levels.size, *IMAGE_SHAPE), dtype=np.uint8)
    for level, book in codebooks.items():
        rows = np.flatnonzero(levels == level)
        if rows.size:
            out[rows] = lookup(book, k[rows])
    return out
