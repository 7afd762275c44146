from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.interpolate

from mnistcodec.errors import InputError, MnistCodecError
from mnistcodec.experiments.bdrate import (
    METHODS,
    bd_quality,
    bd_rate,
    classical_bd_rates,
    learned_vs_classical_bd_rates,
    pareto_front,
)

# Example curves from the bjontegaard package's README / example_usage.py
# (x265 presets; rate in kbit/s, PSNR in dB).
RATE_A = np.array([9487.76, 4593.60, 2486.44, 1358.24])
PSNR_A = np.array([40.037, 38.615, 36.845, 34.851])
RATE_B = np.array([9787.80, 4469.00, 2451.52, 1356.24])
PSNR_B = np.array([40.121, 38.651, 36.970, 34.987])


def classic_bd_rate(r1, q1, r2, q2):
    """VCEG-M33 BD-rate, written independently: cubic fit of log10(rate) vs PSNR."""
    p1 = np.polyfit(q1, np.log10(r1), 3)
    p2 = np.polyfit(q2, np.log10(r2), 3)
    lo, hi = max(min(q1), min(q2)), min(max(q1), max(q2))
    i1, i2 = np.polyint(p1), np.polyint(p2)
    avg = (
        (np.polyval(i2, hi) - np.polyval(i2, lo)) - (np.polyval(i1, hi) - np.polyval(i1, lo))
    ) / (hi - lo)
    return (10**avg - 1) * 100


def pchip_bd_rate(r1, q1, r2, q2):
    """BD-rate with PCHIP (JCT-VC CTC), written independently with scipy."""
    o1, o2 = np.argsort(q1), np.argsort(q2)
    f1 = scipy.interpolate.PchipInterpolator(q1[o1], np.log10(r1[o1]))
    f2 = scipy.interpolate.PchipInterpolator(q2[o2], np.log10(r2[o2]))
    lo, hi = max(min(q1), min(q2)), min(max(q1), max(q2))
    avg = (f2.integrate(lo, hi) - f1.integrate(lo, hi)) / (hi - lo)
    return (10**avg - 1) * 100


@pytest.mark.parametrize("method", METHODS)
def test_halved_rates_give_minus_fifty_percent(method):
    assert bd_rate(RATE_A, PSNR_A, RATE_A / 2, PSNR_A, method=method) == pytest.approx(
        -50.0, abs=1e-9
    )
    assert bd_rate(RATE_A, PSNR_A, RATE_A * 2, PSNR_A, method=method) == pytest.approx(
        100.0, abs=1e-9
    )
    assert bd_rate(RATE_A, PSNR_A, RATE_A, PSNR_A, method=method) == pytest.approx(0.0, abs=1e-9)


def test_cubic_matches_independent_vceg_m33():
    expected = classic_bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B)
    got = bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B, method="cubic")
    assert got == pytest.approx(expected, rel=1e-9)
    assert -10 < got < 0  # B is slightly better: fewer bits at equal PSNR


def test_pchip_matches_independent_scipy():
    expected = pchip_bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B)
    got = bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B, method="pchip")
    assert got == pytest.approx(expected, rel=1e-9)


def test_default_method_is_akima_and_close_to_others():
    akima = bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B)
    assert akima == bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B, method="akima")
    for method in ("pchip", "cubic"):
        assert akima == pytest.approx(
            bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B, method=method), abs=1.0
        )


def test_point_order_does_not_matter_and_counts_may_differ():
    perm = [2, 0, 3, 1]
    base = bd_rate(RATE_A, PSNR_A, RATE_B, PSNR_B)
    assert bd_rate(RATE_A[perm], PSNR_A[perm], RATE_B, PSNR_B) == pytest.approx(base, abs=1e-12)
    # five test points against four anchor points
    r5 = np.append(RATE_B, 3000.0)
    q5 = np.append(PSNR_B, 37.6)
    assert np.isfinite(bd_rate(RATE_A, PSNR_A, r5, q5))


def test_lower_is_better_distortion():
    rate = np.array([20.0, 40.0, 80.0, 160.0, 320.0])
    dist = np.array([0.08, 0.05, 0.035, 0.025, 0.02])  # MAD falls as rate grows
    assert bd_rate(rate, dist, rate / 2, dist, higher_is_better=False) == pytest.approx(-50.0)
    # negating the distortion yourself is the same computation
    assert bd_rate(rate, dist, rate * 0.7, dist * 0.9, higher_is_better=False) == pytest.approx(
        bd_rate(rate, -dist, rate * 0.7, -dist * 0.9)
    )
    # forgetting the flag is caught: rate would fall as "quality" rises
    with pytest.raises(InputError, match="does not increase"):
        bd_rate(rate, dist, rate / 2, dist)


def test_bd_quality_shift():
    assert bd_quality(RATE_A, PSNR_A, RATE_A, PSNR_A + 1.0) == pytest.approx(1.0)
    assert bd_quality(RATE_A, PSNR_A, RATE_A, PSNR_A - 0.5, method="cubic") == pytest.approx(-0.5)


