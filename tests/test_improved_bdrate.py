"""The published BD-rate of the improved preset is what the stored curves give.

``bench/results/improved_bdrate.json`` holds the evaluated points of both
curves (written by ``bench/improved_bdrate.py``); recomputing the BD-rates
from those points must give the stored values, the BENCHMARKS.md section and
the README's headline figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_bench_module
from mnistcodec.experiments.bdrate import preset_bd_rates

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "improved_bdrate.json"


@pytest.fixture(scope="module")
def stored():
    return json.loads(RESULTS.read_text())


def test_stored_points_cover_the_seed_lambdas(stored):
    for preset in ("seed", "improved"):
        points = stored["points"][preset]
        assert [p["lmbda"] for p in points] == [300.0, 500.0, 1000.0, 2000.0]
        assert all(p["n"] == 10000 for p in points)


def test_bd_rates_recomputed_from_stored_points(stored):
    bd = preset_bd_rates(
        ("seed", stored["points"]["seed"]), ("improved", stored["points"]["improved"])
    )
    assert bd["psnr"]["bd_rate_percent"] == pytest.approx(stored["bd_rate_psnr_percent"], abs=1e-9)
    assert bd["mad"]["bd_rate_percent"] == pytest.approx(stored["bd_rate_mad_percent"], abs=1e-9)
    assert bd["psnr"]["bd_rate_percent"] <= -30.0  # the target, at equal PSNR


def test_readme_and_benchmarks_quote_the_recomputed_figures(stored):
    bench = load_bench_module("improved_bdrate")
    result = bench.summarise(stored["points"])
    readme = (REPO / "README.md").read_text()
    assert f"**{-result['bd_rate_psnr_percent']:.1f} % fewer bits at equal PSNR**" in readme
    assert f"{-result['bd_rate_mad_percent']:.1f} % fewer at equal MAD" in readme
    section = bench.markdown(result).strip()
    assert section in (REPO / "BENCHMARKS.md").read_text()


def test_bd_rate_sign_and_scale_on_known_curves():
    seed = [
        {"lmbda": float(i), "string_bits": r, "psnr_db": q, "mad": m}
        for i, (r, q, m) in enumerate(
            [(10, 11, 0.11), (20, 13, 0.09), (40, 16, 0.06), (80, 19, 0.04)]
        )
    ]
    halved = [{**p, "string_bits": p["string_bits"] / 2} for p in seed]
    bd = preset_bd_rates(("seed", seed), ("half", halved))
    assert bd["psnr"]["bd_rate_percent"] == pytest.approx(-50.0, abs=1e-9)
    assert bd["mad"]["bd_rate_percent"] == pytest.approx(-50.0, abs=1e-9)
    assert bd["psnr"]["note"] == "" and bd["mad"]["quality"] == "mad"
