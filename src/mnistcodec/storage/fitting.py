"""Any image brought to MNIST's form: a 28x28 greyscale digit, light ink on black.

MNIST's digits were made from scanned black-on-white NIST digits: each one
normalised to fit a 20x20 box keeping its aspect ratio (anti-aliased, so
grey levels appear), then centred in a 28x28 field by its centre of mass.
:func:`fit_to_mnist` does the same to an image of any size, colour or
polarity, in these steps:

1. **Greyscale.** Colour becomes luma (ITU-R 601, Pillow's mode ``"L"``).
   Transparent pixels become paper of the colour opposite to the ink's (the
   opaque pixels' mean luminance decides), so a stroke drawn on a transparent
   canvas is ink whatever its colour. A photo's EXIF orientation is applied.
2. **Light on dark.** The background level is the median of the image's
   outer frame of pixels; if it is lighter than mid-grey the image is dark ink
   on light paper (a photo or scan of a drawing) and is inverted.
3. **Background removed.** Levels are stretched so the background becomes 0
   and the brightest ink 255. When the frame is not one flat level (it
   spreads over more than :data:`FLAT_FRAME` grey levels: a photo or a scan,
   with paper texture and uneven light), what stays within :data:`INK_FLOOR`
   of the background also becomes 0 and the rest is stretched again; a clean
   image (a drawing, an MNIST digit) keeps every grey level. An image with
   no ink left is refused.
4. **Cropped** to the bounding box of the remaining ink.
5. **Scaled** so the longer side is :data:`BOX` (20) pixels, keeping the
   aspect ratio (Lanczos resampling, which anti-aliases when it shrinks).
6. **Centred by mass** in the 28x28 field: the box is placed, in whole
   pixels, so that its centre of mass falls as near as possible to the
   pixel (14, 14) as in MNIST (rows and columns counted from 0), without pushing ink off the field.

:func:`fit_image_bytes` decodes an image of one of :data:`FIT_FORMATS` (PNG,
JPEG, WebP, GIF, BMP, TIFF, AVIF; no other Pillow plugin is ever tried, so a
PostScript file never reaches Ghostscript) and fits it; :func:`fit_image_files`
fits files (``mnistcodec compress --fit``). Only NumPy and Pillow are used.

Work per image is bounded before decoding: the size is read from the header
and refused above :data:`MAX_FIT_PIXELS` (the playground passes a smaller cap);
a JPEG larger than :data:`WORK_SIDE` is decoded at a reduced scale (its DCT
draft); any image still larger is reduced by whole-pixel box averaging until
its longer side is at most :data:`WORK_SIDE`, before the float arithmetic of
the steps, and 16- and 32-bit images are brought to 8 bits. A digit needs far
fewer pixels than that: step 5 scales its ink to 20 pixels. Pixels that are
not finite (NaN or infinity, in a float TIFF) are refused.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnistcodec.errors import InputError
from mnistcodec.storage.atomic import is_stdio, read_input
from mnistcodec.storage.digits import IMAGE_SHAPE


class NotAnImageError(InputError):
    """Bytes that no image decoder recognises."""


#: The formats' names as people write them.
_FORMAT_NAMES = ("PNG", "JPEG", "WebP", "GIF", "BMP", "TIFF", "AVIF")

#: Side of the box the ink is scaled to fit, as MNIST's.
BOX = 20
#: Largest image (width x height) decoded for fitting: a 64-megapixel photo.
MAX_FIT_PIXELS = 1 << 26
#: Largest image file read for fitting.
MAX_FIT_BYTES = 1 << 26
#: Longest side an image is worked on at: larger ones are reduced first (box averaging).
WORK_SIDE = 1024
#: The formats an image to fit may have (Pillow's names); no other decoder is tried.
FIT_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
#: Share of the ink's range above the background that is still background (step 3, photos).
INK_FLOOR = 0.1
#: Spread of the frame's grey levels up to which an image counts as clean (step 3).
FLAT_FRAME = 8.0


def _orientation(image: Image.Image) -> int:
    with contextlib.suppress(Exception):
        return int(image.getexif().get(0x0112, 1))
    return 1


def _reduced(image: Image.Image) -> Image.Image:
    """An image at most :data:`WORK_SIDE` on its longer side (box averaging), EXIF-oriented.

    Palette and 1-bit images become RGBA or L first (averaging palette indices
    would be wrong), 16-bit greyscale 32-bit (Pillow reduces that).
    """
    orientation = _orientation(image)
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    factor = -(-max(image.size) // WORK_SIDE)
    if factor > 1:
        image = image.reduce(factor)
    if orientation in _TRANSPOSE:
        image = image.transpose(_TRANSPOSE[orientation])
    return image


def _greyscale(image: Image.Image) -> np.ndarray:
    """Step 1: an image of any mode as greyscale float64 (H, W) on 0..255.

    ``InputError`` for pixels that are not finite (a float image's NaN or infinity).
    """
    image = _reduced(image)
    if image.mode.startswith("I"):  # 16- or 32-bit integer greyscale: 0..65535
        return np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0.0, 255.0)
    if image.mode == "F":
        pixels = np.asarray(image, dtype=np.float64)
        finite = np.isfinite(pixels)
        if not finite.any():
            raise InputError("the image holds no ink: every pixel is NaN or infinite")
        if not finite.all():
            raise InputError(
                f"the image holds {int(pixels.size - finite.sum())} pixels that are not finite "
                "numbers (NaN or infinity)"
            )
        return np.clip(pixels, 0.0, 255.0)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.float64)
    rgba = image.convert("RGBA")
    luma = np.asarray(rgba.convert("L"), dtype=np.float64)
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255.0
    if alpha.min() == 1.0:
        return luma
    ink = float((luma * alpha).sum() / alpha.sum()) if alpha.sum() > 0 else 0.0
    paper = 255.0 if ink < 128.0 else 0.0
    return luma * alpha + paper * (1.0 - alpha)


def _light_on_dark(grey: np.ndarray) -> np.ndarray:
    """Steps 2 and 3: ink light on a black background, 0..1; ``InputError`` if no ink."""
    frame = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    background = float(np.median(frame))
    if background > 127.5:
        grey, background = 255.0 - grey, 255.0 - background
    peak = float(grey.max())
    if peak - background < 1.0:
        raise InputError("the image holds no ink: it is one flat level")
    level = np.clip((grey - background) / (peak - background), 0.0, 1.0)
    if float(np.ptp(frame)) > FLAT_FRAME:
        level = np.clip((level - INK_FLOOR) / (1.0 - INK_FLOOR), 0.0, 1.0)
    if not level.any():
        raise InputError("the image holds no ink above its background")
    return level


def _scaled_to_box(ink: np.ndarray) -> np.ndarray:
    """Steps 4 and 5: crop to the ink's bounding box, longer side scaled to :data:`BOX`."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    pixels = Image.fromarray(np.round(crop * 255.0).astype(np.uint8), mode="L")
    return np.asarray(pixels.resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)


def _centred_by_mass(box: np.ndarray) -> np.ndarray:
    """Step 6: the box in a 28x28 field, its centre of mass on the centre, in whole pixels."""
    field = np.zeros(IMAGE_SHAPE, dtype=np.uint8)
    height, width = box.shape
    mass = box.astype(np.float64)
    total = mass.sum()
    if total > 0:
        cy = float((mass.sum(axis=1) * np.arange(height)).sum() / total)
        cx = float((mass.sum(axis=0) * np.arange(width)).sum() / total)
    else:
        cy, cx = (height - 1) / 2, (width - 1) / 2
    centre_y, centre_x = IMAGE_SHAPE[0] / 2, IMAGE_SHAPE[1] / 2
    top = min(max(round(centre_y - cy), 0), IMAGE_SHAPE[0] - height)
    left = min(max(round(centre_x - cx), 0), IMAGE_SHAPE[1] - width)
    field[top : top + height, left : left + width] = box
    return field


def fit_to_mnist(image: Image.Image | np.ndarray) -> np.ndarray:
    """An image (Pillow image, or a (H, W) / (H, W, 3|4) uint8 array) -> uint8 digit (28, 28).

    The steps are those of the module docstring; ``InputError`` for an image
    without ink or of an unusable shape.
    """
    if isinstance(image, np.ndarray):
        array = np.asarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3) or 0 in array.shape:
            raise InputError(
                f"an image to fit must be a non-empty uint8 array (H, W) or (H, W, 3|4), "
                f"got dtype {array.dtype} and shape {array.shape}"
            )
        if array.ndim == 3 and array.shape[2] not in (3, 4):
            raise InputError(f"an image to fit has 3 or 4 channels, got shape {array.shape}")
        image = Image.fromarray(array)
    grey = _greyscale(image)
    return _centred_by_mass(_scaled_to_box(_light_on_dark(grey)))


