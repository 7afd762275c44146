"""Digits in and out of files: strict PNG and IDX reading, PNG and IDX writing.

Input is taken as it is or refused, never converted (bringing any image to
MNIST's form is :mod:`mnistcodec.storage.fitting`'s job): a PNG must be 28x28,
8-bit greyscale (PNG colour type 0, bit depth 8; Pillow mode ``"L"``), without
transparency. An IDX file must hold unsigned-byte images of shape (N, 28, 28),
raw or gzipped. Inputs are recognised by their first bytes, not their names.

Output kind is chosen by the name (:func:`output_kind`): ``*.png`` is one grid
image, ``*.idx``, ``*.idx3-ubyte`` or ``*-ubyte`` (optionally ``.gz``) an IDX
file, ``-`` a raw IDX stream on standard output, any other name a directory of
PNG files ``digit-00000.png``, ...  Every write is atomic
(:mod:`mnistcodec.storage.atomic`) and nothing is overwritten unless ``force``; a
directory is filled through a temporary directory that then takes its place as
a whole, so a failed run leaves no partial files and old digits never mix with
new ones (``force`` replaces only a directory that holds digit files alone).

Any number of digits is read and written in constant memory:
:func:`open_inputs` checks the inputs and counts their digits without
loading them, then yields them piece by piece; :func:`write_image_pieces`
writes pieces as they come (an IDX file, a directory, or a grid PNG encoded
row of digits by row of digits). Standard input (``-``) is read whole (at
most :data:`MAX_INPUT_BYTES`).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from mnistcodec.errors import DataError, InputError
from mnistcodec.storage.atomic import (
    atomic_directory,
    atomic_open,
    atomic_write,
    check_link_output,
    check_readable,
    check_writable,
    file_kind,
    is_stdio,
    read_input,
)
from mnistcodec.storage.digits import IMAGE_SHAPE, check_digits, grid_shape, tile
from mnistcodec.storage.idx import IdxInfo, idx_header, iter_idx_rows, read_idx_bytes, scan_idx
from mnistcodec.storage.stdout import StdoutWriter

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IDX_IMAGES_MAGIC = b"\x00\x00\x08\x03"
IDX_LABELS_MAGIC = b"\x00\x00\x08\x01"
GZIP_MAGIC = b"\x1f\x8b"
MAX_INPUT_BYTES = 1 << 30
GRID_GAP = 2
GRID_BACKGROUND = 128
DIGIT_PREFIX = "digit-"
_DIGIT_FILE = re.compile(re.escape(DIGIT_PREFIX) + r"[0-9]{5,}\.png")
IDX_SUFFIXES = (".idx", ".idx3-ubyte", "-ubyte")
REFUSED_SUFFIXES = (".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".npy", ".mnc")

#: Said when an input is an image of another kind (``compress --fit`` reads any image).
_FIT_HINT = " (compress --fit brings any image to MNIST's form)"

_COLOUR_TYPES = {
    0: "greyscale",
    2: "RGB colour",
    3: "palette (indexed colour)",
    4: "greyscale with alpha",
    6: "RGBA colour",
}


# -- reading ---------------------------------------------------------------------------


def _read_bytes(path: Path, what: str) -> bytes:
    return read_input(path, what, MAX_INPUT_BYTES, allow_stdin=True)


def _png_kind(data: bytes, name: str) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise InputError(f"{name}: corrupt PNG (no image header)")
    return struct.unpack(">IIBB", data[16:26])


def decode_png(data: bytes, name: str = "<png>") -> np.ndarray:
    """A 28x28 8-bit greyscale PNG held in memory -> uint8 (28, 28); anything else is refused."""
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(f"{name}: not a PNG file")
    width, height, depth, colour = _png_kind(data, name)
    kind = f"{depth}-bit {_COLOUR_TYPES.get(colour, f'colour type {colour}')}"
    if (height, width) != IMAGE_SHAPE or (depth, colour) != (8, 0):
        raise InputError(
            f"{name}: expected a 28x28 8-bit greyscale PNG, found a {width}x{height} {kind} PNG "
            "(convert it first, or fit it to MNIST's form: mnistcodec compress --fit, "
            "mnistcodec.storage.fitting)"
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
        detail = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(exc))
        raise InputError(
            f"{name}: corrupt or truncated PNG ({detail or type(exc).__name__})"
        ) from None


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
    _check_idx_shape(array.shape, name)
    return array


@dataclass
class _Source:
    """One input: a PNG file, an IDX file read in pieces, or digits held in memory."""

    label: str
    count: int
    path: Path | None = None
    idx: IdxInfo | None = None
    images: np.ndarray | None = None

    def names(self, limit: int) -> list[str]:
        if self.idx is None and self.images is None:
            return [self.label]
        return [f"{self.label}[{i}]" for i in range(min(self.count, limit))]

    def pieces(self, rows: int) -> Iterator[np.ndarray]:
        if self.images is not None:
            for start in range(0, self.count, rows):
                yield self.images[start : start + rows]
        elif self.idx is not None:
            try:
                yield from iter_idx_rows(self.path, self.idx, rows)
            except DataError as exc:
                raise InputError(str(exc)) from None
        else:
            yield read_png(self.path)[None]


class Inputs:
    """Checked inputs: their digit count and names, and their digits piece by piece."""

    def __init__(self, sources: list[_Source]) -> None:
        self.sources = sources
        self.count = sum(s.count for s in sources)

    def names(self, limit: int | None = None) -> list[str]:
        """A name per digit (``file.png``, ``file.idx[3]``), the first ``limit`` only if given."""
        limit = self.count if limit is None else limit
        out: list[str] = []
        for source in self.sources:
            if len(out) >= limit:
                break
            out.extend(source.names(limit - len(out)))
        return out[:limit]

    def pieces(self, rows: int = 4096) -> Iterator[np.ndarray]:
        """uint8 digit arrays of at most ``rows`` digits, in input order."""
        for source in self.sources:
            yield from source.pieces(rows)


def _check_idx_shape(dims: tuple[int, ...], name: str) -> None:
    if len(dims) != 3:
        raise InputError(
            f"{name}: an IDX file of shape {dims} (labels?); expected images (N, 28, 28)"
        )
    if dims[1:] != IMAGE_SHAPE:
        raise InputError(f"{name}: IDX images are {dims[1]}x{dims[2]}; expected 28x28")


def _memory_source(data: bytes, label: str) -> _Source:
    if data.startswith(PNG_SIGNATURE):
        return _Source(label, 1, images=decode_png(data, label)[None])
    if data[:4] in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC) or data.startswith(GZIP_MAGIC):
        images = decode_idx_images(data, label)
        return _Source(label, images.shape[0], images=images)
    if not data:
        raise InputError(f"{label} is empty; expected a PNG or IDX images file")
    raise InputError(f"{label} is neither a PNG nor an IDX images file" + _FIT_HINT)


def _file_source(path: Path) -> _Source:
    what = "a PNG or IDX images file"
    size = check_readable(path, what, MAX_INPUT_BYTES, allow_stdin=True)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(PNG_SIGNATURE):
        read_png(path)  # checked now, read again when its turn comes
        return _Source(path.name, 1, path=path)
    if head[:4] in (IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC) or head.startswith(GZIP_MAGIC):
        try:
            info = scan_idx(path)
        except DataError as exc:
            raise InputError(str(exc)) from None
        _check_idx_shape(info.dims, str(path))
        return _Source(path.name, info.dims[0], path=path, idx=info)
    if not size and not head:
        raise InputError(f"{path} is empty; expected a PNG or IDX images file")
    raise InputError(f"{path} is neither a PNG nor an IDX images file" + _FIT_HINT)


def open_inputs(paths: Sequence[str | os.PathLike]) -> Inputs:
    """Check PNG and IDX image files (``-``: standard input) and count their digits.

    Files are recognised by content; nothing but headers (and each PNG, which
    is small) is read until :meth:`Inputs.pieces` is iterated.
    """
    if not paths:
        raise InputError("no input images given")
    if sum(is_stdio(p) for p in paths) > 1:
        raise InputError("standard input (-) can be read only once")
    sources = [
        _memory_source(_read_bytes(Path("-"), "a PNG or IDX images file"), "<stdin>")
        if is_stdio(raw)
        else _file_source(Path(raw))
        for raw in paths
    ]
    inputs = Inputs(sources)
    if inputs.count == 0:
        raise InputError("the inputs hold no digits")
    return inputs


def read_inputs(paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, list[str]]:
    """PNG and IDX image files -> uint8 digits (N, 28, 28), and a name for each digit.

    Files are recognised by content; digits keep the order of ``paths`` (and
    of the images inside an IDX file). See :func:`open_inputs` for inputs too
    large to hold in memory.
    """
    inputs = open_inputs(paths)
    images = np.empty((inputs.count, *IMAGE_SHAPE), dtype=np.uint8)
    start = 0
    for piece in inputs.pieces():
        images[start : start + piece.shape[0]] = piece
        start += piece.shape[0]
    return images, inputs.names()


# -- writing ---------------------------------------------------------------------------


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

    ``columns`` defaults to ``ceil(sqrt(N))`` (4x4 for 16 digits); see
    :func:`mnistcodec.storage.digits.tile`.
    """
    return tile(check_digits(images, allow_empty=False), columns, gap=gap, fill=background)


