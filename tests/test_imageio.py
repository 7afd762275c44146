"""Strict PNG / IDX reading and atomic PNG / IDX writing."""

from __future__ import annotations

import gzip
import io
import os

import numpy as np
import pytest
from PIL import Image

from mnistcodec.data import encode_idx, read_idx
from mnistcodec.errors import InputError, OutputError
from mnistcodec.storage import images as imageio
from mnistcodec.storage.images import (
    check_output,
    digit_file_names,
    output_kind,
    png_grid,
    read_inputs,
    read_png,
    write_images,
    write_png,
)

EXPECTED = "expected a 28x28 8-bit greyscale PNG"


@pytest.fixture
def digits():
    return np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)


def save(path, mode: str, size=(28, 28), **options):
    Image.new(mode, size).save(path, format="PNG", **options)
    return path


def test_png_round_trip(digits, tmp_path):
    path = write_png(tmp_path / "d.png", digits[0])
    assert np.array_equal(read_png(path), digits[0])
    assert Image.open(path).mode == "L"


@pytest.mark.parametrize(
    "mode, size, found",
    [
        ("RGB", (28, 28), "28x28 8-bit RGB colour"),
        ("RGBA", (28, 28), "28x28 8-bit RGBA colour"),
        ("P", (28, 28), "bit palette (indexed colour) PNG"),
        ("LA", (28, 28), "28x28 8-bit greyscale with alpha"),
        ("I;16", (28, 28), "28x28 16-bit greyscale"),
        ("1", (28, 28), "28x28 1-bit greyscale"),
        ("L", (28, 27), "28x27 8-bit greyscale"),
        ("L", (32, 32), "32x32 8-bit greyscale"),
    ],
)
def test_png_of_another_kind_is_refused_with_what_was_found(tmp_path, mode, size, found):
    path = save(tmp_path / "bad.png", mode, size)
    with pytest.raises(InputError) as info:
        read_png(path)
    assert EXPECTED in str(info.value) and found in str(info.value)


def test_greyscale_with_transparency_is_refused(tmp_path):
    with pytest.raises(InputError, match="transparency"):
        read_png(save(tmp_path / "t.png", "L", transparency=0))


def test_unreadable_inputs(tmp_path, digits):
    with pytest.raises(InputError, match="not found"):
        read_png(tmp_path / "missing.png")
    with pytest.raises(InputError, match="is a directory"):
        read_png(tmp_path)
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(InputError, match="not a PNG"):
        read_png(tmp_path / "text.png")
    buffer = io.BytesIO()
    Image.fromarray(digits[0]).save(buffer, format="JPEG")
    (tmp_path / "photo.jpg").write_bytes(buffer.getvalue())
    with pytest.raises(InputError, match="neither a PNG nor an IDX"):
        read_inputs([tmp_path / "photo.jpg"])
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_inputs([tmp_path / "empty.png"])
    data = write_png(tmp_path / "ok.png", digits[0]).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:60])
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_png(tmp_path / "cut.png")
    (tmp_path / "stub.png").write_bytes(data[:20])
    with pytest.raises(InputError, match="corrupt PNG"):
        read_png(tmp_path / "stub.png")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_permission_denied(tmp_path, digits):
    path = write_png(tmp_path / "locked.png", digits[0])
    path.chmod(0)
    try:
        with pytest.raises(InputError, match="cannot read"):
            read_png(path)
    finally:
        path.chmod(0o644)


def test_read_inputs_mixes_png_and_idx_in_order(tmp_path, digits):
    png = write_png(tmp_path / "a digit ✓.png", digits[0])
    idx = tmp_path / "more images-idx3-ubyte"
    idx.write_bytes(encode_idx(digits[1:4]))
    gz = tmp_path / "gz.idx.gz"
    gz.write_bytes(gzip.compress(encode_idx(digits[4:])))
    images, names = read_inputs([png, idx, gz])
    assert np.array_equal(images, digits)
    assert names == ["a digit ✓.png", *(f"{idx.name}[{i}]" for i in range(3)), "gz.idx.gz[0]"]


