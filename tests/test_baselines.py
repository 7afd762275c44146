from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

imagecodecs = pytest.importorskip("imagecodecs")

from mnistcodec.errors import InputError  # noqa: E402
from mnistcodec.experiments.baselines import (  # noqa: E402
    BaselinePoint,
    encode_per_file,
    measure_per_file,
    measure_tiled,
    points_to_rows,
    quality_changes_output,
    run_baselines,
)
from mnistcodec.experiments.classical_codecs import (  # noqa: E402
    CODECS,
    LOSSLESS,
    CodecSpec,
    available_codecs,
    codec_status,
    grey_to_rgb,
)
from mnistcodec.experiments.metrics import mean_psnr  # noqa: E402
from mnistcodec.storage.digits import grid_shape, tile, untile  # noqa: E402


def synthetic_digits(n: int, seed: int = 0) -> np.ndarray:
    """Digit-like 28x28 images: a thick anti-aliased stroke (ring or bar) on black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float64)
    out = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        cx, cy = rng.uniform(11, 17, size=2)
        if i % 2 == 0:
            r = rng.uniform(5, 8)
            d = np.abs(np.hypot(xx - cx, yy - cy) - r)
        else:
            angle = rng.uniform(0, np.pi)
            d = np.abs((xx - cx) * np.sin(angle) - (yy - cy) * np.cos(angle))
            d = np.where(np.hypot(xx - cx, yy - cy) < 9, d, 99)
        out[i] = np.clip(255 * (2.2 - d), 0, 255).astype(np.uint8)
    return out


DIGITS = synthetic_digits(4)
STATUS = codec_status()
LOSSY = [name for name, spec in CODECS.items() if not spec.lossless]
LOSSLESS_CODECS = [name for name, spec in CODECS.items() if spec.lossless]


def needs(name):
    if STATUS[name] is not None:
        pytest.skip(f"{name} unavailable: {STATUS[name]}")


def test_registry_and_status():
    assert {"jpeg", "jpeg2000", "webp", "avif", "jpegxl", "png", "jpegxl-lossless"} <= set(CODECS)
    assert set(STATUS) == set(CODECS)
    assert all(reason is None or isinstance(reason, str) for reason in STATUS.values())
    assert set(available_codecs()) == {n for n, r in STATUS.items() if r is None}
    for spec in CODECS.values():
        assert spec.qualities == ((LOSSLESS,) if spec.lossless else tuple(sorted(spec.qualities)))


@pytest.mark.parametrize("n", [1, 2, 5, 7, 10, 17])
def test_tiling_round_trip(n):
    x = synthetic_digits(n, seed=n)
    rows, cols = grid_shape(n)
    assert rows * cols >= n and cols == int(np.ceil(np.sqrt(n))) and rows <= cols
    mosaic = tile(x)
    assert mosaic.shape == (rows * 28, cols * 28) and mosaic.flags.c_contiguous
    assert np.array_equal(
        mosaic[28:56, :28] if rows > 1 else mosaic[:28, :28], x[cols] if rows > 1 else x[0]
    )
    assert np.array_equal(untile(mosaic, n), x)
    assert mosaic[:, :].sum() == x.astype(np.int64).sum()  # padding tiles are black


@pytest.mark.parametrize("name", LOSSY)
def test_quality_knob_changes_output(name):
    needs(name)
    assert quality_changes_output(name, DIGITS)


@pytest.mark.parametrize("name", LOSSY)
def test_bits_and_psnr_grow_along_the_sweep(name):
    needs(name)
    spec = CODECS[name]
    x = DIGITS[:3]
    sizes = []
    psnrs = []
    for q in spec.qualities:
        p = measure_per_file(name, x, q, workers=1)
        sizes.append(p.total_bits)
        psnrs.append(p.psnr_db)
    sizes = np.array(sizes)
    assert sizes[-1] > sizes[0] and psnrs[-1] > psnrs[0] + 10
    assert len(set(sizes.tolist())) >= len(sizes) // 2, f"{name}: bits flat over qualities {sizes}"
    # mostly increasing: rank correlation of bits with the quality index
    rank = np.argsort(np.argsort(sizes))
    assert np.corrcoef(rank, np.arange(len(sizes)))[0, 1] > 0.9


def test_ignored_knob_is_detected():
    # imagecodecs ignores WebP's level unless lossless=False is given
    needs("webp")
    spec = dataclasses.replace(
        CODECS["webp"],
        name="webp-level-only",
        encode=lambda img, q: imagecodecs.webp_encode(grey_to_rgb(img), level=q),
    )
    assert not quality_changes_output(spec, DIGITS)
    with pytest.raises(InputError, match="lossless"):
        quality_changes_output("png", DIGITS)


@pytest.mark.parametrize("name", LOSSLESS_CODECS)
def test_lossless_references_are_exact(name):
    needs(name)
    for point in (measure_per_file(name, DIGITS, LOSSLESS), measure_tiled(name, DIGITS, LOSSLESS)):
        assert point.psnr_db == 100.0 and point.psnr_of_mean_mse_db == 100.0 and point.mad == 0.0
        assert point.lossless and point.quality == LOSSLESS


def test_per_file_bits_are_real_byte_lengths():
    needs("jpeg")
    sizes, decoded = encode_per_file("jpeg", DIGITS, 50, workers=1)
    expected = [len(imagecodecs.jpeg8_encode(d, level=50, optimize=True)) for d in DIGITS]
    assert sizes.tolist() == expected
    assert decoded.shape == DIGITS.shape and decoded.dtype == np.uint8
    p = measure_per_file("jpeg", DIGITS, 50)
    assert p.total_bits == 8 * sum(expected)
    assert p.bits_per_digit == pytest.approx(8 * np.mean(expected))
    assert p.mode == "per-file" and p.n == len(DIGITS)


def test_workers_do_not_change_results():
    needs("jpegxl")
    x = synthetic_digits(9, seed=3)
    s1, d1 = encode_per_file("jpegxl", x, 50, workers=1)
    s2, d2 = encode_per_file("jpegxl", x, 50, workers=3)
    assert np.array_equal(s1, s2) and np.array_equal(d1, d2)


def test_tiled_shares_the_header_cost():
    needs("jpeg")
    x = synthetic_digits(12, seed=1)
    per_file = measure_per_file("jpeg", x, 50)
    tiled = measure_tiled("jpeg", x, 50)
    assert tiled.mode == "tiled" and tiled.n == 12
    assert tiled.total_bits == pytest.approx(tiled.bits_per_digit * 12)
    assert tiled.bits_per_digit < per_file.bits_per_digit
    mosaic = tile(x)
    decoded = untile(
        imagecodecs.jpeg8_decode(imagecodecs.jpeg8_encode(mosaic, level=50, optimize=True)), 12
    )
    assert tiled.psnr_db == pytest.approx(mean_psnr(x, decoded))


def test_run_baselines_rows_and_skips():
    broken = CodecSpec(
        name="broken",
        label="Broken",
        encode=lambda img, q: 1 / 0,
        decode=lambda b: b,
        qualities=(1, 2),
        lossless=False,
        feature="JPEG8",
        quality_meaning="",
        settings="",
    )
    missing = dataclasses.replace(broken, name="missing", feature="NO_SUCH_CODEC")
    skipped: dict[str, str] = {}
    with pytest.warns(UserWarning, match="skipping codec"):
        points = run_baselines(
            DIGITS,
            codecs=["jpeg", "png", broken, missing],
            qualities={"jpeg": [20, 80]},
            progress=False,
            skipped=skipped,
        )
    assert set(skipped) == {"broken", "missing"}
    assert "ZeroDivisionError" in skipped["broken"] and "NO_SUCH_CODEC" in skipped["missing"]
    keys = [(p.codec, p.quality, p.mode) for p in points]
    assert keys == [
        ("jpeg", 20, "per-file"),
        ("jpeg", 20, "tiled"),
        ("jpeg", 80, "per-file"),
        ("jpeg", 80, "tiled"),
        ("png", LOSSLESS, "per-file"),
        ("png", LOSSLESS, "tiled"),
    ]
    assert all(isinstance(p, BaselinePoint) for p in points)
    rows = points_to_rows(points)
    assert list(rows[0]) == [
        "codec",
        "label",
        "quality",
        "mode",
        "bits_per_digit",
        "psnr_db",
        "psnr_of_mean_mse_db",
        "mad",
        "n",
        "lossless",
        "total_bits",
    ]
    assert rows[0]["label"] == "JPEG"
    json.dumps(rows)  # plain types only


def test_run_baselines_one_quality_list_and_mode():
    points = run_baselines(
        DIGITS[:2], codecs=["jpeg", "png"], qualities=[30], modes=["tiled"], progress=False
    )
    assert [(p.codec, p.quality, p.mode) for p in points] == [
        ("jpeg", 30, "tiled"),
        ("png", LOSSLESS, "tiled"),
    ]


def test_bad_inputs():
    with pytest.raises(InputError):
        run_baselines(DIGITS.astype(np.float32), codecs=["jpeg"], progress=False)
    with pytest.raises(InputError):
        run_baselines(DIGITS[0], codecs=["jpeg"], progress=False)
    with pytest.raises(InputError, match="unknown codec"):
        run_baselines(DIGITS, codecs=["gif"], progress=False)
    with pytest.raises(InputError, match="unknown mode"):
        run_baselines(DIGITS, codecs=["jpeg"], modes=["mosaic"], progress=False)
    with pytest.raises(InputError):
        untile(np.zeros((28, 28), np.uint8), 2)


def test_a_decoder_returning_the_wrong_shape_is_skipped_with_its_reason():
    needs("jpeg")
    cropped = dataclasses.replace(
        CODECS["jpeg"], name="cropped", decode=lambda data: imagecodecs.jpeg8_decode(data)[:-1]
    )
    skipped: dict[str, str] = {}
    with pytest.warns(UserWarning, match="skipping codec cropped"):
        assert run_baselines(DIGITS, codecs=[cropped], progress=False, skipped=skipped) == []
    assert "decoded a (28, 28) image as shape (27, 28)" in skipped["cropped"]