def write_png_grid(
    path: str | os.PathLike, images: np.ndarray, columns: int | None = None, force: bool = False
) -> Path:
    """Write digits as one PNG grid (see :func:`png_grid`), atomically."""
    check_writable(path, force=force)
    return write_png(path, png_grid(images, columns), force=force)


def digit_file_name(index: int, count: int) -> str:
    """Name of digit ``index`` of ``count``: ``digit-00000.png`` (wider if ``count`` needs it)."""
    width = max(5, len(str(count - 1)))
    return f"{DIGIT_PREFIX}{index:0{width}d}.png"


def digit_file_names(count: int) -> list[str]:
    """``digit-00000.png``, ... (at least 5 digits, more if ``count`` needs them)."""
    return [digit_file_name(i, count) for i in range(count)]


def _check_directory(path: Path, force: bool) -> None:
    """A directory output: new, empty, or (with ``force``) one holding only digit files.

    ``force`` replaces the directory as a whole, so it is refused if anything else is inside
    (files of other names, subdirectories, links). A link as the output: see ``check_link_output``.
    """
    if check_link_output(path, force):
        return
    if os.path.lexists(path) and not path.is_dir():
        kind = file_kind(path.lstat().st_mode)
        raise InputError(f"output {path} exists and is {kind}, not a directory")
    if path.is_dir():
        entries = list(os.scandir(path))
        if entries and not force:
            raise InputError(f"output directory {path} is not empty; pass --force to replace it")
        foreign = [
            entry.name
            for entry in entries
            if not (_DIGIT_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False))
        ]
        if foreign:
            raise InputError(
                f"output directory {path} holds {foreign[0]!r}, which is not a digit PNG file; "
                "--force replaces only a directory of digit-NNNNN.png files (choose another "
                "directory, or empty this one)"
            )
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"output directory {parent} does not exist")


