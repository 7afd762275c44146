"""Classical image codecs on the same digits: the honest comparison.

The codecs (JPEG, JPEG 2000, WebP, AVIF, JPEG XL and lossless references)
and their settings are :mod:`mnistcodec.experiments.classical_codecs`; this
module measures them on ``N`` digits, two ways:

``per-file``
    Each 28x28 digit is its own file. Rate = mean of ``8 * len(encoded)``
    over the digits, headers and all: what storing one digit really costs.
``tiled``
    All N digits are laid out row by row in a near-square grid of 28x28
    tiles (``cols = ceil(sqrt(N))``, ``rows = ceil(N / cols)``, unused tiles
    black, which is MNIST's background; :func:`mnistcodec.storage.digits.tile`)
    and encoded once. Rate = total bits / N, so the container cost is shared
    and the codec can use context across digits. The decoded mosaic is cut
    back into digits.

Distortion is always measured on the decoded output (every encoding is
decoded), per digit: mean of per-digit PSNRs, PSNR of the mean MSE, and MAD on
the [0, 1] scale (see :mod:`mnistcodec.experiments.metrics`; identical digits
score 100 dB). A codec missing from the installed imagecodecs build, or
failing during a run, is skipped with its reason, never a crash.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from mnistcodec.errors import InputError
from mnistcodec.experiments.classical_codecs import (
    CODECS,
    LOSSLESS,
    CodecSpec,
    codec_status,
    probe_codec,
    resolve_codec,
    round_trip,
)
from mnistcodec.experiments.metrics import mad, mse_per_image, psnr_of_mean_mse, psnr_per_image
from mnistcodec.storage.digits import check_digits, tile, untile

MODES = ("per-file", "tiled")
"""Measurement modes, see the module docstring."""


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
    images = check_digits(images_uint8, shape=None, allow_empty=False, allow_single=False)
    return np.ascontiguousarray(images)


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _round_trip_chunk(
    spec: CodecSpec, quality: Any, chunk: np.ndarray
) -> tuple[list[int], np.ndarray]:
    sizes = []
    out = np.empty_like(chunk)
    for i, img in enumerate(chunk):
        data, decoded = round_trip(spec, img, quality)
        sizes.append(len(data))
        out[i] = decoded
    return sizes, out


def _point(
    spec: CodecSpec,
    quality: Any,
    mode: str,
    images: np.ndarray,
    decoded: np.ndarray,
    bits_per_digit: float,
    total_bits: int,
) -> BaselinePoint:
    return BaselinePoint(
        codec=spec.name,
        quality=quality,
        mode=mode,
        bits_per_digit=float(bits_per_digit),
        psnr_db=float(np.mean(psnr_per_image(images, decoded))),
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
    spec = resolve_codec(codec)
    images = _check_images(images_uint8)
    workers = _default_workers() if workers is None else max(1, int(workers))
    n = images.shape[0]
    n_chunks = min(n, workers * 8) if workers > 1 else 1
    chunks = np.array_split(images, n_chunks)
    if workers > 1 and n_chunks > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda c: _round_trip_chunk(spec, quality, c), chunks))
    else:
        results = [_round_trip_chunk(spec, quality, c) for c in chunks]
    sizes = np.concatenate([np.asarray(r[0], dtype=np.int64) for r in results])
    decoded = np.concatenate([r[1] for r in results])
    return sizes, decoded


def measure_per_file(
    codec: str | CodecSpec, images_uint8: np.ndarray, quality: Any, workers: int | None = None
) -> BaselinePoint:
    """One file per digit: mean bits per digit and the distortion of the decoded digits."""
    spec = resolve_codec(codec)
    images = _check_images(images_uint8)
    sizes, decoded = encode_per_file(spec, images, quality, workers)
    bits = 8 * sizes
    return _point(spec, quality, "per-file", images, decoded, float(np.mean(bits)), int(bits.sum()))


def measure_tiled(codec: str | CodecSpec, images_uint8: np.ndarray, quality: Any) -> BaselinePoint:
    """All digits in one mosaic (:func:`mnistcodec.storage.digits.tile`), encoded once; bits / N per digit."""
    spec = resolve_codec(codec)
    images = _check_images(images_uint8)
    n, h, w = images.shape
    data, decoded_mosaic = round_trip(spec, tile(images), quality)
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


def _skip(skipped: dict[str, str], name: str, reason: str) -> None:
    skipped[name] = reason
    warnings.warn(f"skipping codec {name}: {reason}", stacklevel=3)


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
    specs = list(CODECS.values()) if codecs is None else [resolve_codec(c) for c in codecs]
    status = codec_status()
    skipped = {} if skipped is None else skipped

    plan: list[tuple[CodecSpec, Any]] = []
    for spec in specs:
        known = CODECS.get(spec.name) is spec
        reason = status[spec.name] if known else probe_codec(spec)
        if reason is not None:
            _skip(skipped, spec.name, reason)
            continue
        plan.extend((spec, q) for q in _qualities_for(spec, qualities))

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
                    failed.add(spec.name)
                    reason = f"failed at quality {quality}: {type(exc).__name__}: {exc}"
                    _skip(skipped, spec.name, reason)
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
    spec = resolve_codec(codec)
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
