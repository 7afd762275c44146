"""The classical image codecs the learned codec is compared with.

Every codec is driven through ``imagecodecs`` (optional dependency: ``pip
install 'mnistcodec[baselines]'``) as a :class:`CodecSpec`: ``encode(image,
quality) -> bytes`` on a (H, W) uint8 grey image and ``decode(bytes) ->
image``, with :func:`round_trip` doing both and bringing the decoded image
back to (H, W) grey. How the codecs are measured on digits is
:mod:`mnistcodec.experiments.baselines`' business.

Codec settings (imagecodecs 2026.3 with libjpeg-turbo 3.1, OpenJPEG 2.5,
libwebp 1.6, libavif 1.4 + libaom, libjxl 0.11, libpng 1.6); each quality
knob below was checked to change the output:

``jpeg``
    libjpeg quality 5..95 (``level``), baseline greyscale with optimised
    Huffman tables (``optimize=True``, like ``cjpeg -optimize``; about 150
    bytes smaller per file than the default tables).
``jpeg2000``
    OpenJPEG, raw J2K codestream (no JP2 box container, about 85 bytes
    smaller), one quality layer, irreversible 9/7 wavelet. ``level`` is the
    fixed-quality target PSNR in dB (OpenJPEG ``tcp_distoratio``), so the
    quality axis is 16..52 dB. The target applies to the whole image, so
    the digits' PSNRs scatter around it; on a single 28x28 digit a 16 dB
    target makes OpenJPEG drop every coefficient and output flat grey
    (about 7 dB), a real if useless point. Above about 55 dB the
    irreversible path saturates and the output no longer changes.
``webp``
    libwebp lossy (``lossless=False`` must be given: without it imagecodecs
    encodes losslessly and ignores ``level``), quality 0..100, default
    method 4. The encoder only takes RGB(A), so the grey digit is replicated
    into 3 channels; the decoded RGB channels can differ by one level
    (YUV 4:2:0 rounding) and are averaged and rounded back to grey.
``avif``
    libavif + libaom, quality ``level`` 0..90 (100 is lossless), 4:0:0
    monochrome (``pixelformat=YUV400``), encoder speed 6 (avifenc's
    default; imagecodecs' default is the slowest speed, about 70 ms per
    28x28 digit). imagecodecs forces lossless coding for 2-D (greyscale)
    input, so the digit is passed as 3 identical channels and coded as
    4:0:0; the decoder returns the grey plane. Even level 0 stays around
    30 dB on digits: AV1's coarsest quantiser is not very coarse.
``jpegxl``
    libjxl quality ``level`` 0..95 (mapped by libjxl to a Butteraugli
    distance), default effort 7, greyscale, bare codestream.
``png`` / ``jpegxl-lossless`` / ``webp-lossless``
    Lossless references (PNG at zlib level 9; JPEG XL ``lossless=True``;
    WebP ``lossless=True`` on 3 replicated channels). Quality ``"lossless"``.

A codec missing from the installed imagecodecs build, or failing a round
trip, is reported with its reason by :func:`codec_status`, never a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mnistcodec.errors import InputError
from mnistcodec.storage.digits import IMAGE_SHAPE

LOSSLESS = "lossless"
"""The quality value of lossless codecs."""

AVIF_SPEED = 6
"""libavif encoder speed used for AVIF (0 slowest/best .. 10 fastest)."""


def _imagecodecs():
    try:
        # Lazy: an optional dependency (the "baselines" extra); without it, a clear error.
        import imagecodecs
    except ImportError as exc:
        raise InputError(
            "classical baselines need the 'imagecodecs' package: "
            "pip install 'mnistcodec[baselines]' (or pip install imagecodecs)"
        ) from exc
    return imagecodecs


# -- adapters: encode(uint8 (H, W), quality) -> bytes, decode(bytes) -> uint8 image --------------


def grey_to_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) grey -> (H, W, 3) with the grey value in every channel."""
    return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))


