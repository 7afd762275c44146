"""Classical image codecs on the same digits: the honest comparison.

Every standard codec here is driven through ``imagecodecs`` (optional
dependency: ``pip install 'mnistcodec[baselines]'``) and measured two ways:

``per-file``
    Each 28x28 digit is its own file. Rate = mean of ``8 * len(encoded)``
    over the digits, headers and all: what storing one digit really costs.
``tiled``
    All N digits are laid out row by row in a near-square grid of 28x28
    tiles (``cols = ceil(sqrt(N))``, ``rows = ceil(N / cols)``, unused tiles
    black, which is MNIST's background) and encoded once. Rate = total bits
    / N, so the container cost is shared and the codec can use context
    across digits. The decoded mosaic is cut back into digits.

Distortion is always measured on the decoded output (every encoding is
decoded), per digit: mean of per-digit PSNRs, PSNR of the mean MSE, and MAD on
the [0, 1] scale (see :mod:`mnistcodec.experiments.metrics`; identical digits score
100 dB).

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
trip, is skipped with its reason (see :func:`codec_status`), never a crash.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mnistcodec.errors import InputError
from mnistcodec.experiments.metrics import mad, mse_per_image, psnr_of_mean_mse, psnr_per_image
from mnistcodec.storage.digits import check_digits, tile, untile

TILE = 28
"""Side of one digit tile in pixels."""

LOSSLESS = "lossless"
"""The quality value of lossless codecs."""

MODES = ("per-file", "tiled")
"""Measurement modes, see the module docstring."""

AVIF_SPEED = 6
"""libavif encoder speed used for AVIF (0 slowest/best .. 10 fastest)."""


def _imagecodecs():
    try:
        import imagecodecs
    except ImportError as exc:
        raise InputError(
            "classical baselines need the 'imagecodecs' package: "
            "pip install 'mnistcodec[baselines]' (or pip install imagecodecs)"
        ) from exc
    return imagecodecs


# --------------------------------------------------------------------------
# Codec adapters: encode(uint8 (H, W), quality) -> bytes, decode(bytes) -> uint8 (H, W)


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(img[:, :, None], 3, axis=2))


def _to_grey(decoded: np.ndarray) -> np.ndarray:
    """Return a (H, W) uint8 image from a decoder's output.

    (H, W) is returned as is; (H, W, 1) is squeezed; (H, W, 3|4) keeps the
    colour channels and averages them with rounding (a grey source decoded
    through YUV can come back with channels one level apart).
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
        return ic.webp_encode(_rgb(img), lossless=True)
    return ic.webp_encode(_rgb(img), level=float(quality), lossless=False)


def _webp_decode(data: bytes) -> np.ndarray:
    return _imagecodecs().webp_decode(data)


