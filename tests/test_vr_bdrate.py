"""The variable-rate model's published BD-rates are what its stored curves give.

``bench/results/vr_bdrate.json`` holds every evaluated point (written by
``bench/vr_bdrate.py``); recomputing the BD-rates from them must give the
stored values, the BENCHMARKS.md section and the README's figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_bench_module

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "vr_bdrate.json"


@pytest.fixture(scope="module")
def stored():
    return json.loads(RESULTS.read_text())


def test_stored_curves_are_whole_test_set_evaluations(stored):
    assert [p["lmbda"] for p in stored["points"]["improved"]] == [
        300.0,
        500.0,
        1000.0,
        2000.0,
        4000.0,
    ]
    for name, points in stored["points"].items():
        assert all(p["n"] == 10000 for p in points), name
        if name not in ("seed", "improved"):
            assert [p["level"] for p in points] == list(range(16))


def test_bd_rates_recomputed_from_stored_points(stored):
    bench = load_bench_module("vr_bdrate")
    result = bench.summarise(stored["points"], stored["budgets"])
    for key, bd in stored["bd"].items():
        for label in ("psnr", "mad"):
            assert result["bd"][key][label]["bd_rate_percent"] == pytest.approx(
                bd[label]["bd_rate_percent"], abs=1e-9
            )
    assert bench.markdown(result).strip() in (REPO / "BENCHMARKS.md").read_text()


def test_readme_quotes_the_recomputed_figures(stored):
    bench = load_bench_module("vr_bdrate")
    result = bench.summarise(stored["points"], stored["budgets"])
    readme = (REPO / "README.md").read_text()
    from mnistcodec.coding.zoo import DEFAULT_MODEL

    shipped = result["bd"][f"{DEFAULT_MODEL} vs improved"]["psnr"]["bd_rate_percent"]
    seed = result["bd"][f"{DEFAULT_MODEL} vs seed"]["psnr"]["bd_rate_percent"]
    assert f"{shipped:+.1f} % at equal PSNR against the improved models" in readme
    assert f"{seed:+.1f} % against the seed" in readme
    first = result["bd"]["vr vs improved"]["psnr"]["bd_rate_percent"]
    first_seed = result["bd"]["vr vs seed"]["psnr"]["bd_rate_percent"]
    assert f"`vr` model is at {first:+.1f} % and {first_seed:+.1f} %" in readme
