"""Digits as arrays: their shape, their validation, and grids of them.

A digit is a uint8 array of :data:`IMAGE_SHAPE` (28 x 28) on the 0..255 scale;
a batch is ``(N, 28, 28)``. :func:`check_digits` is the one validator every
layer uses. :func:`tile` lays tiles out row by row in a grid of ``columns``
(default ``ceil(sqrt(N))``), ``gap`` pixels of grey ``fill`` apart, and
:func:`untile` cuts a gapless grid back into its tiles. PNG grids, the
classical codecs' mosaics and the report's figures are all made by it.
"""

from __future__ import annotations

import math

import numpy as np

from mnistcodec.errors import InputError

IMAGE_SHAPE = (28, 28)


def check_digits(
    images: np.ndarray,
    shape: tuple[int, int] | None = IMAGE_SHAPE,
    allow_empty: bool = True,
    allow_single: bool = True,
) -> np.ndarray:
    """Require uint8 digits ``(N, 28, 28)``; a single ``(28, 28)`` digit becomes ``(1, 28, 28)``.

    ``shape=None`` accepts any ``(N, H, W)`` of positive sides (classical codecs);
    ``allow_single=False`` refuses a lone 2-D image.
    """
    images = np.asarray(images)
    if images.ndim == 2 and allow_single:
        images = images[None]
    if images.dtype != np.uint8:
        raise InputError(
            f"digits must be uint8 on the 0..255 scale, got dtype {images.dtype}; "
            "convert with np.clip(np.round(x * 255), 0, 255).astype(np.uint8) if they are in [0, 1]"
        )
    wanted = "(N, 28, 28)" if shape else "(N, H, W)"
    if images.ndim != 3 or (shape and images.shape[1:] != shape) or 0 in images.shape[1:]:
        raise InputError(f"digits must have shape {wanted}, got {images.shape}")
    if not allow_empty and images.shape[0] == 0:
        raise InputError("no digits given (empty array)")
    return images


def grid_shape(n: int, columns: int | None = None) -> tuple[int, int]:
    """``(rows, columns)`` of the grid for ``n`` tiles; ``columns`` defaults to ``ceil(sqrt(n))``."""
    if n < 1:
        raise InputError("need at least one digit to tile")
    columns = columns or math.isqrt(n - 1) + 1
    return -(-n // columns), columns


def tile(tiles: np.ndarray, columns: int | None = None, gap: int = 0, fill: int = 0) -> np.ndarray:
    """Lay ``(N, h, w)`` tiles out row by row, ``gap`` pixels of ``fill`` between them.

    Unused cells of the last row are ``fill``. Returns a C-contiguous
    ``(rows (h + gap) - gap, columns (w + gap) - gap)`` array of the tiles' dtype.
    """
    tiles = np.asarray(tiles)
    n, h, w = tiles.shape
    rows, columns = grid_shape(n, columns)
    cells = np.full((rows * columns, h + gap, w + gap), fill, dtype=tiles.dtype)
    cells[:n, :h, :w] = tiles
    grid = cells.reshape(rows, columns, h + gap, w + gap).transpose(0, 2, 1, 3)
    grid = grid.reshape(rows * (h + gap), columns * (w + gap))
    return np.ascontiguousarray(grid[: grid.shape[0] - gap, : grid.shape[1] - gap])


def untile(
    grid: np.ndarray, n: int, h: int = IMAGE_SHAPE[0], w: int = IMAGE_SHAPE[1]
) -> np.ndarray:
    """Inverse of :func:`tile` without gaps: the first ``n`` ``(h, w)`` tiles of ``grid``."""
    rows, columns = grid_shape(n)
    grid = np.asarray(grid)
    if grid.shape != (rows * h, columns * w):
        raise InputError(
            f"mosaic has shape {grid.shape}, expected {(rows * h, columns * w)} for {n} digits"
        )
    tiles = grid.reshape(rows, h, columns, w).transpose(0, 2, 1, 3).reshape(rows * columns, h, w)
    return np.ascontiguousarray(tiles[:n])