def _avif_encode(img: np.ndarray, quality: Any) -> bytes:
    ic = _imagecodecs()
    return ic.avif_encode(
        _rgb(img),
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


@dataclass(frozen=True)
class CodecSpec:
    """One classical codec configuration.

    ``encode(img, quality)`` takes a (H, W) uint8 greyscale image and returns
    the file's bytes; ``decode(bytes)`` returns the image (any shape
    :func:`_to_grey` understands). ``qualities`` are the default settings
    swept, in increasing quality; a lossless codec has ``("lossless",)``.
    ``feature`` names the ``imagecodecs`` attribute whose ``.available``
    says whether the build has the codec.
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
}
"""Every known codec by name. Use :func:`available_codecs` for the usable ones."""


# --------------------------------------------------------------------------
# Availability


_STATUS: dict[str, str | None] = {}


def _probe_image() -> np.ndarray:
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    img = np.where((xx - 14) ** 2 + (yy - 14) ** 2 < 64, 255, 0)
    return (img * (xx + 4) // 32).astype(np.uint8)


def _probe(spec: CodecSpec) -> str | None:
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
        out = _to_grey(spec.decode(bytes(spec.encode(img, quality))))
    except Exception as exc:  # any library failure means "not usable here"
        return f"round trip failed: {type(exc).__name__}: {exc}"
    if out.shape != img.shape:
        return f"round trip returned shape {out.shape}, expected {img.shape}"
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
            _STATUS[name] = _probe(spec)
    return {name: _STATUS[name] for name in CODECS}


def available_codecs() -> list[str]:
    """Names of the codecs usable with the installed imagecodecs build."""
    return [name for name, reason in codec_status().items() if reason is None]


# --------------------------------------------------------------------------
# Measurement


@dataclass
class BaselinePoint:
    """One measured (codec, quality, mode) point.

    ``bits_per_digit``: per-file, the mean of ``8 * len(file)``; tiled,
    ``8 * len(file) / n``. ``psnr_db``: mean of the per-digit PSNRs;
    ``psnr_of_mean_mse_db``: PSNR of the MSE averaged over digits; ``mad``:
    mean absolute difference on the [0, 1] scale. ``total_bits``: all bits
    written for the ``n`` digits.
    """

    codec: str
    quality: float | str
    mode: str
    bits_per_digit: float
    psnr_db: float
    psnr_of_mean_mse_db: float
    mad: float
    n: int
    lossless: bool
    total_bits: int


def _check_images(images_uint8: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(check_digits(images_uint8, shape=None, allow_empty=False, allow_single=False))


def _resolve(codec: str | CodecSpec) -> CodecSpec:
    if isinstance(codec, CodecSpec):
        return codec
    try:
        return CODECS[codec]
    except KeyError:
        raise InputError(
            f"unknown codec {codec!r}; known codecs: {', '.join(CODECS)}"
        ) from None


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _roundtrip_chunk(spec: CodecSpec, quality: Any, chunk: np.ndarray) -> tuple[list[int], np.ndarray]:
    sizes = []
    out = np.empty_like(chunk)
    for i, img in enumerate(chunk):
        data = spec.encode(img, quality)
        sizes.append(len(data))
        dec = _to_grey(spec.decode(bytes(data)))
        if dec.shape != img.shape:
            raise InputError(
                f"{spec.name} decoded a {img.shape} digit as shape {dec.shape}"
            )
        out[i] = dec
    return sizes, out


def _point(
    spec: CodecSpec, quality: Any, mode: str, images: np.ndarray, decoded: np.ndarray,
    bits_per_digit: float, total_bits: int,
) -> BaselinePoint:
    psnrs = psnr_per_image(images, decoded)
    return BaselinePoint(
        codec=spec.name,
        quality=quality,
        mode=mode,
        bits_per_digit=float(bits_per_digit),
        psnr_db=float(np.mean(psnrs)),
        psnr_of_mean_mse_db=psnr_of_mean_mse(images, decoded),
        mad=mad(images, decoded),
        n=int(images.shape[0]),
        lossless=spec.lossless,
        total_bits=int(total_bits),
    )


def encode_per_file(
    codec: str | CodecSpec, images_uint8: np.ndarray, quality: Any, workers: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Encode and decode each digit as its own file.

    Returns ``(sizes_in_bytes, decoded)`` with ``sizes`` int64 of shape (N,)
    and ``decoded`` uint8 of the input's shape. Work is spread over
    ``workers`` threads (imagecodecs releases the GIL); the result does not
    depend on the number of workers.
    """
    spec = _resolve(codec)
    images = _check_images(images_uint8)
    workers = _default_workers() if workers is None else max(1, int(workers))
    n = images.shape[0]
    n_chunks = min(n, workers * 8) if workers > 1 else 1
    chunks = np.array_split(images, n_chunks)
    if workers > 1 and n_chunks > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda c: _roundtrip_chunk(spec, quality, c), chunks))
    else:
        results = [_roundtrip_chunk(spec, quality, c) for c in chunks]
    sizes = np.concatenate([np.asarray(r[0], dtype=np.int64) for r in results])
    decoded = np.concatenate([r[1] for r in results])
    return sizes, decoded


def measure_per_file(
    codec: str | CodecSpec, images_uint8: np.ndarray, quality: Any, workers: int | None = None
) -> BaselinePoint:
    """One file per digit: mean bits per digit and the distortion of the decoded digits."""
    spec = _resolve(codec)
    images = _check_images(images_uint8)
    sizes, decoded = encode_per_file(spec, images, quality, workers)
    bits = 8 * sizes
    return _point(spec, quality, "per-file", images, decoded, float(np.mean(bits)), int(bits.sum()))


def measure_tiled(codec: str | CodecSpec, images_uint8: np.ndarray, quality: Any) -> BaselinePoint:
    """All digits in one mosaic (see :func:`mnistcodec.storage.digits.tile`), encoded once; bits / N per digit."""
    spec = _resolve(codec)
    images = _check_images(images_uint8)
    n, h, w = images.shape
    mosaic = tile(images)
    data = spec.encode(mosaic, quality)
    decoded_mosaic = _to_grey(spec.decode(bytes(data)))
    if decoded_mosaic.shape != mosaic.shape:
        raise InputError(
            f"{spec.name} decoded a {mosaic.shape} mosaic as shape {decoded_mosaic.shape}"
        )
    decoded = untile(decoded_mosaic, n, h, w)
    total_bits = 8 * len(data)
    return _point(spec, quality, "tiled", images, decoded, total_bits / n, total_bits)


def _qualities_for(
    spec: CodecSpec, qualities: Mapping[str, Sequence[Any]] | Sequence[Any] | None
) -> tuple[Any, ...]:
    if spec.lossless:
        return (LOSSLESS,)
    if qualities is None:
        return spec.qualities
    if isinstance(qualities, Mapping):
        return tuple(qualities.get(spec.name, spec.qualities))
    return tuple(qualities)