def _as_pieces(pieces: Iterable[np.ndarray], count: int) -> Iterator[np.ndarray]:
    """Check each piece; refuse more or fewer than ``count`` digits in all."""
    seen = 0
    for piece in pieces:
        piece = check_digits(piece)
        seen += piece.shape[0]
        if seen > count:
            raise InputError(f"more digits than the {count} announced")
        yield piece
    if seen != count:
        raise InputError(f"{seen} digits, not the {count} announced")


def _write_dir_pieces(path: Path, count: int, pieces: Iterable[np.ndarray], force: bool) -> None:
    _check_directory(path, force)
    index = 0
    with atomic_directory(path, replace_link=force) as put:
        for piece in _as_pieces(pieces, count):
            for image in piece:
                put(digit_file_name(index, count), encode_png(image))
                index += 1


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write_grid_pieces(handle: BinaryIO, count: int, pieces: Iterable[np.ndarray]) -> None:
    """Encode the :func:`png_grid` of ``count`` digits as a PNG, one row of digits at a time.

    The same pixels as :func:`write_png_grid`, in a PNG written here (filter
    type 0 on every line, zlib level 6); memory is one row of digits.
    """
    h, w = IMAGE_SHAPE
    gap = GRID_GAP
    rows, columns = grid_shape(count)
    width, height = columns * (w + gap) - gap, rows * (h + gap) - gap
    handle.write(PNG_SIGNATURE)
    handle.write(_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)))
    compressor = zlib.compressobj(6)
    # Each scanline is a filter-type byte (0: none) and the pixels.
    gap_lines = np.full((gap, 1 + width), GRID_BACKGROUND, dtype=np.uint8)
    gap_lines[:, 0] = 0

    def emit(lines: np.ndarray) -> None:
        data = compressor.compress(lines.tobytes())
        if data:
            handle.write(_png_chunk(b"IDAT", data))

    def emit_row(digits: list[np.ndarray], first: bool) -> None:
        strip = np.zeros((h, 1 + width), dtype=np.uint8)  # column 0: filter type 0
        strip[:, 1:] = tile(np.stack(digits), columns, gap=gap, fill=GRID_BACKGROUND)
        if not first:
            emit(gap_lines)
        emit(strip)

    row: list[np.ndarray] = []
    rows_done = 0
    for piece in _as_pieces(pieces, count):
        for digit in piece:
            row.append(digit)
            if len(row) == columns:
                emit_row(row, rows_done == 0)
                row, rows_done = [], rows_done + 1
    if row:
        emit_row(row, rows_done == 0)
    handle.write(_png_chunk(b"IDAT", compressor.flush()))
    handle.write(_png_chunk(b"IEND", b""))


