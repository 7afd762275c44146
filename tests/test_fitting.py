"""Any image brought to MNIST's form (storage.fitting), and ``compress --fit``."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnistcodec.cli import main
from mnistcodec.coding.api import Codec
from mnistcodec.coding.container import string_bits
from mnistcodec.coding.files import read_compressed
from mnistcodec.coding.inspection import inspect_bytes
from mnistcodec.coding.zoo import DEFAULT_MODEL
from mnistcodec.errors import InputError
from mnistcodec.storage.fitting import (
    BOX,
    MAX_FIT_PIXELS,
    NotAnImageError,
    fit_image_bytes,
    fit_to_mnist,
)
from mnistcodec.storage.images import PNG_SIGNATURE


def encoded(image: Image.Image, kind: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    mass = digit.astype(np.float64)
    rows, cols = np.indices(digit.shape)
    return float((mass * rows).sum() / mass.sum()), float((mass * cols).sum() / mass.sum())


def ink_box(digit: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def photo_of(digit: np.ndarray, seed: int = 0) -> bytes:
    """A digit as a photo of ink on paper: 10x larger, dark on light, colour, noisy, JPEG."""
    big = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC)
    rgb = np.asarray(big.convert("RGB"), dtype=np.float64) * [0.80, 0.78, 0.74] + 35
    rgb += np.random.default_rng(seed).normal(0, 5, rgb.shape)
    return encoded(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)), "JPEG", quality=90)


def test_mnist_digits_are_already_in_form(test_digits):
    """MNIST was made this way: fitting its digits changes almost nothing."""
    digits = test_digits[:200]
    fitted = np.stack([fit_to_mnist(d) for d in digits])
    assert np.mean([np.array_equal(a, b) for a, b in zip(fitted, digits, strict=True)]) > 0.75
    assert np.abs(fitted.astype(int) - digits).mean() < 0.5


def test_a_photo_of_a_digit_comes_back_as_the_digit(test_digits):
    """Inverted, tinted, noisy, 10x larger, JPEG: fitted, it is near its digit, far from others."""
    digits = test_digits[:8].astype(int)
    for index in range(5):
        fitted = fit_image_bytes(photo_of(test_digits[index], index), "photo.jpg")
        assert fitted.shape == (28, 28) and fitted.dtype == np.uint8
        distances = np.abs(fitted.astype(int)[None] - digits).mean(axis=(1, 2))
        assert distances[index] < 15
        assert distances[index] < 0.5 * np.delete(distances, index).min()
        assert max(ink_box(fitted)) == BOX
        cy, cx = centre_of_mass(fitted)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5


def test_the_ink_is_scaled_into_20x20_keeping_its_aspect_ratio():
    wide = np.zeros((300, 500), dtype=np.uint8)
    wide[100:150, 50:450] = 255  # 400 x 50 of ink
    fitted = fit_to_mnist(wide)
    assert ink_box(fitted) in ((2, 20), (3, 20))  # 20 x 2.5
    tall = np.full((90, 60, 3), 250, dtype=np.uint8)
    tall[5:85, 20:40] = 10  # dark ink on white, 80 x 20
    assert ink_box(fit_to_mnist(tall)) == (20, 5)


def test_strokes_on_a_transparent_canvas_are_ink_whatever_their_colour():
    for colour in ((0, 0, 0, 255), (255, 255, 255, 255), (200, 30, 30, 255)):
        canvas = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).line([(60, 30), (140, 30), (90, 170)], fill=colour, width=14)
        fitted = fit_image_bytes(encoded(canvas))
        assert fitted.max() >= 250 and fitted[0].max() == 0
        assert max(ink_box(fitted)) == BOX


def test_images_that_cannot_be_fitted_are_refused():
    with pytest.raises(InputError, match="no ink"):
        fit_image_bytes(encoded(Image.new("L", (50, 50), 200)))
    with pytest.raises(NotAnImageError):
        fit_image_bytes(b"this is text, not an image")
    with pytest.raises(NotAnImageError):
        fit_image_bytes(b"")
    with pytest.raises(InputError, match="corrupt or truncated"):
        fit_image_bytes(encoded(Image.new("L", (50, 50), 9))[:60])
    for side in (9000, 1 << 14):  # headers announcing 81 and 268 megapixels: none is decoded
        header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
        data = PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(b"\0"))
        with pytest.raises(InputError, match=f"at most {MAX_FIT_PIXELS} pixels"):
            fit_image_bytes(data)
    with pytest.raises(InputError, match="uint8"):
        fit_to_mnist(np.zeros((10, 10), dtype=np.float32))


def test_compress_fit_codes_the_fitted_photo(tmp_path, test_digits, capsys):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(photo_of(test_digits[0]))
    out = tmp_path / "photo.mnc"
    assert main(["compress", str(photo), "--fit", "-o", str(out), "--level", "12"]) == 0
    assert "fitted to MNIST's form" in capsys.readouterr().out
    codec = Codec.from_model(DEFAULT_MODEL)  # what compress uses when no model is named
    strings, _ = codec.compress(fit_image_bytes(photo.read_bytes())[None], 12)
    data = read_compressed(out)
    assert inspect_bytes(data)["string_bits"] == [string_bits(strings[0])]
    assert strings[0] in data


def test_without_fit_the_exact_28x28_check_stays(tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(encoded(Image.new("RGB", (64, 64), (255, 255, 255)), "JPEG"))
    assert main(["compress", str(photo), "-o", str(tmp_path / "a.mnc")]) == 2
    assert "--fit" in capsys.readouterr().err
    big = tmp_path / "big.png"
    big.write_bytes(encoded(Image.new("L", (100, 100), 0)))
    assert main(["compress", str(big), "-o", str(tmp_path / "b.mnc")]) == 2
    assert "expected a 28x28 8-bit greyscale PNG, found a 100x100" in capsys.readouterr().err
    assert main(["compress", "--split", "test", "--index", "0", "--fit", "-o", "c.mnc"]) == 2
    assert "--fit fits image files" in capsys.readouterr().err


def test_serve_without_the_web_stack_says_what_to_install():
    code = (
        "import sys; sys.modules['fastapi'] = None; from mnistcodec.cli import main; "
        "sys.exit(main(['serve']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install 'mnistcodec[serve]'" in result.stderr
    assert "Traceback" not in result.stderr