def pillow_message(exc: BaseException) -> str:
    """Pillow's message without the in-memory file object it sometimes names."""
    text = re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the data", str(exc))
    return text or type(exc).__name__


def open_image(data: bytes, name: str = "<image>", max_pixels: int = MAX_FIT_PIXELS) -> Image.Image:
    """The image in ``data`` (one of :data:`FIT_FORMATS`), decoded; ``InputError`` otherwise.

    The size is checked against ``max_pixels`` from the header, before any
    pixel is decoded; a JPEG is decoded at the smallest DCT scale that keeps
    :data:`WORK_SIDE` pixels; an animated image gives its first frame.
    """
    if not data:
        raise NotAnImageError(f"{name} is empty; expected an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FIT_FORMATS)
            width, height = image.size
            if width * height > max_pixels or width < 1 or height < 1:
                raise InputError(
                    f"{name}: a {width}x{height} image; images to fit may have at most "
                    f"{max_pixels} pixels"
                )
            if image.format in ("JPEG", "MPO") and max(width, height) > WORK_SIDE:
                scale = max(width, height) / WORK_SIDE
                image.draft(image.mode, (math.ceil(width / scale), math.ceil(height / scale)))
            image.load()
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{name}: too large an image; images to fit may have at most {max_pixels} pixels"
        ) from None
    except UnidentifiedImageError:
        raise NotAnImageError(
            f"{name} is not an image of a format taken here ({', '.join(_FORMAT_NAMES)})"
        ) from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
    ) as exc:
        raise InputError(f"{name}: corrupt or truncated image ({pillow_message(exc)})") from None
    return image


def fit_image_bytes(
    data: bytes, name: str = "<image>", max_pixels: int = MAX_FIT_PIXELS
) -> np.ndarray:
    """An encoded image of any format, size and colour -> uint8 digit (28, 28) (:func:`fit_to_mnist`)."""
    image = open_image(data, name, max_pixels)
    try:
        return fit_to_mnist(image)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{name}: corrupt or truncated image ({pillow_message(exc)})") from None


def fit_image_files(paths: Sequence[str | os.PathLike]) -> tuple[np.ndarray, list[str]]:
    """Image files (``-``: standard input), one digit each -> uint8 digits (N, 28, 28) and names."""
    if not paths:
        raise InputError("no input images given")
    if sum(is_stdio(p) for p in paths) > 1:
        raise InputError("standard input (-) can be read only once")
    digits, names = [], []
    for raw in paths:
        name = "<stdin>" if is_stdio(raw) else Path(raw).name
        data = read_input(raw, "an image file", MAX_FIT_BYTES, allow_stdin=True)
        digits.append(fit_image_bytes(data, name if is_stdio(raw) else str(raw)))
        names.append(name)
    return np.stack(digits), names