def run_baselines(
    images_uint8: np.ndarray,
    codecs: Iterable[str | CodecSpec] | None = None,
    qualities: Mapping[str, Sequence[Any]] | Sequence[Any] | None = None,
    progress: bool = True,
    *,
    modes: Sequence[str] = MODES,
    workers: int | None = None,
    skipped: dict[str, str] | None = None,
) -> list[BaselinePoint]:
    """Measure classical codecs on ``images_uint8`` (N, H, W) uint8 digits.

    Parameters
    ----------
    codecs:
        Codec names (keys of :data:`CODECS`) or :class:`CodecSpec` objects;
        default: every codec of :data:`CODECS` usable here.
    qualities:
        ``None`` for each codec's default sweep; a mapping ``name -> list``
        to override some codecs; or one list applied to every lossy codec.
        Lossless codecs always run once with quality ``"lossless"``.
    progress:
        Show a ``tqdm`` bar over the (codec, quality) settings.
    modes:
        Any of ``"per-file"`` and ``"tiled"`` (default both).
    workers:
        Threads for per-file coding (default: CPU count, at most 8).
    skipped:
        If a dict is given, it receives ``name -> reason`` for every codec
        that was skipped (unavailable, or failed during the run). Each skip
        is also reported with :func:`warnings.warn`.

    Returns a list of :class:`BaselinePoint`, ordered by codec, quality, mode.
    A codec that fails mid-run keeps the points measured before the failure.
    """
    images = _check_images(images_uint8)
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
    if codecs is None:
        specs = list(CODECS.values())
    else:
        specs = [_resolve(c) for c in codecs]
    status = codec_status()
    skipped = {} if skipped is None else skipped

    plan: list[tuple[CodecSpec, Any]] = []
    for spec in specs:
        known = CODECS.get(spec.name) is spec
        reason = status[spec.name] if known else _probe(spec)
        if reason is not None:
            skipped[spec.name] = reason
            warnings.warn(f"skipping codec {spec.name}: {reason}", stacklevel=2)
            continue
        plan.extend((spec, q) for q in _qualities_for(spec, qualities))

    from tqdm.auto import tqdm

    points: list[BaselinePoint] = []
    failed: set[str] = set()
    with tqdm(total=len(plan), desc="baselines", unit="setting", disable=not progress) as bar:
        for spec, quality in plan:
            bar.set_postfix_str(f"{spec.name} q={quality}")
            if spec.name not in failed:
                try:
                    for mode in modes:
                        if mode == "per-file":
                            points.append(measure_per_file(spec, images, quality, workers))
                        else:
                            points.append(measure_tiled(spec, images, quality))
                except Exception as exc:  # a library error skips the codec, never the run
                    reason = f"failed at quality {quality}: {type(exc).__name__}: {exc}"
                    failed.add(spec.name)
                    skipped[spec.name] = reason
                    warnings.warn(f"skipping codec {spec.name}: {reason}", stacklevel=2)
            bar.update(1)
    return points


def points_to_rows(points: Iterable[BaselinePoint]) -> list[dict[str, Any]]:
    """Plain dicts (one per point) for CSV or JSON, with the codec's label added.

    Keys: codec, label, quality, mode, bits_per_digit, psnr_db,
    psnr_of_mean_mse_db, mad, n, lossless, total_bits. Quality is a number,
    or the string ``"lossless"``.
    """
    rows = []
    for p in points:
        row = asdict(p)
        spec = CODECS.get(p.codec)
        row = {"codec": row.pop("codec"), "label": spec.label if spec else p.codec, **row}
        rows.append(row)
    return rows


def quality_changes_output(
    codec: str | CodecSpec,
    images_uint8: np.ndarray,
    qualities: Sequence[Any] | None = None,
    workers: int | None = 1,
) -> bool:
    """Whether the codec's quality setting really changes what it writes.

    Encodes the digits one file each at the lowest and the highest of
    ``qualities`` (default: the codec's sweep) and returns ``True`` when the
    highest quality costs more bits in total *and* decodes closer to the
    original (lower total squared error). A knob the encoder silently
    ignores (as imagecodecs does for WebP's ``level`` unless
    ``lossless=False``, or for AVIF's on greyscale input) returns ``False``.
    Lossless codecs have no quality setting: :class:`InputError`.
    """
    spec = _resolve(codec)
    if spec.lossless:
        raise InputError(f"{spec.name} is lossless; it has no quality setting to check")
    images = _check_images(images_uint8)
    qs = tuple(spec.qualities if qualities is None else qualities)
    if len(qs) < 2:
        raise InputError("give at least two quality values to compare")
    lo, hi = qs[0], qs[-1]
    sizes_lo, dec_lo = encode_per_file(spec, images, lo, workers)
    sizes_hi, dec_hi = encode_per_file(spec, images, hi, workers)
    err_lo = float(np.sum(mse_per_image(images, dec_lo)))
    err_hi = float(np.sum(mse_per_image(images, dec_hi)))
    return bool(sizes_hi.sum() > sizes_lo.sum() and err_hi < err_lo)
