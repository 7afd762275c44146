"""The mixture encoder's integer component search picks exactly what the float64 search picks."""

from __future__ import annotations

import numpy as np
import pytest

from mnistcodec.coding.api import Codec
from mnistcodec.coding.mixture_coder import MixtureCoder
from mnistcodec.coding.tables import CodingTables, quantize_pmf

DIMS = 6
WIDTH = 9


def _tables(rng: np.random.Generator, components: int, duplicate: bool = False) -> MixtureCoder:
    """Random valid tables for ``components`` components of ``DIMS`` latents (windows shifted)."""
    rows = components * DIMS
    pmf = rng.dirichlet(np.full(WIDTH + 1, 0.7), size=rows)
    lower = rng.integers(-6, 2, size=rows)
    if duplicate:  # component 1 is a copy of component 0: every digit ties between them
        pmf[DIMS : 2 * DIMS], lower[DIMS : 2 * DIMS] = pmf[:DIMS], lower[:DIMS]
    tables = CodingTables(
        counts=quantize_pmf(pmf, 16),
        lower=lower.astype(np.int32),
        offsets=np.zeros(rows, dtype=np.float32),
        precision=16,
    ).validate()
    weights = rng.dirichlet(np.ones(components))
    if duplicate:
        weights[1] = weights[0]
    weight_table = CodingTables(
        counts=quantize_pmf(np.append(weights, 0.0)[None], 16),
        lower=np.zeros(1, dtype=np.int32),
        offsets=np.zeros(1, dtype=np.float32),
        precision=16,
    ).validate()
    return MixtureCoder(tables, weight_table)


def _latents(rng: np.random.Generator, count: int) -> np.ndarray:
    """Integer latents as float64: mostly in the windows, some beyond, a few huge."""
    k = rng.integers(-9, 10, size=(count, DIMS)).astype(np.float64)
    far = rng.random((count, DIMS)) < 0.05
    k[far] = rng.choice([-1e9, -300.0, 77.0, 3e12, 2.0**100], size=int(far.sum()))
    return k


@pytest.mark.parametrize("components", [2, 3, 16, 40])
def test_the_integer_search_picks_the_float64_argmin(components):
    rng = np.random.default_rng(components)
    coder = _tables(rng, components)
    k = _latents(rng, 3000)
    expected = np.argmin(coder.exact_bits(k), axis=1)
    assert np.array_equal(coder.choose(k), expected)
    symbols = coder.to_symbols(k)
    assert np.array_equal(symbols.indices[:, 0], expected)
    assert np.array_equal(coder.from_symbols(symbols), k)


@pytest.mark.parametrize("float32_exact", [1 << 24, 1])
def test_the_search_table_sums_exactly_in_float32_or_float64(monkeypatch, float32_exact):
    """The table's sums are exact integers: float32 where they stay below 2**24, else float64."""
    import mnistcodec.coding.mixture_coder as mixture_coder

    monkeypatch.setattr(mixture_coder, "FLOAT32_EXACT", float32_exact)
    rng = np.random.default_rng(11)
    coder = _tables(rng, 16)
    table = coder._choice[0]
    assert table.dtype == (
        mixture_coder.torch.float32 if float32_exact > 1 else mixture_coder.torch.float64
    )
    assert table.is_contiguous() and bool((table == table.round()).all())
    k = _latents(rng, 2000)
    assert np.array_equal(coder.choose(k), np.argmin(coder.exact_bits(k), axis=1))


def test_ties_go_to_the_smaller_index_as_in_the_float64_search():
    rng = np.random.default_rng(7)
    coder = _tables(rng, 4, duplicate=True)
    k = _latents(rng, 500)
    bits = coder.exact_bits(k)
    assert np.array_equal(bits[:, 0], bits[:, 1])  # every digit ties between 0 and 1
    chosen = coder.choose(k)
    assert np.array_equal(chosen, np.argmin(bits, axis=1))
    assert not np.any(chosen == 1)


def test_the_search_is_exact_without_its_tables(monkeypatch):
    """A coder whose windows spread too wide for the integer tables searches in float64 alone."""
    import mnistcodec.coding.mixture_coder as mixture_coder

    monkeypatch.setattr(mixture_coder, "MAX_CHOICE_ENTRIES", 1)
    rng = np.random.default_rng(3)
    coder = _tables(rng, 5)
    assert coder._choice is None
    k = _latents(rng, 200)
    assert np.array_equal(coder.choose(k), np.argmin(coder.exact_bits(k), axis=1))


def test_the_default_model_chooses_as_the_float64_search_on_test_digits(test_digits):
    codec = Codec.from_model("vr-mixture-long", precision="fp32")
    for level in (0, codec.default_level, codec.levels - 1):
        k, _ = codec.analyse(test_digits[:512], level)
        coder = codec.coders[level]
        assert np.array_equal(coder.choose(k), np.argmin(coder.exact_bits(k), axis=1))