def decoded_to_grey(decoded: np.ndarray) -> np.ndarray:
    """Return a (H, W) uint8 image from a decoder's output.

    (H, W) is returned as is; (H, W, 1) is squeezed; (H, W, 3|4) keeps the
    colour channels and averages them with rounding, ``(r + g + b + 1) // 3``
    (a grey source decoded through YUV can come back with channels one level
    apart).
    """
    arr = np.asarray(decoded)
    if arr.dtype != np.uint8:
        raise InputError(f"decoder returned dtype {arr.dtype}, expected uint8")
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] == 1:
        return arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[:, :, :3].astype(np.uint16)
        return ((rgb.sum(axis=2) + 1) // 3).astype(np.uint8)
    raise InputError(f"decoder returned an image of unexpected shape {arr.shape}")


def _jpeg_encode(img: np.ndarray, quality: Any) -> bytes:
    return _imagecodecs().jpeg8_encode(img, level=int(quality), optimize=True)


def _jpeg_decode(data: bytes) -> np.ndarray:
    return _imagecodecs().jpeg8_decode(data)


def _jpeg2k_encode(img: np.ndarray, quality: Any) -> bytes:
    ic = _imagecodecs()
    if quality == LOSSLESS:
        return ic.jpeg2k_encode(img, codecformat="J2K")
    return ic.jpeg2k_encode(img, level=float(quality), codecformat="J2K")


def _jpeg2k_decode(data: bytes) -> np.ndarray:
    return _imagecodecs().jpeg2k_decode(data)


def _webp_encode(img: np.ndarray, quality: Any) -> bytes:
    ic = _imagecodecs()
    if quality == LOSSLESS:
        return ic.webp_encode(grey_to_rgb(img), lossless=True)
    return ic.webp_encode(grey_to_rgb(img), level=float(quality), lossless=False)


def _webp_decode(data: bytes) -> np.ndarray:
    return _imagecodecs().webp_decode(data)


def _avif_encode(img: np.ndarray, quality: Any) -> bytes:
    ic = _imagecodecs()
    return ic.avif_encode(
        grey_to_rgb(img),
        level=int(quality),
        speed=AVIF_SPEED,
        pixelformat=ic.AVIF.PIXEL_FORMAT.YUV400,
    )


def _avif_decode(data: bytes) -> np.ndarray:
    return _imagecodecs().avif_decode(data)


def _jpegxl_encode(img: np.ndarray, quality: Any) -> bytes:
    ic = _imagecodecs()
    if quality == LOSSLESS:
        return ic.jpegxl_encode(img, lossless=True)
    return ic.jpegxl_encode(img, level=float(quality))


def _jpegxl_decode(data: bytes) -> np.ndarray:
    return _imagecodecs().jpegxl_decode(data)


def _png_encode(img: np.ndarray, quality: Any) -> bytes:
    return _imagecodecs().png_encode(img, level=9)


def _png_decode(data: bytes) -> np.ndarray:
    return _imagecodecs().png_decode(data)


# -- the codec table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodecSpec:
    """One classical codec configuration.

    ``encode(img, quality)`` takes a (H, W) uint8 greyscale image and returns
    the file's bytes; ``decode(bytes)`` returns the image (any shape
    :func:`decoded_to_grey` understands). ``qualities`` are the default
    settings swept, in increasing quality; a lossless codec has
    ``("lossless",)``. ``feature`` names the ``imagecodecs`` attribute whose
    ``.available`` says whether the build has the codec.
    """

    name: str
    label: str
    encode: Callable[[np.ndarray, Any], bytes]
    decode: Callable[[bytes], np.ndarray]
    qualities: tuple[Any, ...]
    lossless: bool
    feature: str
    quality_meaning: str
    settings: str = ""


CODECS: dict[str, CodecSpec] = {
    spec.name: spec
    for spec in (
        CodecSpec(
            "jpeg", "JPEG", _jpeg_encode, _jpeg_decode,
            (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95), False, "JPEG8",
            "libjpeg quality (1..100)", "libjpeg-turbo, greyscale, optimize=True",
        ),
        CodecSpec(
            "jpeg2000", "JPEG 2000", _jpeg2k_encode, _jpeg2k_decode,
            (16, 18, 20, 22, 24, 28, 32, 36, 40, 44, 48, 52), False, "JPEG2K",
            "target PSNR in dB (OpenJPEG fixed quality)", "OpenJPEG, J2K codestream, 9/7 wavelet",
        ),
        CodecSpec(
            "webp", "WebP", _webp_encode, _webp_decode,
            (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100), False, "WEBP",
            "libwebp quality (0..100)", "libwebp lossy, method 4, RGB from grey",
        ),
        CodecSpec(
            "avif", "AVIF", _avif_encode, _avif_decode,
            (0, 10, 20, 30, 40, 50, 60, 70, 80, 90), False, "AVIF",
            "libavif quality (0..100)", f"libavif+aom, YUV 4:0:0, speed {AVIF_SPEED}",
        ),
        CodecSpec(
            "jpegxl", "JPEG XL", _jpegxl_encode, _jpegxl_decode,
            (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95), False, "JPEGXL",
            "libjxl quality (0..100)", "libjxl, effort 7, greyscale",
        ),
        CodecSpec(
            "png", "PNG", _png_encode, _png_decode,
            (LOSSLESS,), True, "PNG", "lossless", "libpng, zlib level 9",
        ),
        CodecSpec(
            "jpegxl-lossless", "JPEG XL lossless", _jpegxl_encode, _jpegxl_decode,
            (LOSSLESS,), True, "JPEGXL", "lossless", "libjxl lossless, effort 7",
        ),
        CodecSpec(
            "webp-lossless", "WebP lossless", _webp_encode, _webp_decode,
            (LOSSLESS,), True, "WEBP", "lossless", "libwebp lossless, RGB from grey",
        ),
    )
}  # fmt: skip
"""Every known codec by name. Use :func:`available_codecs` for the usable ones."""


def resolve_codec(codec: str | CodecSpec) -> CodecSpec:
    """The :class:`CodecSpec` of a name of :data:`CODECS` (a spec is returned as is)."""
    if isinstance(codec, CodecSpec):
        return codec
    try:
        return CODECS[codec]
    except KeyError:
        raise InputError(f"unknown codec {codec!r}; known codecs: {', '.join(CODECS)}") from None


def round_trip(spec: CodecSpec, image: np.ndarray, quality: Any) -> tuple[bytes, np.ndarray]:
    """Encode a (H, W) uint8 image at ``quality`` and decode it: ``(file bytes, decoded (H, W))``."""
    data = bytes(spec.encode(image, quality))
    decoded = decoded_to_grey(spec.decode(data))
    if decoded.shape != image.shape:
        raise InputError(f"{spec.name} decoded a {image.shape} image as shape {decoded.shape}")
    return data, decoded


# -- availability -------------------------------------------------------------------------------


_STATUS: dict[str, str | None] = {}


def _probe_image() -> np.ndarray:
    """A bright disc with a horizontal ramp, the size of a digit."""
    yy, xx = np.mgrid[0 : IMAGE_SHAPE[0], 0 : IMAGE_SHAPE[1]]
    img = np.where((xx - 14) ** 2 + (yy - 14) ** 2 < 64, 255, 0)
    return (img * (xx + 4) // 32).astype(np.uint8)


def probe_codec(spec: CodecSpec) -> str | None:
    """``None`` when ``spec`` works here, else the reason it does not (uncached)."""
    try:
        ic = _imagecodecs()
    except InputError as exc:
        return str(exc)
    feature = getattr(ic, spec.feature, None)
    if feature is None or not getattr(feature, "available", False):
        return f"imagecodecs {getattr(ic, '__version__', '?')} was built without {spec.feature}"
    img = _probe_image()
    quality = spec.qualities[len(spec.qualities) // 2]
    try:
        _, out = round_trip(spec, img, quality)
    except Exception as exc:  # any library failure means "not usable here"
        return f"round trip failed: {type(exc).__name__}: {exc}"
    if spec.lossless and not np.array_equal(out, img):
        return "lossless round trip changed the image"
    return None


def codec_status(refresh: bool = False) -> dict[str, str | None]:
    """Map each codec name to ``None`` (usable) or the reason it is skipped.

    A codec is usable when the installed imagecodecs has it and a round
    trip of a test digit works. The result is cached; ``refresh`` re-probes.
    """
    for name, spec in CODECS.items():
        if refresh or name not in _STATUS:
            _STATUS[name] = probe_codec(spec)
    return {name: _STATUS[name] for name in CODECS}


def available_codecs() -> list[str]:
    """Names of the codecs usable with the installed imagecodecs build."""
    return [name for name, reason in codec_status().items() if reason is None]