def _write_idx_pieces(handle: BinaryIO, count: int, pieces: Iterable[np.ndarray]) -> None:
    handle.write(idx_header((count, *IMAGE_SHAPE)))
    for piece in _as_pieces(pieces, count):
        handle.write(np.ascontiguousarray(piece).tobytes())


def output_kind(path: str | os.PathLike) -> str:
    """``"grid"`` (``*.png``), ``"idx"`` (``*.idx``, ``*.idx3-ubyte``, ``*-ubyte``,
    optionally ``.gz``; any case), ``"stdout"`` (``-``: raw IDX on standard output) or
    ``"dir"`` (a name ending in ``/``, an existing directory, or any other name)."""
    if is_stdio(path):
        return "stdout"
    if os.fspath(path).endswith(("/", os.sep)) or Path(path).is_dir():
        return "dir"  # a trailing slash names a directory, whatever the name before it
    path = Path(path)
    name = path.name.lower()
    stem = name.removesuffix(".gz")
    if name.endswith(".png"):
        return "grid"
    if stem.endswith(IDX_SUFFIXES):
        return "idx"
    if name.endswith(REFUSED_SUFFIXES):
        raise InputError(
            f"cannot write {path.name}: outputs are a .png grid, an IDX file (.idx, .idx3-ubyte, "
            "-ubyte), - for IDX on standard output, or a directory"
        )
    return "dir"


def check_output(path: str | os.PathLike, force: bool = False) -> str:
    """Validate an output path before any work; return its :func:`output_kind`."""
    kind = output_kind(path)
    if kind == "dir":
        _check_directory(Path(path), force)
    elif kind != "stdout":
        check_writable(path, force=force)
    return kind


def write_image_pieces(
    path: str | os.PathLike, count: int, pieces: Iterable[np.ndarray], force: bool = False
) -> str:
    """Write ``count`` digits given piece by piece, by the kind of ``path``; return that kind.

    Memory stays that of one piece (and one row of digits for a grid); a file or directory
    appears only once complete. ``-`` streams raw IDX to standard output.
    """
    kind = check_output(path, force)
    if count < 1:
        raise InputError("no digits to write")
    if kind == "stdout":
        stdout = StdoutWriter()
        _write_idx_pieces(stdout, count, pieces)
        stdout.flush()
    elif kind == "dir":
        _write_dir_pieces(Path(path), count, pieces, force)
    else:
        with atomic_open(path, force=force) as handle:
            if kind == "grid":
                _write_grid_pieces(handle, count, pieces)
            elif str(path).lower().endswith(".gz"):
                with gzip.GzipFile("", "wb", 6, handle, mtime=0) as packed:
                    _write_idx_pieces(packed, count, pieces)
            else:
                _write_idx_pieces(handle, count, pieces)
    return kind


def write_images(path: str | os.PathLike, images: np.ndarray, force: bool = False) -> str:
    """Write digits by the kind of ``path`` (:func:`output_kind`); return that kind."""
    kind = check_output(path, force)
    images = check_digits(images, allow_empty=False)
    if kind == "grid":
        write_png_grid(path, images, force=force)
        return kind
    return write_image_pieces(path, images.shape[0], [images], force=force)
