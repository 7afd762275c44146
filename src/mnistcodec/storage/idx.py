"""Reading and writing IDX files (the MNIST file format), raw or gzipped.

Only the two layouts MNIST uses are accepted: unsigned-byte data (type code
0x08) with 1 dimension (labels, magic 0x00000801) or 3 dimensions (images,
magic 0x00000803). Headers are checked strictly against the real data length,
and no buffer larger than the data actually present is ever allocated.

One reader serves files on disk and bytes in memory alike: :func:`scan_idx`
checks the header (against the data size for raw files) and
:func:`iter_idx_rows` yields the rows a piece at a time, raw or gzipped, in
constant memory; :func:`read_idx` and :func:`read_idx_bytes` join the pieces.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mnistcodec.errors import DataError, InputError
from mnistcodec.storage.atomic import atomic_write

GZIP_MAGIC = b"\x1f\x8b"
IDX_UBYTE = 0x08
SUPPORTED_NDIMS = (1, 3)
#: Largest payload accepted (MNIST training images are 47 MB).
MAX_IDX_BYTES = 1 << 30


def check_payload_size(name: str, dims: tuple[int, ...], size: int, actual: int) -> None:
    """Refuse data shorter (truncated) or longer (trailing bytes) than the header says."""
    if actual < size:
        raise DataError(
            f"{name}: truncated: header claims shape {dims} ({size} bytes of data) "
            f"but only {actual} bytes follow"
        )
    if actual > size:
        raise DataError(
            f"{name}: {actual - size} bytes of trailing data after the {size} bytes "
            f"the header (shape {dims}) describes"
        )


def is_gzip(data: bytes) -> bool:
    """Whether ``data`` starts with the gzip magic bytes."""
    return data[:2] == GZIP_MAGIC


def gunzip(data: bytes, name: str, limit: int = MAX_IDX_BYTES) -> bytes:
    """Decompress a (possibly multi-member) gzip stream of at most ``limit`` bytes.

    Raises :class:`DataError` for corrupt or truncated data, trailing garbage
    and output longer than ``limit`` (checked while decompressing).
    """
    out, overflow = _gunzip(data, name, limit)
    if overflow:
        raise DataError(f"{name}: decompresses to more than the expected {limit} bytes")
    return out


def _gunzip(data: bytes, name: str, limit: int) -> tuple[bytes, bool]:
    """Decompress at most ``limit + 1`` bytes; return (data, whether it overflowed)."""
    out = bytearray()
    rest = data
    while rest:
        if not is_gzip(rest):
            raise DataError(f"{name}: trailing garbage after the gzip data")
        decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        buf = rest
        while True:
            try:
                chunk = decomp.decompress(buf, limit + 1 - len(out))
            except zlib.error as exc:
                raise DataError(f"{name}: corrupt gzip data ({exc})") from None
            out += chunk
            if len(out) > limit:
                return bytes(out[:limit]), True
            if decomp.eof:
                break
            buf = decomp.unconsumed_tail
            if not buf and not chunk:
                raise DataError(f"{name}: gzip data is truncated")
        rest = decomp.unused_data
    return bytes(out), False


def parse_header(data: bytes, name: str) -> tuple[tuple[int, ...], int]:
    """Validate an IDX header; return (dimensions, header length in bytes)."""
    if len(data) < 4:
        raise DataError(f"{name}: truncated IDX header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: bad magic number 0x{magic:08X}; not an IDX file")
    if data[2] != IDX_UBYTE:
        raise DataError(
            f"{name}: unsupported IDX data type 0x{data[2]:02X} "
            f"(only unsigned byte, 0x08, is supported)"
        )
    ndim = data[3]
    if ndim not in SUPPORTED_NDIMS:
        raise DataError(
            f"{name}: unsupported number of dimensions {ndim} (magic 0x{magic:08X}); "
            f"expected 1 (labels, 0x00000801) or 3 (images, 0x00000803)"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{name}: truncated IDX header ({len(data)} of {header_len} bytes)")
    dims = struct.unpack(f">{ndim}I", data[4:header_len])
    return dims, header_len


def _payload_size(dims: tuple[int, ...], name: str) -> int:
    size = math.prod(dims)
    if size > MAX_IDX_BYTES:
        raise DataError(
            f"{name}: header claims shape {dims} ({size} bytes of data), "
            f"more than the {MAX_IDX_BYTES}-byte limit"
        )
    return size


IdxSource = str | os.PathLike | bytes
"""An IDX file: a path on disk, or the file's bytes held in memory."""


@contextlib.contextmanager
def _opened(source: IdxSource, name: str) -> Iterator[BinaryIO]:
    """A binary handle on ``source``; OS errors become :class:`DataError`."""
    try:
        if isinstance(source, bytes | bytearray | memoryview):
            yield io.BytesIO(bytes(source))
        else:
            with open(source, "rb") as handle:
                yield handle
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None


def _name(source: IdxSource, name: str | None) -> str:
    if name is not None:
        return name
    return "<bytes>" if isinstance(source, bytes | bytearray | memoryview) else str(source)


@dataclass(frozen=True)
class IdxInfo:
    """What :func:`scan_idx` found: the shape, the header length and the encoding."""

    dims: tuple[int, ...]
    header_len: int
    gzipped: bool

    @property
    def row_bytes(self) -> int:
        """Bytes per item along the first dimension (784 for 28x28 images)."""
        return math.prod(self.dims[1:])