def test_partial_overlap_warns():
    with pytest.warns(UserWarning, match="overlap"):
        bd_rate(RATE_A, PSNR_A, RATE_A / 2, PSNR_A + 4.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bd_rate(RATE_A, PSNR_A, RATE_A / 2, PSNR_A + 4.0, min_overlap=0.0)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((RATE_A, PSNR_A, RATE_B, PSNR_B + 20), {}, "do not overlap"),
        ((RATE_A[:3], PSNR_A[:3], RATE_B, PSNR_B), {"method": "cubic"}, "at least 4"),
        ((RATE_A[:1], PSNR_A[:1], RATE_B, PSNR_B), {}, "at least 2"),
        ((RATE_A, PSNR_A[:3], RATE_B, PSNR_B), {}, "rates but"),
        ((RATE_A, [40.0, np.nan, 36.0, 34.0], RATE_B, PSNR_B), {}, "finite"),
        (([9000.0, 4000.0, 0.0, 1000.0], PSNR_A, RATE_B, PSNR_B), {}, "positive"),
        ((RATE_A, [40.0, 38.0, 38.0, 34.0], RATE_B, PSNR_B), {}, "share the quality"),
        ((RATE_A, [40.0, 38.0, 39.0, 34.0], RATE_B, PSNR_B), {}, "does not increase"),
        ((RATE_A, PSNR_A, RATE_B, PSNR_B), {"method": "spline"}, "unknown BD-rate method"),
        ((RATE_A, PSNR_A, RATE_B, ["a", "b", "c", "d"]), {}, "numbers"),
    ],
)
def test_invalid_curves_raise_input_error(args, kwargs, match):
    with pytest.raises(InputError, match=match) as info:
        bd_rate(*args, **kwargs)
    assert isinstance(info.value, MnistCodecError)


def test_pareto_front_cleans_a_curve():
    rate = np.array([100.0, 120.0, 150.0, 150.0, 200.0, 260.0])
    psnr = np.array([20.0, 19.5, 24.0, 23.0, 26.0, 25.0])
    r, q = pareto_front(rate, psnr)
    assert r.tolist() == [100.0, 150.0, 200.0]
    assert q.tolist() == [20.0, 24.0, 26.0]
    with pytest.raises(InputError):
        bd_rate(rate, psnr, rate / 2, psnr)
    assert bd_rate(r, q, r / 2, q) == pytest.approx(-50.0)
    r, d = pareto_front([10.0, 20.0, 30.0], [0.05, 0.06, 0.03], higher_is_better=False)
    assert r.tolist() == [10.0, 30.0] and d.tolist() == [0.05, 0.03]


def _classical(codec, label, mode, rate_scale):
    return [
        {
            "codec": codec,
            "label": label,
            "mode": mode,
            "quality": q,
            "bits_per_digit": rate_scale * r,
            "psnr_db": p,
            "lossless": False,
        }
        for q, r, p in [(10, 100, 12.0), (50, 200, 16.0), (90, 400, 20.0)]
    ]


def test_classical_bd_rates_are_against_jpeg_within_each_mode():
    rows = (
        _classical("jpeg", "JPEG", "per-file", 1.0)
        + _classical("webp", "WebP", "per-file", 0.5)
        + _classical("jpeg", "JPEG", "tiled", 1.0)
        + _classical("webp", "WebP", "tiled", 2.0)
        + _classical("avif", "AVIF", "other", 1.0)
        + [
            {
                "codec": "png",
                "label": "PNG",
                "mode": "per-file",
                "quality": "lossless",
                "bits_per_digit": 900.0,
                "psnr_db": 100.0,
                "lossless": True,
            }
        ]
    )
    per_file, tiled = classical_bd_rates(rows)
    assert (per_file["test"], per_file["anchor"]) == ("WebP (per-file)", "JPEG (per-file)")
    assert per_file["bd_rate_percent"] == pytest.approx(-50.0, abs=1e-9)
    assert (tiled["test"], tiled["anchor"]) == ("WebP (tiled)", "JPEG (tiled)")
    assert tiled["bd_rate_percent"] == pytest.approx(100.0, abs=1e-9)
    assert [e["test"] for e in classical_bd_rates(rows, modes=["tiled", "per-file"])] == [
        "WebP (tiled)",
        "WebP (per-file)",
    ]


def test_learned_vs_classical_bd_rates_per_configuration_and_codec():
    learned = [
        {
            "lmbda": lm,
            "latent_dims": 50,
            "prior": "logistic",
            "string_bits": r,
            "psnr_db": p,
            "seed": s,
        }
        for s in (0, 1)
        for lm, r, p in [(300, 25.0, 12.0), (1000, 50.0, 16.0), (2000, 100.0, 20.0)]
    ]
    learned.append(
        {"lmbda": 300, "latent_dims": 8, "prior": "laplace", "string_bits": 30.0, "psnr_db": 13.0}
    )
    baseline = _classical("jpeg", "JPEG", "per-file", 1.0) + _classical(
        "webp", "WebP", "tiled", 0.25
    )
    bd = learned_vs_classical_bd_rates(learned, baseline)
    assert [(e["test"], e["anchor"]) for e in bd] == [
        ("learned d=50 logistic", "JPEG (per-file)"),
        ("learned d=50 logistic", "WebP (tiled)"),
    ]
    assert bd[0]["bd_rate_percent"] == pytest.approx(-75.0, abs=1e-9)  # a quarter of JPEG's bits
    assert bd[1]["bd_rate_percent"] == pytest.approx(0.0, abs=1e-9)
    assert learned_vs_classical_bd_rates(learned[-1:], baseline) == []