def test_idx_that_is_not_digits_is_refused(tmp_path, digits):
    (tmp_path / "labels").write_bytes(encode_idx(np.arange(10, dtype=np.uint8)))
    with pytest.raises(InputError, match="expected images"):
        read_inputs([tmp_path / "labels"])
    (tmp_path / "big").write_bytes(encode_idx(np.zeros((2, 32, 32), np.uint8)))
    with pytest.raises(InputError, match="32x32; expected 28x28"):
        read_inputs([tmp_path / "big"])
    (tmp_path / "cut").write_bytes(encode_idx(digits)[:100])
    with pytest.raises(InputError):
        read_inputs([tmp_path / "cut"])
    (tmp_path / "none").write_bytes(encode_idx(digits[:0]))
    with pytest.raises(InputError, match="no digits"):
        read_inputs([tmp_path / "none"])
    with pytest.raises(InputError, match="no input"):
        read_inputs([])


def test_output_kind_by_name(tmp_path):
    assert output_kind(tmp_path / "g.PNG") == "grid"
    for name in ("x.idx", "x.idx3-ubyte", "t10k-images-ubyte", "x.idx.gz", "x-ubyte.gz"):
        assert output_kind(tmp_path / name) == "idx"
    assert output_kind(tmp_path / "digits") == "dir"
    assert output_kind(tmp_path) == "dir"
    with pytest.raises(InputError, match="cannot write x.jpg"):
        output_kind(tmp_path / "x.jpg")


def test_grid_layout():
    digits = np.arange(16 * 784, dtype=np.int64).reshape(16, 28, 28).astype(np.uint8)
    grid = png_grid(digits)
    assert grid.shape == (4 * 28 + 3 * 2, 4 * 28 + 3 * 2)
    assert np.array_equal(grid[30:58, 60:88], digits[6])
    assert (grid[28:30, :] == imageio.GRID_BACKGROUND).all()
    assert png_grid(digits[:5]).shape == (58, 88)


def test_write_each_kind_and_read_it_back(tmp_path, digits):
    assert write_images(tmp_path / "grid.png", digits) == "grid"
    grid = np.array(Image.open(tmp_path / "grid.png"))
    assert np.array_equal(grid, png_grid(digits))
    assert write_images(tmp_path / "out.idx", digits) == "idx"
    assert np.array_equal(read_idx(tmp_path / "out.idx"), digits)
    assert write_images(tmp_path / "png dir é", digits) == "dir"
    names = sorted(os.listdir(tmp_path / "png dir é"))
    assert names == digit_file_names(5) == [f"digit-{i:05d}.png" for i in range(5)]
    back, _ = read_inputs([tmp_path / "png dir é" / n for n in names])
    assert np.array_equal(back, digits)
    assert digit_file_names(100001)[-1] == "digit-100000.png"


def test_nothing_is_overwritten_without_force(tmp_path, digits):
    for name in ("grid.png", "out.idx"):
        (tmp_path / name).write_bytes(b"keep")
        with pytest.raises(InputError, match="already exists"):
            write_images(tmp_path / name, digits)
        assert (tmp_path / name).read_bytes() == b"keep"
        write_images(tmp_path / name, digits, force=True)
        assert (tmp_path / name).read_bytes() != b"keep"
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        check_output(folder)
    with pytest.raises(InputError, match="not a digit PNG file"):
        write_images(folder, digits, force=True)
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]
    (folder / "notes.txt").unlink()
    write_images(folder, digits, force=True)
    write_images(folder, digits[:3], force=True)
    assert sorted(p.name for p in folder.iterdir()) == [f"digit-0000{i}.png" for i in range(3)]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        write_images(tmp_path / "afile", digits, force=True)
    with pytest.raises(InputError, match="does not exist"):
        check_output(tmp_path / "missing" / "sub")
    with pytest.raises(InputError, match="no digits"):
        write_images(tmp_path / "empty.png", digits[:0])


@pytest.mark.parametrize("existing", [False, True])
def test_failed_directory_write_leaves_nothing(tmp_path, digits, monkeypatch, existing):
    target = tmp_path / "out"
    if existing:
        target.mkdir()
    calls = []
    real = imageio.encode_png

    def failing(image):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(image)

    monkeypatch.setattr(imageio, "encode_png", failing)
    with pytest.raises(OutputError, match="No space left on device"):
        write_images(target, digits)
    if existing:
        assert list(target.iterdir()) == []
    else:
        assert list(tmp_path.iterdir()) == []
