"""Digits in and out of files: strict PNG and IDX reading, PNG and IDX writing.

Input is taken as it is or refused, never converted: a PNG must be 28x28,
8-bit greyscale (PNG colour type 0, bit depth 8; Pillow mode ``"L"``), without
transparency. An IDX file must hold unsigned-byte images of shape (N, 28, 28),
raw or gzipped. Inputs are recognised by their first bytes, not their names.

Output kind is chosen by the name (:func:`output_kind`): ``*.png`` is one grid
image, ``*.idx``, ``*.idx3-ubyte`` or ``*-ubyte`` (optionally ``.gz``) an IDX
file, any other name a directory of PNG files ``digit-00000.png``, ...  Every
write is atomic (:mod:`mnistcodec.fileio`) and nothing is overwritten unless
``force``; a directory is filled through a temporary directory, so a failed
run leaves no partial files.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from mnistcodec.data import read_idx_bytes, write_idx
from mnistcodec.errors import DataError, InputError
from mnistcodec.fileio import atomic_write, check_writable
from mnistcodec.transforms import IMAGE_SHAPE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IDX_IMAGES_MAGIC = b"\x00\x00\x08\x03"
IDX_LABELS_MAGIC = b"\x00\x00\x08\x01"
GZIP_MAGIC = b"\x1f\x8b"
MAX_INPUT_BYTES = 1 << 30
GRID_GAP = 2
GRID_BACKGROUND = 128
DIGIT_PREFIX = "digit-"
IDX_SUFFIXES = (".idx", ".idx3-ubyte", "-ubyte")
REFUSED_SUFFIXES = (".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".npy", ".mnc")

_COLOUR_TYPES = {
    0: "greyscale",
    2: "RGB colour",
    3: "palette (indexed colour)",
    4: "greyscale with alpha",
    6: "RGBA colour",
}


# -- reading ---------------------------------------------------------------------------


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        if path.is_dir():
            raise InputError(f"{path} is a directory; expected {what}")
        size = path.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise InputError(f"{path} is {size} bytes, too large for {what}")
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"input file {path} not found") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


def _png_kind(data: bytes, name: str) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise InputError(f"{name}: corrupt PNG (no image header)")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, depth, colour


def decode_png(data: bytes, name: str = "<png>") -> np.ndarray:
    """A 28x28 8-bit greyscale PNG held in memory -> uint8 (28, 28); anything else is refused."""
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(f"{name}: not a PNG file")
    width, height, depth, colour = _png_kind(data, name)
    kind = f"{depth}-bit {_COLOUR_TYPES.get(colour, f'colour type {colour}')}"
    if (height, width) != IMAGE_SHAPE or (depth, colour) != (8, 0):
        raise InputError(
            f"{name}: expected a 28x28 8-bit greyscale PNG, found a {width}x{height} {kind} PNG "
            "(convert it first; mnistcodec does not convert images)"
        )
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            image.load()
            if image.mode != "L":
                raise InputError(
                    f"{name}: expected an 8-bit greyscale PNG, Pillow reads mode {image.mode}"
                )
            if "transparency" in image.info:
                raise InputError(f"{name}: expected an 8-bit greyscale PNG without transparency")
            return np.array(image, dtype=np.uint8)
    except InputError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{name}: corrupt or truncated PNG ({exc})") from None


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read one 28x28 8-bit greyscale PNG file as uint8 (28, 28)."""
    path = Path(path)
    return decode_png(_read_bytes(path, "a PNG file"), str(path))


def decode_idx_images(data: bytes, name: str = "<idx>") -> np.ndarray:
    """IDX images (raw or gzipped) held in memory -> uint8 (N, 28, 28)."""
    try:
        array = read_idx_bytes(data, name)
    except DataError as exc:
        raise InputError(str(exc)) from None
    if array.ndim != 3:
        raise InputError(
            f"{name}: an IDX file of shape {array.shape} (labels?); expected images (N, 28, 28)"
        )
    if array.shape[1:] != IMAGE_SHAPE:
        raise InputError(
            f"{name}: IDX images are {array.shape[1]}x{array.shape[2]}; expected 28x28"
        )
    return array


def read_inputs(paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, list[str]]:
    """PNG and IDX image files -> uint8 digits (N, 28, 28), and a name for each digit.

    Files are recognised by content; digits keep the order of ``paths`` (and
    of the images inside an IDX file).
    """
    if not paths:
        raise InputError("no input images given")
    parts: list[np.ndarray] = []
    names: list[str] = []
    for raw in paths:
        path = Path(raw)
        data = _read_bytes(path, "a PNG or IDX images file")
        if data.startswith(PNG_SIGNATURE):
            parts.append(decode_png(data, str(path))[None])
            names.append(path.name)
        elif data[:4] in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC) or data.startswith(GZIP_MAGIC):
            images = decode_idx_images(data, str(path))
            parts.append(images)
            names.extend(f"{path.name}[{i}]" for i in range(images.shape[0]))
        elif not data:
            raise InputError(f"{path} is empty; expected a PNG or IDX images file")
        else:
            raise InputError(f"{path} is neither a PNG nor an IDX images file")
    images = np.concatenate(parts) if parts else np.empty((0, *IMAGE_SHAPE), np.uint8)
    if images.shape[0] == 0:
        raise InputError("the inputs hold no digits")
    return images, names