_SCAN_INPUT_LIMIT = 1 << 20


def scan_idx(source: IdxSource, name: str | None = None) -> IdxInfo:
    """Check the header of an IDX file (on disk or in memory) without reading its data.

    A raw file's size must match its header exactly; a gzipped file's length
    is checked while :func:`iter_idx_rows` reads it.
    """
    name = _name(source, name)
    with _opened(source, name) as handle:
        head = handle.read(16)
        if not is_gzip(head):
            dims, header_len = parse_header(head, name)
            size = _payload_size(dims, name)
            actual = handle.seek(0, io.SEEK_END) - header_len
            check_payload_size(name, dims, size, actual)
            return IdxInfo(dims, header_len, False)
        decomp = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out, fed = b"", head
        while len(out) < 16:
            try:
                out += decomp.decompress(decomp.unconsumed_tail + fed, 16 - len(out))
            except zlib.error as exc:
                raise DataError(f"{name}: corrupt gzip data ({exc})") from None
            if decomp.eof or handle.tell() > _SCAN_INPUT_LIMIT:
                break
            fed = handle.read(1 << 16)
            if not fed and not decomp.unconsumed_tail:
                break
    dims, header_len = parse_header(out, name)
    _payload_size(dims, name)
    return IdxInfo(dims, header_len, True)


def iter_idx_rows(
    source: IdxSource, info: IdxInfo, rows: int = 4096, name: str | None = None
) -> Iterator[np.ndarray]:
    """Yield the data of a scanned IDX file as uint8 arrays of at most ``rows`` items.

    Memory is one piece, whatever the header claims: a header promising more
    data than the file holds fails when the data ends.
    """
    name = _name(source, name)
    with _opened(source, name) as raw:
        handle = gzip.GzipFile(fileobj=raw, mode="rb") if info.gzipped else raw
        try:
            yield from _read_rows(handle, info, rows, name)
        except gzip.BadGzipFile as exc:
            if str(exc).startswith("Not a gzipped file"):
                raise DataError(f"{name}: trailing garbage after the gzip data") from None
            raise DataError(f"{name}: corrupt or truncated gzip data ({exc})") from None
        except (EOFError, zlib.error) as exc:
            raise DataError(f"{name}: corrupt or truncated gzip data ({exc})") from None
        except OSError as exc:
            raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None


def _read_rows(handle: BinaryIO, info: IdxInfo, rows: int, name: str) -> Iterator[np.ndarray]:
    count, row_bytes = info.dims[0], info.row_bytes
    if len(handle.read(info.header_len)) != info.header_len:
        raise DataError(f"{name}: truncated IDX header")
    done = 0
    while done < count:
        n = min(rows, count - done)
        chunk = np.empty((n, *info.dims[1:]), dtype=np.uint8)
        view = memoryview(chunk).cast("B")
        got = 0
        while got < len(view):
            step = handle.readinto(view[got:])
            if not step:
                raise DataError(
                    f"{name}: truncated: header claims {count} items but the data "
                    f"ends after {done + got // max(row_bytes, 1)}"
                )
            got += step
        yield chunk
        done += n
    if handle.read(1):
        raise DataError(
            f"{name}: trailing data after the {count * row_bytes} bytes "
            f"the header (shape {info.dims}) describes"
        )


def read_idx_bytes(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode an IDX file held in memory (gzip detected by its magic bytes).

    Returns a fresh writable uint8 array: (N,) for labels, (N, rows, cols) for
    images. ``name`` is used in error messages.
    """
    return _read_whole(bytes(data), name)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, raw or gzipped (detected by content, not by name)."""
    return _read_whole(path, str(path))


def _read_whole(source: IdxSource, name: str) -> np.ndarray:
    """:func:`scan_idx`, then every piece of :func:`iter_idx_rows` joined."""
    info = scan_idx(source, name)
    pieces = list(iter_idx_rows(source, info, name=name))
    if not pieces:
        return np.empty(info.dims, dtype=np.uint8)
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def read_file_bytes(path: str | os.PathLike, limit: int = MAX_IDX_BYTES + 16) -> bytes:
    """Read a whole file, refusing files over ``limit`` bytes before reading."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > limit:
            raise DataError(f"{path}: file is {size} bytes, more than the {limit}-byte limit")
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None


def encode_idx(array: np.ndarray) -> bytes:
    """Encode a uint8 array of 1 or 3 dimensions as raw IDX bytes."""
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise InputError(f"IDX files hold uint8 data; got an array of dtype {array.dtype}")
    if array.ndim not in SUPPORTED_NDIMS:
        raise InputError(f"IDX arrays must have 1 or 3 dimensions; got shape {array.shape}")
    if any(d >= 1 << 32 for d in array.shape):
        raise InputError(f"array shape {array.shape} does not fit an IDX header")
    return idx_header(array.shape) + np.ascontiguousarray(array).tobytes()


def idx_header(dims: tuple[int, ...]) -> bytes:
    """The header of a uint8 IDX file of shape ``dims``: magic ``00 00 08 ndim``, big-endian sizes."""
    return bytes([0, 0, IDX_UBYTE, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def write_idx(path: str | os.PathLike, array: np.ndarray, force: bool = False) -> Path:
    """Write ``array`` as an IDX file atomically; gzip it if the name ends in ``.gz``."""
    data = encode_idx(array)
    if str(path).endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    return atomic_write(path, data, force=force)
