"""The distance to the rate-distortion limit that README.md and BENCHMARKS.md quote.

``bench/results/rd_limit.json`` holds every evaluated point (written by
``bench/rd_limit.py``); recomputing from them must give the stored figures,
the BENCHMARKS.md section and the README's headline table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from conftest import load_bench_module

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "rd_limit.json"


@pytest.fixture(scope="module")
def bench():
    return load_bench_module("rd_limit")


@pytest.fixture(scope="module")
def stored():
    return json.loads(RESULTS.read_text())


def test_bits_at_a_psnr_interpolate_between_the_levels_around_it(bench):
    points = [
        {"psnr_db": 12.0, "info_bits": 2.0},
        {"psnr_db": 14.0, "info_bits": 8.0},
        {"psnr_db": 16.0, "info_bits": 16.0},
    ]
    assert bench.bits_at(points, 13.0) == pytest.approx(4.0)  # geometric mean of 2 and 8
    assert bench.bits_at(points, 14.0) == pytest.approx(8.0)
    assert bench.bits_at(points, 16.0) == pytest.approx(16.0)
    assert bench.bits_at(points, 11.0) is None and bench.bits_at(points, 17.0) is None


def test_every_curve_is_a_whole_test_set_evaluation(bench, stored):
    for name, points in stored["curves"].items():
        count = len(points) if name == bench.CODEBOOKS else 16
        assert [p["level"] for p in points] == list(range(count)), name
        assert all(p["n"] == 10000 for p in points), name


def test_the_codebook_curve_is_bench_rd_floors(bench, stored):
    floor = json.loads((REPO / "bench" / "results" / "rd_floor.json").read_text())
    assert stored["curves"][bench.CODEBOOKS] == bench.codebook_points(floor["codebooks"])
    sizes = [p["codewords"] for p in stored["curves"][bench.CODEBOOKS]]
    assert sizes == sorted(sizes) and len(sizes) >= 2


def test_figures_recomputed_from_stored_points(bench, stored):
    again = bench.summarise(
        stored["curves"], stored["notes"], stored["trivial_codecs"], stored["refinement"]
    )
    for key in ("at_psnr", "below_floor", "bd_vs_reference"):
        assert json.dumps(again[key], sort_keys=True) == json.dumps(stored[key], sort_keys=True)
    for name, rows in again["at_psnr"].items():
        for row in rows:
            value = bench.bits_at(stored["curves"][name], row["psnr_db"])
            assert value is None or math.isclose(value, row["info_bits"])


def test_the_readme_and_benchmarks_quote_the_stored_figures(bench, stored):
    again = bench.summarise(
        stored["curves"], stored["notes"], stored["trivial_codecs"], stored["refinement"]
    )
    assert bench.headline(again) in (REPO / "README.md").read_text()
    assert bench.markdown(again) in (REPO / "BENCHMARKS.md").read_text()


def test_the_reference_has_a_level_under_the_floor_and_the_floor_is_measured(stored):
    floor = {row["codec"]: row for row in stored["trivial_codecs"]}
    assert floor["mean digit"]["bits_per_digit"] == 0.0
    assert floor["class means"]["bits_per_digit"] > 3.0
    assert [row["level"] for row in stored["below_floor"]["vr-mixture-long"]] == [0]


def test_the_default_models_curve_is_what_its_file_records_and_meets_the_targets(bench, stored):
    """``--shipped``: a shipped model's curve is the level evaluation its file records
    (``mnistcodec models --check`` re-derives it); the default model meets the targets."""
    from mnistcodec.coding.zoo import DEFAULT_MODEL, resolve_model

    recorded = resolve_model(DEFAULT_MODEL).metadata["evaluation_levels"]
    curve = stored["curves"][DEFAULT_MODEL]
    assert curve == [{k: p[k] for k in bench.KEEP if k in p} for p in recorded]
    for row, (psnr, target) in zip(stored["at_psnr"][DEFAULT_MODEL], bench.TARGETS, strict=True):
        assert row["psnr_db"] == psnr and row["info_bits"] <= target
    assert stored["below_floor"][DEFAULT_MODEL] == []
    bd = stored["bd_vs_reference"][DEFAULT_MODEL]
    assert bd["string_bits"]["psnr"] <= -25 and bd["info_bits"]["psnr"] <= -25