def read_images(paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """PNG and IDX image files -> uint8 digits (N, 28, 28) (see :func:`read_inputs`)."""
    return read_inputs(paths)[0]


# -- writing ---------------------------------------------------------------------------


def _check_digits(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise InputError(
            f"expected uint8 digits of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if images.shape[0] == 0:
        raise InputError("no digits to write")
    return images


def encode_png(image: np.ndarray) -> bytes:
    """An 8-bit greyscale image (H, W) as PNG bytes (deterministic, no metadata)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path: str | os.PathLike, image: np.ndarray, force: bool = False) -> Path:
    """Write one digit (or any 8-bit greyscale image) as a PNG file, atomically."""
    return atomic_write(path, encode_png(image), force=force)


def png_grid(
    images: np.ndarray,
    columns: int | None = None,
    gap: int = GRID_GAP,
    background: int = GRID_BACKGROUND,
) -> np.ndarray:
    """Tile digits row by row into one image, ``gap`` pixels of grey ``background`` apart.

    ``columns`` defaults to ``ceil(sqrt(N))`` (4x4 for 16 digits).
    """
    images = _check_digits(images)
    n = images.shape[0]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    h, w = IMAGE_SHAPE
    grid = np.full((rows * (h + gap) - gap, columns * (w + gap) - gap), background, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[i]
    return grid


def write_png_grid(
    path: str | os.PathLike, images: np.ndarray, columns: int | None = None, force: bool = False
) -> Path:
    """Write digits as one PNG grid (see :func:`png_grid`), atomically."""
    check_writable(path, force=force)
    return write_png(path, png_grid(images, columns), force=force)


def digit_file_names(count: int) -> list[str]:
    """``digit-00000.png``, ... (at least 5 digits, more if ``count`` needs them)."""
    width = max(5, len(str(count - 1)))
    return [f"{DIGIT_PREFIX}{i:0{width}d}.png" for i in range(count)]


def _check_directory(path: Path, force: bool) -> None:
    if path.exists() and not path.is_dir():
        raise InputError(f"output {path} exists and is not a directory")
    if path.is_dir():
        if not force and any(path.iterdir()):
            raise InputError(f"output directory {path} is not empty; pass --force to write into it")
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")


def write_png_dir(path: str | os.PathLike, images: np.ndarray, force: bool = False) -> Path:
    """Write each digit as ``path/digit-NNNNN.png``.

    A new directory appears complete or not at all (written under a temporary
    name, then renamed). An existing directory must be empty unless ``force``,
    which replaces files of the same names and leaves other files alone.
    """
    path = Path(path)
    images = _check_digits(images)
    _check_directory(path, force)
    existing = path.is_dir()
    staging_parent = path if existing else (path.parent if str(path.parent) else Path("."))
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=staging_parent))
    except OSError as exc:
        raise InputError(f"cannot write to {staging_parent}: {exc.strerror}") from None
    try:
        for name, image in zip(digit_file_names(images.shape[0]), images, strict=True):
            (staging / name).write_bytes(encode_png(image))
        if existing:
            for name in digit_file_names(images.shape[0]):
                os.replace(staging / name, path / name)
            staging.rmdir()
        else:
            os.chmod(staging, 0o777 & ~_umask())
            os.rename(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_kind(path: str | os.PathLike) -> str:
    """``"grid"`` (``*.png``), ``"idx"`` (``*.idx``, ``*.idx3-ubyte``, ``*-ubyte``,
    optionally ``.gz``) or ``"dir"`` (anything else, or an existing directory)."""
    path = Path(path)
    if path.is_dir():
        return "dir"
    name = path.name.lower()
    stem = name.removesuffix(".gz")
    if name.endswith(".png"):
        return "grid"
    if stem.endswith(IDX_SUFFIXES):
        return "idx"
    if name.endswith(REFUSED_SUFFIXES):
        raise InputError(
            f"cannot write {path.name}: outputs are a .png grid, an IDX file (.idx, .idx3-ubyte, "
            "-ubyte) or a directory"
        )
    return "dir"


def check_output(path: str | os.PathLike, force: bool = False) -> str:
    """Validate an output path before any work; return its :func:`output_kind`."""
    kind = output_kind(path)
    if kind == "dir":
        _check_directory(Path(path), force)
    else:
        check_writable(path, force=force)
    return kind


def write_images(path: str | os.PathLike, images: np.ndarray, force: bool = False) -> str:
    """Write digits by the kind of ``path`` (:func:`output_kind`); return that kind."""
    kind = check_output(path, force)
    images = _check_digits(images)
    if kind == "grid":
        write_png_grid(path, images, force=force)
    elif kind == "idx":
        write_idx(path, images, force=force)
    else:
        write_png_dir(path, images, force=force)
    return kind
